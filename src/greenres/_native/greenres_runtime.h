/* The C helper layer of greenres' runtime (greenres._driver): views of CUDA structs that
 * 12.x headers lack, thread identity, the atomic words of the hot path (partition owner,
 * lifetime gates, in-flight counters), the per-thread stack of entered partitions and the
 * driver functions of the hot paths.
 *
 * Include it from exactly one translation unit (the greenres._driver module): the nesting
 * stack is a `static thread_local`, so a second includer would get a second, empty stack.
 * C and C++ callers outside the module use the capsule API of greenres_api.h instead.
 */
#ifndef GREENRES_RUNTIME_H
#define GREENRES_RUNTIME_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda.h>

/* ------------------------------------------------------------------ CUDA views */

/* CUdevSmResource since CUDA 13.0 starts with these three fields. 12.x headers declare
   only smCount, so the 13.0 fields are read through this prefix view; a 12.x driver leaves
   them 0 and the documented granularity table is used instead. */
typedef struct {
    unsigned int smCount;
    unsigned int minSmPartitionSize;
    unsigned int smCoscheduledAlignment;
} greenres_sm_prefix;
static inline const greenres_sm_prefix* greenres_sm_prefix_of(const CUdevResource* r) {
    return (const greenres_sm_prefix*)&r->sm;
}

#include "greenres_group_params.h" /* the structured split's parameters and function */
typedef CUresult (*greenres_green_id_fn)(CUgreenCtx, unsigned long long*);

/* CUdevWorkqueueConfigResource of CUDA 13.1, the union member of a CUdevResource of type
   CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG (1000). 12.x headers lack both; the union sits at
   the same offset (96) in 12.x and 13.x, so it is viewed through this. */
typedef struct {
    CUdevice device;
    unsigned int wqConcurrencyLimit;
    int sharingScope; /* CUdevWorkqueueConfigScope: 0 device context, 1 balanced */
} greenres_wq_config;
static inline greenres_wq_config* greenres_wq_config_of(CUdevResource* r) {
    return (greenres_wq_config*)&r->sm;
}
#define GREENRES_RESOURCE_TYPE_WORKQUEUE_CONFIG ((CUdevResourceType)1000)

/* ------------------------------------------------------------------ threads */

/* Thread identity without a syscall: the address of a thread_local is unique among live
   threads. It and the nesting stack (below) are one thread_local, so that a hot path finds
   all of its per-thread state through one TLS address lookup (in a shared library each
   thread_local variable costs a __tls_get_addr call). */
#define GREENRES_MAX_NESTING 64
typedef struct {
    void* stack[GREENRES_MAX_NESTING];
    int top;
} greenres_thread_state;
static thread_local greenres_thread_state greenres_tls;
static inline uintptr_t greenres_thread_token(void) { return (uintptr_t)&greenres_tls; }
/* The Python thread ident (threading.get_ident()) of the calling thread; no GIL needed.
   Kept only to name the thread in error messages. */
static inline unsigned long greenres_thread_ident(void) { return PyThread_get_thread_ident(); }

/* ------------------------------------------------------------------ partition owner */

/* The owner word of a partition: 0 when free, else the owning thread's token. Only the
   owner writes the rest of the partition's hot state, so this one atomic is the whole
   synchronisation of enter/exit (no lock, nothing shared between partitions). */
/* Sequentially consistent: an enter claims the owner word and then reads the layout's
   gate, a close writes the gate and then reads the owner words (lifetimes, below), so one
   of them always sees the other. */
static inline int greenres_claim(uintptr_t* owner, uintptr_t me) {
    uintptr_t expected = 0;
    return __atomic_compare_exchange_n(owner, &expected, me, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}
static inline uintptr_t greenres_owner(const uintptr_t* owner) {
    return __atomic_load_n(owner, __ATOMIC_ACQUIRE);
}
static inline void greenres_release(uintptr_t* owner) {
    __atomic_store_n(owner, (uintptr_t)0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ lifetimes
 *
 * The in-flight protocol that makes close() safe against every other thread. An object
 * that owns driver handles has a gate (OPEN, CLOSING or CLOSED) and one or more in-flight
 * counters. Every operation that passes one of its handles to the driver runs between
 * greenres_begin() and greenres_end() on the gate and a counter. close() moves the gate
 * from OPEN to CLOSING, waits until every counter is zero, then either reopens the gate
 * (it refused: a partition is entered, a capture is going on) or destroys the handles and
 * closes the gate. An operation that meets CLOSING waits for the outcome; one that meets
 * CLOSED fails (ClosedError). So no handle is destroyed while a call that uses it runs,
 * and no call starts on a destroyed handle.
 *
 * The counter is incremented before the gate is read, and close() writes the gate before
 * it reads the counters, both sequentially consistent: an operation either sees CLOSING,
 * or close() sees its increment (the store-load order that needs the full fence).
 *
 * Enter and exit count nothing: a partition's owner word admits them. An enter claims the
 * owner word and then reads the gate (backing off when it is not open); close() reads the
 * owner words after closing the gate and refuses while one is set; an exit runs while its
 * thread owns the partition and gives the word up after its last driver call. So the hot
 * path makes no atomic operation beyond the one claim of an outermost enter.
 */
enum { GREENRES_OPEN = 0, GREENRES_CLOSING = 1, GREENRES_CLOSED = 2 };

/* 1: admitted (call greenres_end later); 0: closed; -1: closing, wait for the outcome
   (greenres_gate_wait) and begin again. */
static inline int greenres_begin(const int* gate, long* inflight) {
    int state;
    __atomic_fetch_add(inflight, 1, __ATOMIC_SEQ_CST);
    state = __atomic_load_n(gate, __ATOMIC_SEQ_CST);
    if (__builtin_expect(state == GREENRES_OPEN, 1)) return 1;
    __atomic_fetch_sub(inflight, 1, __ATOMIC_SEQ_CST);
    return state == GREENRES_CLOSED ? 0 : -1;
}
/* Admit again, at once, an operation that holds an admission on the same gate: the gate's
   close cannot finish meanwhile, so waiting for it would wait for itself. */
static inline void greenres_readmit(long* inflight) {
    __atomic_fetch_add(inflight, 1, __ATOMIC_SEQ_CST);
}
static inline void greenres_end(long* inflight) {
    __atomic_fetch_sub(inflight, 1, __ATOMIC_RELEASE);
}
static inline int greenres_gate_state(const int* gate) {
    return __atomic_load_n(gate, __ATOMIC_SEQ_CST);
}
/* OPEN -> CLOSING; 0 when the gate was not open (another close is deciding, or done). */
static inline int greenres_gate_close(int* gate) {
    int expected = GREENRES_OPEN;
    return __atomic_compare_exchange_n(gate, &expected, GREENRES_CLOSING, 0, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}
static inline void greenres_gate_set(int* gate, int state) {
    __atomic_store_n(gate, state, __ATOMIC_SEQ_CST);
}
/* Admit one operation, waiting out a close that is deciding: 1 admitted, 0 closed. Call
   without the GIL: the closing thread may need it to decide, and an operation must be
   able to slip in the moment a refusing close opens the gate again (waiting for the GIL
   there would let the next close() start first, again and again). */
static inline int greenres_admit(const int* gate, long* inflight) {
    int admitted;
    while ((admitted = greenres_begin(gate, inflight)) == -1) {
        while (__atomic_load_n(gate, __ATOMIC_SEQ_CST) == GREENRES_CLOSING) sched_yield();
    }
    return admitted;
}
/* Spin (yielding the CPU) while the gate is CLOSING; the state it settled in. Call without
   the GIL: the closing thread may need it to decide. */
static inline int greenres_gate_wait(const int* gate) {
    int state;
    while ((state = __atomic_load_n(gate, __ATOMIC_SEQ_CST)) == GREENRES_CLOSING) sched_yield();
    return state;
}
/* The number of the next layout made without a name ("layout<N>"), from 0, once each. */
static inline unsigned long long greenres_next_layout_number(void) {
    static unsigned long long next;
    return __atomic_fetch_add(&next, 1ULL, __ATOMIC_RELAXED);
}
/* No operation in flight on the counter now (what greenres_wait_idle waits for). */
static inline int greenres_idle(const long* inflight) {
    return __atomic_load_n(inflight, __ATOMIC_SEQ_CST) == 0;
}
/* Spin (yielding) until no operation is in flight on the counter. Call without the GIL. */
static inline void greenres_wait_idle(const long* inflight) {
    while (__atomic_load_n(inflight, __ATOMIC_SEQ_CST) != 0) sched_yield();
}

/* ------------------------------------------------------------------ nesting stack */

/* Per-thread stack of entered partitions: gives the caller's stream of a nested enter and
   rejects exits out of order, with no driver call. Entries are PartState pointers; an
   entered partition keeps the core that owns its PartState alive (the runtime holds a
   reference while the partition is entered), so an entry never points at freed memory.
   It lives in greenres_tls (with the thread identity, above). */
/* The hot paths look the calling thread's state up once (greenres_this_thread) and pass
   it on: every lookup of a thread_local is a __tls_get_addr call here, and the compiler
   cannot reuse one across the driver calls in between. */
static inline greenres_thread_state* greenres_this_thread(void) { return &greenres_tls; }
static inline uintptr_t greenres_token_of(const greenres_thread_state* t) { return (uintptr_t)t; }
static inline int greenres_push_on(greenres_thread_state* t, void* p) {
    if (t->top >= GREENRES_MAX_NESTING) return 0;
    t->stack[t->top++] = p;
    return 1;
}
static inline void* greenres_top_of(const greenres_thread_state* t) {
    return t->top ? t->stack[t->top - 1] : NULL;
}
static inline void greenres_pop_on(greenres_thread_state* t) {
    if (t->top) --t->top;
}
static inline int greenres_depth_of(const greenres_thread_state* t) { return t->top; }

static inline int greenres_stack_push(void* p) { return greenres_push_on(&greenres_tls, p); }
static inline void* greenres_stack_top(void) { return greenres_top_of(&greenres_tls); }
static inline void greenres_stack_pop(void) { greenres_pop_on(&greenres_tls); }
static inline int greenres_stack_depth(void) { return greenres_tls.top; }
static inline void* greenres_stack_at(int i) {
    greenres_thread_state* t = &greenres_tls;
    return (i >= 0 && i < t->top) ? t->stack[i] : NULL;
}

/* ------------------------------------------------------------------ hot driver calls */

/* The driver functions the hot paths call (enter, exit, pooled handoff, and the creation of
   a pool slot's event by its first handoff), as pointers the driver gave through
   cuGetProcAddress, resolved once before the first layout is made
   (_resolve_hot_calls in _hotpath.pxi). Called directly rather than through
   cuda.bindings.cydriver, whose two dispatch layers cost ~35 instructions a call, a fifth
   of a simulated driver call (docs/benchmarks.md, "Where the time goes"). Written once
   with the GIL held, before any partition exists; read only afterwards. */
typedef CUresult (*greenres_record_fn)(CUevent, CUstream);
typedef CUresult (*greenres_wait_fn)(CUstream, CUevent, unsigned int);
typedef CUresult (*greenres_push_fn)(CUcontext);
typedef CUresult (*greenres_context_out_fn)(CUcontext*);
typedef CUresult (*greenres_event_create_fn)(CUevent*, unsigned int);
typedef struct {
    greenres_record_fn event_record;
    greenres_wait_fn stream_wait_event;
    greenres_push_fn ctx_push_current;
    greenres_context_out_fn ctx_pop_current;
    greenres_context_out_fn ctx_get_current;
    greenres_event_create_fn event_create;
} greenres_hot_calls;
static greenres_hot_calls greenres_hot;

#endif /* GREENRES_RUNTIME_H */
