"""The words of planning: every reason a plan gives and every violation a PlanError lists,
made from the numbers :mod:`greenres._planner` decided. Nothing here decides a number."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from greenres.cuda_versions import LOCALITY_DOMAINS, STRUCTURED_SPLIT, WORKQUEUES
from greenres.errors import PlanError

if TYPE_CHECKING:
    from greenres._planner import _Grain, _Share
    from greenres.facts import SmFacts
    from greenres.spec import PartitionSpec

__all__ = [
    "missing_locality_domains",
    "missing_structured_split",
    "missing_workqueues",
    "plan_error",
    "remainder_note",
    "share_reason",
    "sms",
    "total_violation",
    "violations_text",
    "workqueue_limit_violation",
]


def sms(count: int) -> str:
    return f"{count} SM" if count == 1 else f"{count} SMs"


def missing_structured_split(facts: SmFacts) -> str:
    if facts.driver_version < STRUCTURED_SPLIT:
        return f"the driver is {facts.driver_version_text} on {facts.device_name}"
    return f"the loaded cuda-bindings do not expose cuDevSmResourceSplit on {facts.device_name}"


def missing_workqueues(facts: SmFacts, names: list[str]) -> str:
    who = ", ".join(map(repr, names))
    needs = (
        f"workqueue budgets (partitions {who}) need the workqueue-config resource of CUDA "
        f"13.1 ({WORKQUEUES})"
    )
    if facts.driver_version < WORKQUEUES:
        return (
            f"{needs}; the driver is {facts.driver_version_text} ({facts.driver_version}) on "
            f"{facts.device_name}"
        )
    return (
        f"{needs}; the facts of {facts.device_name} (driver {facts.driver_version_text}) "
        "report none (workqueue_max_concurrency=0)"
    )


def missing_locality_domains(facts: SmFacts, names: list[str]) -> str:
    who = ", ".join(map(repr, names))
    needs = f"locality domains (partitions {who}) need CUDA 13.4 ({LOCALITY_DOMAINS})"
    if facts.driver_version < LOCALITY_DOMAINS:
        return (
            f"{needs}; the driver is {facts.driver_version_text} ({facts.driver_version}) on "
            f"{facts.device_name}"
        )
    if not facts.structured_split:
        return f"{needs} and the structured split; {missing_structured_split(facts)}"
    return (
        f"{needs}; the facts of {facts.device_name} (driver {facts.driver_version_text}) "
        "report none (locality_domain_count=0)"
    )


def domain_violation(facts: SmFacts, domain: int, names: list[str], need: int, room: int) -> str:
    return (
        f"locality domain {domain} gets {', '.join(names)}: {sms(need)}, but a locality "
        f"domain of {facts.device_name} has {sms(facts.locality_domain_sm_count)} "
        f"({room} usable at this granularity)"
    )


def workqueue_limit_violation(facts: SmFacts, name: str, limit: int) -> str:
    return (
        f"{name} asks workqueue_limit {limit}; {facts.device_name} takes at most "
        f"{facts.workqueue_max_concurrency} concurrent stream-ordered workloads "
        "(workqueue_max_concurrency, CUDA_DEVICE_MAX_CONNECTIONS)"
    )


def balanced_reason(share: int, left: int, count: int) -> str:
    whom = "the balanced partition" if count == 1 else f"each of {count} balanced partitions"
    return f"{share} for {whom} without a limit, of the {left} connections left"


def share_reason(grain: _Grain, share: _Share, granted: int, trimmed: bool) -> str:
    _index, p, numerator, denominator, rounded, floor, percent = share
    unit = grain.unit
    # int / int is correctly rounded, as float() of the exact fraction is
    text = (
        f"{percent} of {grain.total_units * unit} usable SMs is "
        f"{numerator * unit / denominator:.4g}"
    )
    if trimmed:
        return text + "; rounded down so the shares fit (each rounded up would not)"
    if granted > rounded:
        if p.min_sms is not None and granted == floor and floor > grain.min_units:
            return text + f"; raised to min_sms ({sms(granted * unit)})"
        return text + f"; raised to the minimum of {sms(granted * unit)}"
    if grain.mechanism == "groups":
        return text + f"; rounded to {grain.units_words(granted)}"
    return text + f"; rounded to a multiple of {unit}"


def total_violation(
    spec: PartitionSpec,
    facts: SmFacts,
    grain: _Grain,
    units: dict[str, int],
    used: int,
    rest: Any,
    rest_floor: int,
) -> str:
    unit, total_units = grain.unit, grain.total_units
    name = facts.device_name
    parts = [f"{n} {units[n] * unit}" for n in spec.names if n in units]
    need = used + rest_floor
    if rest is not None:
        parts.append(f"{rest.name} (the rest) at least {rest_floor * unit}")
    excess = sms((need - total_units) * unit)
    if grain.mechanism == "groups":
        return (
            f"the partitions need {need} groups of {unit} ({sms(need * unit)}) "
            f"but {name} has {total_units} ({sms(total_units * unit)}): "
            f"{', '.join(parts)}; ask for at least {excess} less"
        )
    return (
        f"the partitions need {sms(need * unit)} but {name} has "
        f"{total_units * unit} usable {grain.words()}: {', '.join(parts)}; "
        f"ask for at least {excess} less"
    )


def plan_error(spec: PartitionSpec, facts: SmFacts, grain: _Grain, violation: str) -> PlanError:
    return PlanError(violations_text(spec, facts, grain, [violation]))


def violations_text(
    spec: PartitionSpec, facts: SmFacts, grain: _Grain, violations: list[str]
) -> str:
    count = len(spec.partitions)
    head = (
        f"cannot plan {count} partition{'s' if count != 1 else ''} on {facts.device_name} "
        f"({sms(facts.sm_count)}, mechanism {grain.mechanism!r}, {grain.words()}):"
    )
    return "\n".join([head, *(f"  - {v}" for v in violations)])


def remainder_note(
    grain: _Grain, policy: str, extra_units: int, split_remainder: int, own: bool = False
) -> str:
    pieces = []
    if extra_units:
        pieces.append(f"{grain.units_words(extra_units)} no partition took")
    if split_remainder:
        pieces.append(f"the split's remainder of {sms(split_remainder)}")
    what = " and ".join(pieces)
    if own:
        return what
    return f"+ {what} (remainder={policy!r})"
