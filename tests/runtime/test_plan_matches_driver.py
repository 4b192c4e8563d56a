"""The plan is exactly what the runtime creates (issue 4, docs/planning.md).

For many hypothesis-chosen PartitionSpecs and ModalSpecs (shares, fixed counts, "the rest",
both co-scheduling settings, every remainder policy, backfill where the structured split
exists) and mechanisms "groups", "structured" (when the facts have it) and "auto": when
``spec.plan(device)`` succeeds, ``Layout.create(plan)`` succeeds and every partition has the
plan's SM count, as the runtime, the driver (``cuGreenCtxGetDevResource``) and the simulator's
SM map see it; the partitions are disjoint, the SMs in none are the plan's remainder, every
mode of a modal plan is created and switched to, a partition's isolation key is its plan
reference's, planning for the documented profile (``sim:<profile>``) gives the same layout,
and closing leaves nothing alive.

This process runs against ``GREENRES_SIM`` (2 x H100 by default: both devices are drawn).
Other profiles and drivers need their own process (the simulator is configured once per
process): ``support/plan_driver_checks.py`` runs the same hypothesis checks in a child with the
active hypothesis profile's number of examples. The checks live in that module.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import settings

from support.childprocess import run_child
from support.plan_driver_checks import run_modal_specs, run_partition_specs
from support.rthelpers import SIM

CHILD_MODULE = "support.plan_driver_checks"

#: Profiles and drivers checked in a child process each (``GREENRES_SIM`` values). The 12.8
#: drivers have no structured split: only "groups" (and "auto", which then means groups).
CHILD_PROFILES = [
    "a100",
    "v100",
    "l4",
    "h20",
    "rtx5090",
    "b200",
    "h100@12080",
    "a100@12080",
]


def _examples() -> int:
    return settings.default.max_examples


def _assert_something_was_created(stats, key_prefix="created_"):
    created = sum(n for k, n in stats.items() if k.startswith(key_prefix))
    # Most drawn specs fit (``small`` specs nearly always): a run that created nothing
    # would be a vacuous pass.
    assert created > 0, dict(stats)


@pytest.mark.sim_only
def test_partition_specs_create_exactly_their_plan():
    """SM counts, the simulator's SM ids, disjointness, remainder, keys, offline plan, and
    nothing left alive, for both simulated H100s."""
    stats = run_partition_specs(introspect=True)
    assert stats["examples"] >= 1
    _assert_something_was_created(stats)


@pytest.mark.sim_only
def test_modal_specs_create_every_mode_as_planned():
    stats = run_modal_specs(introspect=True)
    assert stats["modal_examples"] >= 1
    assert stats["modal_created"] > 0, dict(stats)


@pytest.mark.gpu
def test_partition_counts_match_the_plan_on_this_device():
    """What a real GPU shows too: every partition's SM count (the runtime's and
    ``cuGreenCtxGetDevResource``'s) equals the plan's. No simulator introspection."""
    stats = run_partition_specs(introspect=False)
    _assert_something_was_created(stats)


@pytest.mark.gpu
def test_modal_counts_match_the_plan_on_this_device():
    stats = run_modal_specs(introspect=False)
    assert stats["modal_created"] > 0, dict(stats)


@pytest.mark.sim_only
@pytest.mark.skipif(not SIM, reason="profiles are simulated devices")
@pytest.mark.parametrize("profile", CHILD_PROFILES)
def test_every_profile_creates_exactly_its_plans(profile):
    # run_child: an empty temporary cwd, PYTHONPATH reaching the greenres this process uses.
    done = run_child(
        ["-m", CHILD_MODULE],
        timeout=60 + _examples() * 2,
        GREENRES_SIM=profile,
        GREENRES_PLAN_CHECK_EXAMPLES=_examples(),
    )
    # On failure hypothesis printed the falsifying example (spec, mechanism, device facts,
    # the plan's explain()) to stdout.
    assert done.returncode == 0, (
        f"GREENRES_SIM={profile}:\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    )
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    # Hypothesis may stop early (e.g. after many rejected draws), never run more.
    assert 0 < stats["examples"] <= _examples(), stats
    assert 0 < stats["modal_examples"] <= _examples(), stats
    _assert_something_was_created(stats)
    assert stats["modal_created"] > 0, stats
    if "@12080" in profile:
        assert not stats["structured_split"]
        assert stats.get("created_structured", 0) == 0, stats
