// Graphs and their instantiations: create, destroy, node lists, instantiate,
// launch, upload, exec updates (whole graph, one node, enabled or not),
// conditional handles and the values a launch's conditional nodes read.
//
// An exec holds one ExecNode per node of its graph, in a topological order
// that keeps capture order. A child graph node runs its graph's nodes in
// order; a conditional node runs its bodies by the value of its handle, which
// the launch sets to its default (CU_GRAPH_COND_ASSIGN_DEFAULT) and a kernel
// model may change (greenres_sim_set_conditional).
#include <algorithm>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "graph_nodes.h"

using namespace sim;

namespace {
// ---- conditional handles: one table for the process; a handle is its index + 1
struct CondHandle {
    unsigned graph_id;
    unsigned default_value;
    bool assign_default;
};
std::mutex& cond_mu() {
    static auto* m = new std::mutex;
    return *m;
}
std::vector<CondHandle>& cond_table() {
    static auto* v = new std::vector<CondHandle>;
    return *v;
}
bool cond_lookup(CUgraphConditionalHandle h, CondHandle* out) {
    std::lock_guard<std::mutex> lk(cond_mu());
    if (h == 0 || h > cond_table().size()) return false;
    *out = cond_table()[h - 1];
    return true;
}

// The values of one launch's conditional handles (thread-local to the worker
// while the launch runs).
struct LaunchValues {
    std::unordered_map<CUgraphConditionalHandle, unsigned> values;
};
thread_local LaunchValues* t_launch = nullptr;

// guess: an unbounded while node (its body never clears the condition) is
// stopped after this many iterations, with the hazard conditional_loop_limit
// (a real GPU would hang).
constexpr unsigned long kWhileLimit = 1ul << 20;

void run_all(const std::vector<Op>& ops) {
    for (const Op& op : ops) op();
}

CUresult graph_ops(Graph* g, std::vector<Op>* out, std::vector<CUgraphConditionalHandle>* handles);

// What one node runs, inside a child graph or a body. Caller holds its graph's mutex.
CUresult node_op(Node* n, Op* out, std::vector<CUgraphConditionalHandle>* handles) {
    NodeSpec* spec = n->spec.get();
    switch (n->type) {
        case CU_GRAPH_NODE_TYPE_GRAPH: {
            auto ops = std::make_shared<std::vector<Op>>();
            std::lock_guard<std::mutex> lk(spec->child->mu);
            CUresult r = graph_ops(spec->child, ops.get(), handles);
            if (r != CUDA_SUCCESS) return r;
            *out = [ops] { run_all(*ops); };
            return CUDA_SUCCESS;
        }
        case CU_GRAPH_NODE_TYPE_CONDITIONAL: {
            auto bodies = std::make_shared<std::vector<std::vector<Op>>>();
            for (Graph* b : spec->bodies) {
                bodies->emplace_back();
                std::lock_guard<std::mutex> lk(b->mu);
                CUresult r = graph_ops(b, &bodies->back(), handles);
                if (r != CUDA_SUCCESS) return r;
            }
            handles->push_back(spec->cond);
            CUgraphConditionalHandle h = spec->cond;
            CUgraphConditionalNodeType type = spec->cond_type;
            *out = [bodies, h, type] {
                unsigned v = conditional_value(h);
                if (type == CU_GRAPH_COND_TYPE_IF) {
                    if (v != 0)
                        run_all((*bodies)[0]);
                    else if (bodies->size() == 2)
                        run_all((*bodies)[1]);
                } else if (type == CU_GRAPH_COND_TYPE_SWITCH) {
                    if (v < bodies->size()) run_all((*bodies)[v]);
                } else {
                    unsigned long i = 0;
                    for (; conditional_value(h) != 0 && i < kWhileLimit; ++i) run_all((*bodies)[0]);
                    if (i == kWhileLimit)
                        add_hazard("conditional_loop_limit", "a while node ran its body " +
                                                                 std::to_string(kWhileLimit) + " times; stopped");
                }
            };
            return CUDA_SUCCESS;
        }
        case CU_GRAPH_NODE_TYPE_EVENT_RECORD: {
            // Inside a child graph: the record completes when the node runs.
            CUevent e = spec->event;
            *out = [e] {
                if (Event* ev = live_event(e)) complete_record_inline(ev);
            };
            return CUDA_SUCCESS;
        }
        case CU_GRAPH_NODE_TYPE_WAIT_EVENT: {
            CUevent e = spec->event;
            *out = [e] {
                SignalPtr sig;
                if (Event* ev = live_event(e)) {
                    std::lock_guard<std::mutex> lk(ev->mu);
                    sig = ev->last;
                }
                if (sig) sig->wait();
            };
            return CUDA_SUCCESS;
        }
        default:
            *out = n->op;
            return CUDA_SUCCESS;
    }
}

// Kahn's algorithm in node order: a valid order that keeps capture (stream)
// order. False when some node never became ready (a dependency outside the
// graph): it would be left out silently.
bool topological(Graph* g, std::vector<Node*>* order_out) {
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
    std::vector<Node*> order;
    while (!ready.empty()) {
        Node* n = ready.front();
        ready.pop_front();
        order.push_back(n);
        for (Node* m : out[n])
            if (--indeg[m] == 0) ready.push_back(m);
    }
    bool complete = order.size() == g->nodes.size();
    *order_out = std::move(order);
    return complete;
}

CUresult graph_ops(Graph* g, std::vector<Op>* out, std::vector<CUgraphConditionalHandle>* handles) {
    std::vector<Node*> order;
    if (!topological(g, &order)) return CUDA_ERROR_INVALID_VALUE;
    for (Node* n : order) {
        Op op;
        CUresult r = node_op(n, &op, handles);
        if (r != CUDA_SUCCESS) return r;
        out->push_back(std::move(op));
    }
    return CUDA_SUCCESS;
}

// The exec nodes of a top-level graph, and its shape (per node, the positions
// of its dependencies: what cuGraphExecUpdate compares). Caller holds g->mu.
CUresult exec_nodes(Graph* g, std::vector<ExecNode>* out, std::vector<CUgraphConditionalHandle>* handles,
                    std::vector<std::vector<size_t>>* shape) {
    std::vector<Node*> order;
    if (!topological(g, &order)) return CUDA_ERROR_INVALID_VALUE;
    std::unordered_map<const Node*, size_t> at;
    for (size_t i = 0; i < order.size(); ++i) at[order[i]] = i;
    for (Node* n : order) {
        std::vector<size_t> deps;
        for (Node* d : n->deps) deps.push_back(at[d]);
        std::sort(deps.begin(), deps.end());
        shape->push_back(std::move(deps));
        ExecNode en;
        en.key = n;
        en.key_uid = n->uid;
        en.type = n->type;
        if (n->type == CU_GRAPH_NODE_TYPE_EVENT_RECORD || n->type == CU_GRAPH_NODE_TYPE_WAIT_EVENT) {
            en.event = n->spec->event;  // acted on at each launch (graph_launch)
        } else {
            CUresult r = node_op(n, &en.op, handles);
            if (r != CUDA_SUCCESS) return r;
        }
        out->push_back(std::move(en));
    }
    return CUDA_SUCCESS;
}

// The exec owns references of its own to the user objects of the graph and of
// every graph its nodes own (a child graph's callbacks run in the exec too).
// Caller holds g->mu.
void retain_user_refs(Graph* g, UserRefs* into) {
    into->retain_all_of(g->user_refs);
    for (Node* n : g->nodes) {
        if (n->spec == nullptr) continue;
        std::vector<Graph*> owned = n->spec->bodies;
        if (n->spec->child != nullptr) owned.push_back(n->spec->child);
        for (Graph* o : owned) {
            std::lock_guard<std::mutex> lk(o->mu);
            retain_user_refs(o, into);
        }
    }
}

GraphExec* live_exec(CUgraphExec h) { return live_object<GraphExec>(h); }

}  // namespace

namespace sim {
unsigned conditional_value(CUgraphConditionalHandle h) {
    if (t_launch == nullptr) return 0;
    auto it = t_launch->values.find(h);
    return it == t_launch->values.end() ? 0 : it->second;
}
bool conditional_handle_of(Graph* g, CUgraphConditionalHandle h) {
    CondHandle c;
    if (!cond_lookup(h, &c)) return false;
    // The handle's graph, or a graph that one of its nodes owns (a body, a child).
    for (Graph* at = g; at != nullptr; at = at->owner != nullptr ? at->owner->graph : nullptr)
        if (at->id == c.graph_id) return true;
    return false;
}
}  // namespace sim

// A kernel model's cudaGraphSetConditional: sets the value of a conditional
// handle for the rest of the launch that runs the model. 0: done; -1: not inside
// a graph launch that has this handle.
SIM_EXPORT int greenres_sim_set_conditional(unsigned long long handle, unsigned value) {
    if (t_launch == nullptr) return -1;
    auto it = t_launch->values.find(handle);
    if (it == t_launch->values.end()) return -1;
    it->second = value;
    return 0;
}

SIM_EXPORT CUresult cuGraphConditionalHandleCreate(CUgraphConditionalHandle* out, CUgraph hGraph, CUcontext ctx,
                                                   unsigned int defaultLaunchValue, unsigned int flags) {
    SIM_ENTER_INIT("cuGraphConditionalHandleCreate");
    if (out == nullptr || (flags & ~(unsigned)CU_GRAPH_COND_ASSIGN_DEFAULT)) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = ctx != nullptr ? check_settable(ctx, &c) : require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    std::lock_guard<std::mutex> lk(cond_mu());
    cond_table().push_back(CondHandle{g->id, defaultLaunchValue, (flags & CU_GRAPH_COND_ASSIGN_DEFAULT) != 0});
    *out = cond_table().size();
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- graphs
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
    Graph* g = user_graph(hGraph);
    // A graph a node owns goes with its node (cuda.h: "the node retains ownership");
    // a graph under capture is not the caller's yet.
    if (g == nullptr || g->owner != nullptr || !g->user_visible) return CUDA_ERROR_INVALID_VALUE;
    {
        // guess: a graph that cuStreamBeginCaptureToGraph is adding to cannot be
        // destroyed before the capture ends (cuda.h does not say).
        std::lock_guard<std::mutex> lk(g->mu);
        if (g->capturing != nullptr) return CUDA_ERROR_INVALID_VALUE;
        bool expected = true;
        if (!g->alive.compare_exchange_strong(expected, false)) {
            note_destroyed_handle(kSlabGraph, slot_size<Graph>(), kMagicGraph, hGraph);
            return CUDA_ERROR_INVALID_VALUE;
        }
    }
    g_live[kLiveGraph].fetch_sub(1, std::memory_order_relaxed);
    end_graph(g);  // releases its user objects, ends the graphs its nodes own
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode* nodes, size_t* numNodes) {
    SIM_ENTER_INIT("cuGraphGetNodes");
    if (numNodes == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    size_t count = g->nodes.size();
    if (nodes != nullptr) {
        size_t cap = *numNodes;
        for (size_t i = 0; i < cap; ++i) nodes[i] = i < count ? reinterpret_cast<CUgraphNode>(g->nodes[i]) : nullptr;
        *numNodes = std::min(cap, count);
    } else {
        *numNodes = count;
    }
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- instantiate and launch
namespace sim {
static CUresult instantiate(CUgraphExec* phExec, CUgraph hGraph, unsigned long long flags) {
    if (phExec == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = user_graph(hGraph);
    if (g == nullptr || !g->user_visible) return CUDA_ERROR_INVALID_VALUE;
    const unsigned long long known = CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD | CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY;
    if (flags & ~known) return CUDA_ERROR_INVALID_VALUE;
    std::vector<ExecNode> nodes;
    std::vector<CUgraphConditionalHandle> handles;
    std::vector<std::vector<size_t>> shape;
    auto refs = std::make_shared<UserRefs>();
    {
        std::lock_guard<std::mutex> lk(g->mu);
        CUresult r = exec_nodes(g, &nodes, &handles, &shape);
        if (r != CUDA_SUCCESS) return r;
        retain_user_refs(g, refs.get());
    }
    auto* e = make_object<GraphExec>();
    if (e == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    e->nodes = std::move(nodes);
    e->user_refs = std::move(refs);
    e->flags = flags;
    e->handles = std::move(handles);
    e->shape = std::move(shape);
    g_live[kLiveExec].fetch_add(1, std::memory_order_relaxed);
    *phExec = handle_of<CUgraphExec>(e);
    return CUDA_SUCCESS;
}

static CUresult graph_launch(CUgraphExec hExec, CUstream h, bool pt) {
    GraphExec* e = live_exec(hExec);
    if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
    RESOLVE(h, s, pt);
    const bool capturing = s->capture.load(std::memory_order_acquire) != nullptr;
    // The exec may be destroyed (or updated) while the launch is queued: the
    // launch holds a copy of the ops and a share of the exec's user objects.
    auto ops = std::make_shared<std::vector<Op>>();
    // Each run of the launch starts its handles at their defaults: a launch
    // captured into another graph runs once per launch of that graph.
    auto defaults = std::make_shared<std::vector<std::pair<CUgraphConditionalHandle, unsigned>>>();
    // Event records take effect only once the launch is queued (a refused launch
    // leaves its events as they were); a wait of the same launch sees them.
    std::vector<std::pair<Event*, SignalPtr>> records;
    std::lock_guard<std::mutex> lk(e->mu);
    for (CUgraphConditionalHandle c : e->handles) {
        CondHandle info;
        if (cond_lookup(c, &info)) defaults->emplace_back(c, info.assign_default ? info.default_value : 0);
    }
    for (const ExecNode& en : e->nodes) {
        if (!en.enabled) continue;  // a disabled node runs as an empty node
        Event* ev = en.event != nullptr ? live_event(en.event) : nullptr;
        if (en.type == CU_GRAPH_NODE_TYPE_EVENT_RECORD) {
            if (ev == nullptr) continue;
            if (capturing) {  // replayed later: completes when it runs, if the event still lives
                CUevent handle = en.event;
                ops->push_back([handle] {
                    if (Event* later = live_event(handle)) complete_record_inline(later);
                });
                continue;
            }
            // Pending from the launch on, as a cuEventRecord on the stream would be.
            auto sig = std::make_shared<Signal>();
            records.emplace_back(ev, sig);
            ops->push_back([sig] { sig->arrive(); });
        } else if (en.type == CU_GRAPH_NODE_TYPE_WAIT_EVENT) {
            if (ev == nullptr) continue;
            SignalPtr sig;
            for (auto& rec : records)
                if (rec.first == ev) sig = rec.second;  // recorded earlier in this launch
            if (!sig) {
                std::lock_guard<std::mutex> le(ev->mu);
                sig = ev->last;
            }
            if (sig && !sig->is_done()) ops->push_back([sig] { sig->wait(); });
        } else {
            ops->push_back(en.op);
        }
    }
    UserRefsPtr refs = e->user_refs;
    // Ordered behind the previous launch (a captured launch is ordered by the
    // graph it becomes part of).
    SignalPtr previous = capturing ? nullptr : e->last_launch;
    SignalPtr done = capturing ? nullptr : std::make_shared<Signal>();
    CUresult r = submit(s, [ops, refs, defaults, previous, done] {
        if (previous) previous->wait();
        LaunchValues values;
        for (auto& d : *defaults) values.values[d.first] = d.second;
        LaunchValues* outer = t_launch;
        t_launch = &values;
        run_all(*ops);
        t_launch = outer;
        if (done) done->arrive();
    }, false);
    if (r != CUDA_SUCCESS) return r;
    if (done) e->last_launch = done;
    for (auto& rec : records) set_last_record(rec.first, rec.second);
    return CUDA_SUCCESS;
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

// ---- updates of an exec
// The exec node made from graph node h, or nullptr. Caller holds e->mu.
static ExecNode* exec_node_locked(GraphExec* e, CUgraphNode h) {
    Node* n = live_node(h);
    if (n == nullptr) return nullptr;
    for (ExecNode& en : e->nodes)
        if (en.key_uid == n->uid || en.origin_uid == n->uid) return &en;
    return nullptr;
}
CUresult exec_set_node(CUgraphExec hExec, CUgraphNode h, CUgraphNodeType type,
                       const std::function<CUresult(NodeSpec*, Op*)>& build) {
    GraphExec* e = live_exec(hExec);
    Node* n = live_node(h);
    if (e == nullptr || n == nullptr || n->type != type) return CUDA_ERROR_INVALID_VALUE;
    NodeSpec spec = n->spec != nullptr ? NodeSpec(*n->spec) : NodeSpec();
    spec.type = type;
    Op op;
    CUresult r = build(&spec, &op);
    if (r != CUDA_SUCCESS) return r;
    std::lock_guard<std::mutex> lk(e->mu);
    ExecNode* en = exec_node_locked(e, h);
    if (en == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (type == CU_GRAPH_NODE_TYPE_EVENT_RECORD || type == CU_GRAPH_NODE_TYPE_WAIT_EVENT)
        en->event = spec.event;
    else
        en->op = std::move(op);
    return CUDA_SUCCESS;
}
// The new child's nodes, its conditional handles (set at each launch) and its
// user objects join the exec. guess: the replaced child's user objects stay
// retained until the exec is destroyed or updated (kept alive longer, never
// released early).
CUresult exec_set_child_graph(CUgraphExec hExec, CUgraphNode h, Graph* child) {
    GraphExec* e = live_exec(hExec);
    Node* n = live_node(h);
    if (e == nullptr || n == nullptr || n->type != CU_GRAPH_NODE_TYPE_GRAPH || n->spec == nullptr ||
        n->spec->child == nullptr)
        return CUDA_ERROR_INVALID_VALUE;
    Graph* current = n->spec->child;
    if (current != child) {  // cuda.h: the same topology; the simulator checks the node count
        std::scoped_lock both(current->mu, child->mu);
        if (child->nodes.size() != current->nodes.size()) return CUDA_ERROR_INVALID_VALUE;
    }
    auto ops = std::make_shared<std::vector<Op>>();
    std::vector<CUgraphConditionalHandle> handles;
    // The exec's new set (queued launches keep sharing the old one): the new
    // child's references, then the exec's own again.
    auto refs = std::make_shared<UserRefs>();
    {
        std::lock_guard<std::mutex> lk(child->mu);
        CUresult r = graph_ops(child, ops.get(), &handles);
        if (r != CUDA_SUCCESS) return r;
        retain_user_refs(child, refs.get());
    }
    std::lock_guard<std::mutex> lk(e->mu);
    ExecNode* en = exec_node_locked(e, h);
    if (en == nullptr) return CUDA_ERROR_INVALID_VALUE;  // `refs` releases what it took
    en->op = [ops] { run_all(*ops); };
    for (CUgraphConditionalHandle c : handles)
        if (std::find(e->handles.begin(), e->handles.end(), c) == e->handles.end()) e->handles.push_back(c);
    if (e->user_refs != nullptr) refs->retain_all_of(*e->user_refs);
    e->user_refs = std::move(refs);
    return CUDA_SUCCESS;
}
}  // namespace sim

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
SIM_EXPORT CUresult cuGraphExecGetFlags(CUgraphExec hExec, cuuint64_t* flags) {
    SIM_ENTER_INIT("cuGraphExecGetFlags");
    GraphExec* e = live_exec(hExec);
    if (e == nullptr || flags == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *flags = e->flags;
    return CUDA_SUCCESS;
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
    {
        std::lock_guard<std::mutex> lk(e->mu);
        e->nodes.clear();      // queued launches hold copies of the ops
        e->user_refs.reset();  // released now, or by the last queued launch that shares them
    }
    reclaim_object(e);
    return CUDA_SUCCESS;
}

// cuGraphExecUpdate: the new graph must have the exec's topology (same nodes,
// paired in order, same types, same edges). guess: nodes are paired by their
// position in a topological order; the real driver pairs them by creation order
// and topology too, without documenting the exact rule.
static CUresult exec_update(CUgraphExec hExec, CUgraph hGraph, CUgraphExecUpdateResultInfo* info) {
    if (info == nullptr) return CUDA_ERROR_INVALID_VALUE;
    info->result = CU_GRAPH_EXEC_UPDATE_ERROR;
    info->errorNode = nullptr;
    info->errorFromNode = nullptr;
    GraphExec* e = live_exec(hExec);
    Graph* g = user_graph(hGraph);
    if (e == nullptr || g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::vector<ExecNode> fresh;
    std::vector<CUgraphConditionalHandle> handles;
    std::vector<std::vector<size_t>> shape;
    auto refs = std::make_shared<UserRefs>();
    {
        std::lock_guard<std::mutex> lk(g->mu);
        CUresult r = exec_nodes(g, &fresh, &handles, &shape);
        if (r != CUDA_SUCCESS) return r;
        retain_user_refs(g, refs.get());  // the new nodes' objects (dropped if refused)
    }
    std::lock_guard<std::mutex> lk(e->mu);
    // cuda.h: when the node counts differ, errorNode is NULL.
    if (fresh.size() != e->nodes.size()) {
        info->result = CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED;
        return CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
    }
    for (size_t i = 0; i < fresh.size(); ++i) {
        CUgraphNode node = reinterpret_cast<CUgraphNode>(const_cast<Node*>(fresh[i].key));
        if (shape[i] != e->shape[i]) {
            info->result = CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED;
            info->errorNode = node;
            return CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
        }
        if (fresh[i].type != e->nodes[i].type) {
            info->result = CU_GRAPH_EXEC_UPDATE_ERROR_NODE_TYPE_CHANGED;
            info->errorNode = node;
            return CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
        }
    }
    for (size_t i = 0; i < fresh.size(); ++i) {
        fresh[i].origin_uid = e->nodes[i].origin_uid != 0 ? e->nodes[i].origin_uid : e->nodes[i].key_uid;
        fresh[i].enabled = e->nodes[i].enabled;
    }
    e->nodes = std::move(fresh);
    e->handles = std::move(handles);
    e->shape = std::move(shape);
    e->user_refs = std::move(refs);  // queued launches keep the old ones until they ran
    info->result = CU_GRAPH_EXEC_UPDATE_SUCCESS;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphExecUpdate_v2(CUgraphExec e, CUgraph g, CUgraphExecUpdateResultInfo* info) {
    SIM_ENTER_INIT("cuGraphExecUpdate");
    return exec_update(e, g, info);
}
namespace sim {
CUresult graph_exec_update_v1(CUgraphExec e, CUgraph g, CUgraphNode* err, CUgraphExecUpdateResult* result) {
    SIM_ENTER_INIT("cuGraphExecUpdate");
    if (result == nullptr) return CUDA_ERROR_INVALID_VALUE;
    CUgraphExecUpdateResultInfo info{};
    CUresult r = exec_update(e, g, &info);
    *result = info.result;
    if (err != nullptr) *err = info.errorNode;
    return r;
}
}  // namespace sim

// cuda.h: only kernel, memset and memcpy nodes can be disabled.
static bool can_disable(CUgraphNodeType t) {
    return t == CU_GRAPH_NODE_TYPE_KERNEL || t == CU_GRAPH_NODE_TYPE_MEMSET || t == CU_GRAPH_NODE_TYPE_MEMCPY;
}
SIM_EXPORT CUresult cuGraphNodeSetEnabled(CUgraphExec hExec, CUgraphNode h, unsigned int enabled) {
    SIM_ENTER_INIT("cuGraphNodeSetEnabled");
    GraphExec* e = live_exec(hExec);
    if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(e->mu);
    ExecNode* en = exec_node_locked(e, h);
    if (en == nullptr || !can_disable(en->type)) return CUDA_ERROR_INVALID_VALUE;
    en->enabled = enabled != 0;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphNodeGetEnabled(CUgraphExec hExec, CUgraphNode h, unsigned int* enabled) {
    SIM_ENTER_INIT("cuGraphNodeGetEnabled");
    GraphExec* e = live_exec(hExec);
    if (e == nullptr || enabled == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(e->mu);
    ExecNode* en = exec_node_locked(e, h);
    if (en == nullptr || !can_disable(en->type)) return CUDA_ERROR_INVALID_VALUE;
    *enabled = en->enabled ? 1 : 0;
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
