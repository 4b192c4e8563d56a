"""The Inductor seed's isolation API as written: dict selections, user forms, and keys of
the built-in forms unchanged by them (pinned below, computed before they existed)."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenres.errors import FormError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import (
    IsolationSchema,
    SelectedCompileContext,
    SelectedRuntimeContext,
    isolation_context,
    isolation_key,
    register_form,
    registered_forms,
    unregister_form,
)
from greenres.serialize import dumps_spec, loads_schema, schema_from_dict, schema_to_dict
from greenres.spec import Partition, PartitionSpec

from support.childprocess import run_python

H100 = SmFacts.for_known_device("h100", driver_version=12080)
PLAN = PartitionSpec(
    [Partition("decode", sms=64, priority=-1), Partition("prefill", sms=32), Partition("b")]
).plan(H100)
VERSIONS = {"bindings_version": "13.5.0", "greenres_version": "0.1.0"}
ENV = {"CUDA_DEVICE_MAX_CONNECTIONS": "8"}
FIXED = {"environ": ENV, "versions": VERSIONS}

# Keys of the built-in forms computed with greenres as it was before dict selections,
# defaults and user forms (commit 5ce51fc): they must never change without a bump of
# KEY_FORMAT_VERSION.
PINNED = {
    "every form, decode": (IsolationSchema(), (PLAN, "decode"), {}),
    "every form, prefill": (IsolationSchema(), (PLAN, "prefill"), {}),
    "no partition, facts": (IsolationSchema(), None, {"facts": H100}),
    "runtime only": (IsolationSchema(compile_context=False), (PLAN, "b"), {}),
    "compile only": (IsolationSchema(runtime_context=False), (PLAN, "decode"), {}),
    "nothing": (IsolationSchema(False, False), None, {}),
    "selected": (
        IsolationSchema(
            SelectedRuntimeContext(environment=False),
            SelectedCompileContext(bindings_version=False),
        ),
        (PLAN, "decode"),
        {},
    ),
}
PINNED_KEYS = {
    "every form, decode": "2625a38e227b72f6b3c2978303d72a15",
    "every form, prefill": "b4a8f086223d423796bbf89dcc5f8880",
    "no partition, facts": "f544326ac8cc26ce76ae846841af356d",
    "runtime only": "c14062483698606170136e02555a2208",
    "compile only": "b8ae49156121d4585c6852d1d151fe63",
    "nothing": "64d4812c494eb8972eca2b30560f02a7",
    "selected": "d18dc4e43860048bc94dcdd56536c391",
}


@pytest.fixture
def forms():
    """``register_form`` for the test; every form it registered is removed afterwards."""
    before = set(registered_forms())
    yield register_form
    for name in set(registered_forms()) - before:
        unregister_form(name)


@pytest.mark.parametrize("case", sorted(PINNED))
def test_keys_of_the_built_in_forms_are_unchanged(case):
    schema, partition, extra = PINNED[case]
    assert isolation_key(schema, partition, **FIXED, **extra) == PINNED_KEYS[case]


def test_dict_selections_are_the_selection_classes():
    # the seed's spelling: IsolationSchema(runtime_context={...}, compile_context=False)
    schema = IsolationSchema(
        runtime_context={"partition": True, "environment": False}, compile_context=False
    )
    assert schema == IsolationSchema(SelectedRuntimeContext(environment=False), False)
    assert schema.runtime_forms() == ("partition", "stream_priority")  # unnamed stay
    assert isolation_key(schema, (PLAN, "decode"), **FIXED) == isolation_key(
        IsolationSchema(SelectedRuntimeContext(environment=False), False), (PLAN, "decode"), **FIXED
    )
    compile_ = IsolationSchema(compile_context={"device": False, "greenres_version": False})
    assert compile_.compile_forms() == ("driver_version", "bindings_version")


def test_an_all_false_dict_selects_no_forms():
    every = {"partition": False, "environment": False, "stream_priority": False}
    schema = IsolationSchema(runtime_context=every, compile_context=False)
    assert schema.runtime_forms() == ()
    context = isolation_context(schema, (PLAN, "decode"), **FIXED)
    assert context == isolation_context(IsolationSchema(False, False), None, **FIXED)
    assert context["runtime"] == {} and context["compile"] == {}


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ({"runtime_context": {"partiton": True}}, "unknown runtime form 'partiton'; the runtime"),
        ({"compile_context": {"torch": True}}, "unknown compile form 'torch'"),
        ({"compile_context": {"environment": True}}, "'environment' is a runtime form, not a"),
        ({"runtime_context": {"device": True}}, "'device' is a compile form, not a runtime"),
        ({"runtime_context": {3: True}}, "unknown runtime form 3"),
        ({"runtime_context": {"partition": "yes"}}, "'partition' must be a bool (got 'yes')"),
        ({"runtime_context": "yes"}, "must be True, False, a SelectedRuntimeContext or a dict"),
    ],
)
def test_bad_dict_selections_name_the_form(selection, message):
    with pytest.raises(SpecError) as info:
        IsolationSchema(**selection)
    assert message in str(info.value)


def test_a_user_form_is_selected_by_default_and_by_name(forms):
    forms("model_version", "runtime", lambda: {"model": "llama-3-8b", "tokenizer": "v2"})
    context = isolation_context(IsolationSchema(), (PLAN, "decode"), **FIXED)
    assert context["runtime"]["model_version"] == {"model": "llama-3-8b", "tokenizer": "v2"}
    # deselected by name, the key is the built-in forms' key
    without = IsolationSchema(runtime_context={"model_version": False})
    assert "model_version" not in without.runtime_forms()
    assert isolation_key(without, (PLAN, "decode"), **FIXED) == PINNED_KEYS["every form, decode"]
    # selected by name alone, next to no built-in form
    only = IsolationSchema(
        runtime_context={
            "partition": False,
            "environment": False,
            "stream_priority": False,
            "model_version": True,
        },
        compile_context=False,
    )
    assert isolation_context(only, **FIXED)["runtime"] == {
        "model_version": {"model": "llama-3-8b", "tokenizer": "v2"}
    }


def test_a_user_form_changes_the_key_when_its_value_changes(forms):
    value = ["2.5.0"]
    forms("torch_version", "compile", lambda: value[0])
    schema = IsolationSchema(runtime_context=False, compile_context={"torch_version": True})
    before = isolation_key(schema, (PLAN, "decode"), **FIXED)
    value[0] = "2.6.0"
    assert isolation_key(schema, (PLAN, "decode"), **FIXED) != before
    value[0] = "2.5.0"
    assert isolation_key(schema, (PLAN, "decode"), **FIXED) == before


def test_a_raising_form_is_named_in_the_error(forms):
    def broken():
        raise LookupError("no tokenizer loaded")

    forms("tokenizer_version", "runtime", broken)
    with pytest.raises(FormError) as info:
        isolation_key(IsolationSchema(compile_context=False), (PLAN, "decode"), **FIXED)
    assert str(info.value) == (
        "the runtime form 'tokenizer_version' failed: LookupError: no tokenizer loaded"
    )
    assert isinstance(info.value.__cause__, LookupError)
    assert isinstance(info.value, RuntimeError)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1, 2}, "which is not JSON-ready"),
        (float("nan"), "which is not JSON-ready"),
        ({1: "a"}, "keys that are not strings"),
        ([{"a": {2: None}}], "keys that are not strings"),
    ],
)
def test_a_form_must_return_json_ready_data(forms, value, message):
    forms("odd_form", "compile", lambda: value)
    with pytest.raises(FormError, match="the compile form 'odd_form'") as info:
        isolation_context(IsolationSchema(False, {"odd_form": True}))
    assert message in str(info.value)


def test_form_values_are_the_json_they_are_hashed_as(forms):
    forms("shape", "runtime", lambda: (1, (2, 3)))
    context = isolation_context(IsolationSchema({"shape": True}, False), **FIXED)
    assert context["runtime"]["shape"] == [1, [2, 3]]
    assert json.loads(json.dumps(context)) == context


def test_registration_is_checked(forms):
    forms("model_version", "runtime", str)
    with pytest.raises(SpecError, match="a runtime form 'model_version' is registered already"):
        forms("model_version", "compile", str)
    forms("model_version", "compile", lambda: "v2", replace=True)
    assert registered_forms("compile")[-1:] == ("model_version",)
    assert "model_version" not in registered_forms("runtime")
    with pytest.raises(SpecError, match="is a built-in runtime form"):
        forms("environment", "runtime", str)
    with pytest.raises(SpecError, match="ASCII identifier"):
        forms("", "runtime", str)
    with pytest.raises(SpecError, match="'group' must be 'runtime' or 'compile'"):
        forms("x", None, str)
    with pytest.raises(TypeError, match="'compute' must be callable"):
        forms("x", "runtime", None)
    with pytest.raises(KeyError, match="no registered form 'nope'"):
        unregister_form("nope")


def test_a_form_unregistered_after_selection_is_named(forms):
    forms("gone", "runtime", lambda: 1)
    schema = IsolationSchema(runtime_context={"gone": True}, compile_context=False)
    unregister_form("gone")
    with pytest.raises(SpecError, match="selects the form 'gone', which is no longer registered"):
        isolation_context(schema, **FIXED)


def test_schemas_with_user_forms_round_trip(forms):
    forms("model_version", "runtime", lambda: "v1")
    forms("triton_version", "compile", lambda: "3.2")
    schema = IsolationSchema(
        {"environment": False, "model_version": True}, {"triton_version": False}
    )
    data = schema_to_dict(schema)
    assert data["runtime_context"] == {
        "partition": True,
        "environment": False,
        "stream_priority": True,
        "model_version": True,
    }
    assert schema_from_dict(data) == schema
    for format in ("toml", "json"):
        assert loads_schema(dumps_spec(schema, format), format) == schema


@given(
    order=st.permutations(["partition", "environment", "stream_priority", "a_form", "b_form"]),
    values=st.lists(st.booleans(), min_size=5, max_size=5),
)
def test_dict_order_does_not_matter(order, values):
    before = set(registered_forms())
    register_form("a_form", "runtime", lambda: 1, replace=True)
    register_form("b_form", "runtime", lambda: [2], replace=True)
    try:
        selection = dict(zip(order, values, strict=True))
        reverse = dict(reversed(list(selection.items())))
        a, b = IsolationSchema(selection, False), IsolationSchema(reverse, False)
        assert a == b and hash(a) == hash(b)
        assert isolation_key(a, (PLAN, "b"), **FIXED) == isolation_key(b, (PLAN, "b"), **FIXED)
    finally:
        for name in set(registered_forms()) - before:
            unregister_form(name)


def test_forms_are_registered_and_computed_from_many_threads(forms):
    errors = []

    def work(i):
        try:
            for j in range(50):
                forms(f"thread_{i}_{j % 3}", "runtime", lambda i=i: i, replace=True)
                isolation_context(IsolationSchema(compile_context=False), **FIXED)
        except Exception as exc:  # collected: asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len([n for n in registered_forms("runtime") if n.startswith("thread_")]) == 12


_SCRIPT = """
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, isolation_key, register_form
from greenres.spec import Partition, PartitionSpec
plan = PartitionSpec([Partition("decode", sms=64, priority=-1), Partition("prefill", sms=32),
                      Partition("b")]).plan(SmFacts.for_known_device("h100", driver_version=12080))
fixed = dict(environ={"CUDA_DEVICE_MAX_CONNECTIONS": "8"},
             versions={"bindings_version": "13.5.0", "greenres_version": "0.1.0"})
print(isolation_key(IsolationSchema(), (plan, "decode"), **fixed))
register_form("served", "runtime", lambda: {"model": "m", "revisions": [3, 1, {"z": 1, "a": 2}]})
register_form("tools", "compile", lambda: {"torch": "2.6.0", "triton": None})
print(isolation_key(IsolationSchema({"environment": False}, {"device": False}), (plan, "b"),
                    **fixed))
"""


def test_keys_are_the_same_under_another_hash_seed(forms):
    pinned, with_forms = run_python(_SCRIPT, PYTHONHASHSEED=4242).split()
    assert pinned == PINNED_KEYS["every form, decode"]
    forms("served", "runtime", lambda: {"model": "m", "revisions": [3, 1, {"a": 2, "z": 1}]})
    forms("tools", "compile", lambda: {"triton": None, "torch": "2.6.0"})
    schema = IsolationSchema({"environment": False}, {"device": False})
    assert with_forms == isolation_key(schema, (PLAN, "b"), **FIXED)
    assert with_forms == run_python(_SCRIPT, PYTHONHASHSEED=1).split()[1]
