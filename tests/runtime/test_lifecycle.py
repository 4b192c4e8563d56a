"""Lifecycle: leaks, destroy order, unclosed warnings, close while entered, faults."""

import gc
import threading
import warnings

import pytest

import greenres
from greenres import DriverError, Graph, GraphPool, Layout, ThreadOwnershipError, UsageError

from support.rthelpers import current_context, layout_of, live, no_resource_warning

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

    t = threading.Thread(target=hold, name="holder")
    t.start()
    entered.wait()
    try:
        # the message names the partition and the thread that pins it
        with pytest.raises(ThreadOwnershipError, match=r"'a' is entered on thread 'holder'"):
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
        ("groups", "cuEventCreate", 6),  # the last: 2 per partition, none for the pool
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

    current = current_context()
    before = live(sim)
    sim.inject_fault(function, "CUDA_ERROR_OUT_OF_MEMORY", nth=nth)
    with pytest.raises(DriverError) as info:
        Layout.create(plan)
    sim.clear_faults()
    assert info.value.function == function
    assert info.value.name == "CUDA_ERROR_OUT_OF_MEMORY"
    assert live(sim) == before
    assert current_context() == current  # the context stack is restored
    with layout_of(plan):  # and the device is fine afterwards
        pass
    assert live(sim) == before


@pytest.mark.sim_only
def test_fault_in_enter_and_exit_keeps_state_consistent(sim, primary):

    current = current_context()
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
        assert current_context() == current
        a.enter()
        sim.inject_fault("cuCtxPopCurrent", "CUDA_ERROR_INVALID_CONTEXT")
        with pytest.raises(DriverError):
            a.exit()
        assert a.entered  # still entered: exit again
        a.exit()
        assert not a.entered


def test_close_with_created_streams_raises_nothing_and_leaves_no_error(primary):
    """The destroy-order trap, as far as a real GPU shows it: closing a layout whose
    partitions have create_stream() streams raises nothing, and the device is fine."""
    from cuda.bindings import driver as cu

    from support.rthelpers import ok

    layout = Layout.create({"a": 16, "b": 16})
    extra = [part.create_stream() for part in layout for _ in range(2)]
    for s in extra:
        s.synchronize()
    layout.close()
    assert all(s.closed for s in extra)
    for s in extra:
        s.close()  # idempotent, no driver call on a destroyed stream
    ok(cu.cuCtxSynchronize())
    with layout_of({"a": 16}) as again:
        again["a"].stream.synchronize()


DESTROY_ORDER_HAZARDS = (
    "stream_used_after_green_ctx_destroyed",
    "stream_destroyed_after_green_ctx",
)


@pytest.mark.sim_only
def test_destroy_order_leaves_no_stream_used_after_its_green_context(sim):
    sim.clear_hazards()
    layout = Layout.create({"a": 16, "b": 16})
    extra = [part.create_stream() for part in layout]
    layout.close()
    del extra
    gc.collect()
    assert not [h for h in sim.hazards() if h.startswith(DESTROY_ORDER_HAZARDS)]


@pytest.mark.sim_only
def test_destroying_the_green_context_first_is_seen(sim):
    """Control for the test above: the wrong order, in a raw cuda.bindings sequence,
    makes the simulator report the hazard, so that check can fail."""
    from cuda.bindings import driver as cu

    from support.rthelpers import ok

    sim.clear_hazards()
    ok(cu.cuInit(0))
    device = ok(cu.cuDeviceGet(0))
    primary = ok(cu.cuDevicePrimaryCtxRetain(device))
    try:
        resource = ok(
            cu.cuDeviceGetDevResource(device, cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM)
        )
        desc = ok(cu.cuDevResourceGenerateDesc([resource], 1))
        green = ok(
            cu.cuGreenCtxCreate(desc, device, cu.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM)
        )
        stream = ok(cu.cuGreenCtxStreamCreate(green, cu.CUstream_flags.CU_STREAM_NON_BLOCKING, 0))
        ok(cu.cuGreenCtxDestroy(green))  # wrong: the stream is still alive
        ok(cu.cuStreamDestroy(stream))  # allowed on a detached stream, but too late
    finally:
        ok(cu.cuDevicePrimaryCtxRelease(device))
    assert [h for h in sim.hazards() if h.startswith("stream_destroyed_after_green_ctx")]
    sim.clear_hazards()
    del primary


@pytest.mark.sim_only
def test_primary_context_is_alive_before_the_first_green_context(sim):
    """docs/driver-facts.md: have the primary context alive before cuGreenCtxCreate. The layout
    retains it first, so the simulator sees no green context made without it."""
    assert live(sim).get("primary_context", 0) == 0, "another test left it retained"
    with layout_of({"a": 16, "b": 16}):
        pass
    assert not [h for h in sim.hazards() if h.startswith("green_ctx_created_without_primary_ctx")]


@pytest.mark.sim_only
def test_green_context_without_primary_is_seen(sim):
    """Control for the test above: a raw green context with no primary context alive is
    reported, so that check can fail."""
    from cuda.bindings import driver as cu

    from support.rthelpers import ok

    assert live(sim).get("primary_context", 0) == 0
    ok(cu.cuInit(0))
    device = ok(cu.cuDeviceGet(0))
    resource = ok(cu.cuDeviceGetDevResource(device, cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM))
    desc = ok(cu.cuDevResourceGenerateDesc([resource], 1))
    green = ok(
        cu.cuGreenCtxCreate(desc, device, cu.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM)
    )
    ok(cu.cuGreenCtxDestroy(green))
    assert [h for h in sim.hazards() if h.startswith("green_ctx_created_without_primary_ctx")]


def test_close_while_capturing_raises_and_keeps_the_capture(memory):
    """cuGreenCtxDestroy invalidates captures in progress: close refuses instead, for the
    default stream and for create_stream() streams alike, and destroys nothing."""
    from support.rthelpers import memset, read

    n = 1024
    layout = Layout.create({"a": 16})
    a = layout["a"]
    x = memory.alloc(n)
    for stream in (a.stream, a.create_stream()):
        g = Graph()
        g.capture_begin(stream)
        memset(x, 3, n, stream)
        with pytest.raises(UsageError, match="partition 'a' is capturing"):
            layout.close()
        assert not layout.closed and not a.closed
        g.capture_end()  # the capture is intact
        memset(x, 0, n, stream)
        g.replay()
        stream.synchronize()
        assert read(x, n) == bytes([3]) * n
        g.close()
    layout.close()


def test_unclosed_graph_pool_warns():
    pool = GraphPool()
    with pytest.warns(ResourceWarning, match="unclosed greenres.GraphPool"):
        del pool
        gc.collect()
    closed = GraphPool()
    closed.close()
    with no_resource_warning():
        del closed


def test_pool_made_by_a_graph_is_closed_with_it():
    with layout_of({"a": 16}) as layout:
        g = Graph()
        with g.capture(layout["a"].stream):
            g.allocate(1000)
        pool = g.pool()
        other = Graph(pool=pool)
        g.close()
        assert not pool.closed  # `other` still uses it
        other.close()
        assert pool.closed
        with no_resource_warning():
            del g, other, pool
