"""Disjointness: no SM in two partitions of one layout, for every profile and many sizes."""

import pytest
from childprocess import run_python
from hypothesis import given, settings
from hypothesis import strategies as st
from rthelpers import SIM, layout_of

import greenres
from greenres.devices import DEVICE_PROFILES
from greenres.spec import Partition, PartitionSpec

pytestmark = [pytest.mark.gpu, pytest.mark.sim_only]


def _check_layout(layout, sim):
    owned = {}
    for part in layout:
        sms = sim.green_context_sms(part.handle)
        assert len(sms) == part.sm_count, part.name
        for sm in sms:
            assert sm not in owned, f"SM {sm} in {owned.get(sm)} and {part.name}"
            owned[sm] = part.name
    assert len(owned) <= greenres.Device(0).sm_count


def test_partitions_of_one_layout_are_disjoint(sim):
    f = greenres.Device(0).sm_facts()
    unit = f.group_size()
    counts = {"a": unit, "b": 3 * unit, "c": 2 * unit}
    with layout_of(counts) as layout:
        _check_layout(layout, sim)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_hypothesis_sizes_are_disjoint_and_as_planned(data):
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
        for planned in plan.partitions:
            assert layout[planned.name].sm_count == planned.sm_count
        _check_layout(layout, sim)


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


def test_one_split_per_layout(sim):
    spec = PartitionSpec(
        partitions=(Partition("a", sms=16), Partition("b", sms=16), Partition("c", sms=16))
    )
    plan = spec.plan(greenres.Device(0), mechanism="groups")
    sim.reset_call_counts()
    with layout_of(plan):
        counts = sim.call_counts("cuDevSmResourceSplitByCount", "cuGreenCtxCreate")
    assert counts == {"cuDevSmResourceSplitByCount": 1, "cuGreenCtxCreate": 3}


def test_two_layouts_may_overlap_but_each_is_disjoint(sim):
    """DRIVER_FACTS: two independent splits can hand out the same SMs."""
    with layout_of({"a": 64}) as first, layout_of({"b": 64}) as second:
        _check_layout(first, sim)
        _check_layout(second, sim)


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


@pytest.mark.skipif(not SIM, reason="profiles are simulated devices")
@pytest.mark.parametrize("profile", sorted(DEVICE_PROFILES))
def test_every_profile_in_its_own_process(profile):
    assert run_python(_CHILD, GREENRES_SIM=profile).startswith("ok")
