"""Every bad input of the declarative classes and its message (field, rule, value)."""

from __future__ import annotations

import re

import pytest

from greenres.errors import GreenresError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, SelectedCompileContext, SelectedRuntimeContext
from greenres.spec import ModalSpec, Partition, PartitionSpec

P = Partition


def spec(*parts, **kwargs):
    return PartitionSpec(parts, **kwargs)


PARTITION_CASES = [
    # (kwargs, exact message)
    ({"name": ""}, "'name' must not be empty (got '')"),
    ({"name": " decode"}, "'name' must not start or end with whitespace (got ' decode')"),
    ({"name": "decode\n"}, "'name' must not start or end with whitespace (got 'decode\\n')"),
    ({"name": "de\x00code"}, "'name' must not contain control characters (got 'de\\x00code')"),
    ({"name": 3}, "'name' must be a str (got 3 of type int)"),
    ({"name": None}, "'name' must be a str (got None of type NoneType)"),
    ({"name": "a", "sms": 0}, "'sms' must be >= 1 (got 0)"),
    ({"name": "a", "sms": -8}, "'sms' must be >= 1 (got -8)"),
    ({"name": "a", "sms": 8.0}, "'sms' must be an int or None (got 8.0 of type float)"),
    ({"name": "a", "sms": "8"}, "'sms' must be an int or None (got '8' of type str)"),
    ({"name": "a", "sms": True}, "'sms' must be an int or None (got True of type bool)"),
    ({"name": "a", "share": 0.0}, "'share' must be in (0, 1] (got 0.0)"),
    ({"name": "a", "share": 0}, "'share' must be in (0, 1] (got 0.0)"),
    ({"name": "a", "share": -0.5}, "'share' must be in (0, 1] (got -0.5)"),
    ({"name": "a", "share": 1.5}, "'share' must be in (0, 1] (got 1.5)"),
    ({"name": "a", "share": float("nan")}, "'share' must be a finite number (got nan)"),
    ({"name": "a", "share": float("inf")}, "'share' must be a finite number (got inf)"),
    ({"name": "a", "share": float("-inf")}, "'share' must be a finite number (got -inf)"),
    ({"name": "a", "share": "0.5"}, "'share' must be a number or None (got '0.5' of type str)"),
    ({"name": "a", "share": True}, "'share' must be a number or None (got True of type bool)"),
    ({"name": "a", "share": 0.5, "min_sms": 0}, "'min_sms' must be >= 1 (got 0)"),
    ({"name": "a", "min_sms": 2.5}, "'min_sms' must be an int or None (got 2.5 of type float)"),
    ({"name": "a", "streams": 0}, "'streams' must be >= 1 (got 0)"),
    ({"name": "a", "streams": None}, "'streams' must be an int (got None of type NoneType)"),
    ({"name": "a", "priority": 1.5}, "'priority' must be an int (got 1.5 of type float)"),
    ({"name": "a", "priority": False}, "'priority' must be an int (got False of type bool)"),
    (
        {"name": "a", "sms": 8, "share": 0.5},
        "partition 'a': 'sms' and 'share' are exclusive (got sms=8, share=0.5)",
    ),
    (
        {"name": "a", "sms": 8, "min_sms": 8},
        "partition 'a': 'min_sms' is a floor for a share or the rest and cannot be combined "
        "with 'sms' (got sms=8, min_sms=8)",
    ),
]


@pytest.mark.parametrize(("kwargs", "message"), PARTITION_CASES)
def test_partition_rejects(kwargs, message):
    with pytest.raises(SpecError) as info:
        Partition(**kwargs)
    assert str(info.value) == message


SPEC_CASES = [
    (lambda: PartitionSpec(()), "'partitions' must not be empty (got ())"),
    (lambda: PartitionSpec([]), "'partitions' must not be empty (got ())"),
    (
        lambda: PartitionSpec("decode"),
        "'partitions' must be a sequence of Partition (got 'decode' of type str)",
    ),
    (
        lambda: PartitionSpec(None),
        "'partitions' must be a sequence of Partition (got None of type NoneType)",
    ),
    (
        lambda: PartitionSpec([P("a", sms=8), {"name": "b"}]),
        "'partitions[1]' must be a Partition (got {'name': 'b'} of type dict)",
    ),
    (
        lambda: spec(P("a", sms=8), P("a", share=0.5)),
        "'partitions' must have unique names (got 'a' twice)",
    ),
    (
        lambda: spec(P("a"), P("b")),
        "at most one partition may ask for the rest (no 'sms', no 'share') (got 'a', 'b')",
    ),
    (
        lambda: spec(P("a", share=0.6), P("b", share=0.5)),
        "the shares must sum to <= 1 (got 1.1)",
    ),
    (
        lambda: spec(P("a", share=0.5), remainder="b"),
        "'remainder' must be 'drop', 'own' or the name of a partition (got 'b'; partitions: 'a')",
    ),
    (
        lambda: spec(P("a", share=0.5), remainder=None),
        "'remainder' must be 'drop', 'own' or a partition name (got None of type NoneType)",
    ),
    (
        lambda: spec(P("remainder", share=0.5), remainder="own"),
        "remainder='own' creates a partition named 'remainder': rename the partition called "
        "'remainder'",
    ),
    (
        lambda: spec(P("a", share=0.5), coscheduling="no"),
        "'coscheduling' must be a bool (got 'no')",
    ),
    (lambda: spec(P("a", share=0.5), backfill=1), "'backfill' must be a bool (got 1)"),
]


@pytest.mark.parametrize(("make", "message"), SPEC_CASES)
def test_spec_rejects(make, message):
    with pytest.raises(SpecError) as info:
        make()
    assert str(info.value) == message


def test_shares_summing_to_one_in_decimal_are_accepted():
    # 0.1 ten times is 0.9999999999999999 or 1.0000000000000002 in binary.
    parts = [P(f"p{i}", share=0.1) for i in range(10)]
    assert len(spec(*parts)) == 10
    assert len(spec(P("a", share=0.7), P("b", share=0.2), P("c", share=0.1))) == 3


def test_remainder_keywords_win_over_partition_names():
    s = spec(P("drop", sms=8), P("b", sms=8), remainder="drop")
    assert s.remainder == "drop"


GOOD = spec(P("a", sms=8))

MODAL_CASES = [
    (lambda: ModalSpec({}), "'modes' must not be empty (got {})"),
    (
        lambda: ModalSpec([GOOD]),
        "'modes' must be a mapping of mode name to PartitionSpec",
    ),
    (lambda: ModalSpec({"": GOOD}), "'modes['']' must not be empty (got '')"),
    (
        lambda: ModalSpec({"x": P("a", sms=8)}),
        "'modes['x']' must be a PartitionSpec (got Partition(",
    ),
    (
        lambda: ModalSpec({"x": GOOD}, default="y"),
        "'default' must name a mode (got 'y'; modes: 'x')",
    ),
    (
        lambda: ModalSpec({"x": GOOD}, default=0),
        "'default' must be a mode name or None (got 0 of type int)",
    ),
]


@pytest.mark.parametrize(("make", "message"), MODAL_CASES)
def test_modal_spec_rejects(make, message):
    with pytest.raises(SpecError) as info:
        make()
    assert str(info.value).startswith(message)


FACTS = {
    "device_name": "H100 SXM5",
    "compute_capability": (9, 0),
    "sm_count": 132,
    "min_partition_size": 8,
    "alignment": 8,
    "uncoscheduled_min_partition_size": 2,
    "uncoscheduled_alignment": 2,
    "driver_version": 13010,
    "structured_split": True,
}

FACTS_CASES = [
    ({"device_name": ""}, "'device_name' must be a non-empty string (got '')"),
    ({"compute_capability": (9,)}, "'compute_capability' must be a (major, minor) pair"),
    ({"compute_capability": (9, -1)}, "'compute_capability' must be a (major, minor) pair"),
    ({"compute_capability": "9.0"}, "'compute_capability' must be a (major, minor) pair"),
    ({"sm_count": 0}, "'sm_count' must be >= 1 (got 0)"),
    ({"min_partition_size": 0}, "'min_partition_size' must be >= 1 (got 0)"),
    ({"alignment": -2}, "'alignment' must be >= 1 (got -2)"),
    ({"alignment": 8.0}, "'alignment' must be an int (got 8.0 of type float)"),
    ({"uncoscheduled_alignment": 0}, "'uncoscheduled_alignment' must be >= 1 (got 0)"),
    (
        {"uncoscheduled_min_partition_size": None},
        "'uncoscheduled_min_partition_size' must be an int",
    ),
    ({"driver_version": -1}, "'driver_version' must be >= 0 (got -1)"),
    ({"structured_split": 1}, "'structured_split' must be a bool (got 1)"),
    ({"total_memory": -1}, "'total_memory' must be >= 0 (got -1)"),
]


@pytest.mark.parametrize(("change", "message"), FACTS_CASES)
def test_facts_reject(change, message):
    with pytest.raises(SpecError) as info:
        SmFacts(**{**FACTS, **change})
    assert str(info.value).startswith(message)


def test_facts_accept_a_list_for_compute_capability():
    assert SmFacts(**{**FACTS, "compute_capability": [9, 0]}).compute_capability == (9, 0)


def test_profile_facts_reject_old_compute_capability():
    with pytest.raises(SpecError, match=re.escape("must be >= (6, 0) for green contexts")):
        SmFacts.for_device_profile("Old", (5, 2), 24)


def test_unknown_profile_lists_known_ones():
    with pytest.raises(SpecError, match="unknown device profile 'h1000'; known: v100, t4"):
        SmFacts.for_known_device("h1000")


SCHEMA_CASES = [
    (
        lambda: IsolationSchema(runtime_context="yes"),
        "'runtime_context' must be True, False, a SelectedRuntimeContext or a dict of runtime "
        "form names to bools (got 'yes')",
    ),
    (
        lambda: IsolationSchema(compile_context=SelectedRuntimeContext()),
        "'compile_context' must be True, False, a SelectedCompileContext or a dict",
    ),
    (lambda: SelectedRuntimeContext(partition=1), "'partition' must be a bool (got 1)"),
    (
        lambda: SelectedCompileContext(device=None),
        "'device' must be a bool (got None)",
    ),
]


@pytest.mark.parametrize(("make", "message"), SCHEMA_CASES)
def test_schema_rejects(make, message):
    with pytest.raises(SpecError) as info:
        make()
    assert str(info.value).startswith(message)


def test_spec_errors_are_value_errors_and_greenres_errors():
    with pytest.raises(ValueError):
        Partition("a", sms=0)
    with pytest.raises(GreenresError):
        Partition("a", sms=0)


def test_frozen():
    p = Partition("a", sms=8)
    with pytest.raises(AttributeError):
        p.sms = 16  # type: ignore[misc]
