// Streams and events. The _ptsz entry points (per-thread default stream) are
// the same functions with a NULL stream meaning CU_STREAM_PER_THREAD: see the
// PT() wrappers in proc_address.cpp.
#include <algorithm>
#include <cstdio>

#include "state.h"

using namespace sim;

namespace sim {

// Synchronising or querying a capturing stream is illegal in every mode.
static CUresult refuse_if_capturing(Stream* s) {
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c == nullptr) return CUDA_SUCCESS;
    invalidate_capture(c);
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

}  // namespace sim

// ---------------------------------------------------------------- streams
SIM_EXPORT CUresult cuStreamCreate(CUstream* phStream, unsigned int Flags) {
    SIM_ENTER_INIT("cuStreamCreate");
    if (phStream == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (Flags & ~(unsigned)CU_STREAM_NON_BLOCKING) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    Stream* s = new_stream(c, c->green, Flags, 0, false);
    if (s == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    *phStream = handle_of<CUstream>(s);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamCreateWithPriority(CUstream* phStream, unsigned int flags, int priority) {
    SIM_ENTER_INIT("cuStreamCreateWithPriority");
    if (phStream == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (flags & ~(unsigned)CU_STREAM_NON_BLOCKING) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    priority = clamp_priority(priority);
    Stream* s = new_stream(c, c->green, flags, priority, false);
    if (s == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    *phStream = handle_of<CUstream>(s);
    return CUDA_SUCCESS;
}

namespace sim {

CUresult stream_get_priority(CUstream h, int* priority, bool pt) {
    SIM_ENTER_INIT("cuStreamGetPriority");
    if (priority == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    *priority = s->priority;
    return CUDA_SUCCESS;
}
CUresult stream_get_flags(CUstream h, unsigned int* flags, bool pt) {
    SIM_ENTER_INIT("cuStreamGetFlags");
    if (flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    *flags = s->flags;
    return CUDA_SUCCESS;
}
CUresult stream_get_id(CUstream h, unsigned long long* id, bool pt) {
    SIM_ENTER_INIT("cuStreamGetId");
    if (id == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    *id = s->id;
    return CUDA_SUCCESS;
}
CUresult stream_get_device(CUstream h, CUdevice* dev, bool pt) {
    SIM_ENTER_INIT("cuStreamGetDevice");
    if (dev == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    *dev = s->ctx->device;
    return CUDA_SUCCESS;
}
CUresult stream_get_ctx(CUstream h, CUcontext* pctx, bool pt) {
    SIM_ENTER_INIT("cuStreamGetCtx");
    if (pctx == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    *pctx = handle_of<CUcontext>(s->ctx);  // a green stream: the cuCtxFromGreenCtx handle
    return CUDA_SUCCESS;
}
CUresult stream_get_ctx_v2(CUstream h, CUcontext* pctx, CUgreenCtx* pgreen, bool pt) {
    SIM_ENTER_INIT("cuStreamGetCtx");
    if (pctx == nullptr || pgreen == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    if (s->green != nullptr) {
        // cuda.h: the green context, and the primary context of its device.
        *pctx = handle_of<CUcontext>(g_devices[s->ctx->device]->primary);
        *pgreen = handle_of<CUgreenCtx>(s->green);
    } else {
        *pctx = handle_of<CUcontext>(s->ctx);
        *pgreen = nullptr;
    }
    return CUDA_SUCCESS;
}
CUresult stream_query(CUstream h, bool pt) {
    SIM_ENTER_INIT("cuStreamQuery");
    RESOLVE(h, s, pt);
    CUresult r = refuse_if_capturing(s);
    if (r != CUDA_SUCCESS) return r;
    return s->idle() ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}
CUresult stream_synchronize(CUstream h, bool pt) {
    SIM_ENTER_INIT("cuStreamSynchronize");
    RESOLVE(h, s, pt);
    CUresult r = refuse_if_capturing(s);
    if (r != CUDA_SUCCESS) return r;
    wait_idle(s);
    return CUDA_SUCCESS;
}

CUresult stream_wait_event(CUstream h, CUevent hEvent, unsigned int flags, bool pt) {
    SIM_ENTER_INIT("cuStreamWaitEvent");
    RESOLVE(h, s, pt);
    Event* e = live_event(hEvent);
    if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    if (flags & ~(unsigned)CU_EVENT_WAIT_EXTERNAL) return CUDA_ERROR_INVALID_VALUE;
    SignalPtr sig;
    Capture* ecap;
    bool complete;
    std::vector<Node*> enodes;
    {
        std::lock_guard<std::mutex> lk(e->mu);
        ecap = e->cap;
        Signal* last = e->last.get();
        // Fast path: never recorded / already complete. No copy of the signal.
        complete = last == nullptr || last->is_done();
        if (!complete) sig = e->last;
        if (ecap) enodes = e->cap_nodes;
    }
    Capture* scap = s->capture.load(std::memory_order_acquire);
    if (ecap != nullptr || scap != nullptr) return capture_wait_event(s, scap, ecap, enodes, flags);
    if (complete) return CUDA_SUCCESS;  // nothing to wait for: no op is queued
    return submit(s, [sig] { sig->wait(); }, false);
}

CUresult event_record(CUevent hEvent, CUstream h, unsigned flags, bool pt) {
    RESOLVE(h, s, pt);
    Event* e = live_event(hEvent);
    if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    if (flags & ~(unsigned)CU_EVENT_RECORD_EXTERNAL) return CUDA_ERROR_INVALID_VALUE;
    if (e->device != s->ctx->device) return CUDA_ERROR_INVALID_HANDLE;  // cuda.h: same context
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c != nullptr) return capture_record_event(s, c, e);
    if (record_completes_now(s)) {
        // Fast path: the marker would be the only thing on an idle queue, so
        // the record is complete at once (no op queued, no worker woken).
        complete_record_inline(e);
        return CUDA_SUCCESS;
    }
    auto sig = std::make_shared<Signal>();
    CUresult r = submit(s, [sig] { sig->arrive(); }, false);
    if (r != CUDA_SUCCESS) return r;
    set_last_record(e, std::move(sig));
    return CUDA_SUCCESS;
}

}  // namespace sim

SIM_EXPORT CUresult cuStreamGetPriority(CUstream h, int* p) { return stream_get_priority(h, p, false); }
SIM_EXPORT CUresult cuStreamGetFlags(CUstream h, unsigned int* f) { return stream_get_flags(h, f, false); }
SIM_EXPORT CUresult cuStreamGetId(CUstream h, unsigned long long* id) { return stream_get_id(h, id, false); }
SIM_EXPORT CUresult cuStreamGetDevice(CUstream h, CUdevice* d) { return stream_get_device(h, d, false); }
SIM_EXPORT CUresult cuStreamGetCtx(CUstream h, CUcontext* c) { return stream_get_ctx(h, c, false); }
SIM_EXPORT CUresult cuStreamGetCtx_v2(CUstream h, CUcontext* c, CUgreenCtx* g) { return stream_get_ctx_v2(h, c, g, false); }
SIM_EXPORT CUresult cuStreamQuery(CUstream h) { return stream_query(h, false); }
SIM_EXPORT CUresult cuStreamSynchronize(CUstream h) { return stream_synchronize(h, false); }
SIM_EXPORT CUresult cuStreamWaitEvent(CUstream h, CUevent e, unsigned int f) { return stream_wait_event(h, e, f, false); }

SIM_EXPORT CUresult cuStreamDestroy_v2(CUstream hStream) {
    SIM_ENTER_INIT("cuStreamDestroy");
    if (reinterpret_cast<uintptr_t>(hStream) <= 2) return CUDA_ERROR_INVALID_HANDLE;
    Stream* s = live_object<Stream>(hStream);
    if (s == nullptr || s->internal) return CUDA_ERROR_INVALID_HANDLE;
    bool expected = true;
    if (!s->alive.compare_exchange_strong(expected, false)) {
        // Another thread destroyed it between the check and here.
        note_destroyed_handle(kSlabStream, slot_size<Stream>(), kMagicStream, hStream);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    // Allowed on a detached stream (cuda.h's one exception), but it means the
    // green context went first: docs/driver-facts.md's "destroy streams first" is broken,
    // so it is recorded (a hazard, not an error). A capture in progress is
    // invalidated. Queued work still runs; the slot is reclaimed after it.
    if (s->detached.load(std::memory_order_acquire)) {
        char buf[96];
        snprintf(buf, sizeof buf, "stream %llu destroyed after its green context", s->id);
        add_hazard("stream_destroyed_after_green_ctx", buf);
    }
    g_live[kLiveStream].fetch_sub(1, std::memory_order_relaxed);
    retire_stream(s);
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- events
SIM_EXPORT CUresult cuEventCreate(CUevent* phEvent, unsigned int Flags) {
    SIM_ENTER_INIT("cuEventCreate");
    if (phEvent == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const unsigned known = CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS;
    if (Flags & ~known) return CUDA_ERROR_INVALID_VALUE;
    // cuda.h: CU_EVENT_INTERPROCESS requires CU_EVENT_DISABLE_TIMING.
    if ((Flags & CU_EVENT_INTERPROCESS) && !(Flags & CU_EVENT_DISABLE_TIMING)) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    auto* e = make_object<Event>();
    if (e == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    e->flags = Flags;
    e->device = c->device;
    g_live[kLiveEvent].fetch_add(1, std::memory_order_relaxed);
    *phEvent = handle_of<CUevent>(e);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventDestroy_v2(CUevent hEvent) {
    SIM_ENTER_INIT("cuEventDestroy");
    Event* e = live_event(hEvent);
    if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    bool expected = true;
    if (!e->alive.compare_exchange_strong(expected, false)) {
        note_destroyed_handle(kSlabEvent, slot_size<Event>(), kMagicEvent, hEvent);
        return CUDA_ERROR_INVALID_HANDLE;
    }
    g_live[kLiveEvent].fetch_sub(1, std::memory_order_relaxed);
    // Nothing inside the simulator refers to an event (queued work holds its
    // signals, not the event): the slot goes back at once, to the quarantine.
    reclaim_object(e);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuEventRecord(CUevent hEvent, CUstream hStream) {
    SIM_ENTER_INIT("cuEventRecord");
    return event_record(hEvent, hStream, 0, false);
}
SIM_EXPORT CUresult cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags) {
    SIM_ENTER_INIT("cuEventRecordWithFlags");
    return event_record(hEvent, hStream, flags, false);
}

namespace sim {
// An event last recorded inside a capture cannot be queried or waited on from
// the host (cuda.h, cuThreadExchangeStreamCaptureMode).
static CUresult host_view(Event* e, SignalPtr* sig) {
    std::lock_guard<std::mutex> lk(e->mu);
    if (e->cap != nullptr) {
        if (e->cap->status.load() == kCapActive) {
            invalidate_capture(e->cap);
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        }
    }
    *sig = e->last;
    return CUDA_SUCCESS;
}
}  // namespace sim

SIM_EXPORT CUresult cuEventQuery(CUevent hEvent) {
    SIM_ENTER_INIT("cuEventQuery");
    Event* e = live_event(hEvent);
    if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    SignalPtr sig;
    CUresult r = host_view(e, &sig);
    if (r != CUDA_SUCCESS) return r;
    return (!sig || sig->is_done()) ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

SIM_EXPORT CUresult cuEventSynchronize(CUevent hEvent) {
    SIM_ENTER_INIT("cuEventSynchronize");
    Event* e = live_event(hEvent);
    if (e == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    SignalPtr sig;
    CUresult r = host_view(e, &sig);
    if (r != CUDA_SUCCESS) return r;
    if (sig) sig->wait();
    return CUDA_SUCCESS;
}

static CUresult elapsed(float* ms, CUevent hStart, CUevent hEnd) {
    if (ms == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Event* a = live_event(hStart);
    Event* b = live_event(hEnd);
    if (a == nullptr || b == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    // cuda.h: DISABLE_TIMING or never recorded -> INVALID_HANDLE; not complete -> NOT_READY.
    if ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
    SignalPtr sa, sb;
    CUresult r = host_view(a, &sa);
    if (r != CUDA_SUCCESS) return r;
    r = host_view(b, &sb);
    if (r != CUDA_SUCCESS) return r;
    if (!sa || !sb) return CUDA_ERROR_INVALID_HANDLE;
    if (!sa->is_done() || !sb->is_done()) return CUDA_ERROR_NOT_READY;
    long long ns = sb->when_ns.load(std::memory_order_relaxed) - sa->when_ns.load(std::memory_order_relaxed);
    *ms = (float)((double)ns / 1e6);
    return CUDA_SUCCESS;
}
#undef cuEventElapsedTime  // cuda.h maps the name to _v2; both ABI variants are exported
SIM_EXPORT CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b) {
    SIM_ENTER_INIT("cuEventElapsedTime");
    return elapsed(ms, a, b);
}
SIM_EXPORT CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) {
    SIM_ENTER_INIT("cuEventElapsedTime");
    return elapsed(ms, a, b);
}
