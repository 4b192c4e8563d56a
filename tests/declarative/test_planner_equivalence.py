"""The planner that emits its recipe and decides "auto" up front gives exactly what the
planner before it gave (tests/support/legacy_planner.py): the same plan, field by field,
the same recipe, or the same error with the same message, for every spec, facts and
mechanism."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from greenres.errors import GreenresError
from greenres.plan import make_plan

from support.legacy_planner import legacy_make_plan
from support.strategies import facts, partition_specs

specs = st.one_of(
    partition_specs(backfill=None),
    partition_specs(small=True, backfill=None),
    # where "auto" may plan with groups on a 13.1 driver: no co-scheduling, the remainder
    # given to a partition
    partition_specs(small=True, backfill=None).map(
        lambda spec: attrs.evolve(spec, coscheduling=False, remainder=spec.names[-1])
    ),
)
mechanisms = st.sampled_from(["auto", "auto", "groups", "structured"])


def _outcome(plan_function, spec, device, mechanism):
    try:
        return "plan", plan_function(spec, device, mechanism=mechanism)
    except GreenresError as error:
        return type(error).__name__, str(error)


@given(spec=specs, device=facts(), mechanism=mechanisms)
def test_the_planner_gives_what_the_legacy_planner_gave(spec, device, mechanism):
    kind, new = _outcome(make_plan, spec, device, mechanism)
    legacy_kind, legacy = _outcome(legacy_make_plan, spec, device, mechanism)
    assert kind == legacy_kind
    if kind != "plan":
        assert new == legacy
        return
    fields, recipe = legacy
    assert attrs.asdict(new, recurse=False, filter=lambda a, _v: a.name != "recipe") == fields
    assert new.recipe == recipe
