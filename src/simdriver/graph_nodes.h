// Graph nodes by type: what a node was made with (NodeSpec), how its operation
// is built from that, and the lookups every node API shares. The node APIs
// are in api_graph_nodes.cpp (add, get and set parameters), api_graph_edges.cpp
// (edges, destroy, clone, dot print) and api_graph_exec.cpp (instantiation,
// exec updates, conditional handles).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "state.h"

namespace sim {

struct Function;

// A graph allocation (cuGraphAddMemAllocNode): made with the node, freed when
// the last graph, clone or exec holding it goes (a guess; see docs/simulator.md).
struct GraphAllocation {
    CUdeviceptr dptr = 0;
    size_t bytesize = 0;
    int device = 0;
    ~GraphAllocation();
};

struct NodeSpec {
    CUgraphNodeType type = CU_GRAPH_NODE_TYPE_EMPTY;
    // kernel: the arguments are copied, `arg_ptrs` point into `arg_bytes`
    Function* func = nullptr;
    CUkernel kern = nullptr;
    unsigned grid[3] = {1, 1, 1}, block[3] = {1, 1, 1}, shared = 0;
    CUcontext ctx = nullptr;             // kernel, memset, memcpy: the context it runs in
    std::vector<unsigned char> arg_bytes;
    std::vector<size_t> arg_offsets;
    std::vector<void*> arg_ptrs;
    // memset
    CUDA_MEMSET_NODE_PARAMS memset{};
    // memcpy (linear memory only)
    CUDA_MEMCPY3D copy{};
    // host
    CUhostFn fn = nullptr;
    void* user_data = nullptr;
    // child graph: the node's own copy of the graph it was given
    Graph* child = nullptr;
    // event record / wait
    CUevent event = nullptr;
    // memory alloc / free
    std::shared_ptr<GraphAllocation> allocation;
    CUdeviceptr free_dptr = 0;
    // conditional: the bodies are graphs the node owns
    CUgraphConditionalHandle cond = 0;
    CUgraphConditionalNodeType cond_type = CU_GRAPH_COND_TYPE_IF;
    std::vector<Graph*> bodies;

    NodeSpec() = default;
    NodeSpec(const NodeSpec& o);          // arg_ptrs re-pointed at the copy's bytes
    NodeSpec& operator=(const NodeSpec&) = delete;
    void set_args(const std::vector<size_t>& sizes, void* const* params);
};

// The graph node named by h, or nullptr: looked up in the registry of live
// nodes before anything is read through it.
Node* live_node(CUgraphNode h);
// The graph node h when it belongs to g.
bool node_of(Graph* g, CUgraphNode h);
void register_node(Node* n);
// False when n was not registered (already destroyed).
bool unregister_node(Node* n);

// A live graph: the user's, a node's own, or one under capture.
Graph* user_graph(CUgraph h);
// Edge data: NULL, or only default edges. guess: any other (programmatic
// dependencies, ports) is NOT_SUPPORTED.
CUresult check_edge_data(const CUgraphEdgeData* data, size_t n);
// Checks a dependency list: nodes of g, no duplicates (cuda.h). Caller holds g->mu.
CUresult collect_deps(Graph* g, const CUgraphNode* deps, size_t n, std::vector<Node*>* out);
// Makes a node from its spec (builds the op; a child graph and conditional
// bodies are made here). Caller holds g->mu.
CUresult make_node(Graph* g, std::shared_ptr<NodeSpec> spec, std::vector<Node*> deps, Node** out);
// (Re)builds a node's op from its spec; validates the parameters.
CUresult build_op(NodeSpec* spec, Op* out);
// A copy of graph `from` that `owner` owns (child graph nodes, clones of bodies).
CUresult clone_graph(Graph* from, Node* owner, Graph** out);
// Ends the graphs a node owns (child graph, conditional bodies).
void end_owned_graphs(Node* n);

// Memory operations shared with api_memory.cpp (validate now, run later).
CUresult memset_op(const CUDA_MEMSET_NODE_PARAMS& p, Op* op);
CUresult copy3d_op(const CUDA_MEMCPY3D& p, Op* op);
// The built op of a kernel launch (api_kernels.cpp): validated, arguments
// copied, SM ids of the context it will run in.
CUresult kernel_op(Function* f, const unsigned grid[3], const unsigned block[3], unsigned shared, void** params,
                   void** extra, Context* ctx, GreenCtx* green, Op* out, NodeSpec* spec);
// Function of a launch (a CUfunction, or a CUkernel cast to one).
Function* launchable(CUfunction h);

// cuGraphExecChildGraphNodeSetParams: the exec's node made from child graph
// node h runs the nodes of `child` from now on (api_graph_exec.cpp).
CUresult exec_set_child_graph(CUgraphExec hExec, CUgraphNode h, Graph* child);
// Conditional handles (api_graph_exec.cpp): the values a launch sees.
bool conditional_handle_of(Graph* g, CUgraphConditionalHandle h);
unsigned conditional_value(CUgraphConditionalHandle h);

}  // namespace sim
