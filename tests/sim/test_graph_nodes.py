"""Graphs built node by node, driver-level: node types and parameters, edges, destroying
nodes, clones, child graphs, event nodes, conditional nodes, exec updates. Each rule is
cuda.h's (or a guess named in docs/simulator.md, "Graphs by node"); tests marked ``gpu``
need no introspection and also run against a real driver.
"""

import ctypes
import threading

import pytest

import greenres.sim as sim
from greenres.sim.kernels import register_kernel, set_conditional

from support.graphhelpers import add_node, change_edges, conditional_params, memset_params
from support.simhelpers import E, check, event, node_count, requires_bindings, run_python, stream
from support.simhelpers import driver as cu

T = cu.CUgraphNodeType


def read(ptr, n):
    out = (ctypes.c_ubyte * n)()
    check(cu.cuMemcpyDtoH(out, ptr, n))
    return bytes(out)


def run(graph, s):
    x = check(cu.cuGraphInstantiate(graph, 0))
    check(cu.cuGraphLaunch(x, s))
    check(cu.cuStreamSynchronize(s))
    return x


@pytest.fixture
def mem(ctx):
    ptr = check(cu.cuMemAlloc(256))
    check(cu.cuMemsetD8(ptr, 0, 256))
    yield ptr
    check(cu.cuCtxSynchronize())
    check(cu.cuMemFree(ptr))


@pytest.mark.gpu
def test_nodes_report_their_type_parameters_and_edges(ctx, mem):
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddMemsetNode(g, None, 0, memset_params(mem, 1, 16), ctx))
    b = check(cu.cuGraphAddEmptyNode(g, [a], 1))
    c = check(cu.cuGraphAddMemsetNode(g, [b], 1, memset_params(int(mem) + 16, 2, 16), ctx))
    assert check(cu.cuGraphNodeGetType(a)) == T.CU_GRAPH_NODE_TYPE_MEMSET
    assert check(cu.cuGraphNodeGetType(b)) == T.CU_GRAPH_NODE_TYPE_EMPTY
    p = check(cu.cuGraphMemsetNodeGetParams(c))
    assert (int(p.dst), p.value, p.elementSize, p.width) == (int(mem) + 16, 2, 1, 16)
    edges = cu.cuGraphGetEdges(g, 2)
    assert edges[0] == E.CUDA_SUCCESS
    assert {(int(x), int(y)) for x, y in zip(edges[1], edges[2], strict=True)} == {
        (int(a), int(b)),
        (int(b), int(c)),
    }
    count = check(cu.cuGraphGetRootNodes(g, 0))[-1]
    roots = check(cu.cuGraphGetRootNodes(g, count))[0]
    assert [int(r) for r in roots] == [int(a)]
    deps = check(cu.cuGraphNodeGetDependencies(c, 1))
    assert [int(d) for d in deps[0]] == [int(b)] and deps[-1] == 1
    s = stream()
    x = run(g, s)
    assert read(mem, 32) == b"\x01" * 16 + b"\x02" * 16
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    check(cu.cuStreamDestroy(s))


@pytest.mark.gpu
def test_edges_refuse_duplicates_missing_ones_and_cycles(ctx):
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddEmptyNode(g, None, 0))
    b = check(cu.cuGraphAddEmptyNode(g, [a], 1))
    assert cu.cuGraphAddEmptyNode(g, [a, a], 2)[0] == E.CUDA_ERROR_INVALID_VALUE
    assert change_edges(cu.cuGraphAddDependencies, g, [(a, b)])[0] == E.CUDA_ERROR_INVALID_VALUE
    assert change_edges(cu.cuGraphAddDependencies, g, [(b, a)])[0] == E.CUDA_ERROR_INVALID_VALUE
    assert change_edges(cu.cuGraphRemoveDependencies, g, [(b, a)])[0] == E.CUDA_ERROR_INVALID_VALUE
    check(change_edges(cu.cuGraphRemoveDependencies, g, [(a, b)]))
    assert check(cu.cuGraphNodeGetDependencies(b, 0))[-1] == 0
    check(change_edges(cu.cuGraphAddDependencies, g, [(a, b)]))
    other = check(cu.cuGraphCreate(0))
    stranger = check(cu.cuGraphAddEmptyNode(other, None, 0))
    assert cu.cuGraphAddEmptyNode(g, [stranger], 1)[0] == E.CUDA_ERROR_INVALID_VALUE
    check(cu.cuGraphDestroy(other))
    check(cu.cuGraphDestroy(g))


@pytest.mark.gpu
def test_destroying_a_node_removes_its_edges(ctx):
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddEmptyNode(g, None, 0))
    b = check(cu.cuGraphAddEmptyNode(g, [a], 1))
    check(cu.cuGraphDestroyNode(a))
    assert node_count(g) == 1
    assert check(cu.cuGraphNodeGetDependencies(b, 0))[-1] == 0
    assert cu.cuGraphGetEdges(g, 0)[-1] == 0
    check(cu.cuGraphDestroy(g))


@pytest.mark.gpu
def test_a_clone_is_independent_and_finds_its_nodes(ctx, mem):
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddMemsetNode(g, None, 0, memset_params(mem, 5, 8), ctx))
    clone = check(cu.cuGraphClone(g))
    twin = check(cu.cuGraphNodeFindInClone(a, clone))
    assert int(twin) != int(a)
    check(cu.cuGraphMemsetNodeSetParams(twin, memset_params(mem, 6, 8)))
    assert check(cu.cuGraphMemsetNodeGetParams(a)).value == 5
    check(cu.cuGraphDestroy(g))  # the clone does not need its original
    s = stream()
    x = run(clone, s)
    assert read(mem, 8) == b"\x06" * 8
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(clone))
    check(cu.cuStreamDestroy(s))


@pytest.mark.gpu
def test_a_child_graph_is_copied_and_owned_by_its_node(ctx, mem):
    child = check(cu.cuGraphCreate(0))
    check(cu.cuGraphAddMemsetNode(child, None, 0, memset_params(mem, 3, 4), ctx))
    g = check(cu.cuGraphCreate(0))
    node = check(cu.cuGraphAddChildGraphNode(g, None, 0, child))
    check(cu.cuGraphDestroy(child))  # the node has its own copy
    owned = check(cu.cuGraphChildGraphNodeGetGraph(node))
    assert node_count(owned) == 1
    s = stream()
    x = run(g, s)
    assert read(mem, 4) == b"\x03" * 4
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    check(cu.cuStreamDestroy(s))


def test_owned_graphs_are_not_the_callers_to_destroy_or_count(ctx):
    before = sim.live_objects()
    child = check(cu.cuGraphCreate(0))
    g = check(cu.cuGraphCreate(0))
    node = check(cu.cuGraphAddChildGraphNode(g, None, 0, child))
    owned = check(cu.cuGraphChildGraphNodeGetGraph(node))
    assert cu.cuGraphDestroy(owned)[0] == E.CUDA_ERROR_INVALID_VALUE
    assert sim.live_objects_since(before) == {"graph": 2}
    check(cu.cuGraphDestroy(g))
    check(cu.cuGraphDestroy(child))
    assert sim.live_objects_since(before) == {}
    # The node's handle is stale with its graph.
    assert cu.cuGraphNodeGetType(node)[0] == E.CUDA_ERROR_INVALID_VALUE


@pytest.mark.gpu
@requires_bindings(
    "cuGraphNodeGetLocalId", "cuGraphNodeGetToolsId", "cuGraphNodeGetContainingGraph"
)
def test_node_ids_count_up_within_a_graph(ctx):
    g = check(cu.cuGraphCreate(0))
    nodes = [check(cu.cuGraphAddEmptyNode(g, None, 0)) for _ in range(3)]
    ids = [check(cu.cuGraphNodeGetLocalId(n)) for n in nodes]
    assert ids == sorted(set(ids))
    assert int(check(cu.cuGraphNodeGetContainingGraph(nodes[0]))) == int(g)
    tools = {check(cu.cuGraphNodeGetToolsId(n)) for n in nodes}
    assert len(tools) == 3
    check(cu.cuGraphDestroy(g))


@pytest.mark.gpu
def test_an_event_record_node_is_pending_from_the_launch(ctx, mem):
    sim.set_op_delay_us(50_000)  # the graph's memset takes 50 ms
    e = event()
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddMemsetNode(g, None, 0, memset_params(mem, 9, 4), ctx))
    check(cu.cuGraphAddEventRecordNode(g, [a], 1, e))
    record = check(cu.cuGraphGetNodes(g, 2))[0][1]
    assert int(check(cu.cuGraphEventRecordNodeGetEvent(record))) == int(e)
    s, other = stream(), stream()
    x = check(cu.cuGraphInstantiate(g, 0))
    check(cu.cuGraphLaunch(x, s))
    check(cu.cuStreamWaitEvent(other, e, 0))  # waits for the graph's record
    seen = ctypes.c_uint32()
    check(cu.cuMemcpyDtoHAsync(seen, mem, 4, other))
    check(cu.cuStreamSynchronize(other))
    assert seen.value == 0x09090909
    sim.set_op_delay_us(0)
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    for h in (s, other):
        check(cu.cuStreamDestroy(h))
    check(cu.cuEventDestroy(e))


def _conditional(g, handle, kind, size):
    p = conditional_params(handle, kind, size)
    node = check(add_node(g, p))
    return node, p.conditional.phGraph_out  # cuda.h: filled in by the driver


def test_a_while_node_runs_its_body_until_a_model_clears_the_condition(ctx, mem):
    iterations = []
    g = check(cu.cuGraphCreate(0))
    # default 1, assigned at each launch
    handle = check(cu.cuGraphConditionalHandleCreate(g, ctx, 1, 1))

    def body(info):
        iterations.append(1)
        if len(iterations) % 3 == 0:
            set_conditional(int(handle), 0)

    register_kernel("count_and_stop", body)
    ptx = b".version 8.0\n.target sm_90\n.address_size 64\n"
    mod = check(cu.cuModuleLoadData(ptx + b".visible .entry count_and_stop() { ret; }\n"))
    fn = check(cu.cuModuleGetFunction(mod, b"count_and_stop"))
    _, bodies = _conditional(g, handle, cu.CUgraphConditionalNodeType.CU_GRAPH_COND_TYPE_WHILE, 1)
    kp = cu.CUDA_KERNEL_NODE_PARAMS()
    kp.func = fn
    kp.gridDimX = kp.gridDimY = kp.gridDimZ = 1
    kp.blockDimX = kp.blockDimY = kp.blockDimZ = 1
    check(cu.cuGraphAddKernelNode(bodies[0], None, 0, kp))
    s = stream()
    x = run(g, s)
    assert len(iterations) == 3
    check(cu.cuGraphLaunch(x, s))  # the default is assigned again at each launch
    check(cu.cuStreamSynchronize(s))
    assert len(iterations) == 6
    with pytest.raises(ValueError, match="not one of the graph launch"):
        set_conditional(int(handle), 1)  # outside a launch
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    check(cu.cuModuleUnload(mod))
    check(cu.cuStreamDestroy(s))
    assert sim.hazards() == []


@pytest.mark.gpu
def test_if_and_switch_nodes_take_the_branch_of_the_default_value(ctx, mem):
    g = check(cu.cuGraphCreate(0))
    two = check(cu.cuGraphConditionalHandleCreate(g, ctx, 2, 1))
    zero = check(cu.cuGraphConditionalHandleCreate(g, ctx, 0, 1))
    K = cu.CUgraphConditionalNodeType
    _, sw = _conditional(g, two, K.CU_GRAPH_COND_TYPE_SWITCH, 3)
    for i in range(3):
        check(cu.cuGraphAddMemsetNode(sw[i], None, 0, memset_params(mem, 10 + i, 1), ctx))
    _, ie = _conditional(g, zero, K.CU_GRAPH_COND_TYPE_IF, 2)
    check(cu.cuGraphAddMemsetNode(ie[0], None, 0, memset_params(int(mem) + 1, 1, 1), ctx))
    check(cu.cuGraphAddMemsetNode(ie[1], None, 0, memset_params(int(mem) + 1, 2, 1), ctx))
    s = stream()
    x = run(g, s)
    assert read(mem, 2) == bytes([12, 2])
    # A handle of another graph, a bad size: refused.
    other = check(cu.cuGraphCreate(0))
    foreign = add_node(other, conditional_params(two, K.CU_GRAPH_COND_TYPE_IF, 1))
    assert foreign[0] == E.CUDA_ERROR_INVALID_VALUE
    bad = check(cu.cuGraphConditionalHandleCreate(other, ctx, 0, 0))
    assert (
        add_node(other, conditional_params(bad, K.CU_GRAPH_COND_TYPE_WHILE, 2))[0]
        == E.CUDA_ERROR_INVALID_VALUE
    )
    check(cu.cuGraphDestroy(other))
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    check(cu.cuStreamDestroy(s))


@pytest.mark.gpu
def test_exec_updates_change_parameters_but_not_topology(ctx, mem):
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddMemsetNode(g, None, 0, memset_params(mem, 1, 4), ctx))
    s = stream()
    x = run(g, s)
    check(cu.cuGraphExecMemsetNodeSetParams(x, a, memset_params(mem, 2, 4), ctx))
    check(cu.cuGraphLaunch(x, s))
    check(cu.cuStreamSynchronize(s))
    assert read(mem, 4) == b"\x02" * 4
    check(cu.cuGraphNodeSetEnabled(x, a, 0))
    assert check(cu.cuGraphNodeGetEnabled(x, a)) == 0
    check(cu.cuMemsetD8(mem, 0, 4))
    check(cu.cuGraphLaunch(x, s))
    check(cu.cuStreamSynchronize(s))
    assert read(mem, 4) == b"\x00" * 4  # disabled: an empty node
    check(cu.cuGraphNodeSetEnabled(x, a, 1))
    same = check(cu.cuGraphCreate(0))
    check(cu.cuGraphAddMemsetNode(same, None, 0, memset_params(mem, 7, 4), ctx))
    info = check(cu.cuGraphExecUpdate(x, same))
    assert info.result == cu.CUgraphExecUpdateResult.CU_GRAPH_EXEC_UPDATE_SUCCESS
    check(cu.cuGraphLaunch(x, s))
    check(cu.cuStreamSynchronize(s))
    assert read(mem, 4) == b"\x07" * 4
    bigger = check(cu.cuGraphClone(same))
    check(cu.cuGraphAddEmptyNode(bigger, None, 0))
    # The bindings return no result info with the error.
    assert cu.cuGraphExecUpdate(x, bigger)[0] == E.CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE
    check(cu.cuGraphLaunch(x, s))  # a refused update leaves the exec as it was
    check(cu.cuStreamSynchronize(s))
    assert read(mem, 4) == b"\x07" * 4
    for h in (g, same, bigger):
        check(cu.cuGraphDestroy(h))
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuStreamDestroy(s))


@pytest.mark.gpu
def test_capture_into_a_graph_after_its_nodes(ctx, mem):
    g = check(cu.cuGraphCreate(0))
    first = check(cu.cuGraphAddMemsetNode(g, None, 0, memset_params(mem, 4, 8), ctx))
    s = stream()
    mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL
    check(cu.cuStreamBeginCaptureToGraph(s, g, [first], None, 1, mode))
    check(cu.cuMemsetD8Async(mem, 5, 4, s))
    assert int(check(cu.cuStreamEndCapture(s))) == int(g)
    assert node_count(g) == 2
    captured = next(n for n in check(cu.cuGraphGetNodes(g, 2))[0] if int(n) != int(first))
    assert check(cu.cuGraphNodeGetType(captured)) == T.CU_GRAPH_NODE_TYPE_MEMSET
    assert check(cu.cuGraphMemsetNodeGetParams(captured)).value == 5
    x = run(g, s)
    assert read(mem, 8) == b"\x05" * 4 + b"\x04" * 4
    check(cu.cuGraphExecDestroy(x))
    check(cu.cuGraphDestroy(g))
    check(cu.cuStreamDestroy(s))


@pytest.mark.gpu
def test_debug_dot_print_writes_every_node(ctx, tmp_path):
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddEmptyNode(g, None, 0))
    check(cu.cuGraphAddEmptyNode(g, [a], 1))
    path = tmp_path / "g.dot"
    check(cu.cuGraphDebugDotPrint(g, str(path).encode(), 0))
    text = path.read_text()
    assert text.startswith("digraph") and "->" in text
    check(cu.cuGraphDestroy(g))


def test_a_destroyed_node_handle_stays_refused_while_new_nodes_are_made(ctx):
    # Its memory is kept with the graph, so no new node gets its address (the handle).
    g = check(cu.cuGraphCreate(0))
    a = check(cu.cuGraphAddEmptyNode(g, None, 0))
    check(cu.cuGraphDestroyNode(a))
    others = [check(cu.cuGraphAddEmptyNode(g, None, 0)) for _ in range(64)]
    assert int(a) not in {int(n) for n in others}
    assert cu.cuGraphNodeGetType(a)[0] == E.CUDA_ERROR_INVALID_VALUE
    assert cu.cuGraphDestroyNode(a)[0] == E.CUDA_ERROR_INVALID_VALUE
    check(cu.cuGraphDestroy(g))


def test_two_threads_destroying_the_same_nodes_destroy_each_once(ctx):
    # Through ctypes (no GIL held in the call), so both threads are in the driver at once.
    lib = ctypes.CDLL("libcuda.so.1")
    lib.cuGraphDestroyNode.argtypes = [ctypes.c_void_p]
    g = check(cu.cuGraphCreate(0))
    nodes = [int(check(cu.cuGraphAddEmptyNode(g, None, 0))) for _ in range(2000)]
    results = [[], []]

    def destroy_all(out):
        out.extend(lib.cuGraphDestroyNode(n) for n in nodes)

    threads = [threading.Thread(target=destroy_all, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for one, two in zip(*results, strict=True):
        assert sorted((one, two)) == [E.CUDA_SUCCESS, E.CUDA_ERROR_INVALID_VALUE]
    assert node_count(g) == 0
    check(cu.cuGraphDestroy(g))


@pytest.mark.gpu
def test_a_memset_node_whose_rows_overflow_is_refused(ctx, mem):
    g = check(cu.cuGraphCreate(0))
    p = memset_params(mem, 1, 1)
    p.height = 2**63 + 1
    p.pitch = 2  # (height - 1) * pitch wraps to 0: the range would look like one byte
    assert cu.cuGraphAddMemsetNode(g, None, 0, p, ctx)[0] == E.CUDA_ERROR_INVALID_VALUE
    wide = memset_params(mem, 1, 2**62 + 1, element=4)  # width * 4 wraps to 4
    assert cu.cuGraphAddMemsetNode(g, None, 0, wide, ctx)[0] == E.CUDA_ERROR_INVALID_VALUE
    assert node_count(g) == 0
    check(cu.cuGraphDestroy(g))


CLONED_CONDITIONAL = r"""
import greenres.sim as sim
sim.install("h100", driver_version=13020)  # cuGraphNodeGetParams is CUDA 13.2's
from cuda.bindings import driver as cu
def ok(result):
    assert result[0] == 0, result
    return result[1] if len(result) == 2 else result[1:]
ok(cu.cuInit(0))
ctx = ok(cu.cuDevicePrimaryCtxRetain(0))
ok(cu.cuCtxPushCurrent(ctx))
g = ok(cu.cuGraphCreate(0))
p = cu.CUgraphNodeParams()
p.type = cu.CUgraphNodeType.CU_GRAPH_NODE_TYPE_CONDITIONAL
p.conditional.handle = ok(cu.cuGraphConditionalHandleCreate(g, ctx, 0, 0))
p.conditional.type = cu.CUgraphConditionalNodeType.CU_GRAPH_COND_TYPE_IF
p.conditional.size = 1
node = ok(cu.cuGraphAddNode(g, None, None, 0, p))
clone = ok(cu.cuGraphClone(g))
params = ok(cu.cuGraphNodeGetParams(ok(cu.cuGraphNodeFindInClone(node, clone))))
(body,) = params.conditional.phGraph_out[: params.conditional.size]
assert int(body) not in (0, int(p.conditional.phGraph_out[0])), body
ok(cu.cuGraphAddEmptyNode(body, None, 0))  # a graph of the clone's node
for h in (clone, g):
    ok(cu.cuGraphDestroy(h))
print("ok")
"""


@requires_bindings("cuGraphNodeGetParams")
def test_a_cloned_conditional_node_hands_out_its_own_bodies():
    assert run_python(CLONED_CONDITIONAL).strip().endswith("ok")
