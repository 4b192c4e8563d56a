/* A C extension for greenres' tests, built at test time against greenres_api.h: it calls
 * the C-level entry the way a C or C++ server would, including a timed loop of enter and
 * exit with the GIL released (the benchmark row "from C"). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <time.h>

#include "greenres_api.h"

static const greenres_api* api = NULL;

static greenres_partition* partition_of(PyObject* part) {
    if (api == NULL && (api = greenres_import_api()) == NULL) return NULL;
    return api->partition(part);
}

static PyObject* result(int code, const greenres_error* e) {
    return Py_BuildValue("(iis)", code, e->cuda_error, e->function);
}

/* enter(part, from_stream, resolve) -> (code, cuda_error, function) */
static PyObject* py_enter(PyObject* self, PyObject* args) {
    PyObject* part;
    unsigned long long from;
    int resolve;
    greenres_error e = {0, 0, NULL};
    if (!PyArg_ParseTuple(args, "OKi", &part, &from, &resolve)) return NULL;
    greenres_partition* p = partition_of(part);
    if (p == NULL) return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = api->enter(p, (void*)(uintptr_t)from, resolve, &e);
    Py_END_ALLOW_THREADS
    return result(code, &e);
}

/* exit(part) -> (code, cuda_error, function) */
static PyObject* py_exit(PyObject* self, PyObject* args) {
    PyObject* part;
    greenres_error e = {0, 0, NULL};
    if (!PyArg_ParseTuple(args, "O", &part)) return NULL;
    greenres_partition* p = partition_of(part);
    if (p == NULL) return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = api->exit(p, &e);
    Py_END_ALLOW_THREADS
    return result(code, &e);
}

/* handoff(part, src, dst) -> (code, cuda_error, function) */
static PyObject* py_handoff(PyObject* self, PyObject* args) {
    PyObject* part;
    unsigned long long src, dst;
    greenres_error e = {0, 0, NULL};
    if (!PyArg_ParseTuple(args, "OKK", &part, &src, &dst)) return NULL;
    greenres_partition* p = partition_of(part);
    if (p == NULL) return NULL;
    int code;
    Py_BEGIN_ALLOW_THREADS
    code = api->handoff(p, (void*)(uintptr_t)src, (void*)(uintptr_t)dst, &e);
    Py_END_ALLOW_THREADS
    return result(code, &e);
}

/* stream(part) -> the partition's default stream as an int */
static PyObject* py_stream(PyObject* self, PyObject* args) {
    PyObject* part;
    if (!PyArg_ParseTuple(args, "O", &part)) return NULL;
    greenres_partition* p = partition_of(part);
    if (p == NULL) return NULL;
    return PyLong_FromUnsignedLongLong((uintptr_t)api->stream(p));
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* cycles(part, from_stream, n) -> ns per enter+exit cycle, in a C loop without the GIL;
   raises RuntimeError with the code when a call fails. */
static PyObject* py_cycles(PyObject* self, PyObject* args) {
    PyObject* part;
    unsigned long long from;
    long n;
    greenres_error e = {0, 0, NULL};
    if (!PyArg_ParseTuple(args, "OKl", &part, &from, &n)) return NULL;
    greenres_partition* p = partition_of(part);
    if (p == NULL) return NULL;
    int code = 0;
    long long t0, t1;
    Py_BEGIN_ALLOW_THREADS
    t0 = now_ns();
    for (long i = 0; i < n && code == 0; i++) {
        code = api->enter(p, (void*)(uintptr_t)from, 0, &e);
        if (code == 0) code = api->exit(p, &e);
    }
    t1 = now_ns();
    Py_END_ALLOW_THREADS
    if (code != 0) return PyErr_Format(PyExc_RuntimeError, "greenres C API: code %d", code);
    return PyFloat_FromDouble((double)(t1 - t0) / (double)n);
}

static PyMethodDef methods[] = {
    {"enter", py_enter, METH_VARARGS, NULL},
    {"exit", py_exit, METH_VARARGS, NULL},
    {"handoff", py_handoff, METH_VARARGS, NULL},
    {"stream", py_stream, METH_VARARGS, NULL},
    {"cycles", py_cycles, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "capi_loop", NULL, -1, methods};

PyMODINIT_FUNC PyInit_capi_loop(void) { return PyModule_Create(&module); }
