"""Lifecycle: leaks, destroy order, unclosed warnings, close while entered, faults."""

import gc
import threading
import warnings

import pytest
from rthelpers import layout_of, live

import greenres
from greenres import DriverError, Layout, ThreadOwnershipError

pytestmark = pytest.mark.gpu


@pytest.mark.sim_only
def test_close_leaves_no_live_objects(sim):
    before = live(sim)
    layout = Layout.create({"a": 16, "b": 32, "c": 8})
    during = live(sim)
    assert during.get("green_context") == before.get("green_context", 0) + 3
    extra = [part.create_stream(priority=-1) for part in layout]  # closed by the layout
    assert len(extra) == 3
    for part in layout:
        with part:
            pass
    greenres.handoff(layout["a"].stream, layout["b"].stream)
    layout.close()
    assert live(sim) == before
    assert sim.hazards() == []


@pytest.mark.sim_only
def test_destroy_order_streams_before_green_contexts(sim):
    """Streams of a destroyed green context become detached; the simulator reports it as
    a hazard if anything uses one after its context. Closing never does."""
    layout = Layout.create({"a": 16})
    extra = layout["a"].create_stream()
    sim.reset_call_counts()
    layout.close()
    counts = sim.call_counts("cuStreamDestroy", "cuGreenCtxDestroy")
    assert counts["cuStreamDestroy"] == 2 and counts["cuGreenCtxDestroy"] == 1
    del extra
    gc.collect()
    assert sim.hazards() == []


@pytest.mark.sim_only
def test_primary_context_retained_first_and_released_last(sim):
    plan = greenres.Layout  # noqa: F841  (keeps the import used)
    sim.reset_call_counts()
    with layout_of({"a": 16}):
        counts = sim.call_counts("cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease")
        assert counts["cuDevicePrimaryCtxRetain"] == counts["cuDevicePrimaryCtxRelease"] + 1
    counts = sim.call_counts("cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease")
    assert counts["cuDevicePrimaryCtxRetain"] == counts["cuDevicePrimaryCtxRelease"]


@pytest.mark.sim_only
def test_unclosed_layout_warns_and_frees(sim):
    before = live(sim)
    layout = Layout.create({"a": 16})
    with pytest.warns(ResourceWarning, match="unclosed greenres.Layout"):
        del layout
        gc.collect()
    assert live(sim) == before


@pytest.mark.sim_only
def test_partition_kept_alive_keeps_its_handles_until_dropped(sim):
    before = live(sim)
    with pytest.warns(ResourceWarning, match="unclosed greenres.Layout"):
        part = Layout.create({"a": 16})["a"]  # the layout object is gone at once
        gc.collect()
    assert not part.closed
    with part:  # still usable
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del part
        gc.collect()
    assert live(sim) == before


@pytest.mark.sim_only
def test_unclosed_stream_and_event_warn(sim):
    before = live(sim)
    with layout_of({"a": 16}) as layout:
        s = layout["a"].create_stream()
        with pytest.warns(ResourceWarning, match="unclosed greenres.Stream"):
            del s
            gc.collect()
    e = greenres.Event()
    with pytest.warns(ResourceWarning, match="unclosed greenres.Event"):
        del e
        gc.collect()
    assert live(sim) == before


def test_close_while_entered_raises_and_destroys_nothing():
    layout = Layout.create({"a": 16, "b": 16})
    a = layout["a"]
    with a:
        with pytest.raises(ThreadOwnershipError, match="'a' is entered"):
            layout.close()
        assert not layout.closed
    layout.close()


def test_close_while_entered_on_another_thread_raises():
    layout = Layout.create({"a": 16})
    a = layout["a"]
    entered, release = threading.Event(), threading.Event()

    def hold():
        with a:
            entered.set()
            release.wait()

    t = threading.Thread(target=hold)
    t.start()
    entered.wait()
    try:
        with pytest.raises(ThreadOwnershipError):
            layout.close()
    finally:
        release.set()
        t.join()
    layout.close()


@pytest.mark.sim_only
@pytest.mark.parametrize(
    "mechanism,function,nth",
    [
        ("structured", "cuDevSmResourceSplit", 1),
        ("structured", "cuGreenCtxCreate", 2),
        ("structured", "cuGreenCtxStreamCreate", 4),
        ("groups", "cuDevicePrimaryCtxRetain", 1),
        ("groups", "cuEventCreate", 1),
        ("groups", "cuEventCreate", 33),
        ("groups", "cuDevSmResourceSplitByCount", 1),
        ("groups", "cuDevResourceGenerateDesc", 2),
        ("groups", "cuGreenCtxCreate", 1),
        ("groups", "cuGreenCtxCreate", 3),
        ("groups", "cuCtxFromGreenCtx", 2),
        ("groups", "cuGreenCtxGetDevResource", 3),
        ("groups", "cuGreenCtxStreamCreate", 2),
        ("groups", "cuGreenCtxStreamCreate", 4),
        ("groups", "cuStreamGetPriority", 1),
        ("groups", "cuCtxPopCurrent", 1),
    ],
)
def test_fault_in_create_leaves_nothing(sim, mechanism, function, nth):
    from greenres.spec import Partition, PartitionSpec

    if mechanism == "structured" and not greenres.Device(0).sm_facts().structured_split:
        pytest.skip("the driver has no structured split")
    plan = PartitionSpec(
        partitions=(
            Partition("a", sms=16, streams=2),
            Partition("b", sms=32),
            Partition("c", sms=8),
        )
    ).plan(greenres.Device(0), mechanism=mechanism)
    from cuda.bindings import driver as cu

    current = int(cu.cuCtxGetCurrent()[1] or 0)
    before = live(sim)
    sim.inject_fault(function, "CUDA_ERROR_OUT_OF_MEMORY", nth=nth)
    with pytest.raises(DriverError) as info:
        Layout.create(plan)
    sim.clear_faults()
    assert info.value.function == function
    assert info.value.name == "CUDA_ERROR_OUT_OF_MEMORY"
    assert live(sim) == before
    assert int(cu.cuCtxGetCurrent()[1] or 0) == current  # the context stack is restored
    with layout_of(plan):  # and the device is fine afterwards
        pass
    assert live(sim) == before


@pytest.mark.sim_only
def test_fault_in_enter_and_exit_keeps_state_consistent(sim, primary):
    from cuda.bindings import driver as cu

    current = int(cu.cuCtxGetCurrent()[1] or 0)
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        sim.inject_fault("cuCtxPushCurrent", "CUDA_ERROR_INVALID_CONTEXT")
        with pytest.raises(DriverError, match="cuCtxPushCurrent"):
            a.enter()
        assert not a.entered
        sim.inject_fault("cuStreamWaitEvent", "CUDA_ERROR_INVALID_HANDLE")
        with pytest.raises(DriverError):
            a.enter()
        assert not a.entered
        assert int(cu.cuCtxGetCurrent()[1] or 0) == current
        a.enter()
        sim.inject_fault("cuCtxPopCurrent", "CUDA_ERROR_INVALID_CONTEXT")
        with pytest.raises(DriverError):
            a.exit()
        assert a.entered  # still entered: exit again
        a.exit()
        assert not a.entered
