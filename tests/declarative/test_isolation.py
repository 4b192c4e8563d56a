"""Isolation schemas, contexts and keys."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenres._canonical import canonical_json
from greenres.errors import SpecError
from greenres.facts import SmFacts
from greenres.isolation import (
    COMPILE_FORMS,
    ENVIRONMENT_VARIABLES,
    RUNTIME_FORMS,
    IsolationSchema,
    SelectedCompileContext,
    SelectedRuntimeContext,
    installed_versions,
    isolation_context,
    isolation_key,
    key_of_context,
)
from greenres.spec import Partition, PartitionSpec

from support.childprocess import run_python
from support.strategies import isolation_schemas

H100 = SmFacts.for_known_device("h100", driver_version=12080)
SPEC = PartitionSpec(
    [Partition("decode", sms=64, priority=-1), Partition("prefill", sms=32), Partition("b")]
)
PLAN = SPEC.plan(H100)
VERSIONS = {"bindings_version": "13.5.0", "greenres_version": "0.1.0"}
ENV = {"CUDA_DEVICE_MAX_CONNECTIONS": "8"}


def key(schema=None, partition=("decode",), **kwargs):
    kwargs.setdefault("environ", ENV)
    kwargs.setdefault("versions", VERSIONS)
    if partition and isinstance(partition, tuple) and isinstance(partition[0], str):
        partition = (PLAN, partition[0])
    return isolation_key(schema or IsolationSchema(), partition, **kwargs)


def test_context_of_a_partition_has_every_form():
    context = isolation_context(
        IsolationSchema(), PLAN.ref("decode"), environ=ENV, versions=VERSIONS
    )
    assert context == {
        "format": 1,
        "runtime": {
            "partition": {
                "sm_count": 64,
                "min_partition_size": 8,
                "alignment": 8,
                "coscheduling": True,
                "layout": PLAN.fingerprint,
            },
            "environment": {
                "CUDA_DEVICE_MAX_CONNECTIONS": "8",
                "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": None,
                "CUDA_VISIBLE_DEVICES": None,
            },
            "stream_priority": -1,
        },
        "compile": {
            "device": {
                "name": "NVIDIA H100 80GB HBM3",
                "compute_capability": [9, 0],
                "sm_count": 132,
            },
            "driver_version": 12080,
            "bindings_version": "13.5.0",
            "greenres_version": "0.1.0",
        },
    }


def test_key_is_32_hex_of_sha256_over_canonical_json():
    context = isolation_context(IsolationSchema(), (PLAN, "decode"), environ=ENV, versions=VERSIONS)
    text = canonical_json(context)
    assert text == json.dumps(context, sort_keys=True, separators=(",", ":"))
    assert text.startswith('{"compile":{"bindings_version":"13.5.0","device":{')

    expected = hashlib.sha256(text.encode()).hexdigest()[:32]
    assert key() == expected == key_of_context(context)
    assert len(expected) == 32 and int(expected, 16) >= 0


def test_partition_forms_of_every_kind_agree():
    class GreenContextLike:
        plan = PLAN
        planned_partition = PLAN["decode"]

    a = key(partition=PLAN.ref("decode"))
    assert a == key(partition=(PLAN, "decode"))
    assert a == key(partition=GreenContextLike())
    assert a == PLAN.ref("decode").isolation_key(IsolationSchema(), environ=ENV, versions=VERSIONS)


def test_a_planned_partition_alone_is_refused_with_advice():
    with pytest.raises(TypeError, match=r"plan.ref\(name\)"):
        isolation_key(IsolationSchema(), PLAN["decode"])
    with pytest.raises(TypeError, match=r"must have \.plan and \.planned_partition"):
        isolation_key(IsolationSchema(), object())
    with pytest.raises(KeyError, match="no partition 'nope'"):
        isolation_key(IsolationSchema(), (PLAN, "nope"))
    with pytest.raises(TypeError, match="IsolationSchema"):
        isolation_key({}, None)


def test_without_a_partition():
    schema = IsolationSchema(
        compile_context=SelectedCompileContext(device=False, driver_version=False)
    )
    context = isolation_context(schema, environ=ENV, versions=VERSIONS)
    assert context["runtime"]["partition"] is None
    assert context["runtime"]["stream_priority"] is None
    assert isolation_context(IsolationSchema(), facts=H100)["compile"]["driver_version"] == 12080


def test_facts_must_match_the_partition():
    other = SmFacts.for_known_device("h200", driver_version=12080)
    with pytest.raises(SpecError, match="differ"):
        isolation_context(IsolationSchema(), (PLAN, "decode"), facts=other)
    assert isolation_context(IsolationSchema(), (PLAN, "decode"), facts=H100)


def test_nothing_selected_is_a_constant_key():
    schema = IsolationSchema(runtime_context=False, compile_context=False)
    assert key(schema) == key(schema, partition=("prefill",)) == key(schema, partition=None)


def test_environment_defaults_to_os_environ(monkeypatch):
    schema = IsolationSchema(runtime_context=SelectedRuntimeContext(True, True, True))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    context = isolation_context(schema, (PLAN, "decode"), versions=VERSIONS)
    assert context["runtime"]["environment"]["CUDA_VISIBLE_DEVICES"] == "3"


def test_installed_versions_never_raise():
    versions = installed_versions()
    assert set(versions) == {"bindings_version", "greenres_version"}
    assert all(isinstance(v, str) and v for v in versions.values())


def test_schema_form_selection():
    assert IsolationSchema().runtime_forms() == RUNTIME_FORMS
    assert IsolationSchema().compile_forms() == COMPILE_FORMS
    assert IsolationSchema(False, False).runtime_forms() == ()
    selected = IsolationSchema(
        SelectedRuntimeContext(environment=False), SelectedCompileContext(bindings_version=False)
    )
    assert selected.runtime_forms() == ("partition", "stream_priority")
    assert selected.compile_forms() == ("device", "driver_version", "greenres_version")


# ----------------------------------------------------------------- properties

_VALUES = st.none() | st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=6)


@given(
    schema=isolation_schemas,
    env=st.dictionaries(st.sampled_from(ENVIRONMENT_VARIABLES), st.text(max_size=4)),
)
def test_key_does_not_depend_on_dict_order(schema, env):
    reversed_env = dict(reversed(list(env.items())))
    assert key(schema, environ=env) == key(schema, environ=reversed_env)
    context = isolation_context(schema, (PLAN, "decode"), environ=env, versions=VERSIONS)
    shuffled = json.loads(json.dumps(context, sort_keys=False))
    assert key_of_context(dict(reversed(list(shuffled.items())))) == key_of_context(context)


# One way to change each form, and the schema that selects only it.
CHANGES = {
    "partition": {"partition": ("prefill",)},  # 32 SMs instead of 64
    "environment": {"environ": {**ENV, "CUDA_DEVICE_MAX_CONNECTIONS": "32"}},
    "stream_priority": {"partition": ("b",)},  # priority 0 instead of -1
    "device": {"facts": SmFacts.for_known_device("h200", driver_version=12080), "partition": None},
    "driver_version": {
        "facts": SmFacts.for_known_device("h100", driver_version=13000),
        "partition": None,
    },
    "bindings_version": {"versions": {**VERSIONS, "bindings_version": "12.9.4"}},
    "greenres_version": {"versions": {**VERSIONS, "greenres_version": "0.2.0"}},
}
BASE = {
    "device": {"facts": H100, "partition": None},
    "driver_version": {"facts": H100, "partition": None},
}


def only(form: str, selected: bool) -> IsolationSchema:
    runtime = SelectedRuntimeContext(**{f: (f == form) == selected for f in RUNTIME_FORMS})
    compile_ = SelectedCompileContext(**{f: (f == form) == selected for f in COMPILE_FORMS})
    return IsolationSchema(runtime, compile_)


def _key_with(schema, **kwargs):
    if "partition" in kwargs and kwargs["partition"] is None:
        kwargs.setdefault("facts", H100)
    return key(schema, **kwargs)


@given(form=st.sampled_from(sorted(CHANGES)), extra=isolation_schemas)
def test_key_changes_when_a_selected_form_changes(form, extra):
    schema = only(form, selected=True)
    before = _key_with(schema, **BASE.get(form, {}))
    after = _key_with(schema, **CHANGES[form])
    assert before != after


def _plan_with(decode_sms: int, decode_priority: int):
    return PartitionSpec(
        [
            Partition("decode", sms=decode_sms, priority=decode_priority),
            Partition("prefill", sms=32),
            Partition("b"),
        ]
    ).plan(H100)


# Changes of exactly one form each (another partition would change two forms at once).
ONE_FORM_CHANGES = {
    **CHANGES,
    "partition": {"partition": (_plan_with(72, -1), "decode")},
    "stream_priority": {"partition": (_plan_with(64, -3), "decode")},
}


@given(form=st.sampled_from(sorted(CHANGES)))
def test_key_does_not_change_when_an_unselected_form_changes(form):
    schema = only(form, selected=False)
    base = BASE.get(form, {})
    assert _key_with(schema, **base) == _key_with(schema, **ONE_FORM_CHANGES[form])
    # ... and those same changes are seen when the form is selected.
    schema = only(form, selected=True)
    assert _key_with(schema, **base) != _key_with(schema, **ONE_FORM_CHANGES[form])


def test_a_partition_change_is_seen_by_the_partition_form_only():
    same_priority = PartitionSpec(
        [Partition("decode", sms=72, priority=-1), Partition("prefill", sms=32), Partition("b")]
    ).plan(H100)
    schema = IsolationSchema(SelectedRuntimeContext(partition=False), compile_context=True)
    assert key(schema) == key(schema, partition=(same_priority, "decode"))
    schema = IsolationSchema(
        SelectedRuntimeContext(environment=False, stream_priority=False), compile_context=False
    )
    assert key(schema) != key(schema, partition=(same_priority, "decode"))


@given(name=st.text(min_size=1, max_size=8).filter(lambda s: s == s.strip() and s.isprintable()))
def test_non_ascii_names_are_escaped(name):
    facts = SmFacts.for_device_profile(f"GPU {name}", (9, 0), 132, 12080)
    context = isolation_context(IsolationSchema(), facts=facts, environ={}, versions=VERSIONS)
    assert canonical_json(context).isascii()
    assert len(isolation_key(IsolationSchema(), facts=facts, environ={}, versions=VERSIONS)) == 32


_SCRIPT = """
import json, sys
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, isolation_key
from greenres.spec import Partition, PartitionSpec
plan = PartitionSpec([Partition("decode", sms=64, priority=-1), Partition("prefill", sms=32),
                      Partition("b")]).plan(SmFacts.for_known_device("h100", driver_version=12080))
print(isolation_key(IsolationSchema(), (plan, "decode"),
                    environ={"CUDA_DEVICE_MAX_CONNECTIONS": "8"},
                    versions={"bindings_version": "13.5.0", "greenres_version": "0.1.0"}))
"""


def test_key_is_the_same_in_another_process():
    # another process with another hash seed: nothing may depend on dict or set order
    assert run_python(_SCRIPT, PYTHONHASHSEED=12345).strip() == key()
