/* greenres' C-level entry: enter, exit and handoff of partitions from C, C++ and Cython,
 * with no Python call in the loop. The functions are the runtime's own nogil hot paths
 * (the same owner word, nesting stack, context-stack repair, lifetime admission and NVTX
 * annotation as `with part:`), reached through a table the greenres._driver module exports
 * as the PyCapsule "greenres._driver._C_API".
 *
 *     #include "greenres_api.h"          // greenres.get_include() is its folder
 *     const greenres_api* api = greenres_import_api();        // with the GIL, once
 *     greenres_partition* p = api->partition(green_context);   // with the GIL
 *     ... without the GIL, as often as you like:
 *     greenres_error e;
 *     if (api->enter(p, caller_stream, 0, &e) == GREENRES_OK) {
 *         ... work on api->stream(p) or in "the current context" ...
 *         api->exit(p, &e);
 *     }
 *
 * Rules:
 *  - Keep the Python GreenContext object (and so its layout) referenced while you use its
 *    greenres_partition: the pointer is borrowed from it. A partition entered through this
 *    API is not referenced by greenres while it is entered (that needs the GIL); one entered
 *    from Python is, and exiting it here takes the GIL for a moment to drop that reference.
 *  - The functions never wait: while a close() of the layout is deciding they answer
 *    GREENRES_LAYOUT_CLOSING (try again), after it GREENRES_LAYOUT_CLOSED.
 *  - Exit in the reverse order of enter, on the entering thread (GREENRES_NOT_OWNER,
 *    GREENRES_OUT_OF_ORDER otherwise), as from Python.
 *  - The table is stable: fields are only ever added at the end (check `size`), and
 *    `version` only grows.
 */
#ifndef GREENRES_API_H
#define GREENRES_API_H

#include <Python.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GREENRES_API_VERSION 1
#define GREENRES_API_CAPSULE "greenres._driver._C_API"

/* What the functions return (greenres_error.code too). */
enum greenres_status {
    GREENRES_OK = 0,
    GREENRES_OWNED_ELSEWHERE = 1, /* the partition is current on another thread */
    GREENRES_NOT_OWNER = 2,       /* exit on a thread that did not enter it */
    GREENRES_OUT_OF_ORDER = 3,    /* not the innermost partition entered on this thread */
    GREENRES_TOO_DEEP = 4,        /* nested more than 64 levels */
    GREENRES_OTHER_DEVICE = 5,    /* nested inside a partition of another device */
    GREENRES_POOL_EXHAUSTED = 6,  /* (internal: handoff falls back by itself) */
    GREENRES_DRIVER_FAILED = 7,   /* a driver call failed: see cuda_error and function */
    GREENRES_LAYOUT_CLOSED = 8,   /* the layout is closed */
    GREENRES_LAYOUT_CLOSING = 9,  /* a close() of the layout is deciding: try again */
    GREENRES_NOT_CURRENT = 10     /* exit of a set_context() enter whose green context is
                                     not the current context (nothing changed) */
};

/* A partition's state inside greenres (opaque). */
typedef struct greenres_partition greenres_partition;

typedef struct {
    int code;             /* a greenres_status */
    int cuda_error;       /* the CUresult, for GREENRES_DRIVER_FAILED */
    const char* function; /* the driver function that failed, for GREENRES_DRIVER_FAILED */
} greenres_error;

typedef struct {
    unsigned int version; /* GREENRES_API_VERSION of the runtime that made the table */
    unsigned int size;    /* sizeof the table the runtime made */
    /* The partition of a greenres.GreenContext (borrowed from it), or NULL with a Python
       exception set (TypeError). Needs the GIL. */
    greenres_partition* (*partition)(PyObject* green_context);
    /* The partition's default stream (a CUstream; NULL once the layout is closed). No GIL
       needed. */
    void* (*stream)(greenres_partition* partition);
    /* Enter the partition on this thread, after the work queued so far on `from_stream`
       (a CUstream; with `resolve` != 0 it is ignored and found as `with part:` finds it).
       No GIL needed. */
    int (*enter)(greenres_partition* partition, void* from_stream, int resolve,
                 greenres_error* error);
    /* Exit the innermost enter of the partition on this thread. No GIL needed (see the
       rules above for a partition entered from Python). */
    int (*exit)(greenres_partition* partition, greenres_error* error);
    /* `dst` waits for the work queued on `src` so far (CUstreams), through the event pool
       of `partition`'s layout. No GIL needed. A thread's first handoff through a slot of
       the pool also makes the slot's event (cuEventCreate with the device's primary
       context pushed and popped again): its failure is GREENRES_DRIVER_FAILED. */
    int (*handoff)(greenres_partition* partition, void* src, void* dst, greenres_error* error);
} greenres_api;

/* The table, or NULL with a Python exception set. Needs the GIL. */
static inline const greenres_api* greenres_import_api(void) {
    const greenres_api* api = (const greenres_api*)PyCapsule_Import(GREENRES_API_CAPSULE, 0);
    if (api != NULL && api->version < GREENRES_API_VERSION) {
        PyErr_Format(PyExc_ImportError,
                     "greenres C API version %u is older than this header's (%d): "
                     "rebuild against the installed greenres",
                     api->version, GREENRES_API_VERSION);
        return NULL;
    }
    return api;
}

#ifdef __cplusplus
}
#endif

#endif /* GREENRES_API_H */
