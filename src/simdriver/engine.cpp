// The execution engine: every stream owns a worker thread that runs its queue
// in order. Cross-stream dependencies are Signals (see state.h) that a queued
// op waits on, so a missing wait in a caller produces wrong data.
//
// Implicit synchronisation of the legacy NULL stream (as cuda.h's "stream
// synchronization behavior" section describes): work on the legacy stream
// first waits for all work already queued on the blocking streams of its
// context; work on a blocking stream first waits for all work already queued on
// the legacy stream. Non-blocking streams (CU_STREAM_NON_BLOCKING, which
// includes all green-context streams) never synchronise implicitly. The
// per-thread stream is a blocking stream of the context.
#include <algorithm>
#include <cstdio>

#include "state.h"

namespace sim {

std::atomic<int> g_op_delay_us{0};

void sleep_op_delay() {
    int us = g_op_delay_us.load(std::memory_order_relaxed);
    if (us > 0) std::this_thread::sleep_for(std::chrono::microseconds(us));
}

// ---------------------------------------------------------------- lifetimes
// A stream holds lifetime references (Object::refs) on itself for its owner
// (dropped by retire_stream), for its worker thread (dropped when the worker
// has drained the queue after retirement) and for each snapshot walking it;
// and one on its context's owner (the user context, or the green context).
// The last reference reclaims: a destroyed stream leaves the lists of its
// contexts only once its work is done (cuda.h: cuStreamDestroy returns at once,
// the work still completes, and cuCtxSynchronize still waits for it), then its
// slot goes back to the arena. A context is reclaimed when it is destroyed and
// its last stream is gone (a green context together with its CUcontext).
static void erase_one(std::vector<Stream*>& v, Stream* s) {
    for (auto it = v.begin(); it != v.end(); ++it)
        if (*it == s) { v.erase(it); return; }
}

Object* ctx_owner(Context* c) {
    switch (c->kind) {
        case CtxKind::User: return c;
        case CtxKind::Green: return c->green;
        default: return nullptr;  // primary contexts live as long as the process
    }
}

void unref_ctx_owner(Object* owner) {
    if (owner == nullptr || !drop_ref(owner)) return;
    if (owner->magic.load(std::memory_order_relaxed) == kMagicGreen) {
        auto* g = static_cast<GreenCtx*>(owner);
        reclaim_object(g->ctx);
        reclaim_object(g);
    } else {
        reclaim_object(static_cast<Context*>(owner));
    }
}

// The last reference is gone: no list, worker, snapshot or handle check
// (beyond a caller's race) reaches the stream any more. Lists are edited
// under their locks, where snapshots take their references, so none can pin it
// once the count reached zero.
static void reclaim_stream(Stream* s) {
    Context* c = s->ctx;
    {
        std::lock_guard<std::mutex> lk(c->mu);
        erase_one(c->streams, s);
    }
    if (s->green != nullptr) {
        std::lock_guard<std::mutex> lk(s->green->mu);
        erase_one(s->green->streams, s);
    }
    Object* owner = ctx_owner(c);
    reclaim_object(s);
    unref_ctx_owner(owner);
}

void unref_stream(Stream* s) {
    if (drop_ref(s)) reclaim_stream(s);
}

void StreamSnapshot::take(std::mutex& mu, const std::vector<Stream*>& list) {
    std::lock_guard<std::mutex> lk(mu);
    for (Stream* s : list)
        if (std::find(streams.begin(), streams.end(), s) == streams.end() && try_ref(s)) streams.push_back(s);
}

void retire_stream(Stream* s) {
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c != nullptr) leave_capture(s, c);
    if (s->is_legacy) {
        // Its context is being destroyed: nothing may reach the stream through
        // the context once its slot is reclaimed.
        std::lock_guard<std::mutex> lk(s->ctx->mu);
        if (s->ctx->legacy.load(std::memory_order_relaxed) == s) s->ctx->legacy.store(nullptr, std::memory_order_release);
    }
    {
        std::lock_guard<std::mutex> lk(s->mu);
        s->stopping = true;
        // No worker: nothing is queued, nothing will run.
        if (!s->worker_started) s->worker_done = true;
        s->cv.notify_all();
    }
    unref_stream(s);  // the owner's reference; a worker holds its own until it drained
}

static void worker_loop(Stream* s) {
    std::unique_lock<std::mutex> lk(s->mu);
    for (;;) {
        s->cv.wait(lk, [s] { return !s->queue.empty() || s->stopping; });
        if (s->queue.empty()) {  // stopping and drained
            s->worker_done = true;
            lk.unlock();
            unref_stream(s);  // the worker's last touch of s
            return;
        }
        Op op = std::move(s->queue.front());
        s->queue.pop_front();
        lk.unlock();
        op();
        lk.lock();
        s->completed.store(s->completed.load(std::memory_order_relaxed) + 1, std::memory_order_release);
        s->cv.notify_all();
    }
}

void push_raw(Stream* s, Op op) {
    std::unique_lock<std::mutex> lk(s->mu);
    if (s->worker_done) {
        // A marker or wait that reaches a destroyed, drained stream: nothing is
        // left to order against, so it runs at once.
        lk.unlock();
        op();
        return;
    }
    s->queue.push_back(std::move(op));
    s->submitted.store(s->submitted.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    if (!s->worker_started) {
        // Threads are started on first use: most streams of a test never get work.
        // The worker's reference: the caller holds one, so the count is above zero.
        s->worker_started = true;
        s->refs.fetch_add(1, std::memory_order_relaxed);
        std::thread(worker_loop, s).detach();
    }
    s->cv.notify_all();
}

void wait_idle(Stream* s) {
    if (s->idle()) return;
    std::unique_lock<std::mutex> lk(s->mu);
    s->cv.wait(lk, [s] { return s->idle(); });
}

// The idle test of the event-record fast path. Conservative: anything that
// would make submit() do more than push a marker on an idle queue (a capture,
// pending work on a stream the legacy stream synchronises with) answers false
// and the caller takes the queued path.
bool record_completes_now(Stream* s) {
    if (s->capture.load(std::memory_order_acquire) != nullptr || !s->idle()) return false;
    if (s->is_legacy) {
        std::lock_guard<std::mutex> lk(s->ctx->mu);
        for (Stream* b : s->ctx->streams) {
            if (b == s || b->is_legacy || (b->flags & CU_STREAM_NON_BLOCKING) ||
                !b->alive.load(std::memory_order_relaxed))
                continue;
            if (b->capture.load(std::memory_order_acquire) != nullptr || !b->idle()) return false;
        }
    } else if (!(s->flags & CU_STREAM_NON_BLOCKING)) {
        Stream* legacy = s->ctx->legacy.load(std::memory_order_acquire);
        if (legacy != nullptr && !legacy->idle()) return false;
    }
    return true;
}

void complete_record_inline(Event* e) {
    long long now = (e->flags & CU_EVENT_DISABLE_TIMING) ? 0 : steady_now_ns();
    std::lock_guard<std::mutex> lk(e->mu);
    Signal* cur = e->last.get();
    // Copies of e->last are only taken under e->mu, so use_count() == 1 here
    // means no queued wait, reader or green-context wait list holds it.
    if (cur != nullptr && cur->is_done() && e->last.use_count() == 1) {
        std::atomic_thread_fence(std::memory_order_acquire);
        cur->when_ns.store(now, std::memory_order_relaxed);
    } else {
        auto sig = std::make_shared<Signal>();
        sig->pending.store(0, std::memory_order_relaxed);
        sig->when_ns.store(now, std::memory_order_relaxed);
        sig->done.store(true, std::memory_order_release);
        e->last = std::move(sig);
    }
    e->cap = nullptr;
    if (!e->cap_nodes.empty()) e->cap_nodes.clear();
}

void set_last_record(Event* e, SignalPtr sig) {
    std::lock_guard<std::mutex> lk(e->mu);
    e->last = std::move(sig);
    e->cap = nullptr;
    e->cap_nodes.clear();
}

SignalPtr marker(Stream* s) {
    auto sig = std::make_shared<Signal>();
    push_raw(s, [sig] { sig->arrive(); });
    return sig;
}

static Stream* make_stream(Context* ctx, GreenCtx* g, unsigned flags, int prio, bool internal) {
    Object* owner = ctx_owner(ctx);
    if (owner != nullptr && !try_ref(owner)) return nullptr;  // the context is being reclaimed
    auto* s = make_object<Stream>();
    if (s == nullptr) {
        unref_ctx_owner(owner);
        return nullptr;
    }
    s->ctx = ctx;
    s->green = g;
    s->flags = flags;
    s->priority = prio;
    s->id = next_id();
    s->internal = internal;
    return s;
}

Stream* new_stream(Context* ctx, GreenCtx* g, unsigned flags, int prio, bool internal) {
    Stream* s = make_stream(ctx, g, flags, prio, internal);
    if (s == nullptr) return nullptr;
    {
        std::lock_guard<std::mutex> lk(ctx->mu);
        ctx->streams.push_back(s);
    }
    if (g != nullptr) {
        std::vector<SignalPtr> waits;
        {
            std::lock_guard<std::mutex> lk(g->mu);
            g->streams.push_back(s);
            waits = g->future_waits;
        }
        // cuGreenCtxWaitEvent: "all future work submitted to the green context waits".
        for (auto& w : waits)
            if (!w->is_done()) push_raw(s, [w] { w->wait(); });
    }
    if (!internal) g_live[kLiveStream].fetch_add(1, std::memory_order_relaxed);
    return s;
}

Stream* legacy_stream(Context* ctx) {
    Stream* l = ctx->legacy.load(std::memory_order_acquire);
    if (l != nullptr) return l;  // made once per context, never replaced
    std::lock_guard<std::mutex> lk(ctx->mu);
    l = ctx->legacy.load(std::memory_order_relaxed);
    if (l == nullptr) {
        l = make_stream(ctx, ctx->green, 0, 0, true);
        if (l == nullptr) return nullptr;
        l->is_legacy = true;
        ctx->streams.push_back(l);
        ctx->legacy.store(l, std::memory_order_release);
    }
    return l;
}

// The caller checked that ctx is live; its per-thread stream on this thread,
// made on first use, lives until the context is destroyed or the thread exits.
// Entries of contexts destroyed since (their streams retired with them) go.
Stream* per_thread_stream(Context* ctx) {
    auto& v = tls().per_thread_streams;
    for (auto it = v.begin(); it != v.end();) {
        if (!it->ctx.current()) {
            it = v.erase(it);
            continue;
        }
        if (it->ctx.obj == ctx) return it->stream.obj;
        ++it;
    }
    Stream* s = new_stream(ctx, ctx->green, 0, 0, true);
    if (s == nullptr) return nullptr;
    v.push_back(PerThreadStream{CtxRef(ctx), WeakRef<Stream>(s)});
    return s;
}

CUresult resolve_stream(CUstream h, Stream** out, bool per_thread_null) {
    uintptr_t v = reinterpret_cast<uintptr_t>(h);
    if (v <= 2) {  // NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD
        Context* c;
        CUresult r = require_current(&c);
        if (r != CUDA_SUCCESS) return r;
        bool per_thread = (v == 2) || (v == 0 && per_thread_null);
        *out = per_thread ? per_thread_stream(c) : legacy_stream(c);
        return *out != nullptr ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
    }
    Stream* s = live_object<Stream>(h);
    if (s == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    if (s->detached.load(std::memory_order_acquire)) {
        char buf[96];
        snprintf(buf, sizeof buf, "stream %llu used after its green context was destroyed", s->id);
        add_hazard("stream_used_after_green_ctx_destroyed", buf);
        return CUDA_ERROR_STREAM_DETACHED;
    }
    if (s->ctx->kind != CtxKind::Green && !ctx_usable(s->ctx)) {
        // Destroyed with its context (cuCtxDestroy): a stale stream handle.
        if (!s->ctx->alive.load(std::memory_order_acquire)) {
            add_destroyed_hazard(kSlabStream, reinterpret_cast<uintptr_t>(h), false, "with its context");
            return CUDA_ERROR_INVALID_HANDLE;
        }
        return CUDA_ERROR_CONTEXT_IS_DESTROYED;  // a primary context released to zero
    }
    *out = s;
    return CUDA_SUCCESS;
}

// The live blocking streams of ctx but `except`, pinned.
static void blocking_streams(Context* ctx, Stream* except, StreamSnapshot* out) {
    std::lock_guard<std::mutex> lk(ctx->mu);
    for (Stream* b : ctx->streams)
        if (b != except && !b->is_legacy && !(b->flags & CU_STREAM_NON_BLOCKING) &&
            b->alive.load(std::memory_order_relaxed) && try_ref(b))
            out->streams.push_back(b);
}

CUresult submit(Stream* s, Op op, bool delayed, const NodeSpec* spec) {
    if (delayed) {
        Op inner = std::move(op);
        op = [inner] {
            sleep_op_delay();
            inner();
        };
    }
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c != nullptr) {
        if (capture_add_node(s, c, std::move(op), spec)) return CUDA_SUCCESS;
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    if (s->is_legacy) {
        StreamSnapshot blockers;
        blocking_streams(s->ctx, s, &blockers);
        for (Stream* b : blockers.streams) {
            Capture* bc = b->capture.load(std::memory_order_acquire);
            if (bc != nullptr) {
                // cuda.h: using the legacy stream while a blocking stream of the
                // context captures would join the capture implicitly.
                invalidate_capture(bc);
                return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
            }
        }
        for (Stream* b : blockers.streams)
            if (!b->idle()) {
                SignalPtr sig = marker(b);
                push_raw(s, [sig] { sig->wait(); });
            }
    } else if (!(s->flags & CU_STREAM_NON_BLOCKING)) {
        Stream* legacy = s->ctx->legacy.load(std::memory_order_acquire);
        if (legacy != nullptr && !legacy->idle()) {
            SignalPtr sig = marker(legacy);
            push_raw(s, [sig] { sig->wait(); });
        }
    }
    push_raw(s, std::move(op));
    return CUDA_SUCCESS;
}

}  // namespace sim
