"""Graph nodes through cuda.bindings, for the driver-level graph tests: parameter structs and
the calls whose ABI differs between cuda-bindings 13 (edge data, the 12.3 ABI) and 12.9."""

from support.simhelpers import driver as cu


def memset_params(ptr, value, n, element=1):
    """One row of ``n`` elements of ``element`` bytes set to ``value`` at ``ptr``."""
    p = cu.CUDA_MEMSET_NODE_PARAMS()
    p.dst = int(ptr)
    p.value = value
    p.elementSize = element
    p.width = n
    p.height = 1
    return p


def conditional_params(handle, kind, size):
    """A conditional node's parameters: ``kind`` a CUgraphConditionalNodeType."""
    p = cu.CUgraphNodeParams()
    p.type = cu.CUgraphNodeType.CU_GRAPH_NODE_TYPE_CONDITIONAL
    p.conditional.handle = handle
    p.conditional.type = kind
    p.conditional.size = size
    return p


def add_node(g, params):
    """cuGraphAddNode of a root node (the driver's result tuple)."""
    try:
        return cu.cuGraphAddNode(g, None, None, 0, params)
    except TypeError:  # cuda-bindings 12.9: no edge data
        return cu.cuGraphAddNode(g, None, 0, params)


def change_edges(change, g, pairs):
    """cuGraphAddDependencies or cuGraphRemoveDependencies of ``(from, to)`` pairs (the
    driver's result tuple)."""
    froms, tos = [a for a, _ in pairs], [b for _, b in pairs]
    try:
        return change(g, froms, tos, None, len(pairs))
    except TypeError:  # cuda-bindings 12.9: no edge data
        return change(g, froms, tos, len(pairs))
