"""The fast paths of issue 13 do what the general paths do: ``handoff`` of two greenres
Streams (any two layouts, either argument order, default and owned streams), an int handle
to ``enter`` at the edges of its fast test, and the device granularity ``Layout.create``
keeps after its first measurement."""

from __future__ import annotations

import itertools
import threading

import pytest

import greenres
from greenres import ClosedError, Graph, Layout, PlanError

from support.lifecycle_model import EVENTS_PER_PARTITION
from support.rthelpers import layout_of, memset
from support.simhelpers import run_python
from support.streamgate import Gate


def _streams(first, second):
    """A default and an owned stream of each layout (the owned ones have their own gate)."""
    return [
        first["a"].stream,
        first["b"].create_stream(),
        second["a"].stream,
        second["a"].create_stream(),
    ]


def test_handoff_of_two_streams_orders_every_pair():
    with layout_of({"a": 8, "b": 8}) as one, layout_of({"a": 8}) as two:
        streams = _streams(one, two)
        for src, dst in itertools.permutations(streams, 2):
            done = greenres.Event()
            with Gate(src) as gate:
                greenres.handoff(src, dst)
                done.record(dst)
                assert not done.query(), (src, dst)  # dst waits for src's held work
                gate.open()
                done.synchronize()
            assert done.query()
            done.close()


def _closes_in_time(layout) -> bool:
    """close() in another thread finishes: nothing left an admission of the layout behind
    (a leaked one makes close() wait for ever)."""
    closer = threading.Thread(target=layout.close, daemon=True)
    closer.start()
    closer.join(10)
    return not closer.is_alive()


def test_handoff_of_a_closed_stream_is_refused_on_either_side():
    with layout_of({"a": 8, "b": 8}) as one, layout_of({"a": 8}) as two:
        own, other, neighbour = one["a"].create_stream(), two["a"].stream, one["b"].stream
        own.close()
        # another layout's stream, and one of the same layout (which admits the layout once)
        for src, dst in ((own, other), (other, own), (own, neighbour), (neighbour, own)):
            with pytest.raises(ClosedError, match="stream is closed"):
                greenres.handoff(src, dst)
        greenres.handoff(neighbour, neighbour)  # one stream on both sides: admitted once
        closed = two["a"].stream
        assert _closes_in_time(one) and _closes_in_time(two)
    with layout_of({"a": 8}) as three:  # a stream of a closed layout, against a live one
        alive = three["a"].stream
        for src, dst in ((closed, alive), (alive, closed)):
            with pytest.raises(ClosedError):
                greenres.handoff(src, dst)


@pytest.mark.parametrize("handle", [2**63, 2**63 + 5, 2**64 - 1])
def test_enter_takes_handles_above_the_fast_test(sim, handle):
    """Handles of [2**63, 2**64) pass the full checks (the fast test stops at 2**63): the
    driver refuses them as streams, not greenres as ints."""
    with layout_of({"a": 8}) as layout:
        with pytest.raises(greenres.DriverError):
            layout["a"].enter(handle)
        assert not layout["a"].entered


@pytest.mark.parametrize(
    "handle, error", [(-1, "must be a stream handle >= 0"), (2**64, "< 2\\*\\*64")]
)
def test_enter_refuses_handles_outside_the_range(handle, error):
    with layout_of({"a": 8}) as layout:
        with pytest.raises(ValueError, match=error):
            layout["a"].enter(handle)
        with pytest.raises(ValueError, match=error):
            greenres.handoff(handle, layout["a"].stream)
        assert not layout["a"].entered


def test_enter_with_the_largest_fast_handle_reaches_the_driver():
    with layout_of({"a": 8}) as layout:
        with pytest.raises(greenres.DriverError):
            layout["a"].enter(2**63 - 1)
        layout["a"].enter(int(layout["a"].stream.handle))
        layout["a"].exit()


def test_later_creates_do_not_measure_the_device_again(sim):
    from greenres.plan import plan_counts

    plan = plan_counts({"a": 8, "b": 8}, greenres.Device(0).sm_facts())
    Layout.create(plan).close()  # the first create of the process may measure
    sim.reset_call_counts()
    Layout.create(plan).close()
    calls = sim.call_counts()
    # One SM resource query and one split: those of the layout itself.
    assert calls.get("cuDeviceGetDevResource", 0) == 1
    assert calls.get("cuDevSmResourceSplitByCount", 0) + calls.get("cuDevSmResourceSplit", 0) == 1


def test_the_kept_granularity_still_refuses_a_plan_of_another_device():
    from greenres.facts import SmFacts
    from greenres.plan import plan_counts

    Layout.create({"a": 8}).close()
    real = greenres.Device(0).sm_facts()
    other = SmFacts.for_known_device("b200")
    assert (other.sm_count, other.min_partition_size) != (real.sm_count, real.min_partition_size)
    with pytest.raises(PlanError, match="was made for"):
        Layout.create(plan_counts({"a": 8}, other))


def test_greenres_nvtx_is_read_by_the_first_create_that_needs_it():
    out = run_python(
        """
        import os
        import greenres.sim as sim; sim.install("h100")
        import greenres as gr
        os.environ["GREENRES_NVTX"] = "1"      # after import, before the first create: read
        with gr.Layout.create({"a": 8}) as first:
            print(first.nvtx)
        os.environ["GREENRES_NVTX"] = "0"      # after it: the process keeps what it read
        with gr.Layout.create({"a": 8}) as second:
            print(second.nvtx)
        gr.configure(nvtx=False)               # configure() still decides
        with gr.Layout.create({"a": 8}) as third:
            print(third.nvtx)
        """,
        {"GREENRES_NVTX": None},
    )
    assert out.split() == ["True", "True", "False"]


def _capture_a_memset(graph, stream, x):
    with graph.capture(stream):
        memset(x, 1, 64, stream)
    graph.instantiate()


def _capture_after(barrier, graph, stream, x):
    barrier.wait()
    _capture_a_memset(graph, stream, x)


def test_graphs_first_captured_by_two_threads_at_once_are_all_freed_with_the_layout(sim, memory):
    """A layout keeps no graph set until its first capture: two threads starting the first
    captures of a fresh layout at once must both be remembered, so close() frees both
    graphs before the green contexts."""
    baseline = sim.live_objects()
    for _ in range(20):
        layout = Layout.create({"a": 8, "b": 8})
        graphs = [Graph(), Graph()]
        start = threading.Barrier(2)

        buffers = [memory.alloc(64), memory.alloc(64)]
        streams = [layout["a"].stream, layout["b"].stream]
        threads = [
            threading.Thread(target=_capture_after, args=(start, graphs[k], streams[k], buffers[k]))
            for k in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        layout.close()
        for g in graphs:
            with pytest.raises(ClosedError):
                g.replay()
            g.close()
        memory.free_all()
    assert sim.live_objects() == baseline
    assert sim.hazards() == []


def test_a_capture_whose_begin_fails_leaves_the_layout_closable(sim, memory):
    baseline = sim.live_objects()
    layout = Layout.create({"a": 8})
    sim.inject_fault("cuStreamBeginCapture", "CUDA_ERROR_OUT_OF_MEMORY")
    g, x = Graph(), memory.alloc(64)
    with pytest.raises(greenres.DriverError):
        _capture_a_memset(g, layout["a"].stream, x)
    sim.clear_faults()
    _capture_a_memset(g, layout["a"].stream, x)  # the first capture that worked
    layout.close()
    with pytest.raises(ClosedError):
        g.replay()
    g.close()
    memory.free_all()
    assert sim.live_objects() == baseline


def _events_made_by(sim, make):
    before = sim.live_objects()["event"]
    layout = make()
    try:
        return sim.live_objects()["event"] - before
    finally:
        layout.close()


def test_a_layout_of_one_mode_makes_no_fence_events_and_one_with_modes_does(sim):
    """Layout.switch's fence events exist only where a switch can happen."""
    from greenres.spec import ModalSpec, Partition, PartitionSpec

    one_mode = _events_made_by(sim, lambda: Layout.create({"a": 8, "b": 8}))
    assert one_mode == 2 * EVENTS_PER_PARTITION  # the handoff pool's: made by handoffs
    spec = ModalSpec(
        modes={
            "x": PartitionSpec(partitions=(Partition("p", sms=16), Partition("q", sms=8))),
            "y": PartitionSpec(partitions=(Partition("p", sms=8), Partition("q", sms=16))),
        }
    )
    plan = spec.plan(greenres.Device(0))
    assert _events_made_by(sim, lambda: Layout.create(plan)) == (
        4 * (EVENTS_PER_PARTITION + 1)  # + the fence event of every partition
    )
    single = ModalSpec(modes={"only": PartitionSpec(partitions=(Partition("p", sms=8),))})
    layout = Layout.create(single.plan(greenres.Device(0)))
    try:
        assert layout.switch("only") is layout.partitions  # the mode it is in: no fence
        with pytest.raises(KeyError):
            layout.switch("other")
    finally:
        layout.close()


def test_switch_fences_order_the_old_modes_work_before_the_new_modes(sim):
    from greenres.spec import ModalSpec, Partition, PartitionSpec

    spec = ModalSpec(
        modes={
            "x": PartitionSpec(partitions=(Partition("p", sms=16),)),
            "y": PartitionSpec(partitions=(Partition("q", sms=16),)),
        }
    )
    with layout_of(spec.plan(greenres.Device(0))) as layout:
        old = layout["p"].stream
        done = greenres.Event()
        with Gate(old) as gate:
            layout.switch("y")
            done.record(layout["q"].stream)
            assert not done.query()  # q's stream waits for p's held work
            gate.open()
            done.synchronize()
        done.close()
