// Graph nodes made by the caller: the per-type add functions and cuGraphAddNode,
// their parameters (get and set), and what every node reports (type, ids,
// containing graph). Node handles are checked against a registry of live
// nodes before anything is read through them.
#include <cstring>
#include <unordered_set>

#include "graph_nodes.h"
#include "kernels.h"

using namespace sim;

namespace {
std::mutex& registry_mu() {
    static auto* m = new std::mutex;
    return *m;
}
std::unordered_set<const Node*>& registry() {
    static auto* s = new std::unordered_set<const Node*>;
    return *s;
}

// The context a node runs in: the one given, else the current one (cuda.h:
// "NULL will indicate the current context").
CUresult node_context(CUcontext given, Context** out) {
    if (given == nullptr) return require_current(out);
    return check_settable(given, out);
}
GreenCtx* green_of(Context* c) { return c != nullptr && c->kind == CtxKind::Green ? c->green : nullptr; }

template <class Params>
CUresult kernel_spec(const Params& p, CUcontext ctx, NodeSpec* spec, Op* op) {
    Function* f = p.func != nullptr ? launchable(p.func) : nullptr;
    if (f == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = node_context(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    const unsigned grid[3] = {p.gridDimX, p.gridDimY, p.gridDimZ};
    const unsigned block[3] = {p.blockDimX, p.blockDimY, p.blockDimZ};
    return kernel_op(f, grid, block, p.sharedMemBytes, p.kernelParams, p.extra, c, green_of(c), op, spec);
}
// CUDA_KERNEL_NODE_PARAMS v2/v3 name the kernel by func, or by kern when func is NULL.
template <class Params>
CUresult kernel_spec_v2(const Params& p, NodeSpec* spec, Op* op) {
    Params q = p;
    if (q.func == nullptr) q.func = reinterpret_cast<CUfunction>(q.kern);
    return kernel_spec(q, p.ctx, spec, op);
}
template <class Params>
void kernel_params_out(const NodeSpec& s, Params* p) {
    p->func = s.func != nullptr ? handle_of<CUfunction>(s.func) : nullptr;
    p->gridDimX = s.grid[0], p->gridDimY = s.grid[1], p->gridDimZ = s.grid[2];
    p->blockDimX = s.block[0], p->blockDimY = s.block[1], p->blockDimZ = s.block[2];
    p->sharedMemBytes = s.shared;
    p->kernelParams = s.arg_ptrs.empty() ? nullptr : const_cast<void**>(s.arg_ptrs.data());
    p->extra = nullptr;
}

CUresult memset_spec(const CUDA_MEMSET_NODE_PARAMS& p, CUcontext ctx, NodeSpec* spec, Op* op) {
    Context* c;
    CUresult r = node_context(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    r = memset_op(p, op);
    if (r != CUDA_SUCCESS) return r;
    spec->memset = p;
    spec->ctx = handle_of<CUcontext>(c);
    return CUDA_SUCCESS;
}
CUresult memcpy_spec(const CUDA_MEMCPY3D& p, CUcontext ctx, NodeSpec* spec, Op* op) {
    Context* c;
    CUresult r = node_context(ctx, &c);
    if (r != CUDA_SUCCESS) return r;
    r = copy3d_op(p, op);
    if (r != CUDA_SUCCESS) return r;
    spec->copy = p;
    spec->ctx = handle_of<CUcontext>(c);
    return CUDA_SUCCESS;
}
CUresult host_spec(CUhostFn fn, void* data, NodeSpec* spec, Op* op) {
    if (fn == nullptr) return CUDA_ERROR_INVALID_VALUE;
    spec->fn = fn;
    spec->user_data = data;
    *op = [fn, data] { fn(data); };
    return CUDA_SUCCESS;
}
CUresult event_spec(CUevent e, NodeSpec* spec) {
    if (live_event(e) == nullptr) return CUDA_ERROR_INVALID_VALUE;
    spec->event = e;
    return CUDA_SUCCESS;
}

// Adds a node of `spec` (its op built by the caller) to hGraph after deps.
CUresult add(CUgraphNode* out, CUgraph hGraph, const CUgraphNode* deps, size_t ndeps, std::shared_ptr<NodeSpec> spec,
             Op op) {
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    std::vector<Node*> list;
    CUresult r = collect_deps(g, deps, ndeps, &list);
    if (r != CUDA_SUCCESS) return r;
    Node* n;
    r = make_node(g, std::move(spec), std::move(list), &n);
    if (r != CUDA_SUCCESS) return r;
    n->op = std::move(op);
    *out = reinterpret_cast<CUgraphNode>(n);
    return CUDA_SUCCESS;
}

std::shared_ptr<NodeSpec> new_spec(CUgraphNodeType type) {
    auto s = std::make_shared<NodeSpec>();
    s->type = type;
    return s;
}

// A node that has the parameters of `type` to report (captured ones may have none).
NodeSpec* spec_of(CUgraphNode h, CUgraphNodeType type) {
    Node* n = live_node(h);
    if (n == nullptr || n->type != type || n->spec == nullptr) return nullptr;
    return n->spec.get();
}

// Replaces a node's spec and op (cuGraph*NodeSetParams): under its graph's mutex.
template <class Build>
CUresult set_params(CUgraphNode h, CUgraphNodeType type, Build build) {
    Node* n = live_node(h);
    if (n == nullptr || n->type != type) return CUDA_ERROR_INVALID_VALUE;
    auto spec = n->spec != nullptr ? std::make_shared<NodeSpec>(*n->spec) : new_spec(type);
    Op op;
    CUresult r = build(spec.get(), &op);
    if (r != CUDA_SUCCESS) return r;
    std::lock_guard<std::mutex> lk(n->graph->mu);
    n->spec = std::move(spec);
    n->op = std::move(op);
    return CUDA_SUCCESS;
}
}  // namespace

// ---------------------------------------------------------------- shared node helpers
namespace sim {

GraphAllocation::~GraphAllocation() {
    if (dptr != 0) free_device_memory(dptr);
}

NodeSpec::NodeSpec(const NodeSpec& o)
    : type(o.type), func(o.func), kern(o.kern), shared(o.shared), ctx(o.ctx), arg_bytes(o.arg_bytes),
      arg_offsets(o.arg_offsets), memset(o.memset), copy(o.copy), fn(o.fn), user_data(o.user_data), event(o.event),
      allocation(o.allocation), free_dptr(o.free_dptr), cond(o.cond), cond_type(o.cond_type) {
    memcpy(grid, o.grid, sizeof grid);
    memcpy(block, o.block, sizeof block);
    for (size_t off : arg_offsets) arg_ptrs.push_back(arg_bytes.data() + off);
    // child and bodies are not copied: a clone makes copies of its own.
}

void NodeSpec::set_args(const std::vector<size_t>& sizes, void* const* params) {
    arg_bytes.clear();
    arg_offsets.clear();
    arg_ptrs.clear();
    size_t total = 0;
    for (size_t n : sizes) total += (n + 7) / 8 * 8;
    arg_bytes.resize(total);
    size_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
        memcpy(arg_bytes.data() + at, params[i], sizes[i]);
        arg_offsets.push_back(at);
        at += (sizes[i] + 7) / 8 * 8;
    }
    for (size_t off : arg_offsets) arg_ptrs.push_back(arg_bytes.data() + off);
}

void register_node(Node* n) {
    std::lock_guard<std::mutex> lk(registry_mu());
    registry().insert(n);
}
bool unregister_node(Node* n) {
    std::lock_guard<std::mutex> lk(registry_mu());
    return registry().erase(n) == 1;
}
Node* live_node(CUgraphNode h) {
    auto* n = reinterpret_cast<Node*>(h);
    std::lock_guard<std::mutex> lk(registry_mu());
    return registry().count(n) ? n : nullptr;
}
bool node_of(Graph* g, CUgraphNode h) {
    Node* n = live_node(h);
    return n != nullptr && n->graph == g;
}

// A graph under capture is one too: cuda.h's pattern for conditional nodes adds
// nodes to the graph cuStreamGetCaptureInfo returns (then updates the capture's
// dependencies); only destroying and instantiating need a graph the user holds.
Graph* user_graph(CUgraph h) { return live_object<Graph>(h); }

CUresult collect_deps(Graph* g, const CUgraphNode* deps, size_t n, std::vector<Node*>* out) {
    if (deps == nullptr && n > 0) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < n; ++i) {
        // cuda.h: dependencies "may not have any duplicate entries" and must be nodes of hGraph.
        if (!node_of(g, deps[i])) return CUDA_ERROR_INVALID_VALUE;
        Node* d = reinterpret_cast<Node*>(deps[i]);
        if (std::find(out->begin(), out->end(), d) != out->end()) return CUDA_ERROR_INVALID_VALUE;
        out->push_back(d);
    }
    return CUDA_SUCCESS;
}

CUresult make_node(Graph* g, std::shared_ptr<NodeSpec> spec, std::vector<Node*> deps, Node** out) {
    auto* n = new Node;
    n->type = spec->type;
    n->deps = std::move(deps);
    if (spec->child != nullptr) spec->child->owner = n;
    for (Graph* b : spec->bodies) b->owner = n;
    n->spec = std::move(spec);
    add_node_locked(g, n);
    *out = n;
    return CUDA_SUCCESS;
}

void end_owned_graphs(Node* n) {
    if (n->spec == nullptr) return;
    if (n->spec->child != nullptr) end_graph(n->spec->child);
    for (Graph* b : n->spec->bodies) end_graph(b);
    n->spec->child = nullptr;
    n->spec->bodies.clear();
}

}  // namespace sim

// ---------------------------------------------------------------- add by type
SIM_EXPORT CUresult cuGraphAddEmptyNode(CUgraphNode* phGraphNode, CUgraph hGraph, const CUgraphNode* dependencies,
                                        size_t numDependencies) {
    SIM_ENTER_INIT("cuGraphAddEmptyNode");
    if (phGraphNode == nullptr) return CUDA_ERROR_INVALID_VALUE;
    // An empty node only orders its dependents after its dependencies.
    return add(phGraphNode, hGraph, dependencies, numDependencies, new_spec(CU_GRAPH_NODE_TYPE_EMPTY), [] {});
}

namespace sim {
CUresult graph_add_kernel_node_v1(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                  const CUDA_KERNEL_NODE_PARAMS_v1* p) {
    SIM_ENTER_INIT("cuGraphAddKernelNode");
    if (out == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_KERNEL);
    Op op;
    CUresult r = kernel_spec(*p, nullptr, spec.get(), &op);
    if (r != CUDA_SUCCESS) return r;
    return add(out, g, deps, n, spec, std::move(op));
}
CUresult graph_kernel_node_get_params_v1(CUgraphNode h, CUDA_KERNEL_NODE_PARAMS_v1* p) {
    SIM_ENTER_INIT("cuGraphKernelNodeGetParams");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_KERNEL);
    if (p == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    kernel_params_out(*s, p);
    return CUDA_SUCCESS;
}
CUresult graph_kernel_node_set_params_v1(CUgraphNode h, const CUDA_KERNEL_NODE_PARAMS_v1* p) {
    SIM_ENTER_INIT("cuGraphKernelNodeSetParams");
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return set_params(h, CU_GRAPH_NODE_TYPE_KERNEL, [&](NodeSpec* s, Op* op) { return kernel_spec(*p, s->ctx, s, op); });
}
// Shared with the exec updates (api_graph_exec.cpp).
CUresult kernel_node_spec(const CUDA_KERNEL_NODE_PARAMS* p, NodeSpec* spec, Op* op) {
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return kernel_spec_v2(*p, spec, op);
}
CUresult memset_node_spec(const CUDA_MEMSET_NODE_PARAMS* p, CUcontext ctx, NodeSpec* spec, Op* op) {
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return memset_spec(*p, ctx, spec, op);
}
CUresult memcpy_node_spec(const CUDA_MEMCPY3D* p, CUcontext ctx, NodeSpec* spec, Op* op) {
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return memcpy_spec(*p, ctx, spec, op);
}
CUresult host_node_spec(const CUDA_HOST_NODE_PARAMS* p, NodeSpec* spec, Op* op) {
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return host_spec(p->fn, p->userData, spec, op);
}
}  // namespace sim

SIM_EXPORT CUresult cuGraphAddKernelNode_v2(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                            const CUDA_KERNEL_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphAddKernelNode");
    if (out == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_KERNEL);
    Op op;
    CUresult r = kernel_spec_v2(*p, spec.get(), &op);
    if (r != CUDA_SUCCESS) return r;
    return add(out, g, deps, n, spec, std::move(op));
}
SIM_EXPORT CUresult cuGraphKernelNodeGetParams_v2(CUgraphNode h, CUDA_KERNEL_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphKernelNodeGetParams");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_KERNEL);
    if (p == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    kernel_params_out(*s, p);
    p->kern = s->kern;
    p->ctx = s->ctx;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphKernelNodeSetParams_v2(CUgraphNode h, const CUDA_KERNEL_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphKernelNodeSetParams");
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return set_params(h, CU_GRAPH_NODE_TYPE_KERNEL, [&](NodeSpec* s, Op* op) { return kernel_spec_v2(*p, s, op); });
}

SIM_EXPORT CUresult cuGraphAddMemsetNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                         const CUDA_MEMSET_NODE_PARAMS* p, CUcontext ctx) {
    SIM_ENTER_INIT("cuGraphAddMemsetNode");
    if (out == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_MEMSET);
    Op op;
    CUresult r = memset_spec(*p, ctx, spec.get(), &op);
    if (r != CUDA_SUCCESS) return r;
    return add(out, g, deps, n, spec, std::move(op));
}
SIM_EXPORT CUresult cuGraphMemsetNodeGetParams(CUgraphNode h, CUDA_MEMSET_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphMemsetNodeGetParams");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_MEMSET);
    if (p == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *p = s->memset;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphMemsetNodeSetParams(CUgraphNode h, const CUDA_MEMSET_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphMemsetNodeSetParams");
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return set_params(h, CU_GRAPH_NODE_TYPE_MEMSET, [&](NodeSpec* s, Op* op) { return memset_spec(*p, s->ctx, s, op); });
}

SIM_EXPORT CUresult cuGraphAddMemcpyNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                         const CUDA_MEMCPY3D* p, CUcontext ctx) {
    SIM_ENTER_INIT("cuGraphAddMemcpyNode");
    if (out == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_MEMCPY);
    Op op;
    CUresult r = memcpy_spec(*p, ctx, spec.get(), &op);
    if (r != CUDA_SUCCESS) return r;
    return add(out, g, deps, n, spec, std::move(op));
}
SIM_EXPORT CUresult cuGraphMemcpyNodeGetParams(CUgraphNode h, CUDA_MEMCPY3D* p) {
    SIM_ENTER_INIT("cuGraphMemcpyNodeGetParams");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_MEMCPY);
    if (p == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *p = s->copy;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphMemcpyNodeSetParams(CUgraphNode h, const CUDA_MEMCPY3D* p) {
    SIM_ENTER_INIT("cuGraphMemcpyNodeSetParams");
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return set_params(h, CU_GRAPH_NODE_TYPE_MEMCPY, [&](NodeSpec* s, Op* op) { return memcpy_spec(*p, s->ctx, s, op); });
}

SIM_EXPORT CUresult cuGraphAddHostNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                       const CUDA_HOST_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphAddHostNode");
    if (out == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_HOST);
    Op op;
    CUresult r = host_spec(p->fn, p->userData, spec.get(), &op);
    if (r != CUDA_SUCCESS) return r;
    return add(out, g, deps, n, spec, std::move(op));
}
SIM_EXPORT CUresult cuGraphHostNodeGetParams(CUgraphNode h, CUDA_HOST_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphHostNodeGetParams");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_HOST);
    if (p == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    p->fn = s->fn;
    p->userData = s->user_data;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphHostNodeSetParams(CUgraphNode h, const CUDA_HOST_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphHostNodeSetParams");
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return set_params(h, CU_GRAPH_NODE_TYPE_HOST, [&](NodeSpec* s, Op* op) { return host_spec(p->fn, p->userData, s, op); });
}

// A child graph node owns a copy of the graph it is given (cuda.h: "the child
// graph is cloned"); the copy is made before the parent's mutex is taken.
static CUresult add_child(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n, CUgraph child) {
    Graph* c = user_graph(child);
    if (out == nullptr || c == nullptr || child == g) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_GRAPH);
    CUresult r = clone_graph(c, nullptr, &spec->child);
    if (r != CUDA_SUCCESS) return r;
    Graph* copy = spec->child;
    r = add(out, g, deps, n, spec, [] {});
    if (r != CUDA_SUCCESS) end_graph(copy);
    return r;
}
SIM_EXPORT CUresult cuGraphAddChildGraphNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                             CUgraph child) {
    SIM_ENTER_INIT("cuGraphAddChildGraphNode");
    return add_child(out, g, deps, n, child);
}
SIM_EXPORT CUresult cuGraphChildGraphNodeGetGraph(CUgraphNode h, CUgraph* out) {
    SIM_ENTER_INIT("cuGraphChildGraphNodeGetGraph");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_GRAPH);
    if (out == nullptr || s == nullptr || s->child == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *out = handle_of<CUgraph>(s->child);  // the node's own graph: not a clone (cuda.h)
    return CUDA_SUCCESS;
}

static CUresult add_event_node(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n, CUevent e,
                               CUgraphNodeType type) {
    if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(type);
    CUresult r = event_spec(e, spec.get());
    if (r != CUDA_SUCCESS) return r;
    return add(out, g, deps, n, spec, [] {});  // an exec acts on the event at each launch
}
static CUresult get_event(CUgraphNode h, CUevent* out, CUgraphNodeType type) {
    NodeSpec* s = spec_of(h, type);
    if (out == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *out = s->event;
    return CUDA_SUCCESS;
}
static CUresult set_event(CUgraphNode h, CUevent e, CUgraphNodeType type) {
    return set_params(h, type, [&](NodeSpec* s, Op* op) {
        *op = [] {};
        return event_spec(e, s);
    });
}
SIM_EXPORT CUresult cuGraphAddEventRecordNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                              CUevent e) {
    SIM_ENTER_INIT("cuGraphAddEventRecordNode");
    return add_event_node(out, g, deps, n, e, CU_GRAPH_NODE_TYPE_EVENT_RECORD);
}
SIM_EXPORT CUresult cuGraphAddEventWaitNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n, CUevent e) {
    SIM_ENTER_INIT("cuGraphAddEventWaitNode");
    return add_event_node(out, g, deps, n, e, CU_GRAPH_NODE_TYPE_WAIT_EVENT);
}
SIM_EXPORT CUresult cuGraphEventRecordNodeGetEvent(CUgraphNode h, CUevent* out) {
    SIM_ENTER_INIT("cuGraphEventRecordNodeGetEvent");
    return get_event(h, out, CU_GRAPH_NODE_TYPE_EVENT_RECORD);
}
SIM_EXPORT CUresult cuGraphEventWaitNodeGetEvent(CUgraphNode h, CUevent* out) {
    SIM_ENTER_INIT("cuGraphEventWaitNodeGetEvent");
    return get_event(h, out, CU_GRAPH_NODE_TYPE_WAIT_EVENT);
}
SIM_EXPORT CUresult cuGraphEventRecordNodeSetEvent(CUgraphNode h, CUevent e) {
    SIM_ENTER_INIT("cuGraphEventRecordNodeSetEvent");
    return set_event(h, e, CU_GRAPH_NODE_TYPE_EVENT_RECORD);
}
SIM_EXPORT CUresult cuGraphEventWaitNodeSetEvent(CUgraphNode h, CUevent e) {
    SIM_ENTER_INIT("cuGraphEventWaitNodeSetEvent");
    return set_event(h, e, CU_GRAPH_NODE_TYPE_WAIT_EVENT);
}

// Graph memory: the allocation is made with the node (its address is known from
// then on, as cuda.h promises) and lives as long as a graph, clone or exec holds
// the node. guess: a real driver maps the memory at launch and may reuse it.
static CUresult alloc_spec(const CUmemPoolProps& props, size_t bytesize, NodeSpec* spec) {
    if (bytesize == 0 || props.allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
        props.location.type != CU_MEM_LOCATION_TYPE_DEVICE || !valid_device(props.location.id))
        return CUDA_ERROR_INVALID_VALUE;
    if (props.handleTypes != CU_MEM_HANDLE_TYPE_NONE) return CUDA_ERROR_NOT_SUPPORTED;  // cuda.h: no IPC
    CUdeviceptr dptr;
    CUresult r = cuMemAlloc_v2(&dptr, bytesize);
    if (r != CUDA_SUCCESS) return r;
    spec->allocation = std::make_shared<GraphAllocation>();
    spec->allocation->dptr = dptr;
    spec->allocation->bytesize = bytesize;
    spec->allocation->device = props.location.id;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                           CUDA_MEM_ALLOC_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphAddMemAllocNode");
    if (out == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_MEM_ALLOC);
    CUresult r = alloc_spec(p->poolProps, p->bytesize, spec.get());
    if (r != CUDA_SUCCESS) return r;
    r = add(out, g, deps, n, spec, [] {});
    if (r == CUDA_SUCCESS) p->dptr = spec->allocation->dptr;
    return r;
}
SIM_EXPORT CUresult cuGraphMemAllocNodeGetParams(CUgraphNode h, CUDA_MEM_ALLOC_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphMemAllocNodeGetParams");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_MEM_ALLOC);
    if (p == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    memset(p, 0, sizeof *p);
    p->poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    p->poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p->poolProps.location.id = s->allocation->device;
    p->bytesize = s->allocation->bytesize;
    p->dptr = s->allocation->dptr;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphAddMemFreeNode(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                          CUdeviceptr dptr) {
    SIM_ENTER_INIT("cuGraphAddMemFreeNode");
    if (out == nullptr || !is_device_alloc(dptr)) return CUDA_ERROR_INVALID_VALUE;
    auto spec = new_spec(CU_GRAPH_NODE_TYPE_MEM_FREE);
    spec->free_dptr = dptr;
    return add(out, g, deps, n, spec, [] {});  // the memory goes with the graph (see alloc_spec)
}
SIM_EXPORT CUresult cuGraphMemFreeNodeGetParams(CUgraphNode h, CUdeviceptr* out) {
    SIM_ENTER_INIT("cuGraphMemFreeNodeGetParams");
    NodeSpec* s = spec_of(h, CU_GRAPH_NODE_TYPE_MEM_FREE);
    if (out == nullptr || s == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *out = s->free_dptr;
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- what every node reports
SIM_EXPORT CUresult cuGraphNodeGetType(CUgraphNode h, CUgraphNodeType* type) {
    SIM_ENTER_INIT("cuGraphNodeGetType");
    Node* n = live_node(h);
    if (n == nullptr || type == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *type = n->type;
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphNodeGetContainingGraph(CUgraphNode h, CUgraph* out) {
    SIM_ENTER_INIT("cuGraphNodeGetContainingGraph");
    Node* n = live_node(h);
    if (n == nullptr || out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *out = handle_of<CUgraph>(n->graph);
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphNodeGetLocalId(CUgraphNode h, unsigned int* id) {
    SIM_ENTER_INIT("cuGraphNodeGetLocalId");
    Node* n = live_node(h);
    if (n == nullptr || id == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *id = n->local_id;
    return CUDA_SUCCESS;
}
// guess: the graph's id in the high 32 bits, the node's local id in the low ones
// (cuda.h only promises a number unique in the process).
SIM_EXPORT CUresult cuGraphNodeGetToolsId(CUgraphNode h, unsigned long long* id) {
    SIM_ENTER_INIT("cuGraphNodeGetToolsId");
    Node* n = live_node(h);
    if (n == nullptr || id == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *id = ((unsigned long long)n->graph->id << 32) | n->local_id;
    return CUDA_SUCCESS;
}
