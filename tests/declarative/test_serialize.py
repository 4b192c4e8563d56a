"""Serialisation: exact round trips, spec files, and errors naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenres.errors import SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, SelectedCompileContext, SelectedRuntimeContext
from greenres.serialize import (
    dump_spec,
    dumps_spec,
    facts_from_dict,
    facts_to_dict,
    load_schema,
    load_spec,
    loads_schema,
    loads_spec,
    make_converter,
    plan_to_dict,
    plan_to_json,
    schema_from_dict,
    schema_to_dict,
    spec_from_dict,
    spec_to_dict,
)
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.strategies import facts, isolation_schemas, modal_specs, partition_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
specs = partition_specs(backfill=None) | modal_specs(backfill=None)


@given(spec=specs)
def test_dict_round_trip(spec):
    data = spec_to_dict(spec)
    assert spec_from_dict(data) == spec
    assert spec_from_dict(json.loads(json.dumps(data))) == spec


@given(spec=specs, format=st.sampled_from(["toml", "json"]))
def test_text_round_trip(spec, format):
    again = loads_spec(dumps_spec(spec, format), format)
    assert again == spec
    assert hash(again) == hash(spec)
    assert type(again) is type(spec)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs, format=st.sampled_from(["toml", "json"]))
def test_file_round_trip(tmp_path, spec, format):
    path = tmp_path / f"spec.{format}"
    dump_spec(spec, path)
    assert load_spec(path) == spec


@given(schema=isolation_schemas, format=st.sampled_from(["toml", "json"]))
def test_schema_round_trip(schema, format):
    assert schema_from_dict(schema_to_dict(schema)) == schema
    assert loads_schema(dumps_spec(schema, format), format) == schema


@given(facts=facts())
def test_facts_round_trip(facts):
    data = facts_to_dict(facts)
    assert data["compute_capability"] == list(facts.compute_capability)
    assert facts_from_dict(json.loads(json.dumps(data))) == facts


def test_partition_defaults_are_omitted():
    spec = PartitionSpec([Partition("decode", sms=96), Partition("rest", streams=2)])
    assert spec_to_dict(spec) == {
        "partitions": [{"name": "decode", "sms": 96}, {"name": "rest", "streams": 2}],
        "remainder": "drop",
        "coscheduling": True,
        "backfill": False,
    }


def test_integer_share_in_a_file_is_a_float():
    spec = loads_spec('[[partitions]]\nname = "all"\nshare = 1\n')
    assert spec["all"].share == 1.0


def test_modal_layout():
    text = """
default = "prefill-heavy"

[modes.decode-heavy]
remainder = "own"
[[modes.decode-heavy.partitions]]
name = "decode"
share = 0.75

[modes.prefill-heavy]
[[modes.prefill-heavy.partitions]]
name = "prefill"
share = 0.75
"""
    spec = loads_spec(text, source="modes.toml")
    assert isinstance(spec, ModalSpec)
    assert spec.mode_names == ("decode-heavy", "prefill-heavy")
    assert spec.default == "prefill-heavy"
    assert spec["decode-heavy"].remainder == "own"


@pytest.mark.parametrize("name", ["serving.toml", "serving.json", "modes.toml"])
def test_examples_load_and_plan_on_an_h100(name):
    spec = load_spec(EXAMPLES / name)
    plan = spec.plan(SmFacts.for_known_device("h100", driver_version=12080))
    assert plan.explain()


def test_example_twins_are_equal():
    assert load_spec(EXAMPLES / "serving.toml") == load_spec(EXAMPLES / "serving.json")


BAD_FILES = [
    # (file name, content, message after "<path>: ")
    ("bad.toml", "remainder = \n", "not valid TOML: "),
    ("bad.json", "{", "not valid JSON: "),
    (
        "bad.toml",
        '[[partitions]]\nname = "a"\nsms = 0\n',
        "at $.partitions[0]: 'sms' must be >= 1 (got 0)",
    ),
    ("bad.toml", '[[partitions]]\nname = "a"\nsm = 8\n', "at $.partitions[0]: unknown key 'sm'"),
    ("bad.toml", "[[partitions]]\nsms = 8\n", "at $.partitions[0].name: required key missing"),
    (
        "bad.toml",
        '[[partitions]]\nname = "a"\nsms = "8"\n',
        "at $.partitions[0]: 'sms' must be an int or None (got '8' of type str)",
    ),
    (
        "bad.toml",
        'coscheduling = "false"\n[[partitions]]\nname = "a"\n',
        "at $: 'coscheduling' must be a bool (got 'false')",
    ),
    ("bad.toml", 'remainder = "drop"\n', "at $.partitions: required key missing"),
    (
        "bad.toml",
        "[partitions.a]\nsms = 8\n",
        "at $.partitions: expected an array of tables ([[partitions]]) (got {'a': {'sms': 8}})",
    ),
    (
        "bad.json",
        '{"partitions": [{"name": "a", "share": NaN}]}',
        "at $.partitions[0]: 'share' must be a finite number (got nan)",
    ),
    (
        "bad.json",
        '{"partitions": [{"name": "a"}, {"name": "a", "sms": 8}]}',
        "at $: 'partitions' must have unique names (got 'a' twice)",
    ),
    ("bad.json", "[1, 2]", "expected a table of keys (got [1, 2])"),
    (
        "bad.toml",
        '[modes.x]\n[[modes.x.partitions]]\nname = "a"\nsms = -1\n',
        "at $.modes['x'].partitions[0]: 'sms' must be >= 1 (got -1)",
    ),
    (
        "bad.toml",
        'default = "y"\n[modes.x]\n[[modes.x.partitions]]\nname = "a"\n',
        "at $: 'default' must name a mode (got 'y'; modes: 'x')",
    ),
    ("bad.toml", "modes = 3\n", "at $.modes: expected a table of modes (got 3)"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_FILES)
def test_bad_files_name_the_file_the_key_and_the_problem(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_several_problems_are_all_listed(tmp_path):
    path = tmp_path / "two.toml"
    path.write_text('[[partitions]]\nname = "a"\nsm = 8\n[[partitions]]\nname = "b"\nsms = 0\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).splitlines() == [
        f"{path}: invalid spec:",
        "  - at $.partitions[0]: unknown key 'sm'",
        "  - at $.partitions[1]: 'sms' must be >= 1 (got 0)",
    ]


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.toml")
    other = tmp_path / "spec.yaml"
    other.write_text("x: 1")
    with pytest.raises(SpecError, match=r"unknown file type '\.yaml'; use \.toml or \.json"):
        load_spec(other)
    other.write_text('[[partitions]]\nname = "a"\n')
    assert load_spec(other, format="toml") == PartitionSpec([Partition("a")])


def test_schema_files(tmp_path):
    path = tmp_path / "schema.toml"
    path.write_text("compile_context = false\n[runtime_context]\nenvironment = false\n")
    assert load_schema(path) == IsolationSchema(
        runtime_context=SelectedRuntimeContext(environment=False), compile_context=False
    )
    path.write_text('runtime_context = "yes"\n')
    with pytest.raises(SpecError) as info:
        load_schema(path)
    assert str(info.value) == (
        f"{path}: at $.runtime_context: must be true, false or a table of form names (got 'yes')"
    )
    path.write_text("[compile_context]\ndevices = true\n")
    with pytest.raises(SpecError, match=r"at \$\.compile_context: unknown compile form 'devices'"):
        load_schema(path)
    assert schema_to_dict(IsolationSchema(True, SelectedCompileContext(device=False))) == {
        "runtime_context": True,
        "compile_context": {
            "device": False,
            "driver_version": True,
            "bindings_version": True,
            "greenres_version": True,
        },
    }


def test_plan_to_dict_and_json():
    spec = PartitionSpec([Partition("decode", sms=90), Partition("batch")], remainder="own")
    plan = spec.plan(SmFacts.for_known_device("h100", driver_version=12080))
    data = plan_to_dict(plan)
    assert data["mechanism"] == "groups"
    assert data["fingerprint"] == plan.fingerprint
    assert data["facts"]["compute_capability"] == [9, 0]
    assert data["spec"] == spec_to_dict(spec)
    assert data["partitions"][0] == {
        "name": "decode",
        "request": "90 SMs",
        "sm_count": 96,
        "groups": 12,
        "result_sm_count": 96,
        "includes_split_remainder": False,
        "reason": "rounded up to 12 groups of 8",
        "streams": 1,
        "priority": 0,
        "is_remainder": False,
    }
    assert [p["name"] for p in data["partitions"]] == ["decode", "batch", "remainder"]
    assert json.loads(plan_to_json(plan)) == data


def test_modal_plan_to_dict():
    spec = load_spec(EXAMPLES / "modes.toml")
    plans = spec.plan(SmFacts.for_known_device("h100", driver_version=12080))
    data = plan_to_dict(plans)
    assert list(data["modes"]) == list(spec.modes)
    assert data["default"] == spec.default_mode
    json.dumps(data)


def test_wrong_objects_are_refused():
    with pytest.raises(TypeError):
        spec_to_dict(Partition("a"))
    with pytest.raises(TypeError):
        plan_to_dict(PartitionSpec([Partition("a")]))
    with pytest.raises(SpecError, match="'format' must be 'toml' or 'json'"):
        dumps_spec(PartitionSpec([Partition("a")]), "yaml")


def test_each_converter_is_new_and_changing_one_changes_no_other():
    ours, theirs = make_converter(), make_converter()
    assert ours is not theirs
    spec = PartitionSpec([Partition("decode", sms=96)])
    assert ours.unstructure(spec) == spec_to_dict(spec)
    ours.register_unstructure_hook(PartitionSpec, lambda _spec: "changed")
    assert ours.unstructure(spec) == "changed"
    assert theirs.unstructure(spec) == spec_to_dict(spec) == make_converter().unstructure(spec)
    assert ours.structure({"partitions": [{"name": "decode", "sms": 96}]}, PartitionSpec) == spec
