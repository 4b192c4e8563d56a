/* The C floor of greenres' benchmarks: the driver calls greenres makes, in loops that run
 * entirely in C, through function pointers obtained from the loaded driver's
 * cuGetProcAddress (the simulated libcuda.so.1 when it is installed). Each loop is timed
 * inside C with clock_gettime(CLOCK_MONOTONIC) and returns nanoseconds per iteration;
 * negative: a driver call failed, -(CUresult).
 *
 * Built with the package (setup.py) as greenres/benchmark/libgreenres_floor.so, a plain
 * shared library loaded by greenres.benchmark._floor with ctypes; it links neither the
 * driver nor Python (greenres_api.h is included for the C-level entry's table type only,
 * greenres_group_params.h for the structured split's).
 * cuda.h is the one the runtime is built against.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cuda.h>

#include "greenres_api.h"
#include "greenres_group_params.h"

typedef CUresult (*get_proc_fn)(const char*, void**, int, cuuint64_t,
                                CUdriverProcAddressQueryResult*);

static CUresult (*p_record)(CUevent, CUstream);
static CUresult (*p_push)(CUcontext);
static CUresult (*p_pop)(CUcontext*);
static CUresult (*p_get_current)(CUcontext*);
static CUresult (*p_wait)(CUstream, CUevent, unsigned int);
static CUresult (*p_graph_launch)(CUgraphExec, CUstream);
static CUresult (*p_event_create)(CUevent*, unsigned int);
static CUresult (*p_event_destroy)(CUevent);
static CUresult (*p_stream_destroy)(CUstream);
static CUresult (*p_primary_retain)(CUcontext*, CUdevice);
static CUresult (*p_primary_release)(CUdevice);
static CUresult (*p_get_dev_resource)(CUdevice, CUdevResource*, CUdevResourceType);
static CUresult (*p_split_by_count)(CUdevResource*, unsigned int*, const CUdevResource*,
                                    CUdevResource*, unsigned int, unsigned int);
/* cuDevSmResourceSplit (13.1): NULL where the driver lacks it. */
static greenres_split_fn p_split_structured;
static CUresult (*p_generate_desc)(CUdevResourceDesc*, CUdevResource*, unsigned int);
static CUresult (*p_green_create)(CUgreenCtx*, CUdevResourceDesc, CUdevice, unsigned int);
static CUresult (*p_green_destroy)(CUgreenCtx);
static CUresult (*p_ctx_from_green)(CUcontext*, CUgreenCtx);
static CUresult (*p_green_stream_create)(CUstream*, CUgreenCtx, unsigned int, int);

#define RESOLVE(name, ptr)                                                              \
    do {                                                                                \
        CUdriverProcAddressQueryResult found_;                                          \
        CUresult r_ = gpa(name, (void**)&(ptr), cuda_version, CU_GET_PROC_ADDRESS_DEFAULT, \
                          &found_);                                                     \
        if (r_) return r_;                                                              \
        if (found_ != CU_GET_PROC_ADDRESS_SUCCESS) return CUDA_ERROR_NOT_FOUND;         \
    } while (0)

/* Resolve every function with the given cuGetProcAddress (address passed from Python) and
 * CUDA version. Returns 0 or the failing CUresult. */
int floor_init(void* get_proc_address, int cuda_version) {
    get_proc_fn gpa = (get_proc_fn)get_proc_address;
    RESOLVE("cuEventRecord", p_record);
    RESOLVE("cuCtxPushCurrent", p_push);
    RESOLVE("cuCtxPopCurrent", p_pop);
    RESOLVE("cuCtxGetCurrent", p_get_current);
    RESOLVE("cuStreamWaitEvent", p_wait);
    RESOLVE("cuGraphLaunch", p_graph_launch);
    RESOLVE("cuEventCreate", p_event_create);
    RESOLVE("cuEventDestroy", p_event_destroy);
    RESOLVE("cuStreamDestroy", p_stream_destroy);
    RESOLVE("cuDevicePrimaryCtxRetain", p_primary_retain);
    RESOLVE("cuDevicePrimaryCtxRelease", p_primary_release);
    RESOLVE("cuDeviceGetDevResource", p_get_dev_resource);
    RESOLVE("cuDevSmResourceSplitByCount", p_split_by_count);
    {   /* optional: cuGetProcAddress refuses it for a cuda_version before 13.1 */
        CUdriverProcAddressQueryResult found;
        if (gpa("cuDevSmResourceSplit", (void**)&p_split_structured, cuda_version,
                CU_GET_PROC_ADDRESS_DEFAULT, &found) != CUDA_SUCCESS ||
            found != CU_GET_PROC_ADDRESS_SUCCESS)
            p_split_structured = NULL;
    }
    RESOLVE("cuDevResourceGenerateDesc", p_generate_desc);
    RESOLVE("cuGreenCtxCreate", p_green_create);
    RESOLVE("cuGreenCtxDestroy", p_green_destroy);
    RESOLVE("cuCtxFromGreenCtx", p_ctx_from_green);
    RESOLVE("cuGreenCtxStreamCreate", p_green_stream_create);
    return 0;
}

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#define CHECK(call)                        \
    do {                                   \
        CUresult r_ = (call);              \
        if (r_) return -(double)r_;        \
    } while (0)

/* One enter+exit cycle, as greenres' enter_partition/exit_partition make it:
 * get_current(); record(enter_event, caller); push(ctx); wait(stream, enter_event);
 * record(exit_event, stream); pop(); wait(caller, exit_event) (7 calls: enter reads the
 * current context, which exit restores if code inside changed the stack).
 * resolve != 0: use the legacy stream (NULL) as the caller's stream, as `with part:` does
 * when the primary context is current. */
static double enter_exit_loop(CUstream caller, CUcontext ctx, CUstream stream,
                              CUevent enter_event, CUevent exit_event, long iters,
                              int resolve) {
    CUcontext popped, current;
    long long t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        CUstream from = resolve ? NULL : caller;
        CHECK(p_get_current(&current));
        CHECK(p_record(enter_event, from));
        CHECK(p_push(ctx));
        CHECK(p_wait(stream, enter_event, 0));
        CHECK(p_record(exit_event, stream));
        CHECK(p_pop(&popped));
        CHECK(p_wait(from, exit_event, 0));
    }
    return (double)(now_ns() - t0) / (double)iters;
}

double floor_enter_exit(void* caller, void* ctx, void* stream, void* enter_event,
                        void* exit_event, long iters, int resolve) {
    return enter_exit_loop(caller, ctx, stream, enter_event, exit_event, iters, resolve);
}

/* handoff(src, dst): record(event, src); wait(dst, event). */
double floor_handoff(void* src, void* dst, void* event, long iters) {
    long long t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        CHECK(p_record(event, src));
        CHECK(p_wait(dst, event, 0));
    }
    return (double)(now_ns() - t0) / (double)iters;
}

/* Graph.replay(stream): one cuGraphLaunch. */
double floor_graph_launch(void* exec, void* stream, long iters) {
    long long t0 = now_ns();
    for (long i = 0; i < iters; i++) CHECK(p_graph_launch(exec, stream));
    return (double)(now_ns() - t0) / (double)iters;
}

/* enter+exit through greenres' C-level entry (greenres_api.h), as a C or C++ server's hot
 * loop would make them: api->enter(partition, caller) then api->exit(partition). A status
 * other than GREENRES_OK returns -(1000 + status). */
double floor_capi_enter_exit(const greenres_api* api, greenres_partition* partition,
                             void* caller, long iters) {
    greenres_error e = {0, 0, NULL};
    int code;
    long long t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        if ((code = api->enter(partition, caller, 0, &e)) != GREENRES_OK) return -(1000.0 + code);
        if ((code = api->exit(partition, &e)) != GREENRES_OK) return -(1000.0 + code);
    }
    return (double)(now_ns() - t0) / (double)iters;
}

/* The partition of a greenres.GreenContext for the C-level entry (needs the GIL: loaded
 * through ctypes.PyDLL for this one call). */
greenres_partition* floor_capi_partition(const greenres_api* api, PyObject* green_context) {
    return api->partition(green_context);
}

/* Layout.create + close of `n` partitions of `sms` SMs each, with the driver calls that
 * make and free what a layout holds: retain the primary context; the device's SM resource;
 * one split of n groups, by the plan's mechanism (`structured`: cuDevSmResourceSplit with
 * groups of `sms` SMs and `coscheduled` as each group's coscheduledSmCount, as greenres'
 * recipe asks; else cuDevSmResourceSplitByCount); per partition a descriptor, a green
 * context (with its default stream), its context, a non-blocking stream and
 * `events_per_partition` events; then every destroy and the primary context's release
 * (greenres' handoff pool makes no event until a handoff). Events are made in the current
 * context (greenres makes them in the primary context). */
#define FLOOR_MAX_PARTITIONS 64
#define FLOOR_MAX_EVENTS 4096

double floor_layout_create_close(int device, int n, unsigned int sms, int events_per_partition,
                                 long iters, int structured, unsigned int coscheduled) {
    CUdevResource sm, remainder, groups[FLOOR_MAX_PARTITIONS];
    greenres_group_params params[FLOOR_MAX_PARTITIONS] = {0};
    CUgreenCtx green[FLOOR_MAX_PARTITIONS];
    CUcontext ctx[FLOOR_MAX_PARTITIONS];
    CUstream stream[FLOOR_MAX_PARTITIONS];
    static CUevent events[FLOOR_MAX_EVENTS];
    CUdevResourceDesc desc;
    CUcontext primary;
    int nevents = n * events_per_partition;
    if (n < 1 || n > FLOOR_MAX_PARTITIONS || nevents > FLOOR_MAX_EVENTS) return -1;
    if (structured && p_split_structured == NULL) return -(double)CUDA_ERROR_NOT_SUPPORTED;
    for (int i = 0; i < n; i++) {
        params[i].smCount = sms;
        params[i].coscheduledSmCount = coscheduled;
    }
    long long t0 = now_ns();
    for (long it = 0; it < iters; it++) {
        unsigned int made = (unsigned int)n;
        CHECK(p_primary_retain(&primary, (CUdevice)device));
        CHECK(p_get_dev_resource((CUdevice)device, &sm, CU_DEV_RESOURCE_TYPE_SM));
        if (structured) {
            CHECK(p_split_structured(groups, made, &sm, &remainder, 0, params));
        } else {
            CHECK(p_split_by_count(groups, &made, &sm, &remainder, 0, sms));
            if ((int)made < n) return -(double)CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        }
        for (int i = 0; i < n; i++) {
            CHECK(p_generate_desc(&desc, &groups[i], 1));
            CHECK(p_green_create(&green[i], desc, (CUdevice)device, CU_GREEN_CTX_DEFAULT_STREAM));
            CHECK(p_ctx_from_green(&ctx[i], green[i]));
            CHECK(p_green_stream_create(&stream[i], green[i], CU_STREAM_NON_BLOCKING, 0));
        }
        for (int e = 0; e < nevents; e++) CHECK(p_event_create(&events[e], CU_EVENT_DISABLE_TIMING));
        for (int e = 0; e < nevents; e++) CHECK(p_event_destroy(events[e]));
        for (int i = 0; i < n; i++) {
            CHECK(p_stream_destroy(stream[i]));
            CHECK(p_green_destroy(green[i]));
        }
        CHECK(p_primary_release((CUdevice)device));
    }
    return (double)(now_ns() - t0) / (double)iters;
}

/* Threads: each pthread runs enter_exit_loop on its own partition (arrays of nthreads
 * handles). The primary context `primary` is made current on each thread first (push), as
 * the Python threads do. Returns wall nanoseconds per cycle over all threads' cycles
 * (total throughput): first start to last end, over all threads' cycles. */
struct worker {
    CUcontext primary;
    CUstream caller, stream;
    CUcontext ctx;
    CUevent enter_event, exit_event;
    long iters;
    pthread_barrier_t* start;
    double result;
    long long t_start, t_end;
};

static void* worker_main(void* arg) {
    struct worker* w = (struct worker*)arg;
    CUcontext popped;
    if (p_push(w->primary)) {
        w->result = -1;
        pthread_barrier_wait(w->start);
        return NULL;
    }
    pthread_barrier_wait(w->start);
    w->t_start = now_ns();
    w->result = enter_exit_loop(w->caller, w->ctx, w->stream, w->enter_event, w->exit_event,
                                w->iters, 0);
    w->t_end = now_ns();
    p_pop(&popped);
    return NULL;
}

double floor_threads(int nthreads, void* primary, void** callers, void** ctxs, void** streams,
                     void** enter_events, void** exit_events, long iters_per_thread) {
    pthread_t tids[64];
    struct worker ws[64];
    pthread_barrier_t start;
    if (nthreads < 1 || nthreads > 64) return -1;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        ws[i] = (struct worker){primary, callers[i], streams[i], ctxs[i], enter_events[i],
                                exit_events[i], iters_per_thread, &start, 0, 0, 0};
        pthread_create(&tids[i], NULL, worker_main, &ws[i]);
    }
    pthread_barrier_wait(&start);
    for (int i = 0; i < nthreads; i++) pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&start);
    /* Wall time from the first thread's start to the last thread's end (taken inside the
     * workers: the main thread may be descheduled after the barrier). */
    long long t0 = ws[0].t_start, t1 = ws[0].t_end;
    for (int i = 0; i < nthreads; i++) {
        if (ws[i].result < 0) return ws[i].result;
        if (ws[i].t_start < t0) t0 = ws[i].t_start;
        if (ws[i].t_end > t1) t1 = ws[i].t_end;
    }
    return (double)(t1 - t0) / (double)(iters_per_thread * nthreads);
}

/* Round-robin over m partitions (arrays of contexts and streams), one enter+exit cycle on
 * partition i % m per iteration (the same 7 calls as enter_exit_loop). */
double floor_enter_exit_many(void* caller, void** ctxs, void** streams, int m,
                             void* enter_event, void* exit_event, long iters) {
    CUcontext popped, current;
    long long t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        CUcontext ctx = ctxs[i % m];
        CUstream stream = streams[i % m];
        CHECK(p_get_current(&current));
        CHECK(p_record(enter_event, caller));
        CHECK(p_push(ctx));
        CHECK(p_wait(stream, enter_event, 0));
        CHECK(p_record(exit_event, stream));
        CHECK(p_pop(&popped));
        CHECK(p_wait(caller, exit_event, 0));
    }
    return (double)(now_ns() - t0) / (double)iters;
}
