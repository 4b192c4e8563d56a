"""The recipe: the one value the runtime reads of a plan, made by the planner with it."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import assume, given

from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts
from greenres.plan import ModalPlan, Plan, plan_counts
from greenres.recipe import (
    GROUP_BACKFILL,
    SPLIT_IGNORE_SM_COSCHEDULING,
    Granularity,
    PartitionRecipe,
    SplitRecipe,
)
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.strategies import facts, modal_specs, partition_specs

H100_OLD = SmFacts.for_known_device("h100", driver_version=12080)
H100 = SmFacts.for_known_device("h100")


def _plan_or_reject(spec, device):
    try:
        return spec.plan(device)
    except (PlanError, DriverTooOldError):
        assume(False)


def sm_ids_of(recipe: SplitRecipe) -> dict[str, set[int]]:
    """The SM ids of each green context, built from the recipe alone, the way the runtime
    builds them: one split, results taken consecutively, the remainder where it says."""
    sm_ids = iter(range(recipe.granularity.sm_count))
    if recipe.mechanism == "groups":
        sizes = [recipe.min_count] * recipe.result_count
    else:
        sizes = list(recipe.group_sm_counts)
    assert len(sizes) == recipe.result_count
    results = [{next(sm_ids) for _ in range(size)} for size in sizes]
    remainder = set(sm_ids)
    owned = {}
    for part in recipe.partitions:
        sms: set[int] = set()
        for index in part.results:
            sms |= results[index]
        if part.takes_split_remainder:
            sms |= remainder
        owned[part.name] = sms
    return owned


def test_the_recipe_is_a_field_made_with_the_plan():
    plan = PartitionSpec([Partition("a", sms=8)]).plan(H100)
    assert "recipe" in attrs.fields_dict(Plan)
    assert plan.recipe is plan.recipe  # stored, not derived on each access
    assert isinstance(plan.recipe, SplitRecipe)


@given(spec=partition_specs(small=True, backfill=None), device=facts())
def test_the_recipe_alone_builds_the_plan(spec, device):
    plan = _plan_or_reject(spec, device)
    recipe = plan.recipe
    assert recipe.mechanism == plan.mechanism
    assert recipe.result_count == plan.split_group_count
    assert recipe.granularity == Granularity.from_facts(device, coscheduling=spec.coscheduling)
    assert [r.name for r in recipe.partitions] == list(plan.names)
    for made, planned in zip(recipe.partitions, plan, strict=True):
        assert made.sm_count == planned.sm_count
        assert made.result_count == planned.groups
        assert made.takes_split_remainder == planned.includes_split_remainder
        assert (made.streams, made.priority) == (planned.streams, planned.priority)
        assert made.results == plan.group_slices()[planned.name]
    owned = sm_ids_of(recipe)
    seen: set[int] = set()
    for made in recipe.partitions:
        assert len(owned[made.name]) == made.sm_count
        assert not owned[made.name] & seen  # disjoint: one split
        seen |= owned[made.name]
    if plan.mechanism == "groups":
        assert recipe.min_count == plan.group_size and recipe.group_sm_counts == ()
        assert recipe.split_flags == (0 if spec.coscheduling else SPLIT_IGNORE_SM_COSCHEDULING)
        assert (recipe.coscheduled_sm_count, recipe.group_flags) == (0, 0)
    else:
        assert recipe.min_count == 0 and recipe.split_flags == 0
        assert recipe.group_sm_counts == tuple(p.result_sm_count for p in plan if p.groups)
        assert recipe.coscheduled_sm_count == (0 if spec.coscheduling else plan.alignment)
        assert recipe.group_flags == (GROUP_BACKFILL if spec.backfill else 0)


def test_a_groups_recipe():
    spec = PartitionSpec(
        [Partition("decode", sms=64, streams=2, priority=-1), Partition("batch")],
        remainder="own",
    )
    assert spec.plan(H100_OLD).recipe == SplitRecipe(
        mechanism="groups",
        result_count=16,
        min_count=8,
        split_flags=0,
        group_sm_counts=(),
        coscheduled_sm_count=0,
        group_flags=0,
        partitions=(
            PartitionRecipe("decode", 0, 8, False, 64, 2, -1),
            PartitionRecipe("batch", 8, 8, False, 64, 1, 0),
            PartitionRecipe("remainder", 16, 0, True, 4, 1, 0),
        ),
        granularity=Granularity((9, 0), 132, 8, 8),
    )


def test_a_structured_recipe_without_coscheduling():
    spec = PartitionSpec([Partition("a", sms=12), Partition("b", sms=3)], coscheduling=False)
    recipe = spec.plan(H100).recipe
    assert recipe.mechanism == "structured"
    assert recipe.group_sm_counts == (12, 4)
    assert recipe.coscheduled_sm_count == 2
    assert recipe.granularity.uncoscheduled == (2, 2)
    assert [p.results for p in recipe.partitions] == [range(0, 1), range(1, 2)]


def test_modal_plans_give_each_mode_plan_and_recipe_by_type():
    modal = ModalSpec(
        {"one": PartitionSpec([Partition("a", sms=8)]), "two": PartitionSpec([Partition("a")])}
    )
    plans = modal.plan(H100)
    assert list(plans.recipes) == ["one", "two"]
    assert all(plans.recipes[m] is plans[m].recipe for m in plans)
    with pytest.raises(TypeError, match=r"'plans\['one'\]' must be a Plan \(got PartitionSpec\)"):
        ModalPlan(plans={"one": modal["one"]}, default="one", facts=H100, spec=modal)
    with pytest.raises(TypeError, match="'plans' must be a mapping of mode name to Plan"):
        ModalPlan(plans=[plans["one"]], default="one", facts=H100, spec=modal)


@given(spec=modal_specs(small=True), device=facts())
def test_modal_plan_recipes_are_the_modes_recipes(spec, device):
    try:
        plans = spec.plan(device)
    except PlanError:
        assume(False)
    assert {m: r for m, r in plans.recipes.items()} == {m: plans[m].recipe for m in plans}


# ------------------------------------------------------------------------ plan_counts


def test_plan_counts_is_a_spec_of_fixed_counts_with_the_remainder_dropped():
    plan = plan_counts({"decode": 90, "comm": 8}, H100_OLD)
    expected = PartitionSpec(
        [Partition("decode", sms=90), Partition("comm", sms=8)], remainder="drop"
    ).plan(H100_OLD)
    assert plan == expected
    assert plan.names == ("decode", "comm")  # the mapping's order
    assert plan.remainder_sm_count == 132 - 96 - 8
    assert plan_counts({"a": 8}, H100, mechanism="groups").mechanism == "groups"


def test_plan_counts_refuses_what_is_not_counts():
    with pytest.raises(TypeError, match="needs a mapping of partition names to SM counts"):
        plan_counts([("a", 8)], H100)
    with pytest.raises(TypeError, match="needs a mapping"):
        plan_counts(PartitionSpec([Partition("a", sms=8)]), H100)
    with pytest.raises(SpecError, match=r"^counts\['a'\]: 'sms' must be >= 1 \(got 0\)$"):
        plan_counts({"a": 0}, H100)
    with pytest.raises(SpecError, match=r"^counts\[3\]: 'name' must be a str"):
        plan_counts({3: 8}, H100)
    with pytest.raises(SpecError, match="at least one partition"):
        plan_counts({}, H100)
    with pytest.raises(PlanError, match="a asks 200 SMs"):
        plan_counts({"a": 200}, H100)


# ------------------------------------------------------------------------ granularity


def test_granularity_names_what_decides_sm_counts():
    of = Granularity.from_facts
    assert of(H100).differences(of(H100)) == []
    other_driver = SmFacts.for_known_device("h100", driver_version=12080, total_memory=1)
    assert of(H100).differences(of(other_driver)) == []  # not a granularity fact
    a100 = SmFacts.for_known_device("a100")
    assert of(H100).differences(of(a100)) == [
        "compute_capability: plan 9.0, device 8.0",
        "sm_count: plan 132, device 108",
        "min_partition_size: plan 8, device 4",
        "alignment: plan 8, device 2",
    ]
    loose = SmFacts.for_known_device("h100", uncoscheduled_min_partition_size=4)
    assert of(H100).differences(of(loose)) == []
    assert of(H100, coscheduling=False).differences(of(loose, coscheduling=False)) == [
        "uncoscheduled_min_partition_size: plan 2, device 4"
    ]
    # a device measured without the un-co-scheduled pair cannot satisfy a plan needing it
    assert of(H100, coscheduling=False).differences(of(H100)) == [
        "uncoscheduled_min_partition_size: plan 2, device None",
        "uncoscheduled_alignment: plan 2, device None",
    ]
    with pytest.raises(TypeError, match="'device' must be a Granularity"):
        of(H100).differences(H100)
