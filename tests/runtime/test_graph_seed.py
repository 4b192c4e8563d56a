"""The MTIA seed's graph API as written (torch.mtia's MTIAGraph and ``graph``, which follow
torch.cuda's), on greenres' Graph. Each test is one sentence of the seed's docstrings:

* ``capture_begin(pool=None)``: "Begin capturing work on the current stream ... pool:
  Token (returned by ... other_Graph_instance.pool()) that hints this graph may share
  memory with the indicated pool."
* ``capture_end()``: "End graph capture on the current stream. After capture_end, replay
  may be called on this instance."
* ``replay()``: "Replay the work captured by this graph."
* ``reset()``: "Delete the graph currently held by this instance."
* ``pool()``: "Return an opaque token representing the id of this graph's memory pool."
* ``keep_graph``: "If keep_graph=False, the underlying graph will be destroyed [after
  instantiation] ... Users who want to query or otherwise modify the underlying graph
  before instantiation can set keep_graph=True."
* ``graph(g, pool=None, stream=None)``: "Context-manager that captures work into a graph
  object for later replay ... stream: If supplied, will be set as the current stream in the
  context. If not supplied, graph sets its own internal side stream as the current stream."
"""

from __future__ import annotations

import json
import threading

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import Graph, GraphPool, UsageError, _driver

from support.childprocess import run_python
from support.rthelpers import SIM, layout_of, memset, ok, read, sync

pytestmark = pytest.mark.gpu

N = 4096


def _captured_nodes(graph):
    _nodes, count = ok(cu.cuGraphGetNodes(cu.CUgraph(graph.handle)))
    return count


# ------------------------------------------------------------- Graph methods


def test_capture_begin_with_no_stream_captures_the_current_partitions_stream(memory):
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        x = memory.alloc(N)
        memset(x, 0, N, a.stream)
        g = Graph()
        with a:
            g.capture_begin()  # the seed's form: the current stream
            memset(x, 7, N, a.stream)
            g.capture_end()
        sync(a.stream)
        assert read(x, N) == bytes(N)  # captured, not run
        g.replay()  # "After capture_end, replay may be called"
        sync(a.stream)
        assert read(x, N) == bytes([7]) * N
        g.close()


def test_capture_begin_takes_a_pool_token_positionally_or_by_name(memory):
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        first, second, third = Graph(), Graph(), Graph()
        token = first.pool()  # "an opaque token representing ... this graph's memory pool"
        assert isinstance(token, GraphPool)
        with a:
            second.capture_begin(token)
            second.capture_end()
            third.capture_begin(pool=token, mode="global")
            third.capture_end()
        assert second.pool() is token and third.pool() is token
        # ... and they share it: memory freed by one graph is reused by the other
        buffer = first.allocate(N)
        ptr = buffer.ptr
        buffer.free()
        assert second.allocate(N).ptr == ptr
        for g in (third, second, first):
            g.close()


def test_greenres_form_of_capture_begin_still_works(memory):
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        x = memory.alloc(N)
        g = Graph()
        g.capture_begin(s, "relaxed")
        memset(x, 3, N, s)
        g.capture_end()
        g.replay()
        sync(s)
        assert read(x, N) == bytes([3]) * N
        g.close()


def test_a_second_pool_is_refused_and_changes_nothing():
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        g, other = Graph(), Graph()
        own = g.pool()
        with pytest.raises(UsageError, match="uses another pool already"):
            g.capture_begin(s, pool=other.pool())
        assert not g.capturing and g.pool() is own
        with pytest.raises(TypeError, match="got a pool twice"):
            g.capture_begin(own, pool=own)
        with pytest.raises(TypeError, match=r"'pool' must be a greenres\.GraphPool"):
            g.capture_begin(s, pool=3)
        other.close()
        g.close()


@pytest.mark.parametrize("keep", [True, False])
def test_keep_graph_keeps_or_frees_the_graph_after_instantiate(memory, keep):
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        x = memory.alloc(N)
        g = Graph(keep_graph=keep)
        with greenres.graph(g, stream=s):
            memset(x, 1, N, s)
            memset(x, 2, N, s)
        assert g.handle != 0 and _captured_nodes(g) == 2  # before instantiate: both
        g.instantiate()
        if keep:  # kept for inspection
            assert g.handle != 0 and _captured_nodes(g) == 2
        else:  # freed: only the executable is left
            assert g.handle == 0
        assert g.exec_handle != 0
        g.replay()
        sync(s)
        assert read(x, N) == bytes([2]) * N
        g.reset()  # "Delete the graph currently held by this instance."
        assert g.handle == 0 and g.exec_handle == 0 and not g.captured
        g.close()


# ---------------------------------------------------------- graph(...) block


def test_graph_block_captures_on_the_current_partitions_stream(memory):
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        x = memory.alloc(N)
        memset(x, 0, N, a.stream)
        g = Graph()
        with a:
            block = greenres.graph(g)
            assert block.capture_stream is a.stream
            with block as captured:
                assert captured is g and g.capturing
                memset(x, 5, N, a.stream)
        assert not g.capturing and g.captured
        sync(a.stream)
        assert read(x, N) == bytes(N)
        g.replay()
        sync(a.stream)
        assert read(x, N) == bytes([5]) * N
        g.close()


_DEFAULT_STREAMS = """
import json, threading
from cuda.bindings import driver as cu
import greenres
from greenres import Graph
from support.rthelpers import memset, ok, read, sync
import greenres.sim as sim
live_counts = sim.live_objects

before = live_counts()
ok(cu.cuInit(0))
dev0 = ok(cu.cuDeviceGet(0))
primary = ok(cu.cuDevicePrimaryCtxRetain(dev0))
ok(cu.cuCtxPushCurrent(primary))
made = []
barrier = threading.Barrier(4)

def ask():
    ok(cu.cuCtxSetCurrent(primary))
    barrier.wait()
    made.append(greenres.graph(Graph()).capture_stream)

threads = [threading.Thread(target=ask) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
first = made[0]
once = all(m is first for m in made) and greenres.graph(Graph()).capture_stream is first
x = ok(cu.cuMemAlloc(4096))
memset(int(x), 0, 4096, first)
g = Graph()
with greenres.graph(g):
    memset(int(x), 9, 4096, first)
sync(first)
captured_not_run = read(int(x), 4096) == bytes(4096)
g.replay()
sync(first)
replayed = read(int(x), 4096) == bytes([9]) * 4096
g.close()
ok(cu.cuMemFree(x))
dev1 = ok(cu.cuDeviceGet(1))
other_ctx = ok(cu.cuDevicePrimaryCtxRetain(dev1))
ok(cu.cuCtxPushCurrent(other_ctx))
other = greenres.graph(Graph()).capture_stream
ok(cu.cuCtxPopCurrent())
ok(cu.cuDevicePrimaryCtxRelease(dev1))
ok(cu.cuCtxPopCurrent())
ok(cu.cuDevicePrimaryCtxRelease(dev0))
after = live_counts()
kept = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
        if after.get(k, 0) != before.get(k, 0)}
print(json.dumps([once, first.device, other is not first, other.device, captured_not_run,
                  replayed, kept]))
"""


@pytest.mark.sim_only
def test_graph_blocks_do_not_nest_and_a_bad_stream_fails_at_construction():
    with layout_of({"a": 16, "b": 16}) as layout:
        outer, inner = Graph(), Graph()
        with greenres.graph(outer, stream=layout["a"].stream):
            with pytest.raises(UsageError, match=r"greenres\.graph blocks do not nest"):
                with greenres.graph(inner, stream=layout["b"].stream):
                    pass
            assert outer.capturing and not inner.capturing
        assert outer.captured and not inner.captured
        with pytest.raises(TypeError, match="'stream' must be"):
            greenres.graph(inner, stream="x")
        with greenres.graph(inner, stream=layout["b"].stream):  # nothing was left behind
            pass
        for g in (outer, inner):
            g.close()


def test_graph_block_default_stream_is_made_once_per_device():
    # in a child: the default streams live for the process (as the seed's class default)
    once, device, distinct, other_device, captured_not_run, replayed, kept = json.loads(
        run_python(_DEFAULT_STREAMS, GREENRES_SIM="2xh100")
    )
    assert once and device == 0  # four threads asked at once: one stream
    assert distinct and other_device == 1
    assert captured_not_run and replayed
    # what stays for the process: one stream and one primary retain per device used
    assert kept == {"stream": 2, "primary_context": 2}


def test_graph_block_uses_the_class_default_capture_stream(monkeypatch, memory):
    with layout_of({"a": 16}) as layout:
        s = layout["a"].create_stream()
        monkeypatch.setattr(greenres.graph, "default_capture_stream", s)
        g = Graph()
        block = greenres.graph(g)
        assert block.capture_stream is s
        with block:
            g.allocate(512)
            # inside, capture_begin() with no stream means the block's stream
            assert _driver._current_capture_stream() is s
        with layout["a"]:  # the block's entry was popped: the partition's stream again
            assert _driver._current_capture_stream() is layout["a"].stream
        g.close()
        s.close()


def test_graph_block_explicit_stream_and_pool(memory):
    with layout_of({"a": 16, "b": 16}) as layout:
        b = layout["b"].stream
        first, second = Graph(), Graph()
        with layout["a"]:
            with greenres.graph(second, pool=first.pool(), stream=b):  # stream= wins
                assert second.capturing
        assert second.pool() is first.pool()
        second.close()
        first.close()


def test_graph_block_that_raises_resets_the_graph():
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        g = Graph()
        with pytest.raises(ZeroDivisionError):
            with greenres.graph(g, stream=s):
                g.allocate(512)
                raise ZeroDivisionError
        assert not g.capturing and not g.captured  # reset, not half-captured
        assert s.query()  # the stream is not left capturing
        with greenres.graph(g, stream=s):  # and the graph captures again
            pass
        assert g.captured
        g.close()


def test_graph_block_waits_for_outstanding_work(memory, caller_stream, op_delay):
    """ "torch.mtia.synchronize()" on enter: work queued before the block is done when
    the capture begins (here: on another stream of the primary context)."""
    with layout_of({"a": 16}) as layout:
        x = memory.alloc(N)
        op_delay(300_000)
        memset(x, 4, N, caller_stream)
        if SIM:  # the delay keeps it pending (a real GPU may be done already)
            assert cu.cuStreamQuery(caller_stream)[0] == cu.CUresult.CUDA_ERROR_NOT_READY
        block = greenres.graph(Graph(), stream=layout["a"].stream)
        g = block.__enter__()
        try:
            err = cu.cuStreamQuery(caller_stream)[0]
            assert err == cu.CUresult.CUDA_SUCCESS  # done before the capture began
        finally:
            block.__exit__(None, None, None)
        op_delay(0)
        assert read(x, N) == bytes([4]) * N
        g.close()


def test_graph_checks_its_arguments():
    with pytest.raises(TypeError, match=r"'mtia_graph' must be a greenres\.Graph"):
        greenres.graph(3)
    with pytest.raises(TypeError, match=r"'pool' must be a greenres\.GraphPool"):
        greenres.graph(Graph(), pool="p")
    with pytest.raises(ValueError, match="'mode' must be one of"):
        greenres.graph(Graph(), stream=0, mode="local")


def test_graph_blocks_on_many_threads(memory):
    """Each thread's current capture stream is its own (the default stream's creation
    from many threads at once: test_graph_block_default_stream_is_made_once_per_device)."""
    with layout_of({"a": 16, "b": 16}) as layout:
        ctx = ok(cu.cuCtxGetCurrent())
        bufs = {name: memory.alloc(N) for name in ("a", "b")}
        errors = []
        barrier = threading.Barrier(2)

        def worker(name, value):
            try:
                ok(cu.cuCtxSetCurrent(ctx))
                barrier.wait()
                part = layout[name]
                for _ in range(20):
                    g = Graph()
                    with part:
                        with greenres.graph(g) as captured:
                            assert captured.capturing
                            memset(bufs[name], value, N, part.stream)
                    g.replay()
                    sync(part.stream)
                    assert read(bufs[name], N) == bytes([value]) * N
                    g.close()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=p) for p in (("a", 1), ("b", 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors


_DEFAULT_STREAM_FAULT = """
import json
import greenres, greenres.sim as sim
from greenres import Graph
greenres.Device(0)
before = sim.live_objects()
sim.inject_fault("cuStreamCreate", "CUDA_ERROR_OUT_OF_MEMORY")
try:
    greenres.graph(Graph())
except greenres.DriverError as error:
    failed = error.function
left = {k: v - before[k] for k, v in sim.live_objects().items() if v != before[k]}
stream = greenres.graph(Graph()).capture_stream     # a retry makes it
made = {k: v - before[k] for k, v in sim.live_objects().items() if v != before[k]}
print(json.dumps([failed, left, made, stream.device]))
"""


@pytest.mark.sim_only
def test_a_failed_default_stream_leaves_nothing():
    failed, left, made, device = json.loads(run_python(_DEFAULT_STREAM_FAULT))
    assert failed == "cuStreamCreate"
    assert left == {}
    assert made == {"stream": 1, "primary_context": 1} and device == 0
