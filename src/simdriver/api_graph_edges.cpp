// A graph's shape: root nodes, edges, dependencies and dependents (with their
// edge data: only default edges are simulated), adding and removing edges,
// destroying nodes, clones (cuGraphClone, cuGraphNodeFindInClone) and
// cuGraphDebugDotPrint.
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "graph_nodes.h"

using namespace sim;

namespace {
// Writes up to *count of `list` (the size query when out is NULL, as cuda.h
// describes for every array-returning graph call). Extra slots are NULLed.
CUresult answer(const std::vector<Node*>& list, CUgraphNode* out, CUgraphEdgeData* edges, size_t* count) {
    if (count == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (out == nullptr) {
        if (edges != nullptr) return CUDA_ERROR_INVALID_VALUE;
        *count = list.size();
        return CUDA_SUCCESS;
    }
    size_t cap = *count;
    for (size_t i = 0; i < cap; ++i) {
        out[i] = i < list.size() ? reinterpret_cast<CUgraphNode>(list[i]) : nullptr;
        if (edges != nullptr) edges[i] = CUgraphEdgeData{};
    }
    *count = std::min(cap, list.size());
    return CUDA_SUCCESS;
}

CUresult dependencies(CUgraphNode h, CUgraphNode* out, CUgraphEdgeData* edges, size_t* count) {
    Node* n = live_node(h);
    if (n == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(n->graph->mu);
    return answer(n->deps, out, edges, count);
}

CUresult dependents(CUgraphNode h, CUgraphNode* out, CUgraphEdgeData* edges, size_t* count) {
    Node* n = live_node(h);
    if (n == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(n->graph->mu);
    std::vector<Node*> list;
    for (Node* m : n->graph->nodes)
        if (std::find(m->deps.begin(), m->deps.end(), n) != m->deps.end()) list.push_back(m);
    return answer(list, out, edges, count);
}

CUresult edges(CUgraph hGraph, CUgraphNode* from, CUgraphNode* to, CUgraphEdgeData* data, size_t* count) {
    if (count == nullptr || (from == nullptr) != (to == nullptr)) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    std::vector<std::pair<Node*, Node*>> all;
    for (Node* n : g->nodes)
        for (Node* d : n->deps) all.emplace_back(d, n);
    if (from == nullptr) {
        if (data != nullptr) return CUDA_ERROR_INVALID_VALUE;
        *count = all.size();
        return CUDA_SUCCESS;
    }
    size_t cap = *count;
    for (size_t i = 0; i < cap; ++i) {
        from[i] = i < all.size() ? reinterpret_cast<CUgraphNode>(all[i].first) : nullptr;
        to[i] = i < all.size() ? reinterpret_cast<CUgraphNode>(all[i].second) : nullptr;
        if (data != nullptr) data[i] = CUgraphEdgeData{};
    }
    *count = std::min(cap, all.size());
    return CUDA_SUCCESS;
}

// True when `to` can be reached from `from` along dependency edges (caller holds
// g->mu). Iterative, each node visited once: a DAG has exponentially many paths.
bool reaches(Node* from, Node* to) {
    std::vector<Node*> todo{to};
    std::unordered_set<Node*> seen{to};
    while (!todo.empty()) {
        Node* n = todo.back();
        todo.pop_back();
        if (n == from) return true;
        for (Node* d : n->deps)
            if (seen.insert(d).second) todo.push_back(d);
    }
    return false;
}

CUresult change_edges(CUgraph hGraph, const CUgraphNode* from, const CUgraphNode* to, const CUgraphEdgeData* data,
                      size_t n, bool add) {
    if (n > 0 && (from == nullptr || to == nullptr)) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = check_edge_data(data, n);
    if (r != CUDA_SUCCESS) return r;
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    // Checked in full first: a refused call changes nothing.
    std::vector<std::pair<Node*, Node*>> pairs;
    for (size_t i = 0; i < n; ++i) {
        if (!node_of(g, from[i]) || !node_of(g, to[i]) || from[i] == to[i]) return CUDA_ERROR_INVALID_VALUE;
        Node* a = reinterpret_cast<Node*>(from[i]);
        Node* b = reinterpret_cast<Node*>(to[i]);
        bool present = std::find(b->deps.begin(), b->deps.end(), a) != b->deps.end();
        // cuda.h: adding an edge that exists, or removing one that does not, is INVALID_VALUE.
        if (present == add) return CUDA_ERROR_INVALID_VALUE;
        // The same edge twice in one call: added (or removed) by the first.
        if (std::find(pairs.begin(), pairs.end(), std::make_pair(a, b)) != pairs.end()) return CUDA_ERROR_INVALID_VALUE;
        pairs.emplace_back(a, b);
    }
    for (auto& p : pairs) {
        auto& deps = p.second->deps;
        if (add) {
            // A cycle would make the graph impossible to run: refused (and undone).
            if (reaches(p.second, p.first)) {
                for (auto& q : pairs) {
                    if (&q == &p) break;
                    auto& d = q.second->deps;
                    d.erase(std::remove(d.begin(), d.end(), q.first), d.end());
                }
                return CUDA_ERROR_INVALID_VALUE;
            }
            deps.push_back(p.first);
        } else {
            deps.erase(std::remove(deps.begin(), deps.end(), p.first), deps.end());
        }
    }
    return CUDA_SUCCESS;
}

const char* type_name(CUgraphNodeType t) {
    switch (t) {
        case CU_GRAPH_NODE_TYPE_KERNEL: return "KERNEL";
        case CU_GRAPH_NODE_TYPE_MEMCPY: return "MEMCPY";
        case CU_GRAPH_NODE_TYPE_MEMSET: return "MEMSET";
        case CU_GRAPH_NODE_TYPE_HOST: return "HOST";
        case CU_GRAPH_NODE_TYPE_GRAPH: return "GRAPH";
        case CU_GRAPH_NODE_TYPE_EMPTY: return "EMPTY";
        case CU_GRAPH_NODE_TYPE_WAIT_EVENT: return "WAIT_EVENT";
        case CU_GRAPH_NODE_TYPE_EVENT_RECORD: return "EVENT_RECORD";
        case CU_GRAPH_NODE_TYPE_MEM_ALLOC: return "MEM_ALLOC";
        case CU_GRAPH_NODE_TYPE_MEM_FREE: return "MEM_FREE";
        case CU_GRAPH_NODE_TYPE_CONDITIONAL: return "CONDITIONAL";
        default: return "NODE";
    }
}

// One graph as a DOT cluster; child graphs and bodies nest inside it. Caller holds g->mu.
void dot_graph(FILE* f, Graph* g, const std::string& prefix) {
    for (Node* n : g->nodes) {
        std::string name = prefix + std::to_string(n->local_id);
        std::fprintf(f, "  \"%s\" [label=\"%s %u\"];\n", name.c_str(), type_name(n->type), n->local_id);
        for (Node* d : n->deps)
            std::fprintf(f, "  \"%s%u\" -> \"%s\";\n", prefix.c_str(), d->local_id, name.c_str());
        std::vector<Graph*> inner;
        if (n->spec != nullptr && n->spec->child != nullptr) inner.push_back(n->spec->child);
        if (n->spec != nullptr) inner.insert(inner.end(), n->spec->bodies.begin(), n->spec->bodies.end());
        for (size_t i = 0; i < inner.size(); ++i) {
            std::lock_guard<std::mutex> lk(inner[i]->mu);
            std::string sub = name + "_" + std::to_string(i) + "_";
            std::fprintf(f, "  subgraph \"cluster_%s\" {\n  label=\"graph %u\";\n", sub.c_str(), inner[i]->id);
            dot_graph(f, inner[i], sub);
            std::fprintf(f, "  }\n");
        }
    }
}
}  // namespace

// ---------------------------------------------------------------- edge data, clones
namespace sim {
CUresult check_edge_data(const CUgraphEdgeData* data, size_t n) {
    if (data == nullptr) return CUDA_SUCCESS;
    for (size_t i = 0; i < n; ++i) {
        const auto& e = data[i];
        if (e.from_port != 0 || e.to_port != 0 || e.type != CU_GRAPH_DEPENDENCY_TYPE_DEFAULT) return CUDA_ERROR_NOT_SUPPORTED;
        for (unsigned char b : e.reserved)
            if (b != 0) return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

CUresult clone_graph(Graph* from, Node* owner, Graph** out) {
    auto* g = make_object<Graph>();
    if (g == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    g->user_visible = true;
    g->owner = owner;
    {
        std::lock_guard<std::mutex> lk(from->mu);
        std::unordered_map<const Node*, Node*> copies;
        std::lock_guard<std::mutex> lg(g->mu);
        for (Node* n : from->nodes) {
            auto* c = new Node;
            c->type = n->type;
            c->op = n->op;
            c->green_id = n->green_id;
            c->cloned_from = n->uid;
            if (n->spec != nullptr) {
                c->spec = std::make_shared<NodeSpec>(*n->spec);
                CUresult r = CUDA_SUCCESS;
                if (n->spec->child != nullptr) r = clone_graph(n->spec->child, c, &c->spec->child);
                for (Graph* b : n->spec->bodies) {
                    if (r != CUDA_SUCCESS) break;
                    Graph* copy;
                    r = clone_graph(b, c, &copy);
                    if (r == CUDA_SUCCESS) {
                        c->spec->bodies.push_back(copy);
                        c->body_handles.push_back(handle_of<CUgraph>(copy));  // phGraph_out
                    }
                }
                if (r != CUDA_SUCCESS) {
                    end_owned_graphs(c);
                    delete c;
                    for (Node* m : g->nodes) unregister_node(m);
                    g->alive.store(false);
                    reclaim_object(g);
                    return r;
                }
            }
            for (Node* d : n->deps) c->deps.push_back(copies[d]);
            copies[n] = c;
            add_node_locked(g, c);
        }
        g->next_local_id = std::max(g->next_local_id, from->next_local_id);
        // The clone keeps the user objects alive too (its host nodes may use them).
        g->user_refs.retain_all_of(from->user_refs);
    }
    *out = g;
    return CUDA_SUCCESS;
}
}  // namespace sim

SIM_EXPORT CUresult cuGraphClone(CUgraph* out, CUgraph original) {
    SIM_ENTER_INIT("cuGraphClone");
    Graph* g = user_graph(original);
    if (out == nullptr || g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Graph* copy;
    CUresult r = clone_graph(g, nullptr, &copy);
    if (r != CUDA_SUCCESS) return r;
    g_live[kLiveGraph].fetch_add(1, std::memory_order_relaxed);
    *out = handle_of<CUgraph>(copy);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphNodeFindInClone(CUgraphNode* out, CUgraphNode original, CUgraph clone) {
    SIM_ENTER_INIT("cuGraphNodeFindInClone");
    Graph* g = user_graph(clone);
    Node* o = live_node(original);
    if (out == nullptr || g == nullptr || o == nullptr) return CUDA_ERROR_INVALID_VALUE;
    unsigned long long uid = o->uid;
    std::lock_guard<std::mutex> lk(g->mu);
    for (Node* n : g->nodes)
        if (n->cloned_from == uid) {
            *out = reinterpret_cast<CUgraphNode>(n);
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_INVALID_VALUE;
}

// ---------------------------------------------------------------- shape
SIM_EXPORT CUresult cuGraphGetRootNodes(CUgraph hGraph, CUgraphNode* out, size_t* count) {
    SIM_ENTER_INIT("cuGraphGetRootNodes");
    Graph* g = user_graph(hGraph);
    if (g == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(g->mu);
    std::vector<Node*> roots;
    for (Node* n : g->nodes)
        if (n->deps.empty()) roots.push_back(n);
    return answer(roots, out, nullptr, count);
}

SIM_EXPORT CUresult cuGraphGetEdges_v2(CUgraph g, CUgraphNode* from, CUgraphNode* to, CUgraphEdgeData* data,
                                       size_t* count) {
    SIM_ENTER_INIT("cuGraphGetEdges");
    return edges(g, from, to, data, count);
}
SIM_EXPORT CUresult cuGraphNodeGetDependencies_v2(CUgraphNode h, CUgraphNode* out, CUgraphEdgeData* data,
                                                  size_t* count) {
    SIM_ENTER_INIT("cuGraphNodeGetDependencies");
    return dependencies(h, out, data, count);
}
SIM_EXPORT CUresult cuGraphNodeGetDependentNodes_v2(CUgraphNode h, CUgraphNode* out, CUgraphEdgeData* data,
                                                    size_t* count) {
    SIM_ENTER_INIT("cuGraphNodeGetDependentNodes");
    return dependents(h, out, data, count);
}
SIM_EXPORT CUresult cuGraphAddDependencies_v2(CUgraph g, const CUgraphNode* from, const CUgraphNode* to,
                                              const CUgraphEdgeData* data, size_t n) {
    SIM_ENTER_INIT("cuGraphAddDependencies");
    return change_edges(g, from, to, data, n, true);
}
SIM_EXPORT CUresult cuGraphRemoveDependencies_v2(CUgraph g, const CUgraphNode* from, const CUgraphNode* to,
                                                 const CUgraphEdgeData* data, size_t n) {
    SIM_ENTER_INIT("cuGraphRemoveDependencies");
    return change_edges(g, from, to, data, n, false);
}

// The pre-12.3 ABIs, without edge data (reached through cuGetProcAddress).
namespace sim {
CUresult graph_get_edges_v1(CUgraph g, CUgraphNode* from, CUgraphNode* to, size_t* count) {
    SIM_ENTER_INIT("cuGraphGetEdges");
    return edges(g, from, to, nullptr, count);
}
CUresult node_get_dependencies_v1(CUgraphNode h, CUgraphNode* out, size_t* count) {
    SIM_ENTER_INIT("cuGraphNodeGetDependencies");
    return dependencies(h, out, nullptr, count);
}
CUresult node_get_dependents_v1(CUgraphNode h, CUgraphNode* out, size_t* count) {
    SIM_ENTER_INIT("cuGraphNodeGetDependentNodes");
    return dependents(h, out, nullptr, count);
}
CUresult graph_add_dependencies_v1(CUgraph g, const CUgraphNode* from, const CUgraphNode* to, size_t n) {
    SIM_ENTER_INIT("cuGraphAddDependencies");
    return change_edges(g, from, to, nullptr, n, true);
}
CUresult graph_remove_dependencies_v1(CUgraph g, const CUgraphNode* from, const CUgraphNode* to, size_t n) {
    SIM_ENTER_INIT("cuGraphRemoveDependencies");
    return change_edges(g, from, to, nullptr, n, false);
}
}  // namespace sim

// cuda.h: destroying a node also removes its edges. The node is freed at once
// (its handle is stale from then on); execs keep copies of what they run.
SIM_EXPORT CUresult cuGraphDestroyNode(CUgraphNode h) {
    SIM_ENTER_INIT("cuGraphDestroyNode");
    Node* n = live_node(h);
    if (n == nullptr || !n->graph->user_visible) return CUDA_ERROR_INVALID_VALUE;
    Graph* g = n->graph;
    {
        std::lock_guard<std::mutex> lk(g->mu);
        // guess: not while a capture adds to the graph (its streams' next nodes
        // may depend on this one; cuda.h does not say).
        if (g->capturing != nullptr) return CUDA_ERROR_INVALID_VALUE;
        // Another thread destroying the same node got here first.
        if (!unregister_node(n)) return CUDA_ERROR_INVALID_VALUE;
        g->nodes.erase(std::remove(g->nodes.begin(), g->nodes.end(), n), g->nodes.end());
        for (Node* m : g->nodes) m->deps.erase(std::remove(m->deps.begin(), m->deps.end(), n), m->deps.end());
        // Freed with the graph, not now: its address (the handle) is not handed to
        // a new node meanwhile, so a stale handle stays refused.
        g->destroyed_nodes.push_back(n);
    }
    end_owned_graphs(n);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGraphDebugDotPrint(CUgraph hGraph, const char* path, unsigned int flags) {
    SIM_ENTER_INIT("cuGraphDebugDotPrint");
    (void)flags;  // every flag only asks for more detail; the simulator writes what it has
    Graph* g = user_graph(hGraph);
    if (g == nullptr || path == nullptr) return CUDA_ERROR_INVALID_VALUE;
    FILE* f = std::fopen(path, "w");
    if (f == nullptr) return CUDA_ERROR_OPERATING_SYSTEM;
    std::fprintf(f, "digraph dot {\n  label=\"graph %u\";\n", g->id);
    {
        std::lock_guard<std::mutex> lk(g->mu);
        dot_graph(f, g, "n");
    }
    std::fprintf(f, "}\n");
    return std::fclose(f) == 0 ? CUDA_SUCCESS : CUDA_ERROR_OPERATING_SYSTEM;
}
