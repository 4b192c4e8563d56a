// Graph construction by node and graph ids: cuGraphAddEmptyNode, cuGraphGetId
// and cuGraphExecGetId (13.1). Capture and launch live in api_capture.cpp.
// Node ids (cuGraphNodeGetLocalId/ToolsId) are not simulated: node handles
// are plain addresses that cannot be checked without knowing their graph.
#include <algorithm>

#include "state.h"

using namespace sim;

namespace {
std::atomic<unsigned> g_next_graph_id{1};

// A user graph (not one under capture: nodes join those by capture only).
Graph* user_graph(CUgraph h) {
    Graph* g = live_object<Graph>(h);
    return g != nullptr && g->user_visible ? g : nullptr;
}

// Nodes are named by their address; one that is no node of `g` is refused
// before it is read. Caller holds g->mu.
bool has_node_locked(Graph* g, CUgraphNode n) {
    return std::find(g->nodes.begin(), g->nodes.end(), reinterpret_cast<Node*>(n)) != g->nodes.end();
}
}  // namespace

namespace sim {
unsigned next_graph_id() { return g_next_graph_id.fetch_add(1, std::memory_order_relaxed); }

void add_node_locked(Graph* g, Node* n) { g->nodes.push_back(n); }
}  // namespace sim

SIM_EXPORT CUresult cuGraphAddEmptyNode(CUgraphNode* phGraphNode, CUgraph hGraph, const CUgraphNode* dependencies,
                                        size_t numDependencies) {
    SIM_ENTER_INIT("cuGraphAddEmptyNode");
    if (phGraphNode == nullptr || (dependencies == nullptr && numDependencies > 0)) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    std::vector<Node*> deps;
    for (size_t i = 0; i < numDependencies; ++i) {
        // cuda.h: dependencies "may not have any duplicate entries" and must be nodes of hGraph.
        if (!has_node_locked(g, dependencies[i])) return CUDA_ERROR_INVALID_VALUE;
        Node* d = reinterpret_cast<Node*>(dependencies[i]);
        if (std::find(deps.begin(), deps.end(), d) != deps.end()) return CUDA_ERROR_INVALID_VALUE;
        deps.push_back(d);
    }
    auto* n = new Node;
    n->op = [] {};  // an empty node only orders its dependents after its dependencies
    n->deps = std::move(deps);
    add_node_locked(g, n);
    *phGraphNode = reinterpret_cast<CUgraphNode>(n);
    return CUDA_SUCCESS;
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
