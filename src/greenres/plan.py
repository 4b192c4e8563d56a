"""Planning: turn a :class:`~greenres.spec.PartitionSpec` into exact SM counts for a device.

A :class:`Plan` says, for each partition, what was asked, what the device grants, how the
runtime builds it from ONE split of the device's SMs, and why any number differs from the
request. It is plain data made from :class:`~greenres.facts.SmFacts`; this module never
imports the driver. The rules are written out in ``docs/planning.md``; in short:

* Every size is a whole number of *units*. With mechanism ``"groups"`` a unit is one
  minimum-size group of ``cuDevSmResourceSplitByCount`` (the minimum partition size rounded
  up to the alignment: 8 SMs on 9.0+); with ``"structured"`` (CUDA 13.1
  ``cuDevSmResourceSplit``) it is the alignment, and a partition has at least the minimum.
* Fixed counts round up to a whole number of units (and at least the minimum).
* Shares are taken of the usable SMs (whole units) and rounded to the nearest unit; ties go
  up. If the rounded shares do not fit, shares that were rounded up give one unit back,
  the smallest fraction first (ties: the later-declared first), until they fit. A share
  always gets at least the minimum and its ``min_sms``.
* "The rest" gets every unit left over; the split's remainder goes to the remainder policy.
* ``mechanism="auto"`` is the structured split when the facts allow it, except where a
  group without co-scheduling would share a descriptor with the split's remainder (their
  co-scheduling alignments differ): then groups.
* When something cannot fit, :class:`~greenres.errors.PlanError` lists every violation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from greenres._canonical import digest
from greenres.cuda_versions import STRUCTURED_SPLIT
from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts, resolve_facts
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
    ModalSpec,
    Partition,
    PartitionSpec,
    _ModeMap,
)

if TYPE_CHECKING:
    from greenres.isolation import IsolationSchema

__all__ = [
    "MECHANISMS",
    "ModalPlan",
    "PartitionRef",
    "Plan",
    "PlannedPartition",
    "granularity_differences",
    "make_modal_plan",
    "make_plan",
]

#: The ways a plan is created: ``"groups"`` (one ``cuDevSmResourceSplitByCount`` into
#: minimum-size groups, several groups per descriptor) or ``"structured"`` (one CUDA 13.1
#: ``cuDevSmResourceSplit`` with one result per partition).
MECHANISMS = ("groups", "structured")


@frozen
class PlannedPartition:
    """One partition of a :class:`Plan`: what was asked, what is granted and how.

    Attributes:
        name: the partition's name (``"remainder"`` for the one ``remainder="own"`` makes).
        request: the request in words, e.g. ``"96 SMs"``, ``"25% share"``, ``"the rest"``.
        sm_count: the SMs granted.
        groups: how many outputs of the split's result array this partition takes: its
            number of minimum-size groups under ``"groups"``; 1 under ``"structured"``
            (0 for the owned remainder partition, which is only the split's remainder).
        result_sm_count: the SMs of those result outputs (``sm_count`` minus the split's
            remainder when ``includes_split_remainder``).
        includes_split_remainder: its descriptor also takes the split's remainder output.
        reason: why ``sm_count`` differs from the request ("" when it does not).
        streams: streams the runtime creates in it.
        priority: the priority of those streams.
        is_remainder: True for the partition made by ``remainder="own"``.
    """

    name: str
    request: str
    sm_count: int
    groups: int
    result_sm_count: int
    includes_split_remainder: bool
    reason: str = ""
    streams: int = 1
    priority: int = 0
    is_remainder: bool = False


def _fingerprint_payload(plan: Plan) -> dict[str, Any]:
    return {
        "mechanism": plan.mechanism,
        "sm_count": plan.facts.sm_count,
        "group_size": plan.group_size,
        "min_partition_size": plan.min_partition_size,
        "alignment": plan.alignment,
        "coscheduling": plan.spec.coscheduling,
        "backfill": plan.spec.backfill,
        "split_group_count": plan.split_group_count,
        "split_remainder_sm_count": plan.split_remainder_sm_count,
        "partitions": [
            [
                p.name,
                p.sm_count,
                p.groups,
                p.result_sm_count,
                p.includes_split_remainder,
                p.is_remainder,
            ]
            for p in plan.partitions
        ],
    }


@frozen
class Plan:
    """Exact SM counts for a spec on a device, and how the runtime creates them.

    Iterating a plan yields its :class:`PlannedPartition` objects in declaration order
    (the owned remainder partition last); ``plan["decode"]`` looks one up by name.

    Attributes:
        partitions: the planned partitions.
        facts: the device facts the plan was made for.
        spec: the spec it was made from.
        mechanism: ``"groups"`` or ``"structured"`` (see :data:`MECHANISMS`).
        group_size: ``"groups"``: the SMs of one minimum-size group (the split's
            ``minCount``); ``"structured"``: the unit sizes are multiples of.
        min_partition_size: the minimum partition size of the split's granularity (with
            or without co-scheduling, as the spec asks).
        alignment: the alignment of that granularity; for ``"structured"`` also the
            ``coscheduledSmCount`` of every group.
        split_group_count: the outputs of the one split: ``sm_count // group_size``
            groups for ``"groups"``; one result per non-remainder partition for
            ``"structured"``.
        split_remainder_sm_count: SMs in the split's remainder output.
        remainder_sm_count: SMs in no partition (0 when the remainder is owned or given
            to a partition).
    """

    partitions: tuple[PlannedPartition, ...]
    facts: SmFacts
    spec: PartitionSpec
    mechanism: str
    group_size: int
    min_partition_size: int
    alignment: int
    split_group_count: int
    split_remainder_sm_count: int
    remainder_sm_count: int

    def __getitem__(self, name: str) -> PlannedPartition:
        for partition in self.partitions:
            if partition.name == name:
                return partition
        raise KeyError(name)

    def __iter__(self) -> Iterator[PlannedPartition]:
        return iter(self.partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.partitions)

    @property
    def names(self) -> tuple[str, ...]:
        """Partition names in plan order."""
        return tuple(p.name for p in self.partitions)

    @property
    def remainder_policy(self) -> str:
        """The spec's remainder policy: ``"drop"``, ``"own"`` or a partition name."""
        return self.spec.remainder

    @property
    def total_sm_count(self) -> int:
        """SMs granted to all partitions together (``facts.sm_count`` is the device's)."""
        return sum(p.sm_count for p in self.partitions)

    @property
    def fingerprint(self) -> str:
        """16 hex characters identifying the layout's substance: the mechanism, the
        granularity and every partition's name and SMs. Stream counts, priorities, the
        words of requests and reasons, and device identity (a compile form of isolation
        keys) do not enter it."""
        return digest(_fingerprint_payload(self), 16)

    def group_slices(self) -> dict[str, range]:
        """Indices into the split's result array that each partition takes, in plan order:
        consecutive, declaration order. The runtime builds each descriptor from these
        results (plus the split's remainder when ``includes_split_remainder``)."""
        slices: dict[str, range] = {}
        start = 0
        for partition in self.partitions:
            slices[partition.name] = range(start, start + partition.groups)
            start += partition.groups
        return slices

    @property
    def recipe(self) -> SplitRecipe:
        """What the runtime builds for this plan: the split and its green contexts
        (:class:`greenres.recipe.SplitRecipe`)."""
        return _recipe_of(self)

    def ref(self, name: str) -> PartitionRef:
        """A reference to one partition of this plan, usable with
        :func:`greenres.isolation.isolation_key` (it has ``.plan`` and
        ``.planned_partition``, like the runtime's ``GreenContext``).

        Raises:
            KeyError: for an unknown name.
        """
        return PartitionRef(self, self[name])

    def explain(self) -> str:
        """The plan as a table a person reads at once: one row per partition with its
        name, request, SMs granted, how it is made and why it differs from the request."""
        facts = self.facts
        major, minor = facts.compute_capability
        if self.mechanism == "groups":
            how = (
                f"one cuDevSmResourceSplitByCount into {self.split_group_count} groups of "
                f"{self.group_size} SMs"
            )
        else:
            how = (
                f"one cuDevSmResourceSplit (CUDA 13.1) into {self.split_group_count} "
                f"results, sizes in multiples of {self.group_size}, at least "
                f"{_round_up(max(self.min_partition_size, self.alignment), self.group_size)}"
            )
        how += f", remainder {self.split_remainder_sm_count} SMs"
        options = []
        if not self.spec.coscheduling:
            options.append("without SM co-scheduling")
        if self.spec.backfill:
            options.append("backfill")
        head = (
            f"{facts.device_name} (cc {major}.{minor}, {facts.sm_count} SMs, driver "
            f"{facts.driver_version_text}): mechanism {self.mechanism!r}"
            f"{' (' + ', '.join(options) + ')' if options else ''}\n  {how}"
        )
        rows = [("partition", "request", "SMs", "made of", "reason")]
        for p in self.partitions:
            rows.append((p.name, p.request, str(p.sm_count), self._made_of(p), p.reason))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [head, ""]
        for index, row in enumerate(rows):
            cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4]]
            lines.append("  ".join(cells).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in [*widths, len("reason")]))
        policy = self.spec.remainder
        if policy == "drop":
            tail = f"remainder: drop ({self.remainder_sm_count} SMs unused)"
        elif policy == "own":
            tail = f"remainder: own (partition {REMAINDER_PARTITION_NAME!r})"
        else:
            tail = f"remainder: given to {policy!r}"
        lines += ["", f"{tail}; {self.total_sm_count} of {facts.sm_count} SMs in partitions"]
        return "\n".join(lines)

    def _made_of(self, p: PlannedPartition) -> str:
        parts = []
        if p.groups:
            if self.mechanism == "groups":
                parts.append(f"{p.groups} x {self.group_size}")
            else:
                parts.append(f"{p.result_sm_count}")
        if p.includes_split_remainder:
            parts.append(f"{self.split_remainder_sm_count} remainder")
        return " + ".join(parts) if parts else "-"


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


@frozen
class PartitionRef:
    """One partition of a plan together with its plan (what isolation keys need).

    Made by :meth:`Plan.ref`. The runtime's ``GreenContext`` has the same two attributes,
    so either can be passed to :func:`greenres.isolation.isolation_key`.
    """

    plan: Plan
    planned_partition: PlannedPartition

    @property
    def name(self) -> str:
        """The partition's name."""
        return self.planned_partition.name

    def isolation_key(self, schema: IsolationSchema, **kwargs: Any) -> str:
        """This partition's isolation key (see :func:`greenres.isolation.isolation_key`)."""
        from greenres.isolation import isolation_key

        return isolation_key(schema, self, **kwargs)


@frozen
class ModalPlan:
    """The plans of every mode of a :class:`~greenres.spec.ModalSpec`, for one device.

    ``modal_plan["decode-heavy"]`` is that mode's :class:`Plan`; iterating yields mode
    names in declaration order.

    Attributes:
        plans: mode name -> :class:`Plan` (an immutable mapping).
        default: the mode active first.
        facts: the device facts every plan was made for.
        spec: the modal spec.
    """

    plans: Mapping[str, Plan] = field(
        converter=lambda v: v if isinstance(v, _ModeMap) else _ModeMap(dict(v).items())
    )
    default: str
    facts: SmFacts
    spec: ModalSpec

    def __getitem__(self, mode: str) -> Plan:
        return self.plans[mode]

    def __iter__(self) -> Iterator[str]:
        return iter(self.plans)

    def __len__(self) -> int:
        return len(self.plans)

    @property
    def mode_names(self) -> tuple[str, ...]:
        """Mode names in declaration order."""
        return tuple(self.plans)

    @property
    def fingerprint(self) -> str:
        """16 hex characters over every mode's name and plan fingerprint."""
        return digest([[m, p.fingerprint] for m, p in self.plans.items()], 16)

    def explain(self) -> str:
        """Every mode's :meth:`Plan.explain`, under the mode's name (the default marked)."""
        blocks = []
        for mode, plan in self.plans.items():
            mark = " (default)" if mode == self.default else ""
            blocks.append(f"mode {mode!r}{mark}\n{plan.explain()}")
        return "\n\n".join(blocks)


def granularity_differences(
    planned_for: SmFacts, device: SmFacts, *, coscheduling: bool = True
) -> list[str]:
    """The facts that decide SM counts on which ``device`` differs from the facts a plan
    was ``planned_for``, each as ``"name: plan X, device Y"`` (empty when the plan fits).
    ``device`` is an :class:`SmFacts`, or any object with the attributes compared.

    The device name, memory and driver version are not compared: a plan made from a
    device profile with no GPU is valid on any device with the same SMs and granularity.
    The un-co-scheduled granularity counts only for plans with ``coscheduling=False``.
    """
    names = ["compute_capability", "sm_count", "min_partition_size", "alignment"]
    if not coscheduling:
        names += ["uncoscheduled_min_partition_size", "uncoscheduled_alignment"]
    differences = []
    for name in names:
        planned, actual = getattr(planned_for, name), getattr(device, name)
        if planned != actual:
            if name == "compute_capability":
                planned, actual = ".".join(map(str, planned)), ".".join(map(str, actual))
            differences.append(f"{name}: plan {planned}, device {actual}")
    return differences


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


def make_modal_plan(spec: ModalSpec, device_or_facts: Any, *, mechanism: str = "auto") -> ModalPlan:
    """Plan every mode of ``spec`` for one device; the same as ``spec.plan(...)``.

    Raises:
        PlanError: when any mode does not fit; every violation of every mode is listed,
            each block headed by its mode name.
    """
    if not isinstance(spec, ModalSpec):
        raise TypeError(f"make_modal_plan() needs a ModalSpec (got {type(spec).__name__})")
    facts = resolve_facts(device_or_facts)
    plans: dict[str, Plan] = {}
    failures: list[str] = []
    for mode, mode_spec in spec.modes.items():
        try:
            plans[mode] = make_plan(mode_spec, facts, mechanism=mechanism)
        except PlanError as error:
            failures.append(f"mode {mode!r}: {error}")
    if failures:
        raise PlanError("\n".join(failures))
    return ModalPlan(plans=plans, default=spec.default_mode, facts=facts, spec=spec)
