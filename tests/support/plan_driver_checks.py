"""Plan == driver: the checks of test_plan_matches_driver.py, shared by the pytest process
and the child processes that run them against other simulated devices and drivers.

As a script (``python -m support.plan_driver_checks``, with ``tests/`` on the path) it runs
every check against the device that ``GREENRES_SIM`` configures, with as many hypothesis
examples per check as ``GREENRES_PLAN_CHECK_EXAMPLES`` says (default: the active hypothesis
profile's), and prints one JSON line of statistics. A failure exits non-zero after
hypothesis printed the falsifying example (the spec, the mechanism and the device).
"""

from __future__ import annotations

import collections
import json
import os
import sys

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import greenres
from greenres.devices import DEVICE_PROFILES
from greenres.errors import PlanError
from greenres.facts import SmFacts
from greenres.isolation import isolation_key

from support import hypothesis_profiles  # noqa: F401  (loads the GREENRES_HYPOTHESIS_PROFILE profile)
from support.strategies import isolation_schemas, modal_specs, partition_specs

__all__ = [
    "check_counts",
    "check_sim_layout",
    "run_modal_specs",
    "run_partition_specs",
    "sim_profile",
]

#: What isolation keys are computed with on both sides (so the host's environment and
#: installed versions cannot make a difference).
ENVIRON = {"CUDA_DEVICE_MAX_CONNECTIONS": "8", "CUDA_VISIBLE_DEVICES": "0"}
VERSIONS = {"bindings_version": "13.0.0", "greenres_version": "0.0.test"}

#: Object kinds a layout creates (everything must be gone after close).
LAYOUT_KINDS = ("green_context", "stream", "event", "primary_context")


def sim_profile(value: str | None = None) -> str | None:
    """The DEVICE_PROFILES name in a ``GREENRES_SIM`` value (``"2xh100@12080"`` -> ``"h100"``)."""
    value = os.environ.get("GREENRES_SIM", "") if value is None else value
    spec = value.partition("@")[0].strip().lower()
    if spec in ("1", "true", "yes", "on"):
        spec = "h100"
    count, x, rest = spec.partition("x")
    if x and count.isdigit():
        spec = rest
    return spec if spec in DEVICE_PROFILES else None


def mechanisms(facts: SmFacts) -> list[str]:
    """The mechanisms a spec can be planned with on these facts."""
    return ["groups", "structured", "auto"] if facts.structured_split else ["groups", "auto"]


@st.composite
def _cases(draw, facts: SmFacts, modal: bool):
    mechanism = draw(st.sampled_from(mechanisms(facts)), label="mechanism")
    # Backfill exists only with the structured split (and "auto" picks that when it can).
    backfill = None if mechanism != "groups" and facts.structured_split else False
    small = draw(st.booleans(), label="small")
    if modal:
        spec = draw(modal_specs(max_modes=3, small=small, backfill=backfill), label="spec")
    else:
        spec = draw(partition_specs(max_partitions=5, small=small, backfill=backfill), label="spec")
    return mechanism, spec


def _live(sim) -> dict[str, int]:
    objects = sim.live_objects()
    return {kind: objects[kind] for kind in LAYOUT_KINDS}


def _count_kinds(stats, spec) -> None:
    """Which kinds of created specs were seen (so a run shows what it covered)."""
    if not spec.coscheduling:
        stats["created_uncoscheduled"] += 1
    if spec.backfill:
        stats["created_backfill"] += 1
    policy = spec.remainder if spec.remainder in ("drop", "own") else "named"
    stats[f"created_remainder_{policy}"] += 1
    if any(p.sms is None and p.share is None for p in spec.partitions):
        stats["created_with_rest"] += 1


def check_counts(layout, plan) -> None:
    """What a real driver also shows: every partition has the plan's SMs, twice over (the
    runtime's count and the driver's ``cuGreenCtxGetDevResource``), streams as asked."""
    assert layout.names == plan.names, (layout.names, plan.names)
    for planned in plan.partitions:
        part = layout[planned.name]
        assert part.plan is plan and part.planned_partition == planned, planned.name
        assert part.sm_count == planned.sm_count, (planned.name, part.sm_count, planned.sm_count)
        held = part.sm_resource.count
        assert held == planned.sm_count, (planned.name, held, planned.sm_count)
        assert len(part.streams) == max(planned.streams, 1), planned.name


def check_sim_layout(layout, plan, sim, schema=None) -> None:
    """The simulator's SM map: exactly the planned SMs, disjoint, the rest unused; the
    runtime's partition gives the same isolation key as the plan's reference to it."""
    check_counts(layout, plan)
    sm_count = plan.facts.sm_count
    owner: dict[int, str] = {}
    for planned in plan.partitions:
        part = layout[planned.name]
        ids = sim.green_context_sms(part.handle)
        assert len(ids) == planned.sm_count, (planned.name, len(ids), planned.sm_count)
        assert len(set(ids)) == len(ids), (planned.name, ids)
        for sm in ids:
            assert 0 <= sm < sm_count, (planned.name, sm)
            assert sm not in owner, f"SM {sm} is in {owner[sm]!r} and {planned.name!r}"
            owner[sm] = planned.name
        # The context handle names the same green context.
        assert sim.green_context_sms(part.context_handle) == ids, planned.name
        for stream in part.streams:
            assert stream.priority == planned.priority, (planned.name, stream.priority)
        if schema is not None:
            mine = part.isolation_key(schema, environ=ENVIRON, versions=VERSIONS)
            theirs = isolation_key(
                schema, plan.ref(planned.name), environ=ENVIRON, versions=VERSIONS
            )
            assert mine == theirs, (planned.name, schema)
    assert len(owner) == plan.total_sm_count, (len(owner), plan.total_sm_count)
    assert sm_count - len(owner) == plan.remainder_sm_count, (
        sm_count - len(owner),
        plan.remainder_sm_count,
    )


def _check_offline_plan(spec, mechanism, facts, plan, profile, schema=None) -> None:
    """Planning for the profile's documented facts (what ``greenres plan --device sim:X``
    uses) gives the same layout as planning for the measured device, and the same isolation
    keys (the device's name, capability and SMs are the same)."""
    if profile is None:
        return
    offline = SmFacts.for_known_device(
        profile, driver_version=facts.driver_version, structured_split=facts.structured_split
    )
    try:
        other = spec.plan(offline, mechanism=mechanism)
    except PlanError as error:
        assert plan is None, f"plans for the device but not for sim:{profile}: {error}"
        return
    assert plan is not None, f"plans for sim:{profile} but not for the device"
    assert other.fingerprint == plan.fingerprint, (other.explain(), plan.explain())
    assert [p.sm_count for p in other.partitions] == [p.sm_count for p in plan.partitions]
    if schema is not None:
        for name in plan.names:
            offline_key = isolation_key(schema, other.ref(name), environ=ENVIRON, versions=VERSIONS)
            device_key = isolation_key(schema, plan.ref(name), environ=ENVIRON, versions=VERSIONS)
            assert offline_key == device_key, (name, schema)


def run_partition_specs(
    max_examples: int | None = None,
    *,
    introspect: bool = True,
    stats: collections.Counter | None = None,
) -> collections.Counter:
    """Plan many hypothesis-chosen PartitionSpecs for a device, create each plan and compare.

    ``introspect=False`` checks only what a real GPU shows (counts through the runtime and
    the driver); otherwise the simulator's SM map, isolation keys, the offline plan and the
    live-object counts too."""
    stats = collections.Counter() if stats is None else stats
    sim = None
    if introspect:
        import greenres.sim as sim
    count = greenres.device_count() if hasattr(greenres, "device_count") else 1
    facts_by_device = [greenres.Device(i).sm_facts() for i in range(max(count, 1))]
    profile = sim_profile() if introspect else None
    options = {} if max_examples is None else {"max_examples": max_examples}

    @settings(
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        **options,
    )
    @given(data=st.data())
    def check(data):
        ordinal = data.draw(st.integers(0, len(facts_by_device) - 1), label="device")
        facts = facts_by_device[ordinal]
        mechanism, spec = data.draw(_cases(facts, modal=False))
        schema = data.draw(isolation_schemas, label="schema") if introspect else None
        note(f"device {ordinal}: {facts}")
        stats["examples"] += 1
        before = _live(sim) if sim else None
        try:
            plan = spec.plan(greenres.Device(ordinal), mechanism=mechanism)
        except PlanError:
            stats["plan_error"] += 1
            if sim:
                _check_offline_plan(spec, mechanism, facts, None, profile)
                assert _live(sim) == before
            return
        note(plan.explain())
        stats[f"created_{plan.mechanism}"] += 1
        _count_kinds(stats, spec)
        with greenres.Layout.create(plan, device=ordinal) as layout:
            if sim:
                check_sim_layout(layout, plan, sim, schema)
            else:
                check_counts(layout, plan)
        if sim:
            _check_offline_plan(spec, mechanism, facts, plan, profile, schema)
            after = _live(sim)
            assert after == before, (before, after)
            assert after["green_context"] == after["stream"] == after["event"] == 0, after

    check()
    return stats


def run_modal_specs(
    max_examples: int | None = None,
    *,
    introspect: bool = True,
    stats: collections.Counter | None = None,
) -> collections.Counter:
    """Plan ModalSpecs, create every mode at once, switch through every mode and compare."""
    stats = collections.Counter() if stats is None else stats
    sim = None
    if introspect:
        import greenres.sim as sim
    device = greenres.Device(0)
    facts = device.sm_facts()
    options = {} if max_examples is None else {"max_examples": max_examples}

    @settings(
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        **options,
    )
    @given(case=_cases(facts, modal=True))
    def check(case):
        mechanism, spec = case
        note(f"device 0: {facts}")
        stats["modal_examples"] += 1
        before = _live(sim) if sim else None
        try:
            modal = spec.plan(device, mechanism=mechanism)
        except PlanError:
            stats["modal_plan_error"] += 1
            return
        for mode in modal:
            note(f"mode {mode!r}:\n{modal[mode].explain()}")
        stats["modal_created"] += 1
        stats["modal_modes"] += len(modal.plans)
        with greenres.Layout.create(modal, device=0) as layout:
            assert layout.modes == tuple(modal.plans), (layout.modes, tuple(modal.plans))
            assert layout.mode == modal.default
            assert layout.modal_plan is modal
            # Every mode was created up front: one green context per partition of each.
            if sim:
                live = sim.live_objects()["green_context"] - before["green_context"]
                assert live == sum(len(p.partitions) for p in modal.plans.values()), live
            order = [m for m in modal if m != modal.default] + [modal.default]
            for mode in order:
                plan = modal[mode]
                parts = layout.switch(mode)
                assert layout.mode == mode
                assert layout.plan is plan
                assert parts == layout.partitions
                assert tuple(p.name for p in parts) == plan.names
                if sim:
                    check_sim_layout(layout, plan, sim)
                else:
                    check_counts(layout, plan)
            if sim:
                # Switching creates nothing.
                assert sim.live_objects()["green_context"] - before["green_context"] == live
        if sim:
            assert _live(sim) == before, (before, _live(sim))

    check()
    return stats


def main() -> int:
    examples = os.environ.get("GREENRES_PLAN_CHECK_EXAMPLES")
    examples = int(examples) if examples else None
    stats = run_partition_specs(examples)
    run_modal_specs(examples, stats=stats)
    facts = greenres.Device(0).sm_facts()
    stats_out = dict(stats)
    stats_out["device"] = facts.device_name
    stats_out["driver_version"] = facts.driver_version
    stats_out["structured_split"] = facts.structured_split
    print(json.dumps(stats_out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
