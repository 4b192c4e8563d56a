"""Locality domains (CUDA 13.4) in specs and plans: the planner honours each domain's SMs
and granularity, the structured split's flags and the descriptor rule; version gating,
files, the fingerprint and bad input."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from greenres import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, isolation_context
from greenres.recipe import GROUP_LOCALITY_DOMAIN_ID, LOCALITY_DOMAIN_ANY
from greenres.serialize import dumps_plan, loads_plan, loads_spec
from greenres.spec import Partition, PartitionSpec

from support.strategies import partition_specs

B200 = SmFacts.for_known_device("b200", driver_version=13040)


@st.composite
def located_specs(draw):
    spec = draw(partition_specs(small=True))
    domains = st.none() | st.integers(0, 1) | st.just("spread")
    partitions = tuple(attrs.evolve(p, locality_domain=draw(domains)) for p in spec.partitions)
    try:
        return attrs.evolve(spec, partitions=partitions)
    except SpecError:
        assume(False)
        raise


def test_profile_facts_have_domains_from_13_4():
    assert (B200.locality_domain_count, B200.locality_domain_sm_count) == (2, 74)
    h100 = SmFacts.for_known_device("h100", driver_version=13040)
    assert (h100.locality_domain_count, h100.locality_domain_sm_count) == (1, 132)
    old = SmFacts.for_known_device("b200")
    assert (old.locality_domain_count, old.locality_domain_sm_count) == (0, 0)


@given(spec=located_specs())
def test_domains_are_honoured_or_refused(spec):
    try:
        plan = spec.plan(B200)
    except PlanError as error:
        assume("locality domain" in str(error))
        return
    room = B200.locality_domain_sm_count // plan.group_size * plan.group_size
    placed = [p for p in spec.partitions if p.locality_domain is not None]
    if placed:  # only the structured split places groups
        assert plan.mechanism == "structured"
    for domain in (0, 1):
        used = sum(p.sm_count for p in plan if p.locality_domain == domain)
        assert used <= room
    localities = plan.recipe.group_localities
    assert bool(localities) == bool(placed)
    for p, recipe_domain in zip(spec.partitions, localities, strict=False):
        expected = {None: -1, "spread": LOCALITY_DOMAIN_ANY}.get(p.locality_domain)
        assert recipe_domain == (p.locality_domain if expected is None else expected)
        assert plan[p.name].locality_domain == p.locality_domain
    if localities:
        assert plan.recipe.granularity.locality == (2, 74)
        assert "locality domains (CUDA 13.4" in plan.explain()
    # a partition in a domain never shares a descriptor with the split's remainder
    for p in plan:
        if type(p.locality_domain) is int:
            assert not p.includes_split_remainder
    again = loads_plan(dumps_plan(plan, "toml"), "toml")
    assert again == plan and again.fingerprint == plan.fingerprint


def test_domains_enter_the_fingerprint_and_the_partition_form():
    spec = PartitionSpec([Partition("a", sms=32, locality_domain=1), Partition("b", sms=32)])
    plan = spec.plan(B200)
    bare = PartitionSpec([Partition("a", sms=32), Partition("b", sms=32)]).plan(B200)
    assert plan.fingerprint != bare.fingerprint
    schema = IsolationSchema(compile_context=False)
    form = isolation_context(schema, plan.ref("a"), environ={})["runtime"]["partition"]
    assert form["locality_domain"] == 1
    assert (
        "locality_domain"
        not in isolation_context(schema, plan.ref("b"), environ={})["runtime"]["partition"]
    )
    assert GROUP_LOCALITY_DOMAIN_ID == 0x2


def test_a_domain_holds_what_fits_its_sms():
    fits = PartitionSpec(
        [Partition("a", sms=40, locality_domain=0), Partition("b", sms=32, locality_domain=0)]
    ).plan(B200)
    assert [p.sm_count for p in fits] == [40, 32]
    with pytest.raises(PlanError, match="locality domain 0 gets a, b: 80 SMs") as info:
        PartitionSpec(
            [Partition("a", sms=48, locality_domain=0), Partition("b", sms=32, locality_domain=0)]
        ).plan(B200)
    assert "72 usable at this granularity" in str(info.value)
    # the same SMs in two domains fit
    two = PartitionSpec(
        [Partition("a", sms=48, locality_domain=0), Partition("b", sms=32, locality_domain=1)]
    ).plan(B200)
    assert two.total_sm_count == 80


def test_the_remainder_cannot_join_a_domain():
    with pytest.raises(PlanError, match="one descriptor needs one domain"):
        PartitionSpec([Partition("a", sms=16, locality_domain=0)], remainder="a").plan(B200)
    owned = PartitionSpec([Partition("a", sms=16, locality_domain=0)], remainder="own").plan(B200)
    assert owned["remainder"].locality_domain is None


@pytest.mark.parametrize("driver", [12080, 13010])
def test_domains_need_13_4(driver):
    facts = SmFacts.for_known_device("b200", driver_version=driver)
    with pytest.raises(DriverTooOldError, match=r"13\.4 \(13040\)") as info:
        PartitionSpec([Partition("a", sms=16, locality_domain=0)]).plan(facts)
    assert f"({driver})" in str(info.value)


def test_bad_domains_name_the_field():
    with pytest.raises(SpecError, match="'locality_domain' must be below the 2 locality domains"):
        PartitionSpec([Partition("a", sms=16, locality_domain=2)]).plan(B200)
    for bad in (-1, "any", 1.0, True):
        with pytest.raises(SpecError, match="'locality_domain' must be a domain index"):
            Partition("a", locality_domain=bad)
    with pytest.raises(SpecError, match="need mechanism 'structured'"):
        PartitionSpec([Partition("a", sms=16, locality_domain=0)]).plan(B200, mechanism="groups")
    with pytest.raises(SpecError, match=r"at \$\.partitions\[0\]: 'locality_domain' must be"):
        loads_spec('[[partitions]]\nname = "a"\nlocality_domain = "near"\n')
    assert loads_spec('[[partitions]]\nname = "a"\nlocality_domain = 1\n')["a"].locality_domain == 1
