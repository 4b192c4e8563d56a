"""Reproducers of the bugs the lifecycle state machine found (test_lifecycle_machine.py):
each states one promise about failed driver calls or bad arguments, deterministically."""

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import ClosedError, DestroyError, DriverError, Event, Graph, Layout, UsageError

from support.lifecycle_model import OOM, capture_mode
from support.rthelpers import current_context, ok

pytestmark = [pytest.mark.sim_only, pytest.mark.gpu]


@pytest.fixture
def clean_sim(sim):
    greenres.Device(0)
    yield sim
    sim.clear_faults()


def test_fault_in_exit_wait_leaves_partition_entered(clean_sim):
    """A failed cuStreamWaitEvent (the last call of exit) pushes the context back: the
    partition stays entered and current, and exit can be retried."""
    layout = Layout.create({"a": 16, "b": 16})
    a, b = layout["a"], layout["b"]
    a.enter()
    b.enter()  # nested: exit makes a's stream wait for b's
    try:
        clean_sim.inject_fault("cuStreamWaitEvent", OOM)
        with pytest.raises(DriverError, match="cuStreamWaitEvent"):
            b.exit()
        clean_sim.clear_faults()
        assert b.entered, "the failed exit changed the state"
        assert current_context() == b.context_handle
        b.exit()
    finally:
        clean_sim.clear_faults()
        if b.entered:
            b.exit()
        a.exit()
        layout.close()


def test_fault_in_stream_close_is_reported_and_retried(sim):
    """A failed cuStreamDestroy: close() raises DestroyError naming it, the stream is closed
    for use, the simulator still counts it (the leak is visible), and close() again
    destroys it (docs/runtime.md, "Closing")."""
    greenres.Device(0)
    before = sim.live_objects()["stream"]
    layout = Layout.create({"a": 16})
    stream = layout["a"].create_stream()
    sim.inject_fault("cuStreamDestroy", OOM)
    try:
        with pytest.raises(DestroyError, match="cuStreamDestroy") as raised:
            stream.close()
        assert [f.function for f in raised.value.failures] == ["cuStreamDestroy"]
        sim.clear_faults()
        assert stream.closed
        assert sim.live_objects()["stream"] == before + 2  # the default stream and this one
        stream.close()  # retries the destroy
        assert sim.live_objects()["stream"] == before + 1
    finally:
        sim.clear_faults()
        layout.close()
    assert sim.live_objects()["stream"] == before


def test_fault_in_event_close_is_reported_and_retried(sim):
    """A failed cuEventDestroy: DestroyError, the event is closed for use, its handle and
    the primary-context retain stay (visible) until close() again."""
    greenres.Device(0)
    before = sim.live_objects()
    event = Event()
    sim.inject_fault("cuEventDestroy", OOM)
    try:
        with pytest.raises(DestroyError, match="cuEventDestroy"):
            event.close()
        sim.clear_faults()
        assert event.closed
        with pytest.raises(ClosedError):
            event.record(0)
        assert sim.live_objects()["event"] == before["event"] + 1
        event.close()
    finally:
        sim.clear_faults()
    assert sim.live_objects() == before


def test_fault_in_capture_end_keeps_capturing(sim):
    """A failed cuStreamEndCapture that leaves the stream capturing leaves the graph
    capturing: reset() ends the capture and the layout can be closed."""
    layout = Layout.create({"a": 16})
    stream = layout["a"].stream
    graph = Graph()
    graph.capture_begin(stream)
    sim.inject_fault("cuStreamEndCapture", OOM)
    with pytest.raises(DriverError):
        graph.capture_end()
    sim.clear_faults()
    try:
        assert graph.capturing, "the failed capture_end changed the state"
    finally:
        graph.reset()  # aborts the capture only when the graph knows it is capturing
        try:
            layout.close()
        except UsageError:  # the bug: end the orphaned capture by hand, then close
            _err, leaked = cu.cuStreamEndCapture(cu.CUstream(stream.handle))
            if leaked is not None and int(leaked):
                cu.cuGraphDestroy(leaked)
            layout.close()
        graph.close()


def test_fault_in_instantiate_graph_destroy(clean_sim):
    """instantiate (keep_graph=False) with a failed cuGraphDestroy keeps the CUgraph and
    undoes the instantiation: nothing leaks."""
    before = clean_sim.live_objects()["graph"]
    layout = Layout.create({"a": 16})
    graph = Graph()
    with graph.capture(layout["a"].stream):
        pass
    handle = graph.handle
    clean_sim.inject_fault("cuGraphDestroy", OOM)
    try:
        with pytest.raises(DriverError):
            graph.instantiate()
        clean_sim.clear_faults()
        graph.close()
        assert clean_sim.live_objects()["graph"] == before, "the CUgraph leaked"
    finally:
        clean_sim.clear_faults()
        graph.close()
        layout.close()
        if clean_sim.live_objects()["graph"] > before:  # the bug: destroy the leaked one
            cu.cuGraphDestroy(cu.CUgraph(handle))


def test_fault_in_pool_allocate_during_capture(clean_sim):
    """A failed cuCtxPopCurrent in GraphPool.allocate during a capture: the new block is
    freed in the relaxed capture mode, so the capture survives and nothing leaks."""
    layout = Layout.create({"a": 16})
    graph = Graph()
    graph.capture_begin(layout["a"].stream)
    clean_sim.inject_fault("cuCtxPopCurrent", OOM)
    try:
        with pytest.raises(DriverError, match="cuCtxPopCurrent"):
            graph.allocate(512)
        clean_sim.clear_faults()
        graph.capture_end()  # the capture must survive
    finally:
        clean_sim.clear_faults()
        graph.close()
        layout.close()


def test_fault_in_pool_allocate_mode_restore(clean_sim):
    """A failed exchange back from the relaxed capture mode in GraphPool.allocate: the
    thread's capture mode is restored."""
    mode = capture_mode()
    graph = Graph()
    try:
        graph.pool()
        clean_sim.inject_fault("cuThreadExchangeStreamCaptureMode", OOM, nth=2)
        with pytest.raises(DriverError):
            graph.allocate(512)
        clean_sim.clear_faults()
        assert capture_mode() == mode
    finally:
        relaxed = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED
        if capture_mode() == relaxed != mode:
            ok(cu.cuThreadExchangeStreamCaptureMode(mode))
        graph.close()


def test_replay_checks_stream_first(clean_sim):
    """replay(closed stream) checks its argument before instantiating (docs/runtime.md:
    arguments are checked at the entry point)."""
    layout = Layout.create({"a": 16})
    stream = layout["a"].create_stream()
    graph = Graph()
    with graph.capture(layout["a"].stream):
        pass
    stream.close()
    try:
        with pytest.raises(ClosedError):
            graph.replay(stream)
        assert graph.exec_handle == 0, "the refused replay instantiated the graph"
    finally:
        graph.close()
        layout.close()


def test_switch_none_without_modes(clean_sim):
    """docs/runtime.md: switch on a layout made from one Plan raises KeyError for any mode,
    None included."""
    with pytest.raises(KeyError, match="no modes"):
        with Layout.create({"a": 16}) as layout:
            layout.switch(None)


def test_pool_freed_during_another_capture(clean_sim):
    """Closing a graph frees its pool's memory in the relaxed capture mode: a capture of
    another graph going on on this thread neither refuses the free (a leak) nor breaks.
    (Found by the thorough run of the machine.)"""
    before = clean_sim.live_objects()["allocation"]
    mode = capture_mode()
    layout = Layout.create({"a": 16})
    stream = layout["a"].stream
    first, second = Graph(), Graph()
    try:
        with first.capture(stream):
            first.allocate(1)
        second.capture_begin(stream)
        first.close()
        assert clean_sim.live_objects()["allocation"] == before, "the pool's memory leaked"
        assert capture_mode() == mode
        second.capture_end()
    finally:
        first.close()
        second.close()
        layout.close()
