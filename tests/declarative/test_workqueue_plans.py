"""Workqueue budgets in specs and plans: the planner's rules (docs/planning.md,
"Workqueues") over generated specs, the version gate, the fingerprint and isolation key,
plan files, and bad input naming the field."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from greenres import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, isolation_context, isolation_key
from greenres.recipe import WORKQUEUE_SCOPE_VALUES
from greenres.serialize import dumps_plan, dumps_spec, loads_plan, loads_spec
from greenres.spec import (
    MAX_WORKQUEUE_LIMIT,
    REMAINDER_PARTITION_NAME,
    WORKQUEUE_SCOPES,
    Partition,
    PartitionSpec,
)

from support.strategies import partition_specs

_scopes = st.none() | st.sampled_from(WORKQUEUE_SCOPES)
_limits = st.none() | st.integers(1, MAX_WORKQUEUE_LIMIT)


@st.composite
def workqueue_specs(draw):
    """A spec of the generated kinds, with workqueue scopes and limits drawn per partition
    and as the spec's defaults."""
    spec = draw(partition_specs(small=True))
    partitions = tuple(
        attrs.evolve(p, workqueue_scope=draw(_scopes), workqueue_limit=draw(_limits))
        for p in spec.partitions
    )
    return attrs.evolve(
        spec,
        partitions=partitions,
        workqueue_scope=draw(_scopes),
        workqueue_limit=draw(_limits),
    )


@st.composite
def workqueue_facts(draw):
    profile = draw(st.sampled_from(["h100", "a100", "l4", "b200"]))
    return SmFacts.for_known_device(
        profile, workqueue_max_concurrency=draw(st.integers(1, MAX_WORKQUEUE_LIMIT))
    )


def _asked(spec):
    rows = [(p.name, *spec.workqueue_of(p)) for p in spec.partitions]
    if spec.remainder == "own":
        rows.append((REMAINDER_PARTITION_NAME, *spec.workqueue_of(None)))
    return {name: (scope, limit) for name, scope, limit in rows}


@given(spec=workqueue_specs(), facts=workqueue_facts())
def test_planned_workqueues_follow_the_rules(spec, facts):
    try:
        plan = spec.plan(facts)
    except PlanError as error:
        over = [
            name
            for name, (_s, limit) in _asked(spec).items()
            if limit is not None and limit > facts.workqueue_max_concurrency
        ]
        # a refusal is about SMs, or names a partition whose limit is over the maximum
        assume(not over)
        assert "workqueue" not in str(error)
        return
    most = facts.workqueue_max_concurrency
    asked = _asked(spec)
    balanced_given = sum(
        limit for scope, limit in asked.values() if scope == "balanced" and limit is not None
    )
    open_balanced = sum(1 for scope, limit in asked.values() if scope == "balanced" and not limit)
    for planned, recipe in zip(plan.partitions, plan.recipe.partitions, strict=True):
        scope, limit = asked[planned.name]
        if scope is None and limit is None:
            assert (planned.workqueue_scope, planned.workqueue_limit) == ("", 0)
            assert (recipe.workqueue_scope, recipe.workqueue_limit) == (-1, 0)
            continue
        assert planned.workqueue_scope == (scope or "device_ctx")
        assert 1 <= planned.workqueue_limit <= most
        if limit is not None:
            assert planned.workqueue_limit == limit and planned.workqueue_reason == ""
        elif planned.workqueue_scope == "device_ctx":
            assert planned.workqueue_limit == most
        else:  # an even share of what the balanced limits leave, at least 1
            left = max(most - balanced_given, 0)
            assert planned.workqueue_limit == max(1, left // open_balanced)
        assert recipe.workqueue_scope == WORKQUEUE_SCOPE_VALUES[planned.workqueue_scope]
        assert recipe.workqueue_limit == planned.workqueue_limit
    configured = any(p.workqueue_scope for p in plan.partitions)
    assert (plan.recipe.granularity.workqueue_max_concurrency is not None) == configured
    assert ("workqueues (CUDA 13.1" in plan.explain()) == configured
    # the SMs do not depend on workqueues: the same spec without them plans the same SMs
    bare = attrs.evolve(
        spec,
        partitions=tuple(
            attrs.evolve(p, workqueue_scope=None, workqueue_limit=None) for p in spec.partitions
        ),
        workqueue_scope=None,
        workqueue_limit=None,
    ).plan(facts)
    assert [p.sm_count for p in bare] == [p.sm_count for p in plan]
    assert (bare.fingerprint == plan.fingerprint) == (not configured)


@given(spec=workqueue_specs(), facts=workqueue_facts(), format=st.sampled_from(["json", "toml"]))
def test_plan_files_and_spec_files_round_trip(spec, facts, format):
    assert loads_spec(dumps_spec(spec, format), format) == spec
    try:
        plan = spec.plan(facts)
    except PlanError:
        assume(False)
        return
    again = loads_plan(dumps_plan(plan, format), format)
    assert again == plan and again.fingerprint == plan.fingerprint


H100 = SmFacts.for_known_device("h100")
SPEC = PartitionSpec(
    [
        Partition("decode", sms=64, workqueue_scope="balanced", workqueue_limit=4),
        Partition("prefill", sms=32, workqueue_scope="balanced"),
        Partition("batch", sms=16),
    ]
)


def test_explain_shows_each_configuration_and_an_oversubscription():
    text = SPEC.plan(H100).explain()
    assert "decode: balanced, limit 4" in text
    assert "prefill: balanced, limit 4 (4 for the balanced partition without a limit" in text
    assert "batch:" not in text.split("workqueues")[1]
    over = attrs.evolve(
        SPEC,
        partitions=(
            attrs.evolve(SPEC.partitions[0], workqueue_limit=6),
            attrs.evolve(SPEC.partitions[1], workqueue_limit=6),
            SPEC.partitions[2],
        ),
    )
    assert "balanced limits sum to 12 > 8: the driver may overlap" in over.plan(H100).explain()


def test_workqueues_enter_the_fingerprint_and_the_partition_form():
    plan = SPEC.plan(H100)
    other = attrs.evolve(
        SPEC, partitions=(attrs.evolve(SPEC.partitions[0], workqueue_limit=3), *SPEC.partitions[1:])
    ).plan(H100)
    assert plan.fingerprint != other.fingerprint
    schema = IsolationSchema(runtime_context=True, compile_context=False)
    form = isolation_context(schema, plan.ref("decode"), environ={})["runtime"]["partition"]
    assert form["workqueue"] == {"scope": "balanced", "limit": 4}
    batch = isolation_context(schema, plan.ref("batch"), environ={})["runtime"]["partition"]
    assert "workqueue" not in batch
    key = isolation_key(schema, plan.ref("decode"), environ={})
    assert key != isolation_key(schema, other.ref("decode"), environ={})


def test_the_owned_remainder_takes_the_spec_defaults():
    spec = PartitionSpec(
        [Partition("a", sms=16, workqueue_limit=2)], remainder="own", workqueue_scope="balanced"
    )
    plan = spec.plan(H100)
    assert (plan["a"].workqueue_scope, plan["a"].workqueue_limit) == ("balanced", 2)
    rest = plan[REMAINDER_PARTITION_NAME]
    assert (rest.workqueue_scope, rest.workqueue_limit) == ("balanced", 6)


@pytest.mark.parametrize("driver", [12040, 12080, 13000])
def test_workqueues_need_13_1(driver):
    old = SmFacts.for_known_device("h100", driver_version=driver)
    assert old.workqueue_max_concurrency == 0
    with pytest.raises(DriverTooOldError, match=r"13\.1 \(13010\).*the driver is") as info:
        SPEC.plan(old)
    assert f"({driver})" in str(info.value)
    # without workqueue settings the same device plans as before
    plain = PartitionSpec([Partition("a", sms=16)]).plan(old)
    assert plain["a"].workqueue_scope == ""


def test_facts_of_13_1_without_the_resource_are_refused_as_such():
    facts = SmFacts.for_known_device("h100", workqueue_max_concurrency=0)
    with pytest.raises(DriverTooOldError, match="report none"):
        SPEC.plan(facts)


def test_a_limit_over_the_maximum_is_listed_with_the_numbers():
    spec = PartitionSpec(
        [Partition("a", sms=16, workqueue_limit=12), Partition("b", sms=16, workqueue_limit=20)]
    )
    with pytest.raises(PlanError) as info:
        spec.plan(H100)
    text = str(info.value)
    assert "a asks workqueue_limit 12" in text and "b asks workqueue_limit 20" in text
    assert "at most 8" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workqueue_scope": "green"}, "'workqueue_scope' must be 'device_ctx' or 'balanced'"),
        ({"workqueue_scope": 0}, "'workqueue_scope' must be"),
        ({"workqueue_limit": 0}, "'workqueue_limit' must be >= 1 (got 0)"),
        ({"workqueue_limit": 33}, "'workqueue_limit' must be <= 32 (got 33)"),
        ({"workqueue_limit": 2.0}, "'workqueue_limit' must be an int or None"),
        ({"workqueue_limit": True}, "'workqueue_limit' must be an int or None"),
    ],
)
def test_bad_workqueue_values_name_the_field(kwargs, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Partition("a", **kwargs)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PartitionSpec([Partition("a")], **kwargs)


def test_bad_workqueue_values_in_a_file_name_the_key():
    text = '[[partitions]]\nname = "a"\nworkqueue_limit = 99\n'
    with pytest.raises(SpecError, match=r"at \$\.partitions\[0\]: 'workqueue_limit' must be <= 32"):
        loads_spec(text)
