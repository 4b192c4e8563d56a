// Contexts: primary contexts, user contexts, and the per-thread context stack.
// The stack lives in thread_local storage: push/pop/set/get take no lock.
#include <cstdio>

#include "state.h"

using namespace sim;

namespace sim {

// The thread's top of stack changes from old_top to new_top. Keeps each
// context's count of "threads having it current", and records the hazard of a
// green context current on two threads (the real driver does no locking).
// Only green contexts are counted (the hazard is about them): the primary
// context, current on every thread, would otherwise be one counter that all
// threads' push/pop bounce between cores. The callers pass the contexts of
// current entries only (live_ctx): a stale entry (its context's slot reused)
// counts for nothing, the count belongs to the newer context.
static void on_top_change(Context* old_top, Context* new_top) {
    if (old_top == new_top) return;
    if (old_top != nullptr && old_top->kind == CtxKind::Green)
        old_top->top_count.fetch_sub(1, std::memory_order_relaxed);
    if (new_top != nullptr && new_top->kind == CtxKind::Green) {
        int before = new_top->top_count.fetch_add(1, std::memory_order_relaxed);
        if (before > 0) {
            char buf[128];
            snprintf(buf, sizeof buf, "green context %llu made current while current on %d other thread(s)",
                     new_top->green ? new_top->green->id : 0ULL, before);
            add_hazard("green_ctx_current_on_two_threads", buf);
        }
    }
}

// A context handle argument. Not a context, or a destroyed one (stale included):
// INVALID_CONTEXT, the error cuda.h documents for every function taking one. A
// primary context released to zero: CONTEXT_IS_DESTROYED (cuda.h: "a primary
// context which has not yet been initialized").
CUresult check_settable(CUcontext h, Context** out) {
    Context* c = live_object<Context>(h);
    if (c == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    if (c->kind == CtxKind::Primary && c->primary_refs.load(std::memory_order_acquire) <= 0)
        return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    *out = c;
    return CUDA_SUCCESS;
}

// ctx == NULL means the current context.
static CUresult ctx_or_current(CUcontext h, Context** out) {
    if (h == nullptr) return require_current(out);
    return check_settable(h, out);
}

static void wait_for_streams(Context* c) {
    StreamSnapshot streams;  // pinned: waiting happens outside the lock
    streams.take(c->mu, c->streams);
    for (Stream* s : streams.streams) wait_idle(s);
}

// The context of the top entry, or nullptr: empty, or a stale entry (whose
// context's slot was reused; a destroyed one not yet reused still counts).
static inline Context* live_top(const std::vector<CtxRef>& st) {
    if (st.empty() || !st.back().current()) return nullptr;
    return st.back().obj;
}

// The per-thread stack's top changes only through these two (and cuCtxSetCurrent).
// Entries are built in place (emplace_back): no 16-byte temporary whose two
// narrower stores a wide reload would stall on.
static inline void push_ctx(std::vector<CtxRef>& st, Context* c) {
    Context* old = live_top(st);
    st.emplace_back(c);
    on_top_change(old, c);
}

// Returns the popped entry's handle (as it was pushed).
static inline uintptr_t pop_ctx(std::vector<CtxRef>& st) {
    Context* old = live_top(st);
    uintptr_t h = st.back().handle();
    st.pop_back();
    on_top_change(old, live_top(st));
    return h;
}

}  // namespace sim

// ---------------------------------------------------------------- stack
SIM_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
    SIM_ENTER_INIT("cuCtxPushCurrent");
    Context* c;
    CUresult r = check_settable(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    push_ctx(tls().stack, c);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext* pctx) {
    SIM_ENTER_INIT("cuCtxPopCurrent");
    auto& st = tls().stack;
    if (st.empty()) return CUDA_ERROR_INVALID_CONTEXT;
    uintptr_t old = pop_ctx(st);
    if (pctx != nullptr) *pctx = reinterpret_cast<CUcontext>(old);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
    SIM_ENTER_INIT("cuCtxSetCurrent");
    auto& st = tls().stack;
    if (ctx == nullptr) {  // cuda.h: equivalent to popping the top (no-op when empty)
        if (!st.empty()) pop_ctx(st);
        return CUDA_SUCCESS;
    }
    Context* c;
    CUresult r = check_settable(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    Context* old = live_top(st);
    if (st.empty())
        st.emplace_back(c);
    else
        st.back() = CtxRef(c);
    on_top_change(old, c);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetCurrent(CUcontext* pctx) {
    SIM_ENTER_INIT("cuCtxGetCurrent");
    if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const CtxRef* r = current_ref();
    *pctx = reinterpret_cast<CUcontext>(r == nullptr ? 0 : r->handle());
    return CUDA_SUCCESS;
}

// The v1 functions act on the current context: the v2 form with ctx == NULL.
static CUresult ctx_get_device(CUdevice* device, CUcontext ctx) {
    if (device == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    *device = c->device;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetDevice(CUdevice* device) {
    SIM_ENTER_INIT("cuCtxGetDevice");
    return ctx_get_device(device, nullptr);
}

SIM_EXPORT CUresult cuCtxGetDevice_v2(CUdevice* device, CUcontext ctx) {
    SIM_ENTER_INIT("cuCtxGetDevice");
    return ctx_get_device(device, ctx);
}

static CUresult sync_context(CUcontext ctx) {
    Context* c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    StreamSnapshot snapshot;  // pinned: waiting happens outside the lock
    snapshot.take(c->mu, c->streams);
    const auto& streams = snapshot.streams;
    // Synchronising a capturing stream is illegal in every capture mode.
    for (Stream* s : streams) {
        Capture* cap = s->capture.load(std::memory_order_acquire);
        if (cap != nullptr) {
            invalidate_capture(cap);
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        }
    }
    r = check_unsafe_call();
    if (r != CUDA_SUCCESS) return r;
    for (Stream* s : streams) wait_idle(s);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxSynchronize(void) {
    SIM_ENTER_INIT("cuCtxSynchronize");
    return sync_context(nullptr);
}

SIM_EXPORT CUresult cuCtxSynchronize_v2(CUcontext ctx) {
    SIM_ENTER_INIT("cuCtxSynchronize");
    return sync_context(ctx);
}

SIM_EXPORT CUresult cuCtxGetId(CUcontext ctx, unsigned long long* ctxId) {
    SIM_ENTER_INIT("cuCtxGetId");
    if (ctxId == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    *ctxId = c->id;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int* version) {
    SIM_ENTER_INIT("cuCtxGetApiVersion");
    if (version == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = ctx_or_current(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    *version = 3020;  // guess: what real drivers report for contexts of the v2 API
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetFlags(unsigned int* flags) {
    SIM_ENTER_INIT("cuCtxGetFlags");
    if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    *flags = c->flags;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetStreamPriorityRange(int* leastPriority, int* greatestPriority) {
    SIM_ENTER_INIT("cuCtxGetStreamPriorityRange");
    if (leastPriority != nullptr) *leastPriority = kLeastPriority;
    if (greatestPriority != nullptr) *greatestPriority = kGreatestPriority;
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- user contexts
static CUresult create_user_ctx(CUcontext* pctx, unsigned int flags, CUdevice dev) {
    if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    auto* c = make_object<Context>();
    if (c == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    c->kind = CtxKind::User;
    c->device = dev;
    c->flags = flags;
    c->id = next_id();
    g_live[kLiveContext].fetch_add(1, std::memory_order_relaxed);
    push_ctx(tls().stack, c);  // cuda.h: the new context is pushed onto the stack
    *pctx = handle_of<CUcontext>(c);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned int flags, CUdevice dev) {
    SIM_ENTER_INIT("cuCtxCreate");
    return create_user_ctx(pctx, flags, dev);
}

SIM_EXPORT CUresult cuCtxCreate_v4(CUcontext* pctx, CUctxCreateParams* params, unsigned int flags, CUdevice dev) {
    SIM_ENTER_INIT("cuCtxCreate");
    // Execution affinity and CIG are not simulated.
    if (params != nullptr && (params->execAffinityParams != nullptr || params->cigParams != nullptr))
        return CUDA_ERROR_NOT_SUPPORTED;
    return create_user_ctx(pctx, flags, dev);
}

SIM_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx) {
    SIM_ENTER_INIT("cuCtxDestroy");
    Context* c = live_object<Context>(ctx);
    if (c == nullptr || c->kind != CtxKind::User) return CUDA_ERROR_INVALID_CONTEXT;
    bool expected = true;
    if (!c->alive.compare_exchange_strong(expected, false)) {
        note_destroyed_handle(kSlabContext, slot_size<Context>(), kMagicContext, ctx);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    wait_for_streams(c);  // cuda.h: destruction waits for outstanding work
    // Its internal streams (legacy, per-thread) end with it; user streams stay
    // as stale handles (cuStreamDestroy still frees them) and keep the
    // context's slot until they are gone.
    {
        StreamSnapshot streams;
        streams.take(c->mu, c->streams);
        for (Stream* s : streams.streams) {
            bool alive = true;
            if (s->internal && s->alive.compare_exchange_strong(alive, false)) retire_stream(s);
        }
    }
    auto& st = tls().stack;
    if (live_top(st) == c) pop_ctx(st);
    g_live[kLiveContext].fetch_sub(1, std::memory_order_relaxed);
    unref_ctx_owner(c);  // the owner's reference
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- primary contexts
SIM_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext* pctx, CUdevice dev) {
    SIM_ENTER_INIT("cuDevicePrimaryCtxRetain");
    if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    Context* c = g_devices[dev]->primary;
    c->primary_refs.fetch_add(1, std::memory_order_acq_rel);
    *pctx = handle_of<CUcontext>(c);
    return CUDA_SUCCESS;
}

namespace sim {
// Drops one reference; the last one deactivates the primary context after its
// work is done. guess: the handle stays the same when it is retained again.
CUresult primary_release(int dev) {
    Context* c = g_devices[dev]->primary;
    int refs = c->primary_refs.load(std::memory_order_acquire);
    do {
        if (refs <= 0) return CUDA_ERROR_INVALID_CONTEXT;
    } while (!c->primary_refs.compare_exchange_weak(refs, refs - 1));
    if (refs == 1) wait_for_streams(c);
    return CUDA_SUCCESS;
}
}  // namespace sim

SIM_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    SIM_ENTER_INIT("cuDevicePrimaryCtxRelease");
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    return primary_release(dev);
}

SIM_EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags, int* active) {
    SIM_ENTER_INIT("cuDevicePrimaryCtxGetState");
    if (flags == nullptr || active == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    Context* c = g_devices[dev]->primary;
    *flags = c->flags;
    *active = c->primary_refs.load(std::memory_order_acquire) > 0 ? 1 : 0;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
    SIM_ENTER_INIT("cuDevicePrimaryCtxSetFlags");
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    if (flags & ~0x1Fu) return CUDA_ERROR_INVALID_VALUE;
    g_devices[dev]->primary->flags = flags;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
    SIM_ENTER_INIT("cuDevicePrimaryCtxReset");
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    Context* c = g_devices[dev]->primary;
    wait_for_streams(c);
    c->primary_refs.store(0, std::memory_order_release);
    c->flags = 0;
    return CUDA_SUCCESS;
}
