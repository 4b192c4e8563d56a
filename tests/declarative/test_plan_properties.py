"""Hypothesis properties of planning, against a model of what one driver split gives."""

from __future__ import annotations

import math
from fractions import Fraction

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from greenres.errors import DriverTooOldError, PlanError
from greenres.facts import SmFacts
from greenres.plan import Plan
from greenres.spec import Partition, PartitionSpec

from support.strategies import facts, partition_specs, profile_facts


def model_split(plan: Plan) -> dict[str, set[int]]:
    """SM ids per partition, built the way docs/planning.md tells the runtime to: one
    split (groups of group_size, or one result per partition), results handed out
    consecutively in plan order, the split's remainder to the partition that includes it."""
    facts = plan.facts
    sm_ids = iter(range(facts.sm_count))
    if plan.mechanism == "groups":
        results = [
            {next(sm_ids) for _ in range(plan.group_size)} for _ in range(plan.split_group_count)
        ]
    else:
        results = [{next(sm_ids) for _ in range(p.result_sm_count)} for p in plan if p.groups]
    remainder = set(sm_ids)
    assert len(remainder) == plan.split_remainder_sm_count
    owned: dict[str, set[int]] = {}
    for p, indices in zip(plan, plan.group_slices().values(), strict=True):
        sms: set[int] = set()
        for i in indices:
            sms |= results[i]
        if p.includes_split_remainder:
            sms |= remainder
        owned[p.name] = sms
    return owned


def feasible(spec: PartitionSpec, facts: SmFacts, unit: int, min_units: int) -> bool:
    """An independent statement of "fits": every partition at its smallest allowed size
    (fixed: rounded up; shares: the floor of their target, or their floors; the rest: its
    floor) fits the whole units of the device."""
    total = facts.sm_count // unit
    if total < min_units:
        return False
    need = 0
    for p in spec.partitions:
        floor = min_units
        if p.min_sms is not None:
            floor = max(floor, -(-p.min_sms // unit))
        if p.sms is not None:
            need += max(-(-p.sms // unit), min_units)
        elif p.share is not None:
            need += max(floor, math.floor(Fraction(repr(p.share)) * total))
        else:
            need += floor
    return need <= total


def granularity(spec: PartitionSpec, facts: SmFacts, mechanism: str) -> tuple[int, int]:
    minimum, alignment = facts.granularity(spec.coscheduling)
    if mechanism == "groups":
        return facts.group_size(spec.coscheduling), 1
    unit = facts.uncoscheduled_alignment if spec.backfill else alignment
    return unit, -(-max(minimum, alignment) // unit)


@given(spec=partition_specs(small=True, backfill=None), facts=facts())
def test_plan_invariants(spec, facts):
    try:
        plan = spec.plan(facts)
    except DriverTooOldError:
        assert spec.backfill and not facts.structured_split
        return
    except PlanError:
        return
    mechanism = plan.mechanism
    if facts.structured_split and mechanism == "groups":
        # "auto" falls back to groups only when a structured group without co-scheduling
        # would have to share a descriptor with the split's remainder.
        assert spec.remainder not in ("drop", "own") and not spec.coscheduling
        assert facts.uncoscheduled_alignment != facts.alignment
    else:
        assert mechanism == ("structured" if facts.structured_split else "groups")
    unit, min_units = granularity(spec, facts, mechanism)
    assert plan.group_size == unit
    # Every SM is in at most one partition; the counts add up.
    assert plan.total_sm_count + plan.remainder_sm_count == facts.sm_count
    owned = model_split(plan)
    seen: set[int] = set()
    for p in plan:
        assert len(owned[p.name]) == p.sm_count
        assert not (owned[p.name] & seen)
        seen |= owned[p.name]
    assert len(seen) == plan.total_sm_count
    # Sizes are whole units and at least the minimum.
    for p in plan:
        assert p.result_sm_count % unit == 0
        extra = plan.split_remainder_sm_count if p.includes_split_remainder else 0
        assert p.sm_count == p.result_sm_count + extra
        if not p.is_remainder:
            assert p.result_sm_count >= min_units * unit
            if mechanism == "groups":
                assert p.result_sm_count == p.groups * unit
            else:
                assert p.groups == 1
        assert p.sm_count > 0
    # At most one partition takes the split's remainder, and only a non-empty one.
    takers = [p for p in plan if p.includes_split_remainder]
    assert len(takers) <= 1
    assert all(plan.split_remainder_sm_count > 0 for _ in takers)
    if mechanism == "groups":
        assert sum(p.groups for p in plan) <= plan.split_group_count
        assert plan.split_group_count == facts.sm_count // unit
    # Each request is honoured.
    for declared in spec.partitions:
        p = plan[declared.name]
        assert p.streams == declared.streams and p.priority == declared.priority
        if declared.sms is not None:
            assert p.sm_count >= declared.sms
            assert p.sm_count >= p.result_sm_count
        if declared.min_sms is not None:
            assert p.sm_count >= declared.min_sms
    # The remainder policy.
    if spec.remainder == "own":
        assert plan.partitions[-1].is_remainder and plan.remainder_sm_count == 0
    elif spec.remainder != "drop":
        assert plan.remainder_sm_count == 0
    if any(d.is_rest for d in spec.partitions) and spec.remainder != "drop":
        assert plan.total_sm_count == facts.sm_count


@given(spec=partition_specs(backfill=None), facts=facts())
def test_plan_error_if_and_only_if_infeasible(spec, facts):
    if spec.backfill and not facts.structured_split:
        with pytest.raises(DriverTooOldError):
            spec.plan(facts)
        return
    mechanism = "structured" if facts.structured_split else "groups"
    unit, min_units = granularity(spec, facts, mechanism)
    fits = feasible(spec, facts, unit, min_units)
    try:
        # The mechanism is given: "auto" may fall back to groups, judged by other units.
        plan = spec.plan(facts, mechanism=mechanism)
    except PlanError as error:
        if fits:  # the other reasons: an empty owned remainder, or a structured group
            # (backfill, no co-scheduling) that cannot share a descriptor with the remainder
            text = str(error)
            assert (
                "remainder='own' would make an empty partition" in text
                or "cannot also take the split's remainder" in text
            )
        return
    assert fits
    assert plan.spec == spec


@given(
    spec=partition_specs(small=True),
    facts=facts(),
)
def test_shares_are_within_one_unit_of_their_target(spec, facts):
    try:
        plan = spec.plan(facts)
    except PlanError:
        return
    unit, min_units = granularity(spec, facts, plan.mechanism)
    total_units = facts.sm_count // unit
    for declared in spec.partitions:
        if declared.share is None or declared.name == spec.remainder:
            continue  # the remainder's target also takes what no partition took
        granted = plan[declared.name].result_sm_count // unit
        target = Fraction(repr(declared.share)) * total_units
        assert granted >= min_units
        if declared.min_sms is not None or granted == min_units:
            continue  # possibly raised to a floor: checked by test_plan_invariants
        assert abs(granted - target) <= 1
        assert granted in (math.floor(target), math.ceil(target))


@given(
    facts=facts(structured=False),
    others=st.lists(st.integers(1, 30), max_size=3),
    low=st.integers(1, 50),
    step=st.integers(0, 50),
)
def test_shares_are_monotone(facts, others, low, step):
    """With everything else the same, a larger share never gets fewer SMs."""
    high = low + step
    assume(sum(others) + high <= 100)

    def granted(percent: int) -> int | None:
        parts = [Partition("me", share=percent / 100)]
        parts += [Partition(f"o{i}", share=o / 100) for i, o in enumerate(others)]
        try:
            return PartitionSpec(parts).plan(facts)["me"].sm_count
        except PlanError:
            return None

    small, large = granted(low), granted(high)
    assume(small is not None and large is not None)
    assert large >= small


@given(
    facts=profile_facts(structured=False),
    percents=st.lists(st.integers(1, 100), min_size=1, max_size=6),
)
def test_shares_summing_to_at_most_one_always_fit(facts, percents):
    """Rounding never turns shares that sum to <= 1 into a PlanError, as long as each share
    is worth at least one group (smaller ones are raised to one group and may not fit)."""
    total = sum(percents)
    shares = [p / total for p in percents]
    parts = [Partition(f"p{i}", share=s) for i, s in enumerate(shares)]
    total_units = facts.sm_count // facts.group_size()
    assume(all(s * total_units >= 1 for s in shares))
    plan = PartitionSpec(parts).plan(facts)
    assert sum(p.groups for p in plan) <= total_units


@given(spec=partition_specs(small=True, backfill=None), facts=facts())
def test_planning_is_deterministic(spec, facts):
    try:
        first = spec.plan(facts)
    except (PlanError, DriverTooOldError) as error:
        with pytest.raises(type(error)) as again:
            spec.plan(facts)
        assert str(again.value) == str(error)
        return
    second = spec.plan(facts)
    assert first == second
    assert hash(first) == hash(second)
    assert first.fingerprint == second.fingerprint
    assert first.explain() == second.explain()


def _outcome(spec: PartitionSpec, facts: SmFacts, mechanism: str):
    try:
        return spec.plan(facts, mechanism=mechanism)
    except (PlanError, DriverTooOldError) as error:
        return type(error), str(error)


@given(
    spec=partition_specs(small=True, backfill=None)
    | partition_specs(small=True, backfill=None).map(
        # where the rule matters: no co-scheduling, the remainder given to a partition
        lambda s: attrs.evolve(s, coscheduling=False, remainder=s.names[-1])
    ),
    facts=facts(),
)
def test_auto_is_structured_unless_only_groups_can_make_the_spec(spec, facts):
    """The rule of docs/planning.md, stated with the forced mechanisms: "auto" is the
    structured plan when the facts have the split, except where that plan fails only because
    a group without co-scheduling would share a descriptor with the split's remainder; then,
    unless backfill needs the structured split, it is the groups plan."""
    auto = _outcome(spec, facts, "auto")
    if not facts.structured_split:
        assert auto == _outcome(spec, facts, "groups")
        return
    structured = _outcome(spec, facts, "structured")
    cannot_mix = (
        isinstance(structured, tuple)
        and "cannot also take the split's remainder" in (structured[1])
    )
    if cannot_mix and not spec.backfill:
        assert auto == _outcome(spec, facts, "groups")
        assert auto.mechanism == "groups" or auto[0] is PlanError
    else:
        assert auto == structured
