"""Disjointness: no SM in two partitions of one layout, for every profile and many sizes.

SM ids are only visible in the simulator (``sim_only``); on a real GPU the ``gpu`` tests
check what the driver reports: every partition has its planned count, and together they
fit on the device."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenres
from greenres.devices import DEVICE_PROFILES
from greenres.spec import Partition, PartitionSpec

from support.childprocess import run_python
from support.rthelpers import SIM, layout_of

pytestmark = pytest.mark.gpu


def _check_layout(layout, sim):
    owned = {}
    for part in layout:
        sms = sim.green_context_sms(part.handle)
        assert len(sms) == part.sm_count, part.name
        for sm in sms:
            assert sm not in owned, f"SM {sm} in {owned.get(sm)} and {part.name}"
            owned[sm] = part.name
    assert len(owned) <= greenres.Device(0).sm_count


def _check_counts(layout, plan=None):
    """What a real GPU shows: planned counts, and a total that fits on the device."""
    for part in layout:
        assert part.sm_resource.count == part.sm_count
        if plan is not None:
            assert part.sm_count == plan[part.name].sm_count
    assert sum(p.sm_count for p in layout) <= greenres.Device(0).sm_count


def _three_sizes():
    unit = greenres.Device(0).sm_facts().group_size()
    return {"a": unit, "b": 3 * unit, "c": 2 * unit}


def test_partitions_of_one_layout_have_their_counts():
    with layout_of(_three_sizes()) as layout:
        _check_counts(layout)


@pytest.mark.sim_only
def test_partitions_of_one_layout_are_disjoint(sim):
    with layout_of(_three_sizes()) as layout:
        _check_layout(layout, sim)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_hypothesis_sizes_are_disjoint_and_as_planned(data):
    sim = None
    if SIM:
        import greenres.sim as sim

    device = greenres.Device(0)
    f = device.sm_facts()
    coscheduling = data.draw(st.booleans(), label="coscheduling")
    unit = f.group_size(coscheduling)
    total_units = f.sm_count // unit
    n = data.draw(st.integers(1, min(6, total_units)), label="partitions")
    units = data.draw(st.lists(st.integers(1, 4), min_size=n, max_size=n), label="units")
    while sum(units) > total_units:
        units[units.index(max(units))] -= 1
        units = [u for u in units if u > 0]
    remainder = data.draw(st.sampled_from(["drop", "own", "p0"]), label="remainder")
    spec = PartitionSpec(
        partitions=tuple(Partition(f"p{i}", sms=u * unit) for i, u in enumerate(units)),
        remainder=remainder if remainder != "own" or sum(units) * unit < f.sm_count else "drop",
        coscheduling=coscheduling,
    )
    plan = spec.plan(device, mechanism="groups")
    with layout_of(plan) as layout:
        _check_counts(layout, plan)
        if sim is not None:  # SM ids: only the simulator shows them
            _check_layout(layout, sim)


@pytest.mark.sim_only
def test_structured_split_is_disjoint_when_available(sim):
    device = greenres.Device(0)
    f = device.sm_facts()
    if not f.structured_split:
        with pytest.raises(greenres.DriverTooOldError):
            PartitionSpec(partitions=(Partition("a", sms=16),)).plan(device, mechanism="structured")
        return
    spec = PartitionSpec(partitions=(Partition("a", sms=24), Partition("b", sms=40)))
    plan = spec.plan(device, mechanism="structured")
    sim.reset_call_counts()
    with layout_of(plan) as layout:
        assert sim.call_counts("cuDevSmResourceSplitByCount")["cuDevSmResourceSplitByCount"] == 0
        for planned in plan.partitions:
            assert layout[planned.name].sm_count == planned.sm_count
        _check_layout(layout, sim)


_SPLITS = ("cuDevSmResourceSplitByCount", "cuDevSmResourceSplit")


@pytest.mark.sim_only
@pytest.mark.parametrize("remainder", ["drop", "own", "a"])
@pytest.mark.parametrize("mechanism", ["groups", "structured"])
def test_exactly_one_split_per_layout(sim, mechanism, remainder):
    """All partitions come from ONE split call (the same-split rule); in particular the
    remainder is never split again: the only split's input is the device resource, and
    its remainder is an output of that call."""
    device = greenres.Device(0)
    if mechanism == "structured" and not device.sm_facts().structured_split:
        pytest.skip("the driver has no structured split")
    spec = PartitionSpec(
        partitions=(Partition("a", sms=16), Partition("b", sms=16), Partition("c", sms=16)),
        remainder=remainder,
    )
    plan = spec.plan(device, mechanism=mechanism)  # planning measures with splits: before
    sim.reset_call_counts()
    with layout_of(plan) as layout:
        counts = sim.call_counts(*_SPLITS, "cuGreenCtxCreate")
        _check_layout(layout, sim)
    used = "cuDevSmResourceSplit" if mechanism == "structured" else "cuDevSmResourceSplitByCount"
    assert counts[used] == 1
    assert sum(counts[f] for f in _SPLITS) == 1
    assert counts["cuGreenCtxCreate"] == len(plan.partitions)


@pytest.mark.sim_only
def test_one_split_per_mode(sim):
    from greenres.spec import ModalSpec

    spec = ModalSpec(
        modes={
            "x": PartitionSpec(partitions=(Partition("p", sms=16), Partition("q", sms=32))),
            "y": PartitionSpec(partitions=(Partition("p", sms=32), Partition("q", sms=16))),
        }
    )
    plan = spec.plan(greenres.Device(0))
    sim.reset_call_counts()
    with layout_of(plan):
        counts = sim.call_counts(*_SPLITS)
    assert sum(counts.values()) == 2


def test_two_layouts_have_their_counts():
    with layout_of({"a": 64}) as first, layout_of({"b": 64}) as second:
        _check_counts(first)
        _check_counts(second)


@pytest.mark.sim_only
def test_two_layouts_may_overlap_but_each_is_disjoint(sim):
    """docs/driver-facts.md: two independent splits can hand out the same SMs (and do here)."""
    with layout_of({"a": 64}) as first, layout_of({"b": 64}) as second:
        _check_layout(first, sim)
        _check_layout(second, sim)
        a = set(sim.green_context_sms(first["a"].handle))
        b = set(sim.green_context_sms(second["b"].handle))
        assert a & b, "two splits gave disjoint SMs: the trap was not reproduced"


_CHILD = r"""
import greenres, greenres.sim as sim
from greenres.spec import Partition, PartitionSpec
device = greenres.Device(0)
f = device.sm_facts()
unit = f.group_size()
total = f.sm_count // unit
sizes = [u for u in (1, 2, 3, 1) if u <= total][: max(1, min(4, total))]
while sum(sizes) > total:
    sizes.pop()
for coscheduling in (True, False):
    u = f.group_size(coscheduling)
    spec = PartitionSpec(
        partitions=tuple(Partition(f"p{i}", sms=s * u) for i, s in enumerate(sizes)),
        remainder="own" if sum(sizes) * u < f.sm_count else "drop",
        coscheduling=coscheduling,
    )
    with greenres.Layout.create(spec.plan(device, mechanism="groups")) as layout:
        seen = set()
        for p in layout:
            sms = set(sim.green_context_sms(p.handle))
            assert len(sms) == p.sm_count, (p.name, len(sms), p.sm_count)
            assert not (sms & seen), p.name
            seen |= sms
assert all(v == 0 for v in sim.live_objects().values()), sim.live_objects()
print("ok", f.device_name, f.sm_count)
"""


@pytest.mark.sim_only
@pytest.mark.skipif(not SIM, reason="profiles are simulated devices")
@pytest.mark.parametrize("profile", sorted(DEVICE_PROFILES))
def test_every_profile_in_its_own_process(profile):
    assert run_python(_CHILD, GREENRES_SIM=profile).startswith("ok")
