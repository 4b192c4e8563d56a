// Stream capture and graphs. A captured operation becomes a Node that keeps
// the context and green context of the stream it was captured on (a captured
// node runs there, not where the graph is launched). Launch runs the nodes in
// a topological order on the launch stream's queue.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

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

// A capture's graph that never reaches the user (invalidated or unjoined at
// the end, or its origin stream gone): once the capture is no longer active,
// nothing reads it (node additions and joins check the status first).
static void discard_graph(Graph* g) { end_graph(g); }

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
        discard_graph(c->graph);
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

bool capture_add_node(Stream* s, Capture* c, Op op) {
    std::lock_guard<std::mutex> lk(c->mu);
    if (c->status.load() != kCapActive) return false;
    auto* n = new Node;
    n->op = std::move(op);
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

static CUresult begin_capture(CUstream h, CUstreamCaptureMode mode, bool pt) {
    if (!valid_capture_mode(mode)) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    if (s->is_legacy) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;  // the legacy stream cannot capture
    if (s->capture.load(std::memory_order_acquire) != nullptr) return CUDA_ERROR_ILLEGAL_STATE;
    auto* graph = make_object<Graph>();
    if (graph == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    auto* c = new Capture;
    c->id = g_next_capture.fetch_add(1, std::memory_order_relaxed);
    c->graph = graph;
    c->mode = mode;
    c->thread = std::this_thread::get_id();
    c->origin = s;
    c->members.push_back(s);
    s->tail.clear();
    {
        std::lock_guard<std::mutex> lk(registry_mu());
        registry().push_back(c);
    }
    g_active_captures.fetch_add(1, std::memory_order_acq_rel);
    s->capture.store(c, std::memory_order_release);
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
        discard_graph(c->graph);
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    // Every forked stream must have been joined back: each sink of the graph
    // must be in the origin stream's dependency set.
    Graph* g = c->graph;
    std::unordered_set<Node*> has_dependents;
    for (Node* n : g->nodes)
        for (Node* d : n->deps) has_dependents.insert(d);
    for (Node* n : g->nodes)
        if (!has_dependents.count(n) && std::find(origin_tail.begin(), origin_tail.end(), n) == origin_tail.end()) {
            discard_graph(g);
            return CUDA_ERROR_STREAM_CAPTURE_UNJOINED;
        }
    g->user_visible = true;
    g_live[kLiveGraph].fetch_add(1, std::memory_order_relaxed);
    *phGraph = handle_of<CUgraph>(g);
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

// ---------------------------------------------------------------- graphs
namespace sim {
// A graph under capture (its handle comes from cuStreamGetCaptureInfo) is no
// user graph yet: INVALID_VALUE, not a destroyed handle.
static Graph* live_graph(CUgraph h) {
    Graph* g = live_object<Graph>(h);
    if (g == nullptr || !g->user_visible) return nullptr;
    return g;
}
static GraphExec* live_exec(CUgraphExec h) { return live_object<GraphExec>(h); }

static CUresult instantiate(CUgraphExec* phExec, CUgraph hGraph, unsigned long long flags) {
    if (phExec == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = live_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const unsigned long long known = CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD | CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY;
    if (flags & ~known) return CUDA_ERROR_INVALID_VALUE;
    auto* e = make_object<GraphExec>();
    if (e == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    std::lock_guard<std::mutex> lk(g->mu);
    // The exec owns references of its own to the graph's user objects.
    e->user_refs = std::make_shared<UserRefs>();
    for (auto& ref : g->user_refs.held) {
        user_object_retain(ref.first, ref.second);
        e->user_refs->add(ref.first, ref.second);
    }
    // Kahn's algorithm in capture order: a valid order that keeps stream order.
    std::unordered_map<Node*, int> indeg;
    std::unordered_map<Node*, std::vector<Node*>> out;
    for (Node* n : g->nodes) {
        indeg[n] += 0;
        for (Node* d : n->deps) {
            indeg[n]++;
            out[d].push_back(n);
        }
    }
    std::deque<Node*> ready;
    for (Node* n : g->nodes)
        if (indeg[n] == 0) ready.push_back(n);
    while (!ready.empty()) {
        Node* n = ready.front();
        ready.pop_front();
        e->ops.push_back(n->op);
        for (Node* m : out[n])
            if (--indeg[m] == 0) ready.push_back(m);
    }
    g_live[kLiveExec].fetch_add(1, std::memory_order_relaxed);
    *phExec = handle_of<CUgraphExec>(e);
    return CUDA_SUCCESS;
}

static CUresult graph_launch(CUgraphExec hExec, CUstream h, bool pt) {
    GraphExec* e = live_exec(hExec);
    if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    // The exec may be destroyed while the launch is queued: the launch holds a
    // copy of the ops and a share of the exec's user objects.
    auto ops = e->ops;
    UserRefsPtr refs = e->user_refs;
    return submit(s, [ops, refs] { for (auto& op : ops) op(); }, false);
}

static CUresult graph_upload(CUgraphExec hExec, CUstream h, bool pt) {
    if (live_exec(hExec) == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    return resolve_stream(h, &s, pt);
}

CUresult graph_instantiate_v1(CUgraphExec* phExec, CUgraph hGraph, CUgraphNode* errNode, char* log, size_t n) {
    SIM_ENTER_INIT("cuGraphInstantiate");
    if (errNode != nullptr) *errNode = nullptr;
    if (log != nullptr && n > 0) log[0] = 0;
    return instantiate(phExec, hGraph, 0);
}
// cuda.h: result_out says why an instantiation failed; the upload stream is
// used (and checked) only with CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD.
static CUresult instantiate_with_params(CUgraphExec* phExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS* params,
                                        bool pt) {
    if (params == nullptr) return CUDA_ERROR_INVALID_VALUE;
    params->hErrNode_out = nullptr;
    params->result_out = CUDA_GRAPH_INSTANTIATE_ERROR;
    if (params->flags & CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD) {
        Stream* s;
        CUresult r = resolve_stream(params->hUploadStream, &s, pt);
        if (r != CUDA_SUCCESS) return r;
    }
    CUresult r = instantiate(phExec, hGraph, params->flags);
    if (r == CUDA_SUCCESS) params->result_out = CUDA_GRAPH_INSTANTIATE_SUCCESS;
    return r;
}
CUresult graph_instantiate_params_ptsz(CUgraphExec* phExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS* params) {
    SIM_ENTER_INIT("cuGraphInstantiateWithParams");
    return instantiate_with_params(phExec, hGraph, params, true);
}
CUresult graph_launch_ptsz(CUgraphExec e, CUstream h) {
    SIM_ENTER_INIT("cuGraphLaunch");
    return graph_launch(e, h, true);
}
CUresult graph_upload_ptsz(CUgraphExec e, CUstream h) {
    SIM_ENTER_INIT("cuGraphUpload");
    return graph_upload(e, h, true);
}
}  // namespace sim

SIM_EXPORT CUresult cuGraphCreate(CUgraph* phGraph, unsigned int flags) {
    SIM_ENTER_INIT("cuGraphCreate");
    if (phGraph == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    auto* g = make_object<Graph>();
    if (g == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    g->user_visible = true;
    g_live[kLiveGraph].fetch_add(1, std::memory_order_relaxed);
    *phGraph = handle_of<CUgraph>(g);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphDestroy(CUgraph hGraph) {
    SIM_ENTER_INIT("cuGraphDestroy");
    Graph* g = live_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    bool expected = true;
    if (!g->alive.compare_exchange_strong(expected, false)) {
        note_destroyed_handle(kSlabGraph, slot_size<Graph>(), kMagicGraph, hGraph);
        return CUDA_ERROR_INVALID_VALUE;
    }
    g_live[kLiveGraph].fetch_sub(1, std::memory_order_relaxed);
    end_graph(g);  // releases its user objects
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode* nodes, size_t* numNodes) {
    SIM_ENTER_INIT("cuGraphGetNodes");
    if (numNodes == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = live_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    size_t count = g->nodes.size();
    if (nodes != nullptr) {
        size_t cap = *numNodes;
        for (size_t i = 0; i < cap; ++i)
            nodes[i] = i < count ? reinterpret_cast<CUgraphNode>(g->nodes[i]) : nullptr;
        *numNodes = std::min(cap, count);
    } else {
        *numNodes = count;
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec* phExec, CUgraph hGraph, unsigned long long flags) {
    SIM_ENTER_INIT("cuGraphInstantiateWithFlags");
    return instantiate(phExec, hGraph, flags);
}

SIM_EXPORT CUresult cuGraphInstantiateWithParams(CUgraphExec* phExec, CUgraph hGraph,
                                                 CUDA_GRAPH_INSTANTIATE_PARAMS* params) {
    SIM_ENTER_INIT("cuGraphInstantiateWithParams");
    return instantiate_with_params(phExec, hGraph, params, false);
}

SIM_EXPORT CUresult cuGraphLaunch(CUgraphExec e, CUstream h) {
    SIM_ENTER_INIT("cuGraphLaunch");
    return graph_launch(e, h, false);
}

SIM_EXPORT CUresult cuGraphUpload(CUgraphExec e, CUstream h) {
    SIM_ENTER_INIT("cuGraphUpload");
    return graph_upload(e, h, false);
}

SIM_EXPORT CUresult cuGraphExecDestroy(CUgraphExec hExec) {
    SIM_ENTER_INIT("cuGraphExecDestroy");
    GraphExec* e = live_exec(hExec);
    if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
    bool expected = true;
    if (!e->alive.compare_exchange_strong(expected, false)) {
        note_destroyed_handle(kSlabExec, slot_size<GraphExec>(), kMagicExec, hExec);
        return CUDA_ERROR_INVALID_VALUE;
    }
    g_live[kLiveExec].fetch_sub(1, std::memory_order_relaxed);
    e->user_refs.reset();  // released now, or by the last queued launch that shares them
    reclaim_object(e);     // a queued launch holds a copy of the ops, not the exec
    return CUDA_SUCCESS;
}

SIM_EXPORT int greenres_sim_graph_node_green_ctx(void* graph, unsigned long long* out, int capacity) {
    Graph* g = as_object<Graph>(graph);
    if (g == nullptr || !g->alive.load() || !g->user_visible) return -1;
    std::lock_guard<std::mutex> lk(g->mu);
    int n = (int)g->nodes.size();
    for (int i = 0; i < n && i < capacity && out != nullptr; ++i) out[i] = g->nodes[i]->green_id;
    return n;
}
