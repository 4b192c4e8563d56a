"""Plans as files: exact round trips, re-planning on load, and refusal of edited plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts
from greenres.recipe import Granularity
from greenres.serialize import (
    dump_plan,
    dumps_plan,
    load_plan,
    load_spec,
    loads_plan,
    plan_from_dict,
    plan_to_dict,
)
from greenres.spec import Partition, PartitionSpec

from support.strategies import facts, modal_specs, partition_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
H100 = SmFacts.for_known_device("h100")


# Random specs often do not fit a random device (too many SMs, a mechanism the device's
# driver lacks): those are rejected, and sometimes most of a short run is. (too_slow stays
# off, as in the profiles: a test's own suppression list replaces theirs.)
REJECTS_MANY = [HealthCheck.filter_too_much, HealthCheck.too_slow]


def _plan_or_reject(spec, device_facts):
    try:
        return spec.plan(device_facts)
    except (PlanError, DriverTooOldError):
        assume(False)


@settings(suppress_health_check=REJECTS_MANY)
@given(spec=partition_specs(backfill=None) | modal_specs(backfill=None), device=facts())
def test_dict_round_trip_is_exact(spec, device):
    plan = _plan_or_reject(spec, device)
    data = plan_to_dict(plan)
    again = plan_from_dict(json.loads(json.dumps(data)))
    assert again == plan
    assert type(again) is type(plan)
    assert again.fingerprint == plan.fingerprint


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, *REJECTS_MANY])
@given(
    spec=partition_specs(backfill=None) | modal_specs(backfill=None),
    device=facts(),
    format=st.sampled_from(["json", "toml"]),
)
def test_file_round_trip_is_exact(tmp_path, spec, device, format):
    plan = _plan_or_reject(spec, device)
    path = tmp_path / f"plan.{format}"
    dump_plan(plan, path)
    assert load_plan(path) == plan
    assert loads_plan(dumps_plan(plan, format), format) == plan


def _serving_plan():
    return load_spec(EXAMPLES / "serving.toml").plan(H100)


def test_an_edited_plan_is_refused_with_every_difference():
    data = plan_to_dict(_serving_plan())
    data["partitions"][0]["sm_count"] += 8
    data["remainder_sm_count"] = 99
    data["colour"] = "green"
    with pytest.raises(SpecError) as info:
        plan_from_dict(data, source="plan.json")
    message = str(info.value)
    assert message.startswith("plan.json: the stored plan is not what greenres plans")
    first = _serving_plan().partitions[0].sm_count
    assert f"at $.partitions[0].sm_count: file {first + 8}, planned {first}" in message
    assert "at $.remainder_sm_count: file 99" in message
    assert "at $.colour: unknown key" in message


def test_a_missing_derived_key_is_named():
    data = plan_to_dict(_serving_plan())
    del data["fingerprint"]
    with pytest.raises(SpecError, match=r"at \$\.fingerprint: required key missing"):
        plan_from_dict(data)


@pytest.mark.parametrize("key", ["facts", "spec", "mechanism"])
def test_a_missing_source_key_is_named(key):
    data = plan_to_dict(_serving_plan())
    del data[key]
    with pytest.raises(SpecError, match=rf"<plan>: at \$\.{key}: required key missing"):
        plan_from_dict(data)


def test_bad_values_inside_name_the_part_of_the_plan():
    data = plan_to_dict(_serving_plan())
    data["facts"]["sm_count"] = 0
    with pytest.raises(SpecError, match=r"p\.json: at \$\.facts: 'sm_count' must be >= 1"):
        plan_from_dict(data, source="p.json")
    data = plan_to_dict(_serving_plan())
    data["mechanism"] = "magic"
    with pytest.raises(SpecError, match=r"at \$\.mechanism: must be one of groups, structured"):
        plan_from_dict(data)


def test_a_spec_that_does_not_fit_its_facts_is_refused():
    data = plan_to_dict(PartitionSpec([Partition("a", sms=64)]).plan(H100))
    data["facts"]["sm_count"] = 32
    with pytest.raises(SpecError, match="the spec does not plan on its facts") as info:
        plan_from_dict(data)
    assert "a asks 64 SMs" in str(info.value)


def test_modal_plans_round_trip_and_check_their_facts():
    plan = load_spec(EXAMPLES / "modes.toml").plan(H100)
    data = plan_to_dict(plan)
    assert plan_from_dict(data) == plan
    mode = next(iter(data["modes"]))
    data["modes"][mode]["facts"]["device_name"] = "Another GPU"
    with pytest.raises(SpecError, match=rf"at \$\.modes\.{mode}\.facts: not the same as"):
        plan_from_dict(data)
    data = plan_to_dict(plan)
    data["default"] = "no-such-mode"
    with pytest.raises(SpecError, match="no-such-mode"):
        plan_from_dict(data)
    for key in ("facts", "spec"):
        data = plan_to_dict(plan)
        del data[key]
        with pytest.raises(SpecError, match=rf"at \$\.{key}: required key missing"):
            plan_from_dict(data)
    data = plan_to_dict(plan)
    data["modes"] = dict(reversed(list(data["modes"].items())))
    with pytest.raises(SpecError, match=r"at \$\.modes: the modes .* are not the modes of"):
        plan_from_dict(data)


def test_files_that_are_not_plans(tmp_path):
    with pytest.raises(SpecError, match="expected a table of keys"):
        plan_from_dict([1, 2])
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match=r"plan\.json: not valid JSON"):
        load_plan(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_plan(tmp_path / "missing.json")
    with pytest.raises(SpecError, match="unknown file type"):
        load_plan(tmp_path / "plan.yaml")
    with pytest.raises(SpecError, match="'format' must be 'toml' or 'json'"):
        dumps_plan(_serving_plan(), "yaml")


def _differences(planned, device, coscheduling=True):
    return Granularity.from_facts(planned, coscheduling=coscheduling).differences(
        Granularity.from_facts(device, coscheduling=coscheduling)
    )


def test_granularity_differences_name_what_decides_sm_counts():
    assert _differences(H100, H100) == []
    other_driver = SmFacts.for_known_device("h100", driver_version=12080, total_memory=1)
    assert _differences(H100, other_driver) == []  # not a granularity fact
    a100 = SmFacts.for_known_device("a100")
    assert _differences(H100, a100) == [
        "compute_capability: plan 9.0, device 8.0",
        "sm_count: plan 132, device 108",
        "min_partition_size: plan 8, device 4",
        "alignment: plan 8, device 2",
    ]
    loose = SmFacts.for_known_device("h100", uncoscheduled_min_partition_size=4)
    assert _differences(H100, loose) == []
    assert _differences(H100, loose, coscheduling=False) == [
        "uncoscheduled_min_partition_size: plan 2, device 4"
    ]
