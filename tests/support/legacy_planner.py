"""A frozen copy of the planner as it was before it emitted its recipe itself (commit
31d4a88, ``greenres/plan.py``): ``make_plan`` that re-planned with groups after a PlanError
flagged ``mixed_alignment``, and ``_recipe_of`` that derived the recipe after the fact.

Only tests/declarative/test_planner_equivalence.py uses it, to prove that the planner that
replaced it gives the same plans, recipes and errors for every spec, facts and mechanism.
Kept verbatim apart from what it returns: the fields of the old ``Plan`` as a namespace.
"""

# ruff: noqa

from __future__ import annotations

import math
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

from greenres.cuda_versions import STRUCTURED_SPLIT
from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts, resolve_facts
from greenres.plan import PlannedPartition
from greenres.recipe import (
    GROUP_BACKFILL,
    SPLIT_IGNORE_SM_COSCHEDULING,
    Granularity,
    PartitionRecipe,
    SplitRecipe,
)
from greenres.spec import (
    REMAINDER_KEYWORDS,
    REMAINDER_PARTITION_NAME,
    PartitionSpec,
)

__all__ = ["legacy_make_plan"]

MECHANISMS = ("groups", "structured")
Plan = SimpleNamespace


def _recipe_of(plan: Plan) -> SplitRecipe:
    spec, facts = plan.spec, plan.facts
    parts = []
    first = 0
    for p in plan.partitions:
        parts.append(
            PartitionRecipe(
                name=p.name,
                first_result=first,
                result_count=p.groups,
                takes_split_remainder=p.includes_split_remainder,
                sm_count=p.sm_count,
                streams=p.streams,
                priority=p.priority,
            )
        )
        first += p.groups
    granularity = Granularity(
        compute_capability=facts.compute_capability,
        sm_count=facts.sm_count,
        min_partition_size=facts.min_partition_size,
        alignment=facts.alignment,
        uncoscheduled=None
        if spec.coscheduling
        else (facts.uncoscheduled_min_partition_size, facts.uncoscheduled_alignment),
    )
    if plan.mechanism == "groups":
        return SplitRecipe(
            mechanism="groups",
            result_count=plan.split_group_count,
            min_count=plan.group_size,
            split_flags=0 if spec.coscheduling else SPLIT_IGNORE_SM_COSCHEDULING,
            group_sm_counts=(),
            coscheduled_sm_count=0,
            group_flags=0,
            partitions=tuple(parts),
            granularity=granularity,
        )
    return SplitRecipe(
        mechanism="structured",
        result_count=plan.split_group_count,
        min_count=0,
        split_flags=0,
        group_sm_counts=tuple(p.result_sm_count for p in plan.partitions if p.groups),
        coscheduled_sm_count=0 if spec.coscheduling else plan.alignment,
        group_flags=GROUP_BACKFILL if spec.backfill else 0,
        partitions=tuple(parts),
        granularity=granularity,
    )


# --------------------------------------------------------------------------- planning


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def _ceil_div(value: int, unit: int) -> int:
    return -(-value // unit)


def _sms(count: int) -> str:
    return f"{count} SM" if count == 1 else f"{count} SMs"


def _pct(share: float) -> str:
    return f"{share * 100:.6g}%"


def _exact_share(share: float) -> Fraction:
    # Read the share as the decimal it prints as, so 0.15 of 10 groups is a tie (1.5),
    # not 1.4999999999999999 groups.
    return Fraction(repr(share))


def _choose_mechanism(spec: PartitionSpec, facts: SmFacts, mechanism: str) -> str:
    if mechanism not in ("auto", *MECHANISMS):
        raise SpecError(f"'mechanism' must be 'auto', 'groups' or 'structured' (got {mechanism!r})")
    have = (
        f"the driver is {facts.driver_version_text}"
        if facts.driver_version < STRUCTURED_SPLIT
        else "the loaded cuda-bindings do not expose cuDevSmResourceSplit"
    )
    if spec.backfill and not facts.structured_split:
        raise DriverTooOldError(
            "backfill=True needs the structured split cuDevSmResourceSplit of CUDA 13.1 "
            f"(driver 13.1 and cuda-bindings that expose it); {have} on {facts.device_name}"
        )
    if mechanism == "structured" and not facts.structured_split:
        raise DriverTooOldError(
            "mechanism 'structured' needs cuDevSmResourceSplit of CUDA 13.1; "
            f"{have} on {facts.device_name}"
        )
    if mechanism == "groups" and spec.backfill:
        raise SpecError("backfill=True needs mechanism 'structured' (got mechanism='groups')")
    if mechanism == "auto":
        return "structured" if facts.structured_split else "groups"
    return mechanism


class _Planner:
    """One planning run; collects violations instead of stopping at the first."""

    def __init__(self, spec: PartitionSpec, facts: SmFacts, mechanism: str) -> None:
        self.spec = spec
        self.facts = facts
        self.mechanism = mechanism
        self.min_size, self.alignment = facts.granularity(spec.coscheduling)
        if mechanism == "groups":
            self.unit = facts.group_size(spec.coscheduling)
            self.min_units = 1
        else:
            # smCount must be a multiple of coscheduledSmCount (= the alignment) unless
            # backfill, which only asks for a multiple of the finest alignment; a group
            # never has fewer SMs than the minimum nor than coscheduledSmCount.
            self.unit = facts.uncoscheduled_alignment if spec.backfill else self.alignment
            floor = max(self.min_size, self.alignment)
            self.min_units = _ceil_div(floor, self.unit)
        self.total_units = facts.sm_count // self.unit
        self.usable = self.total_units * self.unit
        self.violations: list[str] = []
        # Set when a structured group and the split's remainder cannot share a descriptor.
        self.mixed_alignment = False

    # Words used in messages.
    def granularity_words(self) -> str:
        if self.mechanism == "groups":
            return f"in groups of {self.unit}"
        return f"in multiples of {self.unit}, at least {self.min_units * self.unit}"

    def units_words(self, units: int) -> str:
        if self.mechanism == "groups":
            return f"{units} group{'s' if units != 1 else ''} of {self.unit}"
        return f"{_sms(units * self.unit)}"

    def run(self) -> Plan:
        spec, facts = self.spec, self.facts
        name = facts.device_name
        if self.total_units < self.min_units:
            smallest = self.min_units * self.unit
            raise PlanError(
                f"cannot plan on {name}: it has {_sms(facts.sm_count)} and the smallest "
                f"partition is {_sms(smallest)}"
            )
        units: dict[str, int] = {}
        reasons: dict[str, str] = {}
        share_info: dict[str, tuple[Fraction, int, int]] = {}  # target, rounded, floor
        rest = None
        rest_floor = 0  # units "the rest" needs at least (0 without such a partition)
        for p in spec.partitions:
            if p.sms is not None:
                need = max(_ceil_div(p.sms, self.unit), self.min_units)
                units[p.name] = need
                if need * self.unit != p.sms:
                    if _ceil_div(p.sms, self.unit) < self.min_units:
                        reasons[p.name] = f"raised to the minimum of {_sms(need * self.unit)}"
                    elif self.mechanism == "groups":
                        reasons[p.name] = f"rounded up to {self.units_words(need)}"
                    else:
                        reasons[p.name] = f"rounded up to a multiple of {self.unit}"
                if need > self.total_units:
                    self.violations.append(
                        f"{p.name} asks {_sms(p.sms)}; {name} gives at most {self.usable} "
                        f"{self.granularity_words()}"
                    )
            elif p.share is not None:
                target = _exact_share(p.share) * self.total_units
                rounded = math.floor(target + Fraction(1, 2))  # nearest; ties go up
                floor = self._floor_units(p)
                units[p.name] = max(rounded, floor)
                share_info[p.name] = (target, rounded, floor)
            else:
                rest = p
                rest_floor = self._floor_units(p)
        budget = self.total_units - rest_floor
        trimmed = self._trim_shares(units, share_info, budget)
        for p in spec.partitions:
            if p.name in share_info:
                reasons[p.name] = self._share_reason(
                    p, units[p.name], share_info[p.name], p.name in trimmed
                )
        used = sum(units.values())
        if used + rest_floor > self.total_units:
            self._total_violation(units, used, rest, rest_floor)
        elif rest is not None:
            units[rest.name] = self.total_units - used
        if self.violations:
            raise PlanError(self._message())
        return self._assemble(units, reasons)

    def _floor_units(self, p: Partition) -> int:
        """The fewest units a share or "rest" partition may get: the granularity's minimum,
        or its ``min_sms`` rounded up (checked against the device)."""
        if p.min_sms is None:
            return self.min_units
        self._check_min_sms(p.name, p.min_sms)
        return max(self.min_units, _ceil_div(p.min_sms, self.unit))

    def _check_min_sms(self, name: str, min_sms: int) -> None:
        if _ceil_div(min_sms, self.unit) > self.total_units:
            self.violations.append(
                f"{name} asks at least {_sms(min_sms)} (min_sms); {self.facts.device_name} "
                f"gives at most {self.usable} {self.granularity_words()}"
            )

    def _trim_shares(
        self,
        units: dict[str, int],
        share_info: dict[str, tuple[Fraction, int, int]],
        budget: int,
    ) -> set[str]:
        """Take back one unit from shares rounded up, smallest fraction first (ties: the
        later-declared first), while the total is over the budget."""
        excess = sum(units.values()) - budget
        if excess <= 0:
            return set()
        order = list(self.spec.names)
        candidates = [
            (target - math.floor(target), -order.index(name), name)
            for name, (target, rounded, floor) in share_info.items()
            if units[name] == rounded and rounded > target and rounded - 1 >= floor
        ]
        candidates.sort()
        trimmed = set()
        for _fraction, _index, name in candidates[:excess]:
            units[name] -= 1
            trimmed.add(name)
        return trimmed

    def _share_reason(
        self, p: Any, granted: int, info: tuple[Fraction, int, int], trimmed: bool
    ) -> str:
        target, rounded, floor = info
        exact_sms = target * self.unit
        if granted * self.unit == exact_sms:
            return ""
        exact_text = f"{float(exact_sms):.4g}"
        text = f"{_pct(p.share)} of {self.usable} usable SMs is {exact_text}"
        if trimmed:
            return text + "; rounded down so the shares fit (each rounded up would not)"
        if granted > rounded:
            if p.min_sms is not None and granted == floor and floor > self.min_units:
                return text + f"; raised to min_sms ({_sms(granted * self.unit)})"
            return text + f"; raised to the minimum of {_sms(granted * self.unit)}"
        if self.mechanism == "groups":
            return text + f"; rounded to {self.units_words(granted)}"
        return text + f"; rounded to a multiple of {self.unit}"

    def _total_violation(
        self, units: dict[str, int], used: int, rest: Any, rest_floor: int
    ) -> None:
        name = self.facts.device_name
        parts = [f"{n} {units[n] * self.unit}" for n in self.spec.names if n in units]
        need = used + rest_floor
        if rest is not None:
            parts.append(f"{rest.name} (the rest) at least {rest_floor * self.unit}")
        excess = _sms((need - self.total_units) * self.unit)
        if self.mechanism == "groups":
            self.violations.append(
                f"the partitions need {need} groups of {self.unit} ({_sms(need * self.unit)}) "
                f"but {name} has {self.total_units} ({_sms(self.usable)}): "
                f"{', '.join(parts)}; ask for at least {excess} less"
            )
        else:
            self.violations.append(
                f"the partitions need {_sms(need * self.unit)} but {name} has "
                f"{self.usable} usable {self.granularity_words()}: {', '.join(parts)}; "
                f"ask for at least {excess} less"
            )

    def _message(self) -> str:
        head = (
            f"cannot plan {len(self.spec.partitions)} partition"
            f"{'s' if len(self.spec.partitions) != 1 else ''} on {self.facts.device_name} "
            f"({_sms(self.facts.sm_count)}, mechanism {self.mechanism!r}, "
            f"{self.granularity_words()}):"
        )
        return "\n".join([head, *(f"  - {v}" for v in self.violations)])

    def _assemble(self, units: dict[str, int], reasons: dict[str, str]) -> Plan:
        spec, facts, unit = self.spec, self.facts, self.unit
        used = sum(units.values())
        leftover_units = self.total_units - used  # 0 when there is a rest partition
        policy = spec.remainder
        if self.mechanism == "groups":
            split_groups = self.total_units
            split_remainder = facts.sm_count - self.usable
            extra_units = leftover_units  # unassigned groups follow the remainder policy
        else:
            split_groups = len(spec.partitions)
            split_remainder = facts.sm_count - used * unit
            extra_units = 0  # unassigned SMs are in the split's remainder already
        extra_sms = extra_units * unit + split_remainder
        if policy == "own" and extra_sms == 0:
            self.violations.append(
                f"remainder='own' would make an empty partition: the partitions take all "
                f"{_sms(facts.sm_count)} of {facts.device_name}; use remainder='drop'"
            )
            raise PlanError(self._message())
        # The keywords win over partition names spelled the same.
        target = None if policy in REMAINDER_KEYWORDS else policy
        if (
            target is not None
            and self.mechanism == "structured"
            and split_remainder > 0
            and self.alignment != facts.alignment
        ):
            # cuDevResourceGenerateDesc combines only resources with the same
            # smCoscheduledAlignment; the remainder is assumed to report the device's.
            self.mixed_alignment = True
            self.violations.append(
                f"{target} cannot also take the split's remainder: one descriptor needs one "
                f"co-scheduling alignment, and a structured group without co-scheduling has "
                f"{self.alignment} where the remainder has {facts.alignment}; use "
                "remainder='own' or 'drop', coscheduling=true, or mechanism 'groups'"
            )
            raise PlanError(self._message())
        planned = []
        for p in spec.partitions:
            groups = units[p.name] if self.mechanism == "groups" else 1
            result_sms = units[p.name] * unit
            sm_count = result_sms
            takes_remainder = False
            reason = reasons.get(p.name, "")
            if p.name == target:
                if self.mechanism == "groups":
                    groups += extra_units
                    result_sms += extra_units * unit
                takes_remainder = split_remainder > 0
                sm_count = result_sms + split_remainder
                if extra_sms:
                    note = self._remainder_note(extra_units, split_remainder)
                    reason = f"{reason}; {note}" if reason else note
            planned.append(
                PlannedPartition(
                    name=p.name,
                    request=p.request,
                    sm_count=sm_count,
                    groups=groups,
                    result_sm_count=result_sms,
                    includes_split_remainder=takes_remainder,
                    reason=reason,
                    streams=p.streams,
                    priority=p.priority,
                )
            )
        if policy == "own":
            groups = extra_units if self.mechanism == "groups" else 0
            planned.append(
                PlannedPartition(
                    name=REMAINDER_PARTITION_NAME,
                    request="the remainder",
                    sm_count=extra_sms,
                    groups=groups,
                    result_sm_count=extra_units * unit,
                    includes_split_remainder=split_remainder > 0,
                    reason=self._remainder_note(extra_units, split_remainder, own=True),
                    is_remainder=True,
                )
            )
        remainder_sm_count = extra_sms if policy == "drop" else 0
        return Plan(
            partitions=tuple(planned),
            facts=facts,
            spec=spec,
            mechanism=self.mechanism,
            group_size=unit,
            min_partition_size=self.min_size,
            alignment=self.alignment,
            split_group_count=split_groups,
            split_remainder_sm_count=split_remainder,
            remainder_sm_count=remainder_sm_count,
        )

    def _remainder_note(self, extra_units: int, split_remainder: int, own: bool = False) -> str:
        pieces = []
        if extra_units:
            pieces.append(f"{self.units_words(extra_units)} no partition took")
        if split_remainder:
            pieces.append(f"the split's remainder of {_sms(split_remainder)}")
        what = " and ".join(pieces)
        if own:
            return what
        return f"+ {what} (remainder={self.spec.remainder!r})"


def make_plan(spec: PartitionSpec, device_or_facts: Any, *, mechanism: str = "auto") -> Plan:
    """Plan ``spec`` for a device; the same as ``spec.plan(device_or_facts)``.

    Raises:
        PlanError: when the spec does not fit (every violation listed, with numbers).
        DriverTooOldError: when the spec or ``mechanism`` needs CUDA 13.1's structured split
            and the facts say it is missing.
        SpecError: for an unknown ``mechanism``, or backfill with ``mechanism="groups"``.
        TypeError: when ``spec`` is not a PartitionSpec or the device gives no facts.
    """
    if not isinstance(spec, PartitionSpec):
        raise TypeError(f"make_plan() needs a PartitionSpec (got {type(spec).__name__})")
    facts = resolve_facts(device_or_facts)
    chosen = _choose_mechanism(spec, facts, mechanism)
    planner = _Planner(spec, facts, chosen)
    try:
        return planner.run()
    except PlanError:
        # "auto" falls back to groups for what the structured split cannot express.
        if mechanism == "auto" and planner.mixed_alignment and not spec.backfill:
            return _Planner(spec, facts, "groups").run()
        raise


def legacy_make_plan(spec, device_or_facts, *, mechanism="auto"):
    """``(fields of the old Plan as a dict, its recipe)``, or the old planner's exception."""
    plan = make_plan(spec, device_or_facts, mechanism=mechanism)
    return vars(plan), _recipe_of(plan)
