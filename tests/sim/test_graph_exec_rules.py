"""Graph execs and captures into graphs, driver-level: launches of one exec are ordered, a
refused launch leaves its events alone, a launch captured into another graph starts its
conditional handles at their defaults at every replay, exec updates and node lookups by
node identity, edges added once, capture dependencies replaced with SET, and a graph a
capture adds to kept until the capture ends. Each rule is cuda.h's (or a guess named in
docs/simulator.md, "Graphs by node"); tests marked ``gpu`` need no introspection.
"""

import ctypes
import threading
import time

import pytest

import greenres.sim as sim
from greenres.sim.kernels import register_kernel, set_conditional

from support.graphhelpers import add_node, change_edges, conditional_params, memset_params
from support.simhelpers import E, check, event, node_count, run_python, stream
from support.simhelpers import driver as cu

PTX = b".version 8.0\n.target sm_90\n.address_size 64\n"
GLOBAL = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL


def kernel(name, params=b""):
    mod = check(cu.cuModuleLoadData(PTX + b".visible .entry %s(%s) { ret; }\n" % (name, params)))
    return mod, check(cu.cuModuleGetFunction(mod, name))


def kernel_node(g, fn, deps=()):
    kp = cu.CUDA_KERNEL_NODE_PARAMS()
    kp.func = fn
    kp.gridDimX = kp.gridDimY = kp.gridDimZ = 1
    kp.blockDimX = kp.blockDimY = kp.blockDimZ = 1
    return check(cu.cuGraphAddKernelNode(g, list(deps), len(deps), kp))


def memset_node(g, ptr, value, n, deps=()):
    params, current = memset_params(ptr, value, n), check(cu.cuCtxGetCurrent())
    return check(cu.cuGraphAddMemsetNode(g, list(deps), len(deps), params, current))


def conditional_body(g, handle, kind):
    """Adds a conditional node of one body (kind: "IF", "WHILE") to g; returns the body."""
    kinds = cu.CUgraphConditionalNodeType
    p = conditional_params(handle, getattr(kinds, f"CU_GRAPH_COND_TYPE_{kind}"), 1)
    check(add_node(g, p))
    return p.conditional.phGraph_out[0]


def edge_count(g):
    return cu.cuGraphGetEdges(g, 0)[-1]


def test_launches_of_one_exec_on_two_streams_run_one_after_the_other(ctx):
    # cuda.h (cuGraphLaunch): each launch is ordered behind previous launches of the exec.
    spans = []

    def slow(info):
        start = time.monotonic()
        time.sleep(0.05)
        spans.append((start, time.monotonic()))

    register_kernel("exec_rules_slow", slow)
    mod, fn = kernel(b"exec_rules_slow")
    g = check(cu.cuGraphCreate(0))
    kernel_node(g, fn)
    x = check(cu.cuGraphInstantiate(g, 0))
    one, two = stream(), stream()
    check(cu.cuGraphLaunch(x, one))
    check(cu.cuGraphLaunch(x, two))
    check(cu.cuStreamSynchronize(two))
    check(cu.cuStreamSynchronize(one))
    first, second = sorted(spans)
    assert first[1] <= second[0], spans
    for h in (one, two):
        check(cu.cuStreamDestroy(h))
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    check(cu.cuModuleUnload(mod))


def test_execs_embedding_one_captured_launch_run_at_once_with_their_own_arguments(ctx):
    # Two execs of a graph that captured a cuGraphLaunch share the inner launch's kernel op;
    # each run must read the arguments through a launch record of its own (an ASan build
    # saw the other run's freed pointer array before).
    seen = []
    lock = threading.Lock()

    def read_late(info):
        time.sleep(0.002)  # the other run may finish meanwhile
        with lock:
            seen.append(info.param(0, ctypes.c_uint32))

    register_kernel("exec_rules_read_late", read_late, param_sizes=[4])
    mod, fn = kernel(b"exec_rules_read_late", b".param .u32 value")
    s = stream()
    check(cu.cuStreamBeginCapture(s, GLOBAL))
    check(cu.cuLaunchKernel(fn, 1, 1, 1, 1, 1, 1, 0, s, ((0xC0FFEE,), (ctypes.c_uint32,)), 0))
    inner_graph = check(cu.cuStreamEndCapture(s))
    inner = check(cu.cuGraphInstantiate(inner_graph, 0))
    check(cu.cuStreamBeginCapture(s, GLOBAL))
    check(cu.cuGraphLaunch(inner, s))
    outer_graph = check(cu.cuStreamEndCapture(s))
    execs = [check(cu.cuGraphInstantiate(outer_graph, 0)) for _ in range(2)]
    streams = [stream(), stream()]
    for _ in range(10):
        for x, t in zip(execs, streams, strict=True):
            check(cu.cuGraphLaunch(x, t))
    for t in streams:
        check(cu.cuStreamSynchronize(t))
    assert seen == [0xC0FFEE] * 20
    for x in (*execs, inner):
        check(cu.cuGraphExecDestroy(x))
    for g in (inner_graph, outer_graph):
        check(cu.cuGraphDestroy(g))
    for t in (*streams, s):
        check(cu.cuStreamDestroy(t))
    check(cu.cuModuleUnload(mod))


def test_a_launch_captured_into_a_graph_starts_its_handles_at_their_defaults_each_replay(ctx):
    runs = []
    g = check(cu.cuGraphCreate(0))
    handle = check(cu.cuGraphConditionalHandleCreate(g, ctx, 1, 1))  # default 1, assigned

    def body(info):
        runs.append(1)
        if len(runs) % 3 == 0:
            set_conditional(int(handle), 0)

    register_kernel("exec_rules_count", body)
    mod, fn = kernel(b"exec_rules_count")
    kernel_node(conditional_body(g, handle, "WHILE"), fn)
    inner = check(cu.cuGraphInstantiate(g, 0))
    s = stream()
    check(cu.cuStreamBeginCapture(s, GLOBAL))
    check(cu.cuGraphLaunch(inner, s))
    outer_graph = check(cu.cuStreamEndCapture(s))
    outer = check(cu.cuGraphInstantiate(outer_graph, 0))
    totals = []
    for _ in range(3):
        check(cu.cuGraphLaunch(outer, s))
        check(cu.cuStreamSynchronize(s))
        totals.append(len(runs))
    assert totals == [3, 6, 9]
    for x in (outer, inner):
        check(cu.cuGraphExecDestroy(x))
    for h in (outer_graph, g):
        check(cu.cuGraphDestroy(h))
    check(cu.cuStreamDestroy(s))
    check(cu.cuModuleUnload(mod))
    assert sim.hazards() == []


@pytest.mark.gpu
def test_a_refused_launch_leaves_the_events_of_its_record_nodes_as_they_were(ctx):
    e = event()
    g = check(cu.cuGraphCreate(0))
    check(cu.cuGraphAddEventRecordNode(g, None, 0, e))
    x = check(cu.cuGraphInstantiate(g, 0))
    # A blocking stream capturing in global mode: the legacy stream may not be used.
    capturing = stream(0)
    check(cu.cuStreamBeginCapture(capturing, GLOBAL))
    assert cu.cuGraphLaunch(x, cu.CUstream(0))[0] != E.CUDA_SUCCESS
    cu.cuStreamEndCapture(capturing)  # invalidated by the refused launch, or not
    assert cu.cuEventQuery(e)[0] == E.CUDA_SUCCESS  # never recorded: complete, not pending
    check(cu.cuEventSynchronize(e))
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    check(cu.cuStreamDestroy(capturing))
    check(cu.cuEventDestroy(e))


def test_exec_and_clone_lookups_refuse_a_node_that_only_shares_an_address(ctx):
    # A destroyed node's memory is handed out again; its handle must not name the new node.
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddEmptyNode(g, None, 0))
    k = memset_node(g, check(cu.cuMemAlloc(16)), 1, 16, deps=[a])
    x = check(cu.cuGraphInstantiate(g, 0))
    clone = check(cu.cuGraphClone(g))
    check(cu.cuGraphDestroyNode(k))
    other = check(cu.cuGraphCreate(0))
    ptr = check(cu.cuMemAlloc(16))
    strangers = [memset_node(other, ptr, 2, 16) for _ in range(8)]
    for n in strangers:
        assert cu.cuGraphNodeSetEnabled(x, n, 0)[0] == E.CUDA_ERROR_INVALID_VALUE
        assert cu.cuGraphNodeFindInClone(n, clone)[0] == E.CUDA_ERROR_INVALID_VALUE
    for h in (g, clone, other):
        check(cu.cuGraphDestroy(h))
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuMemFree(ptr))


def test_the_same_edge_twice_in_one_call_is_refused_and_adds_nothing(ctx):
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddEmptyNode(g, None, 0))
    b = check(cu.cuGraphAddEmptyNode(g, None, 0))
    twice = change_edges(cu.cuGraphAddDependencies, g, [(a, b), (a, b)])
    assert twice[0] == E.CUDA_ERROR_INVALID_VALUE
    assert edge_count(g) == 0
    check(change_edges(cu.cuGraphAddDependencies, g, [(a, b)]))
    assert edge_count(g) == 1
    check(cu.cuGraphDestroy(g))


LADDER = r"""
import greenres.sim as sim
sim.install("h100")
from cuda.bindings import driver as cu
assert cu.cuInit(0)[0] == 0
_, ctx = cu.cuDevicePrimaryCtxRetain(0)
cu.cuCtxPushCurrent(ctx)
def add(g, froms, tos):
    try:
        return cu.cuGraphAddDependencies(g, froms, tos, None, len(froms))[0]
    except TypeError:
        return cu.cuGraphAddDependencies(g, froms, tos, len(froms))[0]
_, g = cu.cuGraphCreate(0)
layer = [cu.cuGraphAddEmptyNode(g, None, 0)[1] for _ in range(2)]
first = layer
for _ in range(60):  # every node depends on both nodes of the layer before: 2^60 paths
    layer = [cu.cuGraphAddEmptyNode(g, layer, 2)[1] for _ in range(2)]
_, top = cu.cuGraphAddEmptyNode(g, None, 0)
assert add(g, [first[0]], [top]) == 0
assert add(g, [top], [first[1]]) == 0
# first[1] -> ... -> layer: an edge back from the last layer to first[1] is a cycle
assert add(g, [layer[0]], [first[1]]) == 1
print("ok")
"""


def test_a_cycle_check_visits_each_node_once():
    # Adding an edge to a graph with exponentially many paths (a search that walks every
    # path would not finish: a child, so that the run's time limit ends that hang)
    assert run_python(LADDER).strip().endswith("ok")


@pytest.mark.gpu
def test_an_exec_update_with_another_node_count_names_no_error_node(ctx):
    # cuda.h: when the node counts differ, resultInfo->errorNode is NULL.
    class Info(ctypes.Structure):
        _fields_ = [("result", ctypes.c_int), ("errorNode", ctypes.c_void_p)]
        _fields_ += [("errorFromNode", ctypes.c_void_p)]

    lib = ctypes.CDLL("libcuda.so.1")
    lib.cuGraphExecUpdate_v2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(Info)]
    g = check(cu.cuGraphCreate(0))
    check(cu.cuGraphAddEmptyNode(g, None, 0))
    x = check(cu.cuGraphInstantiate(g, 0))
    bigger = check(cu.cuGraphCreate(0))
    for _ in range(2):
        check(cu.cuGraphAddEmptyNode(bigger, None, 0))
    info = Info(0, 1, 1)
    err = lib.cuGraphExecUpdate_v2(int(x), int(bigger), ctypes.byref(info))
    assert err == E.CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE
    TOPOLOGY = cu.CUgraphExecUpdateResult.CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED
    assert info.result == TOPOLOGY
    assert info.errorNode is None
    check(cu.cuGraphExecDestroy(x))
    for h in (g, bigger):
        check(cu.cuGraphDestroy(h))


@pytest.mark.gpu
def test_nodes_a_set_of_capture_dependencies_left_behind_need_no_join(ctx):
    # cuda.h (cuStreamUpdateCaptureDependencies): nodes removed from the set do not make
    # cuStreamEndCapture answer UNJOINED.
    ptr = check(cu.cuMemAlloc(8))
    s = stream()
    check(cu.cuStreamBeginCapture(s, GLOBAL))
    check(cu.cuMemsetD8Async(ptr, 1, 4, s))
    info = check(cu.cuStreamGetCaptureInfo(s))
    first = list(info[3])  # (status, id, graph, dependencies, ...): the memset
    check(cu.cuMemsetD8Async(int(ptr) + 4, 2, 4, s))
    SET = cu.CUstreamUpdateCaptureDependencies_flags.CU_STREAM_SET_CAPTURE_DEPENDENCIES
    try:
        check(cu.cuStreamUpdateCaptureDependencies(s, first, None, 1, SET))
    except TypeError:  # cuda-bindings 12.9: no edge data
        check(cu.cuStreamUpdateCaptureDependencies(s, first, 1, SET))
    g = check(cu.cuStreamEndCapture(s))
    assert node_count(g) == 2
    check(cu.cuGraphDestroy(g))
    check(cu.cuStreamDestroy(s))
    check(cu.cuMemFree(ptr))


def test_a_graph_a_capture_adds_to_is_kept_until_the_capture_ends(ctx):
    # guess (docs/simulator.md): destroying the graph, or a node of it, is refused while
    # cuStreamBeginCaptureToGraph adds to it; a second capture into it too.
    ptr = check(cu.cuMemAlloc(8))
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddEmptyNode(g, None, 0))
    s, t = stream(), stream()
    check(cu.cuStreamBeginCaptureToGraph(s, g, [a], None, 1, GLOBAL))
    assert cu.cuGraphDestroyNode(a)[0] == E.CUDA_ERROR_INVALID_VALUE
    assert cu.cuGraphDestroy(g)[0] == E.CUDA_ERROR_INVALID_VALUE
    second = cu.cuStreamBeginCaptureToGraph(t, g, None, None, 0, GLOBAL)
    assert second[0] == E.CUDA_ERROR_INVALID_VALUE
    check(cu.cuMemsetD8Async(ptr, 3, 8, s))
    assert int(check(cu.cuStreamEndCapture(s))) == int(g)
    x = check(cu.cuGraphInstantiate(g, 0))
    check(cu.cuGraphLaunch(x, s))
    check(cu.cuStreamSynchronize(s))
    out = (ctypes.c_ubyte * 8)()
    check(cu.cuMemcpyDtoH(out, ptr, 8))
    assert bytes(out) == b"\x03" * 8
    check(cu.cuGraphDestroyNode(a))  # the capture ended: allowed again
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    for h in (s, t):
        check(cu.cuStreamDestroy(h))
    check(cu.cuMemFree(ptr))


def test_an_exec_child_graph_update_with_the_nodes_own_graph_and_a_conditional_one(ctx):
    # The node's own child graph (both locks are one mutex) and a new child whose
    # conditional node reads its handle at each launch.
    runs = []
    register_kernel("exec_rules_branch", lambda info: runs.append(1))
    mod, fn = kernel(b"exec_rules_branch")
    parent = check(cu.cuGraphCreate(0))
    empty_child = check(cu.cuGraphCreate(0))
    check(cu.cuGraphAddEmptyNode(empty_child, None, 0))
    node = check(cu.cuGraphAddChildGraphNode(parent, None, 0, empty_child))
    x = check(cu.cuGraphInstantiate(parent, 0))
    own = check(cu.cuGraphChildGraphNodeGetGraph(node))
    check(cu.cuGraphExecChildGraphNodeSetParams(x, node, own))
    child = check(cu.cuGraphCreate(0))
    handle = check(cu.cuGraphConditionalHandleCreate(child, ctx, 1, 1))
    kernel_node(conditional_body(child, handle, "IF"), fn)
    check(cu.cuGraphExecChildGraphNodeSetParams(x, node, child))
    s = stream()
    check(cu.cuGraphLaunch(x, s))
    check(cu.cuStreamSynchronize(s))
    assert runs == [1]  # the handle's default (1) took the branch
    check(cu.cuGraphExecDestroy(x))
    for h in (parent, empty_child, child):
        check(cu.cuGraphDestroy(h))
    check(cu.cuStreamDestroy(s))
    check(cu.cuModuleUnload(mod))
