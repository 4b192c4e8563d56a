"""The handoff pool's events: made by the first handoff that claims a slot (not by
Layout.create), one per thread that hands off through the layout, destroyed by close.

A first handoff inside a global-mode stream capture is a driver rule as much as greenres'
(cuEventCreate and a context push and pop are no "potentially unsafe" calls during a
capture): it is marked gpu, the others need the simulator's counts and faults."""

import threading

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import DriverError, Graph, Layout

from support.lifecycle_model import EVENTS_PER_PARTITION
from support.rthelpers import copy, current_context, layout_of, live, memset, read

N = 4096
OOM = "CUDA_ERROR_OUT_OF_MEMORY"


def _events(sim):
    return sim.live_objects()["event"]


@pytest.mark.sim_only
def test_create_makes_no_pool_event_and_a_thread_first_handoff_makes_one(sim):
    before = _events(sim)
    layout = Layout.create({"a": 8, "b": 8})
    try:
        assert _events(sim) == before + 2 * EVENTS_PER_PARTITION
        a, b = layout["a"].stream, layout["b"].stream
        greenres.handoff(a, b)
        assert _events(sim) == before + 2 * EVENTS_PER_PARTITION + 1
        for _ in range(20):  # the same slot, its event made already
            greenres.handoff(a, b)
            greenres.handoff(b, a)
            b.wait(a)
        assert _events(sim) == before + 2 * EVENTS_PER_PARTITION + 1
    finally:
        layout.close()
    assert _events(sim) == before


@pytest.mark.sim_only
def test_threads_first_handoffs_at_once_make_at_most_one_event_each(sim):
    threads_n = 6
    before = _events(sim)
    layout = Layout.create({"a": 8, "b": 8})
    a, b = layout["a"].stream, layout["b"].stream
    start = threading.Barrier(threads_n)
    errors, contexts = [], []

    def worker():
        try:
            here = current_context()
            start.wait()
            for _ in range(50):
                greenres.handoff(a, b)
                greenres.handoff(b, a)
            contexts.append(current_context() == here)  # the stack is as it was
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        assert contexts == [True] * threads_n
        made = _events(sim) - before - 2 * EVENTS_PER_PARTITION
        assert 1 <= made <= threads_n
    finally:
        layout.close()
    assert _events(sim) == before


@pytest.mark.sim_only
@pytest.mark.parametrize("function", ["cuCtxPushCurrent", "cuEventCreate"])
def test_a_failed_first_handoff_makes_nothing_and_the_next_one_works(sim, function):
    layout = Layout.create({"a": 8, "b": 8})
    try:
        a, b = layout["a"].stream, layout["b"].stream
        current, events = current_context(), _events(sim)
        sim.inject_fault(function, OOM, nth=1)
        with pytest.raises(DriverError) as info:
            greenres.handoff(a, b)
        sim.clear_faults()
        assert info.value.function == function
        assert current_context() == current
        assert _events(sim) == events
        greenres.handoff(a, b)  # the slot was released, and makes its event now
        assert _events(sim) == events + 1
    finally:
        layout.close()


@pytest.mark.sim_only
def test_a_failed_pop_after_the_event_keeps_the_event_and_the_stack(sim):
    before = live(sim)
    layout = Layout.create({"a": 8, "b": 8})
    try:
        a, b = layout["a"].stream, layout["b"].stream
        current, events = current_context(), _events(sim)
        sim.inject_fault("cuCtxPopCurrent", OOM, nth=1)
        with pytest.raises(DriverError) as info:
            greenres.handoff(a, b)
        sim.clear_faults()
        assert info.value.function == "cuCtxPopCurrent"
        assert current_context() == current  # the primary context was taken off again
        assert _events(sim) == events + 1  # made, kept in the slot for the next handoff
        greenres.handoff(a, b)
        assert _events(sim) == events + 1
    finally:
        layout.close()
    assert live(sim) == before


@pytest.mark.gpu
def test_the_first_handoff_inside_a_global_capture_keeps_the_capture(memory):
    """The pool slot's event is made while the stream captures (global mode, the strictest):
    the capture stays valid, and its replay orders the two partitions' work."""
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        x, y = memory.alloc(N), memory.alloc(N)
        memset(y, 0, N, b)
        b.synchronize()
        g = Graph()
        with g.capture(a, mode="global"):
            memset(x, 9, N, a)
            greenres.handoff(a, b)  # the first through this layout's pool: b joins
            status = cu.cuStreamIsCapturing(b.handle)
            assert status[0] == cu.CUresult.CUDA_SUCCESS
            assert status[1] == cu.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_ACTIVE
            copy(y, x, N, b)
            greenres.handoff(b, a)  # rejoin the origin before the capture ends
        assert read(y, N) == bytes(N)  # the capture ran nothing
        g.replay(a)
        a.synchronize()
        assert read(y, N) == bytes([9]) * N
        g.close()
