"""Modes: alternative splits created once, switched in O(1) with an event fence."""

import pytest

import greenres
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.rthelpers import copy, layout_of, memset, read

pytestmark = pytest.mark.gpu

N = 4096


def _modal_plan():
    spec = ModalSpec(
        modes={
            "decode-heavy": PartitionSpec(
                partitions=(Partition("decode", share=0.7), Partition("prefill", share=0.25))
            ),
            "prefill-heavy": PartitionSpec(
                partitions=(Partition("decode", share=0.25), Partition("prefill", share=0.7))
            ),
        }
    )
    return spec.plan(greenres.Device(0))


def test_switch_returns_the_modes_partitions():
    plan = _modal_plan()
    with layout_of(plan) as layout:
        assert layout.modes == ("decode-heavy", "prefill-heavy")
        assert layout.mode == plan.default
        first = layout.partitions
        heavy = layout.switch("prefill-heavy")
        assert layout.mode == "prefill-heavy"
        assert heavy == layout.partitions
        heavy_plan = plan["prefill-heavy"]
        assert layout["prefill"].sm_count == heavy_plan["prefill"].sm_count
        assert layout["decode"].sm_count == heavy_plan["decode"].sm_count
        assert layout["prefill"].sm_count > layout["decode"].sm_count
        back = layout.switch(plan.default)
        assert back == first
        assert layout.switch(plan.default) is back  # same mode: nothing to do
        with pytest.raises(KeyError, match="no mode"):
            layout.switch("bogus")
        assert layout.plan is plan[plan.default]
        assert layout.modal_plan is plan


@pytest.mark.sim_only
def test_switch_makes_no_split_and_no_green_context(sim):
    with layout_of(_modal_plan()) as layout:
        sim.reset_call_counts()
        for _ in range(10):
            layout.switch("prefill-heavy")
            layout.switch("decode-heavy")
        counts = sim.call_counts(
            "cuDevSmResourceSplitByCount",
            "cuGreenCtxCreate",
            "cuStreamCreate",
            "cuGreenCtxStreamCreate",
            "cuEventCreate",
        )
        assert set(counts.values()) == {0}


def test_switch_fences_old_work_before_new_streams(memory, op_delay):
    op_delay(500)
    with layout_of(_modal_plan()) as layout:
        x, y = memory.alloc(N), memory.alloc(N)
        for i in range(10):
            old = layout["decode"].stream
            memset(x, i + 1, N, old)
            mode = "prefill-heavy" if layout.mode == "decode-heavy" else "decode-heavy"
            layout.switch(mode)
            new = layout["prefill"].stream
            copy(y, x, N, new)
            new.synchronize()
            assert read(y, N) == bytes([i + 1]) * N, f"round {i}"


def test_switch_while_entered_raises():
    with layout_of(_modal_plan()) as layout:
        with layout["decode"]:
            with pytest.raises(greenres.ThreadOwnershipError):
                layout.switch("prefill-heavy")


def test_a_switch_whose_fences_cross_a_capture_is_a_usage_error():
    """The fences join the capturing stream to the new mode's streams, outside the capture:
    the driver refuses (and invalidates the capture); greenres says what happened and what
    to do, and the layout stays in its mode, usable once the capture is reset."""
    with layout_of(_modal_plan()) as layout:
        graph = greenres.Graph()
        graph.capture_begin(layout["decode"].stream)
        with pytest.raises(greenres.UsageError, match="reset\\(\\) its graph") as info:
            layout.switch("prefill-heavy")
        assert isinstance(info.value.__cause__, greenres.DriverError)
        assert layout.mode == "decode-heavy"
        graph.reset()
        graph.close()
        assert layout.switch("prefill-heavy") == tuple(layout.partitions)


@pytest.mark.sim_only
def test_modal_layout_leaves_nothing(sim):
    from support.rthelpers import live

    before = live(sim)
    with layout_of(_modal_plan()) as layout:
        layout.switch("prefill-heavy")
    assert live(sim) == before


def test_switch_fences_streams_made_by_create_stream(memory, op_delay):
    """Work on any live stream of an old partition (not only the streams the plan asked
    for) is done before any stream of the new mode runs later work: the old side's
    create_stream() stream is fenced, and the new side's create_stream() stream waits."""
    op_delay(500)
    with layout_of(_modal_plan()) as layout:
        x, y, busy = memory.alloc(N), memory.alloc(N), memory.alloc(N)
        for i in range(6):
            mode = "prefill-heavy" if layout.mode == "decode-heavy" else "decode-heavy"
            old_side = layout["decode"].create_stream()
            new_side = layout.mode_partitions(mode)[1].create_stream()  # "prefill"
            assert new_side.partition.name == "prefill"
            for _ in range(3):  # a backlog: the memset of x runs late
                memset(busy, 1, N, old_side)
            memset(x, i + 1, N, old_side)
            layout.switch(mode)
            for target in (new_side, layout["prefill"].stream):
                copy(y, x, N, target)
                target.synchronize()
                assert read(y, N) == bytes([i + 1]) * N, f"round {i} on {target}"
                memset(y, 0, N, target)
                target.synchronize()
            old_side.close()
            new_side.close()
