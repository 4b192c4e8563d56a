"""Bad input to the declarative API: each is refused with the exception the docs promise
and a message naming the argument, field or file, the rule and the value; never a raw
AttributeError, KeyError, OverflowError, RecursionError or ValueError from inside."""

from __future__ import annotations

import re
import sys

import pytest

from greenres.errors import SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, isolation_context, isolation_key
from greenres.plan import PartitionRef, Plan, make_plan
from greenres.serialize import (
    dump_plan,
    dumps_plan,
    dumps_spec,
    facts_to_dict,
    plan_to_dict,
    schema_to_dict,
)
from greenres.spec import ModalSpec, Partition, PartitionSpec

H100 = SmFacts.for_known_device("h100")
SPEC = PartitionSpec([Partition("decode", sms=64), Partition("batch")])
PLAN = SPEC.plan(H100)
MODAL = ModalSpec({"only": SPEC})
SCHEMA = IsolationSchema()
VERSIONS = {"bindings_version": "13.5.0", "greenres_version": "0.1.0"}

# (what, call, exception class, a fragment of the message)
A_SPEC_WHERE_A_PLAN_IS_EXPECTED = [
    (
        "isolation_key of a spec",
        lambda: isolation_key(SCHEMA, SPEC),
        TypeError,
        "'partition' must be a planned partition",
    ),
    (
        "isolation_key of (spec, name)",
        lambda: isolation_key(SCHEMA, (SPEC, "decode")),
        TypeError,
        "not a PartitionSpec: plan it first with spec.plan(device)",
    ),
    (
        "isolation_key of a whole plan",
        lambda: isolation_key(SCHEMA, PLAN),
        TypeError,
        "pass plan.ref(name)",
    ),
    ("Plan.ref on a spec", lambda: Plan.ref(SPEC, "decode"), TypeError, "'plan' must be a Plan"),
    (
        "PartitionRef of a spec",
        lambda: PartitionRef(SPEC, PLAN["decode"]),
        TypeError,
        "'plan' must be a Plan (from spec.plan(device) or load_plan) (got PartitionSpec)",
    ),
    (
        "PartitionRef of another plan's partition",
        lambda: PartitionRef(PLAN, Partition("decode", sms=64)),
        TypeError,
        "'planned_partition' must be one of the plan's PlannedPartition objects",
    ),
    ("dump_plan of a spec", lambda: dump_plan(SPEC, "x.json"), TypeError, "spec.plan(device)"),
    ("dumps_plan of a spec", lambda: dumps_plan(SPEC), TypeError, "(got PartitionSpec"),
    ("plan_to_dict of a spec", lambda: plan_to_dict(MODAL), TypeError, "(got ModalSpec"),
    ("dumps_spec of a plan", lambda: dumps_spec(PLAN), TypeError, "dump_plan()"),
    ("schema_to_dict of a spec", lambda: schema_to_dict(SPEC), TypeError, "IsolationSchema"),
    ("facts_to_dict of a spec", lambda: facts_to_dict(SPEC), TypeError, "SmFacts"),
    ("make_plan of a modal spec", lambda: make_plan(MODAL, H100), TypeError, "make_modal_plan()"),
    ("plan() on a spec", lambda: SPEC.plan(SPEC), TypeError, "sm_facts()"),
]

ISOLATION_ARGUMENTS = [
    (
        "environ not a mapping",
        lambda: isolation_key(SCHEMA, PLAN.ref("decode"), environ=[1]),
        TypeError,
        "'environ' must be a mapping",
    ),
    (
        "an environment value not a string",
        lambda: isolation_key(
            SCHEMA, PLAN.ref("decode"), environ={"CUDA_VISIBLE_DEVICES": 0}, versions=VERSIONS
        ),
        TypeError,
        "'environ['CUDA_VISIBLE_DEVICES']' must be a str or None (got 0 of type int)",
    ),
    (
        "facts not SmFacts",
        lambda: isolation_key(SCHEMA, facts="x"),
        TypeError,
        "'facts' must be an SmFacts or None (got 'x' of type str)",
    ),
    (
        "versions not a mapping",
        lambda: isolation_key(SCHEMA, PLAN.ref("decode"), environ={}, versions=[1]),
        TypeError,
        "'versions' must be a mapping",
    ),
    (
        "an unknown version",
        lambda: isolation_key(SCHEMA, PLAN.ref("decode"), environ={}, versions={"cuda": "13"}),
        SpecError,
        "'versions' may set 'bindings_version' and 'greenres_version' (got 'cuda')",
    ),
    (
        "schema not a schema",
        lambda: isolation_context({}, None),
        TypeError,
        "'schema' must be an IsolationSchema",
    ),
]


@pytest.mark.parametrize(
    ("call", "kind", "fragment"),
    [case[1:] for case in A_SPEC_WHERE_A_PLAN_IS_EXPECTED + ISOLATION_ARGUMENTS],
    ids=[case[0] for case in A_SPEC_WHERE_A_PLAN_IS_EXPECTED + ISOLATION_ARGUMENTS],
)
def test_wrong_arguments_are_named(call, kind, fragment):
    with pytest.raises(kind, match=re.escape(fragment)):
        call()


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


def _nested(depth):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (8, "8"),
        ("decode", "'decode'"),
        ({"a": {"sms": 8}}, "{'a': {'sms': 8}}"),
        (10**80, "an int of 81 digits"),
        (-(10**5000), "a negative int of 5001 digits"),
        (2**100000, "an int of 30103 digits"),
        (2 ** (1 << 21), "an int of about 631306 digits"),
        ([10**5000], "<list of 1 item>"),
        (_nested(100000), "<list of 1 item>"),
        (BrokenRepr(), "<BrokenRepr object>"),
    ],
    ids=[
        "int",
        "str",
        "dict",
        "long int",
        "huge int",
        "vast int",
        "vaster int",
        "huge int inside",
        "deep",
        "broken",
    ],
)
def test_messages_show_any_value_briefly(value, text):
    from greenres._validators import value_text

    assert value_text(value) == text


def test_long_values_are_cut():
    from greenres._validators import value_text

    text = value_text("x" * 10000)
    assert len(text) <= 200 and text.startswith("'xxx") and " ... " in text


# ----------------------------------------------------------------------------- integers

INTEGER_CASES = [
    (lambda: Partition("a", priority=2**31), "'priority' must be <= 2147483647 (got 2147483648)"),
    (lambda: Partition("a", priority=-(2**31) - 1), "'priority' must be >= -2147483648"),
    (lambda: Partition("a", streams=1025), "'streams' must be <= 1024 (got 1025)"),
    (lambda: Partition("a", sms=2**31), "'sms' must be <= 2147483647 (got 2147483648)"),
    (
        lambda: Partition("a", sms=-(10**5000)),
        "'sms' must be >= 1 (got a negative int of 5001 digits)",
    ),
    (lambda: Partition("a", min_sms=10**30), "'min_sms' must be <= 2147483647"),
    (lambda: Partition("a", share=10**400), "'share' must be in (0, 1] (got an int of 401 digits)"),
    (
        lambda: SmFacts.for_device_profile("x", (9, 0), 10**400),
        "'sm_count' must be <= 2147483647 (got an int of 401 digits)",
    ),
    (
        lambda: SmFacts.for_known_device("h100", total_memory=2**64),
        "'total_memory' must be <= 18446744073709551615",
    ),
    (
        lambda: SmFacts.for_device_profile("x", (9, 2**40), 132),
        "'compute_capability' must be a (major, minor) pair of ints from 0 to 2147483647",
    ),
]


@pytest.mark.parametrize(("make", "message"), INTEGER_CASES)
def test_integers_out_of_range_are_spec_errors(make, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        make()


def test_the_largest_values_are_accepted():
    p = Partition("a", sms=2**31 - 1, streams=1024, priority=-(2**31))
    assert (p.sms, p.streams, p.priority) == (2**31 - 1, 1024, -(2**31))
    assert Partition("b", priority=2**31 - 1).priority == 2**31 - 1


def test_integer_likes_are_stored_as_ints():
    import enum

    class Count(enum.IntEnum):
        EIGHT = 8

    p = Partition("a", sms=Count.EIGHT, streams=Count.EIGHT)
    assert type(p.sms) is int and type(p.streams) is int and p == Partition("a", sms=8, streams=8)
    with pytest.raises(SpecError, match=re.escape("'sms' must be an int or None (got True")):
        Partition("a", sms=True)


def test_numpy_integers_are_accepted_and_stored_as_ints():
    numpy = pytest.importorskip("numpy")
    p = Partition("a", sms=numpy.int64(8), streams=numpy.uint8(2), priority=numpy.int32(-1))
    assert p == Partition("a", sms=8, streams=2, priority=-1)
    assert {type(p.sms), type(p.streams), type(p.priority)} == {int}
    share = Partition("b", share=numpy.int64(1))
    assert share.share == 1.0 and type(share.share) is float
    half = Partition("c", share=numpy.float64(0.5))
    assert half.share == 0.5 and type(half.share) is float
    spec = PartitionSpec([p, Partition("d", min_sms=numpy.int16(8))])
    plain = PartitionSpec(
        [Partition("a", sms=8, streams=2, priority=-1), Partition("d", min_sms=8)]
    )
    assert spec.plan(H100) == plain.plan(H100)
    assert dumps_spec(spec, "json")  # plain ints: JSON takes them
    facts = SmFacts.for_device_profile(
        "Made up", (numpy.int64(9), numpy.int64(0)), numpy.int64(132)
    )
    assert facts.compute_capability == (9, 0) and type(facts.sm_count) is int
    assert facts == SmFacts.for_device_profile("Made up", (9, 0), 132)
    with pytest.raises(SpecError, match=re.escape("'sms' must be an int or None")):
        Partition("a", sms=numpy.True_)
    with pytest.raises(SpecError, match=re.escape("'sms' must be an int or None")):
        Partition("a", sms=numpy.float64(8.0))


# ----------------------------------------------------------------------------- names

NAME_CASES = [
    ("a\xa0b", "'name' must not contain whitespace other than a plain space (got 'a\\xa0b')"),
    ("a\u2003b", "'name' must not contain whitespace other than a plain space (got 'a\\u2003b')"),
    ("a\u2028b", "'name' must not contain whitespace other than a plain space (got 'a\\u2028b')"),
    ("de\tcode", "'name' must not contain control characters (got 'de\\tcode')"),
    ("a\u200bb", "'name' must not contain invisible format characters (got 'a\\u200bb')"),
    ("a\ue000b", "'name' must not contain private-use characters (got 'a\\ue000b')"),
    ("a\ud800b", "'name' must not contain surrogates (got 'a\\ud800b')"),
    ("a\u0378b", "'name' must not contain unassigned characters (got 'a\\u0378b')"),
    ("\xa0decode", "'name' must not start or end with whitespace (got '\\xa0decode')"),
]


@pytest.mark.parametrize(("name", "message"), NAME_CASES)
def test_names_say_what_is_wrong(name, message):
    with pytest.raises(SpecError) as info:
        Partition(name)
    assert str(info.value) == message
    with pytest.raises(SpecError) as info:
        ModalSpec({name: SPEC})
    assert str(info.value) == message.replace("'name'", f"'modes[{name!r}]'")


def test_plain_spaces_and_any_script_are_names():
    for name in ("decode lane", "デコード", "préfill", "a-b_c.d", "🚀"):
        assert Partition(name).name == name


COMPOSED, DECOMPOSED = "pr\u00e9fill", "pre\u0301fill"  # one name, two spellings


def test_names_are_stored_and_compared_in_nfc():
    assert COMPOSED != DECOMPOSED
    assert Partition(DECOMPOSED).name == COMPOSED
    assert Partition(DECOMPOSED) == Partition(COMPOSED)
    with pytest.raises(SpecError) as info:
        PartitionSpec([Partition(COMPOSED, sms=8), Partition(DECOMPOSED, sms=8)])
    assert str(info.value) == (
        f"'partitions' must have unique names (got {COMPOSED!r} twice; names are compared in "
        "Unicode normalisation form NFC)"
    )
    with pytest.raises(SpecError, match="'modes' must have unique names"):
        ModalSpec({COMPOSED: SPEC, DECOMPOSED: SPEC})
    spec = PartitionSpec([Partition(COMPOSED, sms=8), Partition("b")], remainder=DECOMPOSED)
    assert spec.remainder == COMPOSED
    assert spec[DECOMPOSED] is spec[COMPOSED]
    plan = spec.plan(H100)
    assert plan[DECOMPOSED] is plan[COMPOSED] and DECOMPOSED in plan
    assert plan.ref(DECOMPOSED) == plan.ref(COMPOSED)
    modal = ModalSpec({DECOMPOSED: spec}, default=DECOMPOSED)
    assert modal.mode_names == (COMPOSED,) and modal.default == COMPOSED
    assert modal[DECOMPOSED] is spec
    assert modal.plan(H100)[DECOMPOSED] == plan


def test_files_with_either_spelling_are_one_spec():
    from greenres.serialize import loads_spec

    toml = '[[partitions]]\nname = "{}"\nsms = 8\n'
    assert loads_spec(toml.format(DECOMPOSED)) == loads_spec(toml.format(COMPOSED))
    written = dumps_spec(loads_spec(toml.format(DECOMPOSED)))
    assert COMPOSED in written and DECOMPOSED not in written


# ----------------------------------------------------------------------------- files

LONG = "1" * 5000
FILE_CASES = [
    # (file name, content, message after "<path>: ")
    (
        "deep.json",
        "[" * 100000 + "]" * 100000,
        "nested 100000 levels deep; greenres files nest at most 32",
    ),
    (
        "deep.json",
        '{"partitions": ' + "[" * 40 + "]" * 40 + "}",
        "at $.partitions[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]...[0][0][0][0]: ",
    ),
    ("deep.json", '{"partitions": ' + "[" * 40 + "]" * 40 + "}", "nested 41 levels deep"),
    ("deep.toml", "a = " + "[" * 5000 + "]" * 5000, "nested 5001 levels deep"),
    ("deep.toml", "a = " + "{b = " * 3000 + "1" + "}" * 3000, "nested 3001 levels deep"),
    (
        "dotted.toml",
        "[" + ".".join(["a"] * 3000) + "]\nx = 1\n",
        # tomli (Python 3.10) stops a dotted header early: the depth it lets through differs
        "nested 3001 levels deep" if sys.version_info >= (3, 11) else "levels deep",
    ),
    (
        "long.json",
        '{"partitions": [{"name": "a", "sms": ' + LONG + "}]}",
        "at $.partitions[0].sms: an integer of 5000 digits; Python reads integers of at most "
        "4300 digits (sys.get_int_max_str_digits())",
    ),
    ("long.json", LONG, "at $: an integer of 5000 digits"),
    (
        "long.toml",
        '[[partitions]]\nname = "a"\nsms = ' + LONG + "\n",
        "line 3: key 'sms' has an integer of 5000 digits; Python reads integers of at most "
        "4300 digits",
    ),
    (
        "long.toml",
        '[[partitions]]\nname = "a"\nsms = -' + LONG + "\n",
        "line 3: key 'sms' has an integer of 5000 digits",
    ),
    (
        "dup.json",
        '{"partitions": [{"name": "a", "sms": 8, "name": "b"}]}',
        "at $.partitions[0]: duplicate key 'name'",
    ),
    (
        "dup.json",
        '{"remainder": "drop", "partitions": [{"name": "a"}], "remainder": "own"}',
        "at $: duplicate key 'remainder'",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    FILE_CASES,
    ids=[f"{i}-{case[0]}" for i, case in enumerate(FILE_CASES)],
)
def test_bad_files_are_spec_errors_naming_the_file(tmp_path, name, content, message):
    from greenres.serialize import load_plan, load_schema, load_spec

    path = tmp_path / name
    path.write_text(content)
    for load in (load_spec, load_plan, load_schema):
        with pytest.raises(SpecError) as info:
            load(path)
        assert str(info.value).startswith(f"{path}: ")
        assert message in str(info.value)


def _deep_dict(depth):
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deep_dicts_from_python_are_spec_errors():
    from greenres.serialize import facts_from_dict, plan_from_dict, schema_from_dict, spec_from_dict

    deep = _deep_dict(100000)
    for from_dict in (spec_from_dict, schema_from_dict, facts_from_dict):
        with pytest.raises(SpecError, match="nested 100001 levels deep; greenres files nest"):
            from_dict(deep)
    with pytest.raises(SpecError, match=r"^<plan>: at \$\.a\.a.*: nested 100001 levels deep"):
        plan_from_dict(deep)
    with pytest.raises(SpecError, match=r"^x\.json: at \$\.partitions"):
        spec_from_dict({"partitions": [_deep_dict(50)]}, source="x.json")


def test_the_deepest_greenres_file_is_far_from_the_limit():
    from greenres._files import MAX_DEPTH, check_depth
    from greenres.serialize import plan_to_dict

    data = plan_to_dict(ModalSpec({"m": SPEC}).plan(H100))
    depths = []
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        depths.append(depth)
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, (dict, list)):
            stack.extend((child, depth + 1) for child in children)
    assert max(depths) <= 8 < MAX_DEPTH
    check_depth(data, "plan.json")


def test_values_that_refuse_to_compare_are_refused_plainly():
    """numpy arrays answer == with an array, whose truth value raises: greenres checks
    types before it compares."""
    numpy = pytest.importorskip("numpy")
    from greenres.serialize import loads_spec, plan_from_dict, plan_to_dict

    array = numpy.array([1, 2])
    with pytest.raises(KeyError):
        PLAN.ref(array)
    with pytest.raises(KeyError):
        SPEC[array]
    assert array not in PLAN
    with pytest.raises(SpecError, match="'format' must be 'toml' or 'json'"):
        loads_spec("", array)
    with pytest.raises(SpecError, match="'mechanism' must be 'auto', 'groups' or 'structured'"):
        SPEC.plan(H100, mechanism=array)
    with pytest.raises(SpecError, match=r"at \$\.group_size: file array\(\[1, 2\]\), planned 8"):
        plan_from_dict({**plan_to_dict(PLAN), "group_size": array})
