"""The benchmarks' C floor of ``Layout.create`` + ``close``, as the setup suite runs it
(``_floor_create``), makes the driver calls greenres makes for the same plan: the split of
the plan's mechanism (the structured split costs the driver more than a split by count),
and each of its other calls as often as greenres."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import greenres
from greenres._bindings import primary_context_current
from greenres.benchmark._floor import Floor
from greenres.benchmark._suite_setup import _floor_create
from greenres.plan import plan_counts

_SPLITS = ("cuDevSmResourceSplitByCount", "cuDevSmResourceSplit")
_LAYOUTS = 3


@pytest.mark.sim_only
@pytest.mark.parametrize("mechanism", ["groups", "structured"])
def test_the_layout_floor_makes_the_calls_of_greenres_create_and_close(sim, mechanism):
    device = greenres.Device(0)
    facts = device.sm_facts()
    if mechanism == "structured" and not facts.structured_split:
        pytest.skip("the driver has no structured split")
    size = facts.min_partition_size
    plan = plan_counts({"a": size, "b": size}, facts, mechanism=mechanism)
    floor_batch = _floor_create(
        SimpleNamespace(floor=Floor(greenres.driver_version()), device=device),
        plan,
        size,
        _LAYOUTS,
    )
    before = sim.live_objects()
    with primary_context_current(device.ordinal):  # the floor's events need a context
        greenres.Layout.create(plan, device=device).close()  # what a first create makes
        sim.reset_call_counts()
        for _ in range(_LAYOUTS):
            greenres.Layout.create(plan, device=device).close()
        made = sim.call_counts()
        sim.reset_call_counts()
        us = floor_batch()  # raises for a failed driver call
        floored = sim.call_counts()
    assert us > 0
    used = "cuDevSmResourceSplit" if mechanism == "structured" else "cuDevSmResourceSplitByCount"
    assert made[used] == floored[used] == _LAYOUTS
    assert sum(floored.get(f, 0) for f in _SPLITS) == _LAYOUTS
    for function, calls in floored.items():
        if function in ("cuCtxPushCurrent", "cuCtxPopCurrent"):
            continue  # the floor's events are made in the current context, greenres pushes
        assert made.get(function, 0) == calls, function
    assert sim.live_objects_since(before) == {}
