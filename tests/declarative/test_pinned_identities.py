"""Identities that must not move when the spec format grows (workqueue budgets, roles,
locality domains): the fingerprints, isolation keys and plan-file text of specs that use
none of the newer fields. The values were recorded on main before those fields existed;
a change here breaks every cache keyed by greenres and every stored plan file."""

from __future__ import annotations

import hashlib
import json

import pytest

import greenres as gr
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, isolation_key
from greenres.serialize import dumps_plan, loads_plan

VERSIONS = {"bindings_version": "13.5.0", "greenres_version": "0.1.0"}

CASES = {
    "h100_decode_prefill": (
        gr.PartitionSpec(
            partitions=(
                gr.Partition("decode", sms=88),
                gr.Partition("prefill", share=0.25),
                gr.Partition("comm", sms=8),
            )
        ),
        "h100",
        "auto",
    ),
    "h100_groups_own": (
        gr.PartitionSpec(
            partitions=(
                gr.Partition("a", sms=20),
                gr.Partition("b", share=0.5, streams=3, priority=-1),
            ),
            remainder="own",
        ),
        "h100",
        "groups",
    ),
    "a100_rest": (
        gr.PartitionSpec(
            partitions=(gr.Partition("x", sms=10), gr.Partition("y")), coscheduling=False
        ),
        "a100",
        "auto",
    ),
}

PINNED = {
    "h100_decode_prefill": (
        "f4001d7264ad2f20",
        {
            "decode": "190c55971c753f9a76a424e1a6101567",
            "prefill": "4c57944525b7172cec35c3dc159e131a",
            "comm": "6605b18b30048e03172f11e28ffded0b",
        },
        "508e8ea944ee182e",
    ),
    "h100_groups_own": (
        "48f83fc453e84a3b",
        {
            "a": "9b4f3d1ba3b7aef4b5d01025f868bc4d",
            "b": "33ea029c90e7a3fbb76f7b3521699386",
            "remainder": "d8502ad4bbdd0b81df4830fd121eb630",
        },
        "0e6b2ed685170af6",
    ),
    "a100_rest": (
        "dbd18d1b30b51a59",
        {
            "x": "eb956a0d21eb04e0c33c08f9020306f2",
            "y": "d35c0c03126bf6b06894957d033f1569",
        },
        "5395dab91194f8c4",
    ),
}


def _plan(name):
    spec, profile, mechanism = CASES[name]
    return spec.plan(SmFacts.for_known_device(profile), mechanism=mechanism)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fingerprint_is_pinned(name):
    assert _plan(name).fingerprint == PINNED[name][0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_isolation_keys_are_pinned(name):
    plan = _plan(name)
    keys = {
        p: isolation_key(IsolationSchema(), plan.ref(p), environ={}, versions=VERSIONS)
        for p in plan.names
    }
    assert keys == PINNED[name][1]


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_file_text_is_pinned(name):
    # Facts of a 13.1 device now say how many workqueues it has (8 by default): the one
    # key a plan file of such a spec gains. Without it the file is the old one, byte for
    # byte, and that old file still loads, as the same layout.
    plan = _plan(name)
    data = json.loads(dumps_plan(plan))
    assert data["facts"].pop("workqueue_max_concurrency") == 8
    old_text = json.dumps(data, indent=2) + "\n"
    assert dumps_plan(plan) != old_text
    assert hashlib.sha256(old_text.encode()).hexdigest()[:16] == PINNED[name][2]
    old = loads_plan(old_text)
    assert old.fingerprint == plan.fingerprint
    assert old.facts.workqueue_max_concurrency == 0
    assert loads_plan(dumps_plan(plan)) == plan
