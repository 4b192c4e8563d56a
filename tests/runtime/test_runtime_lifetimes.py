"""Sound lifetimes: one regression test per way the old lifecycle broke (an entered partition
freed under its thread, a capture stuck for the life of the process, an exit made
impossible by code that changed the context stack, __init__ called twice, a partition of
another device nested), each written to fail on that code. Close races are in
test_close_races.py, failed destroy calls in test_fault_sweep.py."""

import gc
import threading
import warnings

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import (
    ClosedError,
    ContextStackWarning,
    Event,
    Graph,
    GraphPool,
    Layout,
    ThreadOwnershipError,
    UsageError,
)

from support.childprocess import run_python
from support.rthelpers import current_context, layout_of, live, ok

pytestmark = pytest.mark.gpu


def _capturing(stream) -> bool:
    status = ok(cu.cuStreamIsCapturing(cu.CUstream(int(stream))))
    return status != cu.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE


# ----------------------------------------------------------------------------- entered


def test_exception_in_a_layout_block_propagates_and_exits_what_this_thread_entered(
    caller_stream,
):
    before = current_context()
    with pytest.raises(RuntimeError, match="the user's error"):
        with Layout.create({"a": 16, "b": 16}) as layout:
            layout["a"].enter(from_stream=caller_stream)
            layout["b"].enter()
            raise RuntimeError("the user's error")  # not ThreadOwnershipError from close()
    assert layout.closed
    assert current_context() == before  # no destroyed green context left current
    assert greenres.current_partition() is None


@pytest.mark.sim_only
def test_exception_in_a_layout_block_leaves_nothing_alive(sim, caller_stream):
    before = live(sim)
    with pytest.raises(KeyError):
        with Layout.create({"a": 16}) as layout:
            layout["a"].enter(from_stream=caller_stream)
            raise KeyError("x")
    gc.collect()
    assert live(sim) == before
    assert sim.hazards() == []


@pytest.mark.sim_only
def test_an_entered_partition_outlives_its_layout_object(sim):
    """The layout object and the partition object go while the partition is entered: the
    partition is pinned (its state is on this thread's nesting stack), usable, found again
    with current_partition() and freed after its exit."""
    before = live(sim)
    layout = Layout.create({"a": 16})
    layout["a"].enter()
    with pytest.warns(ResourceWarning, match="unclosed greenres.Layout"):
        del layout
        gc.collect()
    with Layout.create({"b": 16}) as other:
        with other["b"]:  # nests inside the pinned partition: reads its state
            pass
    pinned = greenres.current_partition()
    assert pinned is not None and pinned.name == "a" and pinned.entered
    assert current_context() == pinned.context_handle
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        pinned.exit()
        del pinned
        gc.collect()
    assert live(sim) == before
    assert sim.hazards() == []


def test_a_closed_layout_is_freed_without_the_cycle_collector():
    """A partition and its streams refer to each other while the layout is open; close()
    ends that, so the objects go when the last reference does, with the collector off."""
    import weakref

    gc.collect()
    gc.disable()
    try:
        layout = Layout.create({"a": 8, "b": 8})
        a, b = layout["a"], layout["b"]
        with a.enter(from_stream=b.stream):
            pass
        greenres.handoff(a.stream, b.stream)
        refs = [weakref.ref(x) for x in (layout, a, b, a.stream, b.stream)]
        kept = b.stream  # a stream still held by its user keeps naming its partition
        layout.close()
        with pytest.raises(ClosedError):  # (part.stream and enter(): test_layout.py)
            _ = a.streams
        assert kept.closed and kept.partition is b and kept.partition.name == "b"
        del layout, a, b, kept
        assert [r() for r in refs] == [None] * len(refs)
    finally:
        gc.enable()


def test_layout_entered_on_another_thread_closes_when_it_is_exited():
    layout = Layout.create({"a": 16})
    a = layout["a"]
    entered, leave, done = threading.Event(), threading.Event(), threading.Event()

    def hold():
        with a:
            entered.set()
            leave.wait()
        done.set()

    t = threading.Thread(target=hold)
    t.start()
    entered.wait()
    with pytest.warns(ResourceWarning, match="closed when it is exited"):
        with pytest.raises(ValueError, match="the user's"):
            with layout:
                raise ValueError("the user's")
    assert not layout.closed  # the other thread is inside
    leave.set()
    t.join()
    assert done.is_set()
    assert layout.closed


def test_close_refuses_while_entered_and_keeps_everything():
    layout = Layout.create({"a": 16})
    with layout["a"]:
        with pytest.raises(ThreadOwnershipError, match="'a' is entered"):
            layout.close()
        assert not layout.closed
    layout.close()


# ----------------------------------------------------------------------------- captures


@pytest.mark.sim_only
def test_dropping_a_capturing_graph_ends_its_capture(sim):
    before = live(sim)
    layout = Layout.create({"a": 16})
    stream = layout["a"].stream
    graph = Graph()
    graph.capture_begin(stream)
    with pytest.warns(ResourceWarning, match="unclosed greenres.Graph"):
        del graph
        gc.collect()
    assert not _capturing(stream)
    layout.close()  # was refused forever
    assert live(sim) == before


@pytest.mark.sim_only
def test_a_failed_abort_keeps_the_capture_so_that_reset_ends_it(sim):
    layout = Layout.create({"a": 16})
    stream = layout["a"].stream
    graph = Graph()
    with pytest.warns(RuntimeWarning, match="could not be ended"):
        with pytest.raises(ZeroDivisionError):
            with graph.capture(stream):
                sim.inject_fault("cuStreamEndCapture", "CUDA_ERROR_UNKNOWN")
                1 / 0  # noqa: B018
    sim.clear_faults()
    assert graph.capturing and _capturing(stream)
    with pytest.raises(UsageError, match="capturing"):
        layout.close()
    graph.reset()
    assert not graph.capturing and not _capturing(stream)
    layout.close()
    graph.close()


def test_close_can_abort_a_foreign_capture():
    """A capture greenres did not begin (cuda.bindings on a partition stream): close()
    refuses, close(abort_captures=True) ends it and closes."""
    layout = Layout.create({"a": 16})
    stream = cu.CUstream(layout["a"].stream.handle)
    ok(cu.cuStreamBeginCapture(stream, cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED))
    with pytest.raises(UsageError, match="abort_captures=True"):
        layout.close()
    assert not layout.closed
    layout.close(abort_captures=True)
    assert layout.closed


def test_close_aborts_a_graphs_capture_and_the_graph_knows():
    layout = Layout.create({"a": 16})
    graph = Graph()
    graph.capture_begin(layout["a"].stream)
    layout.close(abort_captures=True)
    assert not graph.capturing
    with pytest.raises(ClosedError, match="layout the graph was captured in was closed"):
        graph.replay()
    graph.reset()  # capture again elsewhere
    graph.close()


def test_an_exception_in_a_layout_block_ends_its_captures():
    graph = Graph()
    with pytest.raises(LookupError):
        with Layout.create({"a": 16}) as layout:
            graph.capture_begin(layout["a"].stream)
            raise LookupError
    assert layout.closed and not graph.capturing
    graph.close()


# ----------------------------------------------------------------------------- the context stack


# cuda.core keeps the primary context it made current retained for the life of the process,
# so the tests that use it run in a child (another simulated machine, or the same GPU).
_CUDA_CORE_SET_CURRENT = """
import warnings
import greenres
from cuda.bindings import driver as cu
from cuda.core import Device

def current():
    err, ctx = cu.cuCtxGetCurrent()
    return int(ctx) if ctx is not None else 0

before = current()
with greenres.Layout.create({"a": 16, "b": 16}) as layout:
    a, b = layout["a"], layout["b"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with a:
            Device(0).set_current()
    assert [str(w.message) for w in caught if w.category is greenres.ContextStackWarning]
    assert "replaced" in str(caught[0].message), caught[0].message
    assert not a.entered and current() == before
    with a:  # nested: the outer partition is current again after the inner exit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with b:
                Device(0).set_current()
        assert len(caught) == 1
        assert current() == a.context_handle and a.entered and not b.entered
assert layout.closed
print("ok")
"""


def test_exit_after_cuda_core_set_current_restores_the_stack():
    """cuda.core's Device.set_current() (cuCtxSetCurrent) inside a partition replaces the
    partition's context on this thread's stack: exit puts the stack back as it was at
    enter, warns, and the layout can be closed."""
    pytest.importorskip("cuda.core")
    assert run_python(_CUDA_CORE_SET_CURRENT).strip().endswith("ok")


def test_exit_pops_a_context_pushed_inside(primary):
    before = current_context()
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        with pytest.warns(ContextStackWarning, match="popped 1 context pushed inside"):
            with a:
                ok(cu.cuCtxPushCurrent(primary))
        assert not a.entered and current_context() == before


def test_exit_after_the_partitions_context_was_popped_inside(primary):
    before = current_context()
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        with pytest.warns(ContextStackWarning, match="popped inside it already"):
            with a:
                ok(cu.cuCtxPopCurrent())
        assert not a.entered and current_context() == before


def test_exit_with_an_exception_in_flight_never_replaces_it():
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        other = threading.Thread(target=lambda: None)
        with pytest.raises(OSError, match="the user's"):
            with a:
                other.start()
                raise OSError("the user's")
        other.join()
        assert not a.entered


# ----------------------------------------------------------------------------- misuse


@pytest.mark.sim_only
def test_init_called_again_is_refused_and_leaks_nothing(sim):
    before = live(sim)
    event = Event()
    with pytest.raises(UsageError, match="made already"):
        event.__init__()
    event.close()
    pool = GraphPool()
    with pytest.raises(UsageError, match="made already"):
        pool.__init__()
    graph = Graph(pool=pool)
    with pytest.raises(UsageError, match="made already"):
        graph.__init__(pool=pool)
    graph.close()
    pool.close()
    assert pool.closed
    assert live(sim) == before


@pytest.mark.skipif(greenres.device_count() < 2, reason="needs two devices")
def test_nesting_a_partition_of_another_device_is_a_usage_error():
    with layout_of({"a": 16}, device=0) as zero, layout_of({"b": 16}, device=1) as one:
        with zero["a"]:
            with pytest.raises(UsageError, match="another device"):
                one["b"].__enter__()
            with pytest.raises(UsageError, match="of device 0, not of device 1"):
                one["b"].enter(from_stream=zero["a"].stream)
            assert zero["a"].entered and not one["b"].entered
