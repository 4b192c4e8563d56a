// Green contexts: create/destroy, their CUcontext, ids, streams, and the
// green-context-wide event record/wait (not capturable).
#include <algorithm>
#include <cstdio>

#include "resources.h"

using namespace sim;

namespace sim {
CUresult primary_release(int dev);

// Every stream whose work belongs to the green context: those made by
// cuGreenCtxStreamCreate and those made while its CUcontext was current
// (including its default stream), pinned.
static void green_streams(GreenCtx* g, StreamSnapshot* out) {
    out->take(g->mu, g->streams);
    out->take(g->ctx->mu, g->ctx->streams);
}

// cuda.h: the green-context event calls fail with STREAM_CAPTURE_UNSUPPORTED and
// invalidate the conflicting captures when a stream of the green context captures.
static bool invalidate_green_captures(const std::vector<Stream*>& streams) {
    bool any = false;
    for (Stream* s : streams) {
        Capture* c = s->capture.load(std::memory_order_acquire);
        if (c != nullptr) {
            invalidate_capture(c);
            any = true;
        }
    }
    return any;
}

// Fast path of cuGreenCtxRecordEvent: every stream of the green context is
// idle and none captures, so each marker would complete at once. Walks the
// lists under their locks without copying them.
static bool green_streams_idle(GreenCtx* g) {
    auto quiet = [](Stream* s) { return s->capture.load(std::memory_order_acquire) == nullptr && s->idle(); };
    {
        std::lock_guard<std::mutex> lk(g->mu);
        for (Stream* s : g->streams)
            if (!quiet(s)) return false;
    }
    std::lock_guard<std::mutex> lk(g->ctx->mu);
    for (Stream* s : g->ctx->streams)
        if (!quiet(s)) return false;
    return true;
}

}  // namespace sim

SIM_EXPORT CUresult cuGreenCtxCreate(CUgreenCtx* phCtx, CUdevResourceDesc desc, CUdevice dev, unsigned int flags) {
    SIM_ENTER_INIT("cuGreenCtxCreate");
    if (phCtx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    Desc* d = as_object<Desc>(desc);  // never destroyed: nothing to record
    if (d == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (d->device != dev) return CUDA_ERROR_INVALID_VALUE;  // guess: resources of another device
    if (flags & ~(unsigned)CU_GREEN_CTX_DEFAULT_STREAM) return CUDA_ERROR_INVALID_VALUE;
    // docs/driver-facts.md: the driver requires CU_GREEN_CTX_DEFAULT_STREAM.
    if (!(flags & CU_GREEN_CTX_DEFAULT_STREAM)) return CUDA_ERROR_INVALID_VALUE;

    auto* g = make_object<GreenCtx>();
    if (g == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    auto* c = make_object<Context>();
    if (c == nullptr) {
        reclaim_object(g);  // nobody has a handle to it
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    g->id = next_id();
    g->device = dev;
    g->sms = d->sms;
    g->wq_set = d->wq.set;
    g->wq_limit = d->wq.limit;
    g->wq_scope = d->wq.scope;
    c->kind = CtxKind::Green;
    c->device = dev;
    c->id = next_id();
    c->green = g;
    g->ctx = c;

    // cuda.h: the green context retains the primary context; when it was not
    // active this is the slow path (initialisation and teardown each time).
    int before = g_devices[dev]->primary->primary_refs.fetch_add(1, std::memory_order_acq_rel);
    if (before == 0) {
        char buf[128];
        snprintf(buf, sizeof buf, "green context %llu created on device %d while its primary context was inactive",
                 g->id, dev);
        add_hazard("green_ctx_created_without_primary_ctx", buf);
    }
    g_live[kLiveGreen].fetch_add(1, std::memory_order_relaxed);
    *phCtx = handle_of<CUgreenCtx>(g);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGreenCtxDestroy(CUgreenCtx hCtx) {
    SIM_ENTER_INIT("cuGreenCtxDestroy");
    bool destroyed = false;
    GreenCtx* g = live_object<GreenCtx>(hCtx, &destroyed);
    if (g == nullptr) return destroyed ? CUDA_ERROR_CONTEXT_IS_DESTROYED : CUDA_ERROR_INVALID_CONTEXT;
    bool expected = true;
    if (!g->alive.compare_exchange_strong(expected, false)) {
        note_destroyed_handle(kSlabGreen, slot_size<GreenCtx>(), kMagicGreen, hCtx);
        return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    }
    g->ctx->alive.store(false, std::memory_order_release);
    // cuda.h: streams are not destroyed but detached (later calls fail with
    // CUDA_ERROR_STREAM_DETACHED, except cuStreamDestroy), and active captures
    // on them are invalidated. Work already queued still runs. The internal
    // streams (its default stream, per-thread streams) nobody can destroy end
    // here; the user's keep the green context's slot until they are destroyed.
    {
        StreamSnapshot streams;
        green_streams(g, &streams);
        for (Stream* s : streams.streams) {
            s->detached.store(true, std::memory_order_release);
            Capture* c = s->capture.load(std::memory_order_acquire);
            if (c != nullptr) invalidate_capture(c);
            bool alive = true;
            if (s->internal && s->alive.compare_exchange_strong(alive, false)) retire_stream(s);
        }
    }
    primary_release(g->device);
    g_live[kLiveGreen].fetch_sub(1, std::memory_order_relaxed);
    unref_ctx_owner(g);  // the owner's reference: reclaimed now unless streams are left
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxFromGreenCtx(CUcontext* pContext, CUgreenCtx hCtx) {
    SIM_ENTER_INIT("cuCtxFromGreenCtx");
    if (pContext == nullptr) return CUDA_ERROR_INVALID_VALUE;
    GreenCtx* g = live_green(hCtx);
    if (g == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    *pContext = handle_of<CUcontext>(g->ctx);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGreenCtxGetId(CUgreenCtx greenCtx, unsigned long long* greenCtxId) {
    SIM_ENTER_INIT("cuGreenCtxGetId");
    if (greenCtxId == nullptr) return CUDA_ERROR_INVALID_VALUE;
    GreenCtx* g;
    if (greenCtx == nullptr) {  // cuda.h: NULL means the current green context
        Context* c;
        CUresult rc = require_current(&c);  // records destroyed_handle for a destroyed one
        if (rc == CUDA_ERROR_CONTEXT_IS_DESTROYED) {
            // A destroyed green context is CONTEXT_IS_DESTROYED (cuda.h); so is one
            // whose slot was reused since (its kind is unknown then). A destroyed
            // user context or an inactive primary one is no green context.
            const CtxRef* r = current_ref();
            return !r->current() || r->obj->kind == CtxKind::Green ? CUDA_ERROR_CONTEXT_IS_DESTROYED
                                                                    : CUDA_ERROR_INVALID_CONTEXT;
        }
        if (rc != CUDA_SUCCESS || c->kind != CtxKind::Green) return CUDA_ERROR_INVALID_CONTEXT;
        g = c->green;
    } else {
        bool destroyed = false;
        g = live_object<GreenCtx>(greenCtx, &destroyed);
        if (g == nullptr) return destroyed ? CUDA_ERROR_CONTEXT_IS_DESTROYED : CUDA_ERROR_INVALID_CONTEXT;
    }
    *greenCtxId = g->id;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGreenCtxStreamCreate(CUstream* phStream, CUgreenCtx greenCtx, unsigned int flags, int priority) {
    SIM_ENTER_INIT("cuGreenCtxStreamCreate");
    if (phStream == nullptr) return CUDA_ERROR_INVALID_VALUE;
    GreenCtx* g = live_green(greenCtx);
    if (g == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    if (flags & ~(unsigned)CU_STREAM_NON_BLOCKING) return CUDA_ERROR_INVALID_VALUE;
    if (!(flags & CU_STREAM_NON_BLOCKING)) return CUDA_ERROR_INVALID_VALUE;  // cuda.h: must be specified
    priority = clamp_priority(priority);
    Stream* s = new_stream(g->ctx, g, flags, priority, false);
    if (s == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    *phStream = handle_of<CUstream>(s);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGreenCtxRecordEvent(CUgreenCtx hCtx, CUevent hEvent) {
    SIM_ENTER_INIT("cuGreenCtxRecordEvent");
    GreenCtx* g = live_green(hCtx);
    if (g == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    Event* e = live_event(hEvent);
    if (e == nullptr || e->device != g->device) return CUDA_ERROR_INVALID_HANDLE;
    if (green_streams_idle(g)) {
        complete_record_inline(e);
        return CUDA_SUCCESS;
    }
    StreamSnapshot snapshot;
    green_streams(g, &snapshot);
    const auto& streams = snapshot.streams;
    if (invalidate_green_captures(streams)) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    // One signal that completes when every stream reached its marker: the
    // event covers "all the activities of the green context at the time of this call".
    auto sig = std::make_shared<Signal>();
    sig->pending.store((int)streams.size() + 1, std::memory_order_relaxed);
    for (Stream* s : streams) push_raw(s, [sig] { sig->arrive(); });
    set_last_record(e, sig);
    sig->arrive();
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGreenCtxWaitEvent(CUgreenCtx hCtx, CUevent hEvent) {
    SIM_ENTER_INIT("cuGreenCtxWaitEvent");
    GreenCtx* g = live_green(hCtx);
    if (g == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    Event* e = live_event(hEvent);
    if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    SignalPtr sig;
    Capture* ecap;
    {
        std::lock_guard<std::mutex> lk(e->mu);
        sig = e->last;
        ecap = e->cap;
    }
    StreamSnapshot snapshot;
    green_streams(g, &snapshot);
    const auto& streams = snapshot.streams;
    bool conflict = false;
    if (ecap != nullptr && ecap->status.load() == kCapActive) {
        invalidate_capture(ecap);
        conflict = true;
    }
    if (invalidate_green_captures(streams)) conflict = true;
    if (conflict) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (!sig || sig->is_done()) return CUDA_SUCCESS;
    {
        // "All future work submitted to the green context waits": streams made later too.
        std::lock_guard<std::mutex> lk(g->mu);
        auto& w = g->future_waits;
        w.erase(std::remove_if(w.begin(), w.end(), [](const SignalPtr& p) { return p->is_done(); }), w.end());
        w.push_back(sig);
    }
    for (Stream* s : streams)
        if (s->alive.load(std::memory_order_relaxed)) push_raw(s, [sig] { sig->wait(); });
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamGetGreenCtx(CUstream hStream, CUgreenCtx* phCtx) {
    SIM_ENTER_INIT("cuStreamGetGreenCtx");
    if (phCtx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(hStream, s, false);
    *phCtx = handle_of<CUgreenCtx>(s->green);
    return CUDA_SUCCESS;
}
