// Graph and exec ids (13.1), and the generic node calls: cuGraphAddNode,
// cuGraphNodeGetParams / SetParams, cuGraphExecNodeSetParams and the per-type
// exec updates, conditional nodes (their bodies are graphs the node owns).
#include <algorithm>
#include <cstring>

#include "graph_nodes.h"
#include "kernels.h"

using namespace sim;

namespace {
std::atomic<unsigned> g_next_graph_id{1};
}  // namespace

namespace sim {
unsigned next_graph_id() { return g_next_graph_id.fetch_add(1, std::memory_order_relaxed); }

void add_node_locked(Graph* g, Node* n) {
    n->graph = g;
    n->local_id = g->next_local_id++;
    g->nodes.push_back(n);
    register_node(n);
}

// Shared with api_graph_nodes.cpp: the per-type parameter checks.
CUresult kernel_node_spec(const CUDA_KERNEL_NODE_PARAMS* p, NodeSpec* spec, Op* op);
CUresult memset_node_spec(const CUDA_MEMSET_NODE_PARAMS* p, CUcontext ctx, NodeSpec* spec, Op* op);
CUresult memcpy_node_spec(const CUDA_MEMCPY3D* p, CUcontext ctx, NodeSpec* spec, Op* op);
CUresult host_node_spec(const CUDA_HOST_NODE_PARAMS* p, NodeSpec* spec, Op* op);
CUresult exec_set_node(CUgraphExec hExec, CUgraphNode h, CUgraphNodeType type,
                       const std::function<CUresult(NodeSpec*, Op*)>& build);
}  // namespace sim

namespace {
CUresult event_of(CUevent e, NodeSpec* spec, Op* op) {
    if (live_event(e) == nullptr) return CUDA_ERROR_INVALID_VALUE;
    spec->event = e;
    *op = [] {};
    return CUDA_SUCCESS;
}

// The spec and op of a CUgraphNodeParams (everything but the graphs a node owns).
CUresult spec_from(CUgraphNodeParams* p, NodeSpec* spec, Op* op) {
    for (int r : p->reserved0)
        if (r != 0) return CUDA_ERROR_INVALID_VALUE;
    if (p->reserved2 != 0) return CUDA_ERROR_INVALID_VALUE;
    spec->type = p->type;
    switch (p->type) {
        case CU_GRAPH_NODE_TYPE_EMPTY:
            *op = [] {};
            return CUDA_SUCCESS;
        case CU_GRAPH_NODE_TYPE_KERNEL: {
            // v3 has v2's layout (cuda.h); the simulator reads the fields they share.
            CUDA_KERNEL_NODE_PARAMS k;
            static_assert(sizeof(CUDA_KERNEL_NODE_PARAMS) == sizeof(CUDA_KERNEL_NODE_PARAMS_v3), "kernel params");
            memcpy(&k, &p->kernel, sizeof k);
            return kernel_node_spec(&k, spec, op);
        }
        case CU_GRAPH_NODE_TYPE_MEMSET: {
            CUDA_MEMSET_NODE_PARAMS m{};
            m.dst = p->memset.dst;
            m.pitch = p->memset.pitch;
            m.value = p->memset.value;
            m.elementSize = p->memset.elementSize;
            m.width = p->memset.width;
            m.height = p->memset.height;
            return memset_node_spec(&m, p->memset.ctx, spec, op);
        }
        case CU_GRAPH_NODE_TYPE_MEMCPY:
            if (p->memcpy.flags != 0 || p->memcpy.reserved != 0) return CUDA_ERROR_INVALID_VALUE;
            return memcpy_node_spec(&p->memcpy.copyParams, p->memcpy.copyCtx, spec, op);
        case CU_GRAPH_NODE_TYPE_HOST: {
            if (p->host.syncMode > CU_HOST_TASK_SPINWAIT) return CUDA_ERROR_INVALID_VALUE;
            CUDA_HOST_NODE_PARAMS h{p->host.fn, p->host.userData};
            return host_node_spec(&h, spec, op);
        }
        case CU_GRAPH_NODE_TYPE_EVENT_RECORD:
            return event_of(p->eventRecord.event, spec, op);
        case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
            return event_of(p->eventWait.event, spec, op);
        default:
            return CUDA_ERROR_NOT_SUPPORTED;
    }
}

// What a conditional node needs (cuda.h): a handle of this graph, a type and a size
// (IF: 1 or 2, WHILE: 1, SWITCH: 1 or more); the node makes its bodies.
CUresult conditional_spec(Graph* g, CUDA_CONDITIONAL_NODE_PARAMS* c, NodeSpec* spec) {
    if (!conditional_handle_of(g, c->handle)) return CUDA_ERROR_INVALID_VALUE;
    bool size_ok = (c->type == CU_GRAPH_COND_TYPE_IF && (c->size == 1 || c->size == 2)) ||
                   (c->type == CU_GRAPH_COND_TYPE_WHILE && c->size == 1) ||
                   (c->type == CU_GRAPH_COND_TYPE_SWITCH && c->size >= 1);
    if (!size_ok) return CUDA_ERROR_INVALID_VALUE;
    spec->type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    spec->cond = c->handle;
    spec->cond_type = c->type;
    for (unsigned i = 0; i < c->size; ++i) {
        auto* b = make_object<Graph>();
        if (b == nullptr) {
            for (Graph* made : spec->bodies) end_graph(made);
            spec->bodies.clear();
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        b->user_visible = true;
        spec->bodies.push_back(b);
    }
    return CUDA_SUCCESS;
}

CUresult add_node(CUgraphNode* out, CUgraph hGraph, const CUgraphNode* deps, const CUgraphEdgeData* edges, size_t n,
                  CUgraphNodeParams* p) {
    if (out == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = check_edge_data(edges, n); r != CUDA_SUCCESS) return r;
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto spec = std::make_shared<NodeSpec>();
    Op op;
    CUresult r;
    if (p->type == CU_GRAPH_NODE_TYPE_GRAPH) {
        Graph* child = user_graph(p->graph.graph);
        if (child == nullptr || child == g) return CUDA_ERROR_INVALID_VALUE;
        if (p->graph.ownership == CU_GRAPH_CHILD_GRAPH_OWNERSHIP_MOVE) return CUDA_ERROR_NOT_SUPPORTED;
        spec->type = CU_GRAPH_NODE_TYPE_GRAPH;
        r = clone_graph(child, nullptr, &spec->child);
        op = [] {};
    } else if (p->type == CU_GRAPH_NODE_TYPE_CONDITIONAL) {
        r = conditional_spec(g, &p->conditional, spec.get());
        op = [] {};
    } else {
        r = spec_from(p, spec.get(), &op);
    }
    if (r != CUDA_SUCCESS) return r;
    std::lock_guard<std::mutex> lk(g->mu);
    std::vector<Node*> list;
    r = collect_deps(g, deps, n, &list);
    Node* node = nullptr;
    if (r == CUDA_SUCCESS) r = make_node(g, spec, std::move(list), &node);
    if (r != CUDA_SUCCESS) {
        if (spec->child != nullptr) end_graph(spec->child);
        for (Graph* b : spec->bodies) end_graph(b);
        return r;
    }
    node->op = std::move(op);
    if (p->type == CU_GRAPH_NODE_TYPE_CONDITIONAL) {
        // cuda.h: phGraph_out is "CUDA-owned", valid for the node's lifetime.
        node->body_handles.clear();
        for (Graph* b : spec->bodies) node->body_handles.push_back(handle_of<CUgraph>(b));
        p->conditional.phGraph_out = node->body_handles.data();
    }
    *out = reinterpret_cast<CUgraphNode>(node);
    return CUDA_SUCCESS;
}
}  // namespace

SIM_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode* out, CUgraph g, const CUgraphNode* deps,
                                      const CUgraphEdgeData* edges, size_t n, CUgraphNodeParams* p) {
    SIM_ENTER_INIT("cuGraphAddNode");
    return add_node(out, g, deps, edges, n, p);
}
namespace sim {
CUresult graph_add_node_v1(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n, CUgraphNodeParams* p) {
    SIM_ENTER_INIT("cuGraphAddNode");
    return add_node(out, g, deps, nullptr, n, p);
}
}  // namespace sim

// cuGraphNodeGetParams (13.2): what the node was made with, by type.
SIM_EXPORT CUresult cuGraphNodeGetParams(CUgraphNode h, CUgraphNodeParams* p) {
    SIM_ENTER_INIT("cuGraphNodeGetParams");
    Node* n = live_node(h);
    if (n == nullptr || p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    memset(p, 0, sizeof *p);
    p->type = n->type;
    const NodeSpec* s = n->spec.get();
    if (s == nullptr) return n->type == CU_GRAPH_NODE_TYPE_EMPTY ? CUDA_SUCCESS : CUDA_ERROR_NOT_SUPPORTED;
    switch (n->type) {
        case CU_GRAPH_NODE_TYPE_KERNEL:
            p->kernel.func = s->func != nullptr ? handle_of<CUfunction>(s->func) : nullptr;
            p->kernel.gridDimX = s->grid[0], p->kernel.gridDimY = s->grid[1], p->kernel.gridDimZ = s->grid[2];
            p->kernel.blockDimX = s->block[0], p->kernel.blockDimY = s->block[1], p->kernel.blockDimZ = s->block[2];
            p->kernel.sharedMemBytes = s->shared;
            p->kernel.kernelParams = s->arg_ptrs.empty() ? nullptr : const_cast<void**>(s->arg_ptrs.data());
            p->kernel.kern = s->kern;
            p->kernel.ctx = s->ctx;
            break;
        case CU_GRAPH_NODE_TYPE_MEMSET:
            p->memset.dst = s->memset.dst;
            p->memset.pitch = s->memset.pitch;
            p->memset.value = s->memset.value;
            p->memset.elementSize = s->memset.elementSize;
            p->memset.width = s->memset.width;
            p->memset.height = s->memset.height;
            p->memset.ctx = s->ctx;
            break;
        case CU_GRAPH_NODE_TYPE_MEMCPY:
            p->memcpy.copyCtx = s->ctx;
            p->memcpy.copyParams = s->copy;
            break;
        case CU_GRAPH_NODE_TYPE_HOST:
            p->host.fn = s->fn;
            p->host.userData = s->user_data;
            break;
        case CU_GRAPH_NODE_TYPE_GRAPH:
            p->graph.graph = s->child != nullptr ? handle_of<CUgraph>(s->child) : nullptr;
            p->graph.ownership = CU_GRAPH_CHILD_GRAPH_OWNERSHIP_INVALID;  // cuda.h: set when queried
            break;
        case CU_GRAPH_NODE_TYPE_EVENT_RECORD: p->eventRecord.event = s->event; break;
        case CU_GRAPH_NODE_TYPE_WAIT_EVENT: p->eventWait.event = s->event; break;
        case CU_GRAPH_NODE_TYPE_MEM_ALLOC:
            p->alloc.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
            p->alloc.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
            p->alloc.poolProps.location.id = s->allocation->device;
            p->alloc.bytesize = s->allocation->bytesize;
            p->alloc.dptr = s->allocation->dptr;
            break;
        case CU_GRAPH_NODE_TYPE_MEM_FREE: p->free.dptr = s->free_dptr; break;
        case CU_GRAPH_NODE_TYPE_CONDITIONAL:
            p->conditional.handle = s->cond;
            p->conditional.type = s->cond_type;
            p->conditional.size = (unsigned)s->bodies.size();
            p->conditional.phGraph_out = n->body_handles.empty() ? nullptr : const_cast<CUgraph*>(n->body_handles.data());
            break;
        default: return CUDA_ERROR_NOT_SUPPORTED;
    }
    return CUDA_SUCCESS;
}

// cuGraphNodeSetParams: the node keeps its type; the parameters a node of that
// type can change (not a child graph's graph, not a conditional's bodies).
static CUresult node_set_params(CUgraphNode h, CUgraphNodeParams* p) {
    Node* n = live_node(h);
    if (n == nullptr || p == nullptr || p->type != n->type) return CUDA_ERROR_INVALID_VALUE;
    if (n->type == CU_GRAPH_NODE_TYPE_GRAPH || n->type == CU_GRAPH_NODE_TYPE_CONDITIONAL ||
        n->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC || n->type == CU_GRAPH_NODE_TYPE_MEM_FREE)
        return CUDA_ERROR_NOT_SUPPORTED;
    auto spec = std::make_shared<NodeSpec>();
    Op op;
    CUresult r = spec_from(p, spec.get(), &op);
    if (r != CUDA_SUCCESS) return r;
    std::lock_guard<std::mutex> lk(n->graph->mu);
    n->spec = std::move(spec);
    n->op = std::move(op);
    return CUDA_SUCCESS;
}
SIM_EXPORT CUresult cuGraphNodeSetParams_v2(CUgraphNode h, CUgraphNodeParams* p) {
    SIM_ENTER_INIT("cuGraphNodeSetParams");
    return node_set_params(h, p);
}
namespace sim {
CUresult graph_node_set_params_v1(CUgraphNode h, CUgraphNodeParams* p) {
    SIM_ENTER_INIT("cuGraphNodeSetParams");
    return node_set_params(h, p);
}
}  // namespace sim

// ---------------------------------------------------------------- exec node updates
SIM_EXPORT CUresult cuGraphExecNodeSetParams(CUgraphExec e, CUgraphNode h, CUgraphNodeParams* p) {
    SIM_ENTER_INIT("cuGraphExecNodeSetParams");
    Node* n = live_node(h);
    if (n == nullptr || p == nullptr || p->type != n->type) return CUDA_ERROR_INVALID_VALUE;
    return exec_set_node(e, h, n->type, [p](NodeSpec* s, Op* op) { return spec_from(p, s, op); });
}
SIM_EXPORT CUresult cuGraphExecKernelNodeSetParams_v2(CUgraphExec e, CUgraphNode h, const CUDA_KERNEL_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphExecKernelNodeSetParams");
    return exec_set_node(e, h, CU_GRAPH_NODE_TYPE_KERNEL, [p](NodeSpec* s, Op* op) { return kernel_node_spec(p, s, op); });
}
SIM_EXPORT CUresult cuGraphExecMemsetNodeSetParams(CUgraphExec e, CUgraphNode h, const CUDA_MEMSET_NODE_PARAMS* p,
                                                   CUcontext ctx) {
    SIM_ENTER_INIT("cuGraphExecMemsetNodeSetParams");
    return exec_set_node(e, h, CU_GRAPH_NODE_TYPE_MEMSET,
                         [p, ctx](NodeSpec* s, Op* op) { return memset_node_spec(p, ctx, s, op); });
}
SIM_EXPORT CUresult cuGraphExecMemcpyNodeSetParams(CUgraphExec e, CUgraphNode h, const CUDA_MEMCPY3D* p,
                                                   CUcontext ctx) {
    SIM_ENTER_INIT("cuGraphExecMemcpyNodeSetParams");
    return exec_set_node(e, h, CU_GRAPH_NODE_TYPE_MEMCPY,
                         [p, ctx](NodeSpec* s, Op* op) { return memcpy_node_spec(p, ctx, s, op); });
}
SIM_EXPORT CUresult cuGraphExecHostNodeSetParams(CUgraphExec e, CUgraphNode h, const CUDA_HOST_NODE_PARAMS* p) {
    SIM_ENTER_INIT("cuGraphExecHostNodeSetParams");
    return exec_set_node(e, h, CU_GRAPH_NODE_TYPE_HOST, [p](NodeSpec* s, Op* op) { return host_node_spec(p, s, op); });
}
SIM_EXPORT CUresult cuGraphExecEventRecordNodeSetEvent(CUgraphExec e, CUgraphNode h, CUevent ev) {
    SIM_ENTER_INIT("cuGraphExecEventRecordNodeSetEvent");
    return exec_set_node(e, h, CU_GRAPH_NODE_TYPE_EVENT_RECORD, [ev](NodeSpec* s, Op* op) { return event_of(ev, s, op); });
}
SIM_EXPORT CUresult cuGraphExecEventWaitNodeSetEvent(CUgraphExec e, CUgraphNode h, CUevent ev) {
    SIM_ENTER_INIT("cuGraphExecEventWaitNodeSetEvent");
    return exec_set_node(e, h, CU_GRAPH_NODE_TYPE_WAIT_EVENT, [ev](NodeSpec* s, Op* op) { return event_of(ev, s, op); });
}
// The child graph's nodes run as the node's op: the given graph replaces them
// (cuda.h: it must have the topology of the node's graph; the simulator checks
// the node count).
SIM_EXPORT CUresult cuGraphExecChildGraphNodeSetParams(CUgraphExec e, CUgraphNode h, CUgraph child) {
    SIM_ENTER_INIT("cuGraphExecChildGraphNodeSetParams");
    Graph* c = user_graph(child);
    Node* n = live_node(h);
    if (c == nullptr || n == nullptr || n->type != CU_GRAPH_NODE_TYPE_GRAPH || n->spec == nullptr ||
        n->spec->child == nullptr)
        return CUDA_ERROR_INVALID_VALUE;
    return exec_set_child_graph(e, h, c);
}

SIM_EXPORT CUresult cuGraphGetId(CUgraph hGraph, unsigned int* graphId) {
    SIM_ENTER_INIT("cuGraphGetId");
    if (graphId == nullptr) return CUDA_ERROR_INVALID_VALUE;
    // A graph under capture has an id too (cuStreamGetCaptureInfo hands it out).
    Graph* g = live_object<Graph>(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *graphId = g->id;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphExecGetId(CUgraphExec hGraphExec, unsigned int* graphId) {
    SIM_ENTER_INIT("cuGraphExecGetId");
    if (graphId == nullptr) return CUDA_ERROR_INVALID_VALUE;
    GraphExec* e = live_object<GraphExec>(hGraphExec);
    if (e == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *graphId = e->id;
    return CUDA_SUCCESS;
}
