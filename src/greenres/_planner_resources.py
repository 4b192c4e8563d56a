"""What the planner checks beside SMs: CUDA 13.4 locality domains (which partitions ask
for one, whether the device can place them, whether each domain has the SMs) and CUDA
13.1 workqueue budgets (every partition's configuration against the device's maximum
concurrency). :mod:`greenres._planner` calls these; ``docs/planning.md`` states the rules.
"""

from __future__ import annotations

from typing import Any

from greenres import _plan_messages as words
from greenres.errors import DriverTooOldError, SpecError
from greenres.facts import SmFacts
from greenres.spec import LOCALITY_SPREAD, REMAINDER_PARTITION_NAME, PartitionSpec

__all__ = ["NO_QUEUE", "Queue", "domain_violations", "located", "plan_workqueues"]


# ----------------------------------------------------------------------------- locality domains


def located(spec: PartitionSpec, facts: SmFacts, mechanism: str) -> bool:
    """Whether partitions ask for locality domains; refuses what cannot place them.

    Raises:
        DriverTooOldError: without locality domains in the facts (CUDA 13.4) or the
            structured split.
        SpecError: for ``mechanism="groups"`` or a domain index the device does not have.
    """
    placed = [p for p in spec.partitions if p.locality_domain is not None]
    if not placed:
        return False
    if facts.locality_domain_count == 0 or not facts.structured_split:
        raise DriverTooOldError(words.missing_locality_domains(facts, [p.name for p in placed]))
    if mechanism == "groups":
        raise SpecError(
            "locality domains need mechanism 'structured' (got mechanism='groups'): a split "
            "by count cannot place its groups"
        )
    for p in placed:
        domain = p.locality_domain
        if domain != LOCALITY_SPREAD and domain >= facts.locality_domain_count:
            raise SpecError(
                f"partition {p.name!r}: 'locality_domain' must be below the "
                f"{facts.locality_domain_count} locality domain"
                f"{'s' if facts.locality_domain_count != 1 else ''} of {facts.device_name} "
                f"(got {domain})"
            )
    return True


def domain_violations(
    spec: PartitionSpec, facts: SmFacts, grain: Any, units: dict[str, int]
) -> list[str]:
    """Each locality domain whose partitions need more SMs than a domain has."""
    room = facts.locality_domain_sm_count // grain.unit * grain.unit
    out = []
    domains = sorted({p.locality_domain for p in spec.partitions if type(p.locality_domain) is int})
    for domain in domains:
        names = [p.name for p in spec.partitions if p.locality_domain == domain]
        need = sum(units[name] for name in names) * grain.unit
        if need > room:
            out.append(words.domain_violation(facts, domain, names, need, room))
    return out


# ----------------------------------------------------------------------------- workqueues

# A planned workqueue configuration: (scope name, limit, reason).
Queue = tuple[str, int, str]
NO_QUEUE: Queue = ("", 0, "")  # a partition with no workqueue configuration


def plan_workqueues(spec: PartitionSpec, facts: SmFacts) -> tuple[dict[str, Queue], list[str]]:
    """Every partition's workqueue configuration (only those that ask for one) and the
    violations of the device's maximum concurrency.

    A scope without a limit: ``"device_ctx"`` takes the device's maximum (the driver's
    default); ``"balanced"`` shares what the balanced partitions with limits leave, evenly
    (at least 1 each). A limit without a scope is ``"device_ctx"``.

    Raises:
        DriverTooOldError: when a partition asks for one and the facts have no
            workqueue-config resource (a driver older than 13.1).
    """
    asked = [(p.name, *spec.workqueue_of(p)) for p in spec.partitions]
    if spec.remainder == "own":
        asked.append((REMAINDER_PARTITION_NAME, *spec.workqueue_of(None)))
    asked = [item for item in asked if item[1] is not None or item[2] is not None]
    if not asked:
        return {}, []
    most = facts.workqueue_max_concurrency
    if most == 0:
        raise DriverTooOldError(words.missing_workqueues(facts, [name for name, _, _ in asked]))
    violations = [
        words.workqueue_limit_violation(facts, name, limit)
        for name, _scope, limit in asked
        if limit is not None and limit > most
    ]
    open_balanced = sum(1 for _n, scope, limit in asked if scope == "balanced" and limit is None)
    given = sum(limit for _n, scope, limit in asked if scope == "balanced" and limit is not None)
    left = max(most - given, 0)
    share = max(1, left // open_balanced) if open_balanced else 0
    queues: dict[str, Queue] = {}
    for name, scope, limit in asked:
        scope = scope or "device_ctx"
        reason = ""
        if limit is None:
            if scope == "balanced":
                limit, reason = share, words.balanced_reason(share, left, open_balanced)
            else:
                limit, reason = most, "the device's maximum"
        queues[name] = (scope, limit, reason)
    return queues, violations
