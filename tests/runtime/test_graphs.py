"""Graphs captured in a partition: data, the partition of every node, reset, pools."""

import pytest

import greenres
from greenres import ClosedError, Graph

from support.rthelpers import copy, layout_of, memset, read

pytestmark = pytest.mark.gpu

N = 1024


def test_replay_produces_the_captured_work(memory):
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        x, y = memory.alloc(N), memory.alloc(N)
        g = Graph()
        with g.capture(s):
            memset(x, 5, N, s)
            copy(y, x, N, s)
        memset(y, 0, N, s)
        s.synchronize()
        assert read(y, N) == bytes(N)  # capture ran nothing
        g.replay()
        s.synchronize()
        assert read(y, N) == bytes([5]) * N
        g.close()
        g.close()
        with pytest.raises(ClosedError):
            g.replay()


def test_replay_on_another_partitions_stream_gives_the_captured_work(memory):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        x = memory.alloc(N)
        g = Graph()
        with g.capture(a.stream):
            memset(x, 1, N, a.stream)
            memset(x, 2, N, a.stream)
        g.replay(b.stream)
        b.stream.synchronize()
        assert read(x, N) == bytes([2]) * N
        g.close()


@pytest.mark.sim_only
def test_nodes_carry_the_partition_even_when_replayed_elsewhere(memory, sim):
    if greenres.driver_version() < 13000:
        pytest.skip("the simulator names green contexts by cuGreenCtxGetId (13.0)")
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        x = memory.alloc(N)
        g = Graph(keep_graph=True)
        with g.capture(a.stream):
            memset(x, 1, N, a.stream)
            memset(x, 2, N, a.stream)
        owners = sim.graph_node_green_contexts(g.handle)
        assert len(owners) == 2 and set(owners) == {a.id}
        g.replay(b.stream)  # launched on b: still runs in a
        b.stream.synchronize()
        assert read(x, N) == bytes([2]) * N
        g.close()


def test_reset_and_recapture(memory):
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        x = memory.alloc(N)
        g = Graph()
        with g.capture(s):
            memset(x, 1, N, s)
        g.replay()
        s.synchronize()
        assert read(x, N) == bytes([1]) * N
        with pytest.raises(RuntimeError, match="reset"):
            g.capture_begin(s)
        g.reset()
        assert not g.captured
        g.capture_begin(s)
        memset(x, 9, N, s)
        g.capture_end()
        g.instantiate()
        g.replay(s)
        s.synchronize()
        assert read(x, N) == bytes([9]) * N
        g.close()


def test_exception_in_capture_block_abandons_the_capture():
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        g = Graph()
        with pytest.raises(ZeroDivisionError):
            with g.capture(s):
                raise ZeroDivisionError
        assert not g.capturing and not g.captured
        assert s.query()  # the stream is usable, not capturing
        g.close()


def test_graphs_share_a_pool(memory):
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        src = memory.alloc(N)
        first = Graph()
        pool = first.pool()
        assert first.pool() is pool
        with first.capture(s):
            tmp = first.allocate(N)
            memset(tmp.ptr, 3, N, s)
            copy(src, tmp.ptr, N, s)
        tmp.free()  # back to the pool: the next graph may reuse it
        second = Graph(pool=pool)
        with second.capture(s):
            tmp2 = second.allocate(N)
            memset(tmp2.ptr, 4, N, s)
        assert tmp2.ptr == tmp.ptr  # shared memory
        assert pool.bytes_reserved == tmp.nbytes
        first.replay()
        second.replay()
        s.synchronize()
        assert read(src, N) == bytes([3]) * N
        assert read(tmp2.ptr, N) == bytes([4]) * N
        first.close()
        pool.close()  # deferred: `second` still uses it
        assert not pool.closed
        second.replay()
        s.synchronize()
        second.close()
        assert pool.closed
        with pytest.raises(ClosedError):
            pool.allocate(N)


@pytest.mark.sim_only
def test_pool_memory_freed_when_the_last_user_goes(sim):
    before = sim.live_objects()["allocation"]
    with layout_of({"a": 16}) as layout:
        s = layout["a"].stream
        g = Graph()
        with g.capture(s):
            buf = g.allocate(10_000)
            memset(buf.ptr, 1, 10_000, s)
        assert sim.live_objects()["allocation"] == before + 1
        other = Graph(pool=g.pool())
        pool = g.pool()
        g.close()
        pool.close()  # `other` still uses the pool
        assert sim.live_objects()["allocation"] == before + 1
        other.close()  # the last user: memory freed
        assert sim.live_objects()["allocation"] == before
        assert pool.closed and buf.pool is pool


def test_enter_exit_and_handoff_inside_a_capture(memory):
    """What a real GPU shows of the capture-unsafe-call trap: a capture with enter/exit
    and handoff inside ends successfully (a green-context event call would invalidate it)
    and its replay produces the data."""
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        x, y = memory.alloc(N), memory.alloc(N)
        g = Graph()
        with g.capture(a.stream):
            memset(x, 6, N, a.stream)
            with b.enter(from_stream=a.stream):
                copy(y, x, N, b.stream)
            greenres.handoff(a.stream, b.stream)
            greenres.handoff(b.stream, a.stream)
        assert g.captured
        memset(y, 0, N, a.stream)
        a.stream.synchronize()
        g.replay()
        a.stream.synchronize()
        assert read(y, N) == bytes([6]) * N
        g.close()


@pytest.mark.sim_only
def test_enter_exit_while_capturing_uses_stream_calls_only(memory, sim):
    """cuGreenCtxRecordEvent/WaitEvent are not capturable: greenres never uses them."""
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        x, y = memory.alloc(N), memory.alloc(N)
        sim.reset_call_counts()
        g = Graph()
        with g.capture(a.stream):
            memset(x, 6, N, a.stream)
            with b.enter(from_stream=a.stream):
                copy(y, x, N, b.stream)
            greenres.handoff(a.stream, b.stream)
            greenres.handoff(b.stream, a.stream)
        counts = sim.call_counts("cuGreenCtxRecordEvent", "cuGreenCtxWaitEvent")
        assert counts == {"cuGreenCtxRecordEvent": 0, "cuGreenCtxWaitEvent": 0}
        g.replay()
        a.stream.synchronize()
        assert read(y, N) == bytes([6]) * N
        g.close()
    assert sim.hazards() == []


def test_graph_captured_in_partition_is_freed_with_the_layout(memory):
    layout = greenres.Layout.create({"a": 16})
    s = layout["a"].stream
    x = memory.alloc(N)
    g = Graph()
    with g.capture(s):
        memset(x, 1, N, s)
    g.instantiate()
    layout.close()  # graphs are destroyed before the green context
    with pytest.raises(ClosedError):
        g.replay()
    g.close()


def test_capture_mode_is_validated():
    with layout_of({"a": 16}) as layout:
        with pytest.raises(ValueError, match="'mode'"):
            Graph().capture_begin(layout["a"].stream, mode="bogus")


@pytest.mark.sim_only
@pytest.mark.parametrize("how", ["close", "reset", "exception"])
def test_a_discarded_capture_whose_destroy_fails_is_freed_later(sim, how):
    """Ending a capture to discard it destroys the graph the driver hands back; when that
    destroy fails, the graph is kept for a retry (it used to be forgotten: a leak)."""
    with layout_of({"a": 16}) as layout:
        stream = layout["a"].stream
        before = sim.live_objects()["graph"]
        g = Graph()
        if how == "exception":
            with pytest.warns(RuntimeWarning, match="could not be ended"):
                with pytest.raises(ValueError, match="inside"):
                    with g.capture(stream):
                        sim.inject_fault("cuGraphDestroy", "CUDA_ERROR_OUT_OF_MEMORY", nth=1)
                        raise ValueError("inside")
            assert not g.capturing and sim.live_objects()["graph"] == before + 1
            g.close()  # the retry
        else:
            g.capture_begin(stream)
            sim.inject_fault("cuGraphDestroy", "CUDA_ERROR_OUT_OF_MEMORY", nth=1)
            getattr(g, how)()  # retried at once: nothing to report
            assert not g.capturing
            g.close()
        sim.clear_faults()
        assert sim.live_objects()["graph"] == before
        assert sim.hazards() == []
