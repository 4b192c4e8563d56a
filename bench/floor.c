/* The C floor for greenres' benchmarks: the same driver calls greenres' hot paths make,
 * in a loop that runs entirely in C, through function pointers obtained from the loaded
 * driver's cuGetProcAddress_v2 (the simulated libcuda.so.1 in the benchmarks). Timed inside
 * C with clock_gettime(CLOCK_MONOTONIC); every function returns nanoseconds per iteration
 * (negative: a driver call failed, -(CUresult)).
 *
 * Self-contained (no cuda.h): the handles are opaque pointers and CUresult an int.
 * Built at bench time by bench/_common.py: cc -O2 -shared -fPIC floor.c -lpthread.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

typedef int CUresult;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef unsigned long long cuuint64_t;

typedef CUresult (*get_proc_fn)(const char*, void**, int, cuuint64_t, int*);
typedef CUresult (*record_fn)(CUevent, CUstream);
typedef CUresult (*push_fn)(CUcontext);
typedef CUresult (*pop_fn)(CUcontext*);
typedef CUresult (*get_current_fn)(CUcontext*);
typedef CUresult (*wait_fn)(CUstream, CUevent, unsigned int);

static record_fn p_record;
static push_fn p_push;
static pop_fn p_pop;
static get_current_fn p_get_current;
static wait_fn p_wait;

/* Resolve the five functions with the given cuGetProcAddress_v2 (address passed from
 * Python) and CUDA version. Returns 0 or the failing CUresult. */
int floor_init(void* get_proc_address, int cuda_version) {
    get_proc_fn gpa = (get_proc_fn)get_proc_address;
    int status = 0;
    CUresult r;
    if ((r = gpa("cuEventRecord", (void**)&p_record, cuda_version, 0, &status))) return r;
    if ((r = gpa("cuCtxPushCurrent", (void**)&p_push, cuda_version, 0, &status))) return r;
    if ((r = gpa("cuCtxPopCurrent", (void**)&p_pop, cuda_version, 0, &status))) return r;
    if ((r = gpa("cuCtxGetCurrent", (void**)&p_get_current, cuda_version, 0, &status))) return r;
    if ((r = gpa("cuStreamWaitEvent", (void**)&p_wait, cuda_version, 0, &status))) return r;
    return 0;
}

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#define CHECK(call) do { CUresult r_ = (call); if (r_) return -(double)r_; } while (0)

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
    if (p_push(w->primary)) { w->result = -1; pthread_barrier_wait(w->start); return NULL; }
    pthread_barrier_wait(w->start);
    w->t_start = now_ns();
    w->result = enter_exit_loop(w->caller, w->ctx, w->stream, w->enter_event, w->exit_event,
                                w->iters, 0);
    w->t_end = now_ns();
    p_pop(&popped);
    return NULL;
}

double floor_threads(int nthreads, void* primary, void** callers, void** ctxs,
                     void** streams, void** enter_events, void** exit_events,
                     long iters_per_thread) {
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
 * partition i % m per iteration, as bench_scaling.py does from greenres. */
double floor_enter_exit_many(void* caller, void** ctxs, void** streams, int m,
                             void* enter_event, void* exit_event, long iters) {
    CUcontext popped;
    long long t0 = now_ns();
    for (long i = 0; i < iters; i++) {
        CUcontext ctx = ctxs[i % m];
        CUstream stream = streams[i % m];
        CHECK(p_record(enter_event, caller));
        CHECK(p_push(ctx));
        CHECK(p_wait(stream, enter_event, 0));
        CHECK(p_record(exit_event, stream));
        CHECK(p_pop(&popped));
        CHECK(p_wait(caller, exit_event, 0));
    }
    return (double)(now_ns() - t0) / (double)iters;
}
