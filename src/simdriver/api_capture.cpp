// Stream capture and graphs. A captured operation becomes a Node that keeps
// the context and green context of the stream it was captured on (a captured
// node runs there, not where the graph is launched). Launch runs the nodes in
// a topological order on the launch stream's queue.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "graph_nodes.h"
#include "state.h"

using namespace sim;

namespace sim {

constexpr int kCapEnded = 3;
std::atomic<unsigned long long> g_next_capture{1};
static std::atomic<int> g_active_captures{0};
static std::mutex& registry_mu() {
    static auto* m = new std::mutex;
    return *m;
}
static std::vector<Capture*>& registry() {
    static auto* v = new std::vector<Capture*>;
    return *v;
}

// Only active captures are registered: the unsafe-call check looks at them.
static void unregister_capture(Capture* c) {
    std::lock_guard<std::mutex> lk(registry_mu());
    auto& v = registry();
    auto it = std::find(v.begin(), v.end(), c);
    if (it == v.end()) return;
    v.erase(it);
    g_active_captures.fetch_sub(1, std::memory_order_acq_rel);
}

void invalidate_capture(Capture* c) {
    int expected = kCapActive;
    if (c->status.compare_exchange_strong(expected, kCapInvalidated)) unregister_capture(c);
}

// The capture no longer adds to its graph: the graph (a caller's) may be
// destroyed again, and its nodes.
static void detach_graph(Capture* c) {
    std::lock_guard<std::mutex> lk(c->graph->mu);
    if (c->graph->capturing == c) c->graph->capturing = nullptr;
}

// A capture's graph that never reaches the user (invalidated or unjoined at
// the end, or its origin stream gone): once the capture is no longer active,
// nothing reads it (node additions and joins check the status first).
static void discard_graph(Capture* c) {
    detach_graph(c);
    if (!c->into_user_graph) end_graph(c->graph);  // a caller's graph stays the caller's
}

// Destroying a stream that was forked into a capture is allowed (cuda.core's
// GraphBuilder.join destroys the forked streams it joined): it only leaves.
// Work of it that was never joined still makes cuStreamEndCapture answer
// UNJOINED. Destroying the origin stream ends the capture: invalidated.
void leave_capture(Stream* s, Capture* c) {
    if (c->origin == s) invalidate_capture(c);
    std::lock_guard<std::mutex> lk(c->mu);
    auto& m = c->members;
    m.erase(std::remove(m.begin(), m.end(), s), m.end());
    s->capture.store(nullptr, std::memory_order_release);
    s->tail.clear();
    // Without its origin the capture can never be ended: its graph goes now.
    if (c->origin == s) {
        c->origin = nullptr;
        discard_graph(c);
    }
}

// cuThreadExchangeStreamCaptureMode's rules for "potentially unsafe" calls
// (cuMemAlloc, cuMemFree, synchronous copies, cuCtxSynchronize...).
CUresult check_unsafe_call() {
    if (g_active_captures.load(std::memory_order_acquire) == 0) return CUDA_SUCCESS;
    ThreadState& t = tls();
    if (t.capture_mode == CU_STREAM_CAPTURE_MODE_RELAXED) return CUDA_SUCCESS;
    std::vector<Capture*> conflicts;
    {
        std::lock_guard<std::mutex> lk(registry_mu());
        auto me = std::this_thread::get_id();
        for (Capture* c : registry()) {
            if (c->status.load() != kCapActive) continue;
            bool mine = c->thread == me && c->mode != CU_STREAM_CAPTURE_MODE_RELAXED;
            bool other_global = c->thread != me && c->mode == CU_STREAM_CAPTURE_MODE_GLOBAL &&
                                t.capture_mode == CU_STREAM_CAPTURE_MODE_GLOBAL;
            if (mine || other_global) conflicts.push_back(c);
        }
    }
    if (conflicts.empty()) return CUDA_SUCCESS;
    for (Capture* c : conflicts) invalidate_capture(c);
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

bool capture_add_node(Stream* s, Capture* c, Op op, const NodeSpec* spec) {
    std::lock_guard<std::mutex> lk(c->mu);
    if (c->status.load() != kCapActive) return false;
    auto* n = new Node;
    n->op = std::move(op);
    if (spec != nullptr) {
        n->type = spec->type;
        n->spec = std::make_shared<NodeSpec>(*spec);
    }
    n->deps = s->tail;
    n->green_id = s->green ? s->green->id : 0;
    {
        std::lock_guard<std::mutex> g(c->graph->mu);
        add_node_locked(c->graph, n);
    }
    s->tail.assign(1, n);
    return true;
}

CUresult capture_record_event(Stream* s, Capture* c, Event* e) {
    std::lock_guard<std::mutex> lk(c->mu);
    if (c->status.load() != kCapActive) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    std::lock_guard<std::mutex> le(e->mu);
    e->cap = c;
    e->cap_nodes = s->tail;
    e->last = nullptr;
    return CUDA_SUCCESS;
}

CUresult capture_wait_event(Stream* s, Capture* scap, Capture* ecap, const std::vector<Node*>& enodes,
                            unsigned flags) {
    if (scap != nullptr) {
        if (scap->status.load() != kCapActive) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        if (ecap == scap) {  // a join inside one capture: the event's nodes become dependencies
            std::lock_guard<std::mutex> lk(scap->mu);
            for (Node* n : enodes)
                if (std::find(s->tail.begin(), s->tail.end(), n) == s->tail.end()) s->tail.push_back(n);
            return CUDA_SUCCESS;
        }
        // cuda.h (CUDA_ERROR_STREAM_CAPTURE_ISOLATION): a dependency crossing the
        // capture boundary. guess: waiting on an event recorded outside the capture
        // is such a dependency unless CU_EVENT_WAIT_EXTERNAL is given (then ignored:
        // external event nodes are not simulated).
        if (ecap == nullptr && (flags & CU_EVENT_WAIT_EXTERNAL)) return CUDA_SUCCESS;
        invalidate_capture(scap);
        return CUDA_ERROR_STREAM_CAPTURE_ISOLATION;
    }
    // The stream is not capturing and the event was recorded in a capture.
    if (ecap->status.load() != kCapActive) return CUDA_SUCCESS;  // guess: an ended capture adds nothing
    if (s->is_legacy) {
        invalidate_capture(ecap);
        return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
    }
    // Fork: the stream joins the capture, its next work depends on the event's nodes.
    std::lock_guard<std::mutex> lk(ecap->mu);
    if (ecap->status.load() != kCapActive) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    s->tail = enodes;
    ecap->members.push_back(s);
    s->capture.store(ecap, std::memory_order_release);
    return CUDA_SUCCESS;
}

static bool valid_capture_mode(CUstreamCaptureMode mode) {
    return mode == CU_STREAM_CAPTURE_MODE_GLOBAL || mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL ||
           mode == CU_STREAM_CAPTURE_MODE_RELAXED;
}

// into: cuStreamBeginCaptureToGraph's graph (null: a new one), `deps` its
// nodes the first captured node depends on.
static CUresult begin_capture(CUstream h, CUstreamCaptureMode mode, bool pt, CUgraph into = nullptr,
                              const CUgraphNode* deps = nullptr, const CUgraphEdgeData* edges = nullptr,
                              size_t ndeps = 0) {
    if (!valid_capture_mode(mode)) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    if (s->is_legacy) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;  // the legacy stream cannot capture
    if (s->capture.load(std::memory_order_acquire) != nullptr) return CUDA_ERROR_ILLEGAL_STATE;
    Graph* graph;
    std::vector<Node*> first;
    std::unordered_set<const Node*> prior;
    auto c = std::make_unique<Capture>();
    if (into != nullptr) {
        graph = user_graph(into);
        if (graph == nullptr) return CUDA_ERROR_INVALID_VALUE;
        if (CUresult r = check_edge_data(edges, ndeps); r != CUDA_SUCCESS) return r;
        std::lock_guard<std::mutex> lk(graph->mu);
        // guess: one capture at a time adds to a graph (cuda.h does not say)
        if (!graph->alive.load(std::memory_order_acquire) || graph->capturing != nullptr)
            return CUDA_ERROR_INVALID_VALUE;
        CUresult r = collect_deps(graph, deps, ndeps, &first);
        if (r != CUDA_SUCCESS) return r;
        prior.insert(graph->nodes.begin(), graph->nodes.end());
        graph->capturing = c.get();
    } else {
        graph = make_object<Graph>();
        if (graph == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
        std::lock_guard<std::mutex> lk(graph->mu);
        graph->capturing = c.get();
    }
    c->into_user_graph = into != nullptr;
    c->prior = std::move(prior);
    c->id = g_next_capture.fetch_add(1, std::memory_order_relaxed);
    c->graph = graph;
    c->mode = mode;
    c->thread = std::this_thread::get_id();
    c->origin = s;
    c->members.push_back(s);
    s->tail = first;
    // Kept for the process, as before: events recorded in it still name it (Event::cap).
    Capture* active = c.release();
    {
        std::lock_guard<std::mutex> lk(registry_mu());
        registry().push_back(active);
    }
    g_active_captures.fetch_add(1, std::memory_order_acq_rel);
    s->capture.store(active, std::memory_order_release);
    return CUDA_SUCCESS;
}

static CUresult end_capture(CUstream h, CUgraph* phGraph, bool pt) {
    if (phGraph == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c == nullptr) return CUDA_ERROR_ILLEGAL_STATE;
    if (c->origin != s) {
        invalidate_capture(c);
        return CUDA_ERROR_STREAM_CAPTURE_UNMATCHED;
    }
    if (c->mode != CU_STREAM_CAPTURE_MODE_RELAXED && c->thread != std::this_thread::get_id())
        return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    std::vector<Node*> origin_tail;
    {
        std::lock_guard<std::mutex> lk(c->mu);
        origin_tail = s->tail;
        for (Stream* m : c->members) {
            m->capture.store(nullptr, std::memory_order_release);
            m->tail.clear();
        }
    }
    bool invalid = c->status.load() != kCapActive;
    c->status.store(kCapEnded);
    unregister_capture(c);
    *phGraph = nullptr;
    if (invalid) {
        discard_graph(c);
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    // Every forked stream must have been joined back: each sink of the graph
    // must be in the origin stream's dependency set.
    Graph* g = c->graph;
    std::unordered_set<Node*> has_dependents;
    for (Node* n : g->nodes)
        for (Node* d : n->deps) has_dependents.insert(d);
    for (Node* n : g->nodes)
        if (!has_dependents.count(n) && !c->prior.count(n) &&
            std::find(origin_tail.begin(), origin_tail.end(), n) == origin_tail.end()) {
            discard_graph(c);
            return CUDA_ERROR_STREAM_CAPTURE_UNJOINED;
        }
    detach_graph(c);
    if (!c->into_user_graph) {
        g->user_visible = true;
        g_live[kLiveGraph].fetch_add(1, std::memory_order_relaxed);
    }
    *phGraph = handle_of<CUgraph>(g);
    return CUDA_SUCCESS;
}

// cuStreamUpdateCaptureDependencies: the nodes the stream's next captured
// work depends on (added to the set, or replacing it).
static CUresult update_capture_dependencies(CUstream h, CUgraphNode* deps, const CUgraphEdgeData* edges, size_t n,
                                            unsigned flags, bool pt) {
    if (flags != CU_STREAM_ADD_CAPTURE_DEPENDENCIES && flags != CU_STREAM_SET_CAPTURE_DEPENDENCIES)
        return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = check_edge_data(edges, n); r != CUDA_SUCCESS) return r;
    RESOLVE(h, s, pt);
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c == nullptr) return CUDA_ERROR_ILLEGAL_STATE;
    std::lock_guard<std::mutex> lk(c->mu);
    if (c->status.load() != kCapActive) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    std::vector<Node*> list;
    {
        std::lock_guard<std::mutex> lg(c->graph->mu);
        CUresult r = collect_deps(c->graph, deps, n, &list);
        if (r != CUDA_SUCCESS) return r;
    }
    if (flags == CU_STREAM_SET_CAPTURE_DEPENDENCIES) {
        // cuda.h: nodes removed from the set this way do not make cuStreamEndCapture
        // answer UNJOINED when nothing after them joins them.
        for (Node* d : s->tail)
            if (std::find(list.begin(), list.end(), d) == list.end()) c->prior.insert(d);
        s->tail.clear();
    }
    for (Node* d : list)
        if (std::find(s->tail.begin(), s->tail.end(), d) == s->tail.end()) s->tail.push_back(d);
    return CUDA_SUCCESS;
}

static CUresult is_capturing(CUstream h, CUstreamCaptureStatus* status, bool pt) {
    if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c == nullptr)
        *status = CU_STREAM_CAPTURE_STATUS_NONE;
    else
        *status = c->status.load() == kCapActive ? CU_STREAM_CAPTURE_STATUS_ACTIVE : CU_STREAM_CAPTURE_STATUS_INVALIDATED;
    return CUDA_SUCCESS;
}

static CUresult capture_info(CUstream h, CUstreamCaptureStatus* status, cuuint64_t* id, CUgraph* graph,
                             const CUgraphNode** deps, const CUgraphEdgeData** edges, size_t* ndeps, bool pt) {
    if (status == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (edges != nullptr && deps == nullptr) return CUDA_ERROR_INVALID_VALUE;  // cuda.h
    RESOLVE(h, s, pt);
    Capture* c = s->capture.load(std::memory_order_acquire);
    if (c == nullptr) {
        *status = CU_STREAM_CAPTURE_STATUS_NONE;
        return CUDA_SUCCESS;
    }
    std::lock_guard<std::mutex> lk(c->mu);
    *status = c->status.load() == kCapActive ? CU_STREAM_CAPTURE_STATUS_ACTIVE : CU_STREAM_CAPTURE_STATUS_INVALIDATED;
    if (id != nullptr) *id = c->id;
    // No graph once the origin stream is gone (its graph was discarded).
    if (graph != nullptr) *graph = c->origin != nullptr ? handle_of<CUgraph>(c->graph) : nullptr;
    // The arrays stay valid until the next call on the stream (cuda.h).
    s->tail_out.clear();
    for (Node* n : s->tail) s->tail_out.push_back(reinterpret_cast<CUgraphNode>(n));
    if (deps != nullptr) *deps = s->tail_out.empty() ? nullptr : reinterpret_cast<const CUgraphNode*>(s->tail_out.data());
    if (edges != nullptr) {
        // All edges are default ones: a zeroed array of the same length.
        static thread_local std::vector<CUgraphEdgeData> zeros;
        zeros.assign(s->tail_out.size(), CUgraphEdgeData{});
        *edges = zeros.empty() ? nullptr : zeros.data();
    }
    if (ndeps != nullptr) *ndeps = s->tail_out.size();
    return CUDA_SUCCESS;
}

}  // namespace sim

// ---------------------------------------------------------------- capture API
SIM_EXPORT CUresult cuStreamBeginCapture_v2(CUstream h, CUstreamCaptureMode mode) {
    SIM_ENTER_INIT("cuStreamBeginCapture");
    return begin_capture(h, mode, false);
}
SIM_EXPORT CUresult cuStreamBeginCaptureToGraph(CUstream h, CUgraph g, const CUgraphNode* deps,
                                                const CUgraphEdgeData* edges, size_t n, CUstreamCaptureMode mode) {
    SIM_ENTER_INIT("cuStreamBeginCaptureToGraph");
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return begin_capture(h, mode, false, g, deps, edges, n);
}
SIM_EXPORT CUresult cuStreamUpdateCaptureDependencies_v2(CUstream h, CUgraphNode* deps, const CUgraphEdgeData* edges,
                                                         size_t n, unsigned int flags) {
    SIM_ENTER_INIT("cuStreamUpdateCaptureDependencies");
    return update_capture_dependencies(h, deps, edges, n, flags, false);
}
SIM_EXPORT CUresult cuStreamEndCapture(CUstream h, CUgraph* g) {
    SIM_ENTER_INIT("cuStreamEndCapture");
    return end_capture(h, g, false);
}
SIM_EXPORT CUresult cuStreamIsCapturing(CUstream h, CUstreamCaptureStatus* st) {
    SIM_ENTER_INIT("cuStreamIsCapturing");
    return is_capturing(h, st, false);
}
SIM_EXPORT CUresult cuStreamGetCaptureInfo_v3(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                                              const CUgraphNode** d, const CUgraphEdgeData** e, size_t* n) {
    SIM_ENTER_INIT("cuStreamGetCaptureInfo");
    return capture_info(h, st, id, g, d, e, n, false);
}
SIM_EXPORT CUresult cuStreamGetCaptureInfo_v2(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                                              const CUgraphNode** d, size_t* n) {
    SIM_ENTER_INIT("cuStreamGetCaptureInfo");
    return capture_info(h, st, id, g, d, nullptr, n, false);
}

namespace sim {
// Older ABI variants and per-thread forms, reached through cuGetProcAddress only.
CUresult begin_capture_v1(CUstream h) {
    SIM_ENTER_INIT("cuStreamBeginCapture");
    return begin_capture(h, CU_STREAM_CAPTURE_MODE_GLOBAL, false);
}
CUresult begin_capture_v1_ptsz(CUstream h) {
    SIM_ENTER_INIT("cuStreamBeginCapture");
    return begin_capture(h, CU_STREAM_CAPTURE_MODE_GLOBAL, true);
}
CUresult begin_capture_ptsz(CUstream h, CUstreamCaptureMode mode) {
    SIM_ENTER_INIT("cuStreamBeginCapture");
    return begin_capture(h, mode, true);
}
CUresult end_capture_ptsz(CUstream h, CUgraph* g) {
    SIM_ENTER_INIT("cuStreamEndCapture");
    return end_capture(h, g, true);
}
CUresult is_capturing_ptsz(CUstream h, CUstreamCaptureStatus* st) {
    SIM_ENTER_INIT("cuStreamIsCapturing");
    return is_capturing(h, st, true);
}
CUresult begin_capture_to_graph_ptsz(CUstream h, CUgraph g, const CUgraphNode* deps, const CUgraphEdgeData* edges,
                                     size_t n, CUstreamCaptureMode mode) {
    SIM_ENTER_INIT("cuStreamBeginCaptureToGraph");
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return begin_capture(h, mode, true, g, deps, edges, n);
}
CUresult update_capture_deps_v1(CUstream h, CUgraphNode* deps, size_t n, unsigned int flags) {
    SIM_ENTER_INIT("cuStreamUpdateCaptureDependencies");
    return update_capture_dependencies(h, deps, nullptr, n, flags, false);
}
CUresult update_capture_deps_v1_ptsz(CUstream h, CUgraphNode* deps, size_t n, unsigned int flags) {
    SIM_ENTER_INIT("cuStreamUpdateCaptureDependencies");
    return update_capture_dependencies(h, deps, nullptr, n, flags, true);
}
CUresult update_capture_deps_ptsz(CUstream h, CUgraphNode* deps, const CUgraphEdgeData* edges, size_t n,
                                  unsigned int flags) {
    SIM_ENTER_INIT("cuStreamUpdateCaptureDependencies");
    return update_capture_dependencies(h, deps, edges, n, flags, true);
}
CUresult capture_info_v1(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id) {
    SIM_ENTER_INIT("cuStreamGetCaptureInfo");
    return capture_info(h, st, id, nullptr, nullptr, nullptr, nullptr, false);
}
CUresult capture_info_v1_ptsz(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id) {
    SIM_ENTER_INIT("cuStreamGetCaptureInfo");
    return capture_info(h, st, id, nullptr, nullptr, nullptr, nullptr, true);
}
CUresult capture_info_v2_ptsz(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                              const CUgraphNode** d, size_t* n) {
    SIM_ENTER_INIT("cuStreamGetCaptureInfo");
    return capture_info(h, st, id, g, d, nullptr, n, true);
}
CUresult capture_info_v3_ptsz(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                              const CUgraphNode** d, const CUgraphEdgeData** e, size_t* n) {
    SIM_ENTER_INIT("cuStreamGetCaptureInfo");
    return capture_info(h, st, id, g, d, e, n, true);
}
}  // namespace sim

SIM_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode* mode) {
    SIM_ENTER_INIT("cuThreadExchangeStreamCaptureMode");
    if (mode == nullptr) return CUDA_ERROR_INVALID_VALUE;
    CUstreamCaptureMode m = *mode;
    if (!valid_capture_mode(m)) return CUDA_ERROR_INVALID_VALUE;
    *mode = tls().capture_mode;
    tls().capture_mode = m;
    return CUDA_SUCCESS;
}

