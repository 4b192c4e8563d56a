"""The planning algorithm: a PartitionSpec and a device's SmFacts in, a Plan and its
SplitRecipe out. :mod:`greenres.plan` holds the values and the public entry points;
``docs/planning.md`` states the rules this module implements.

Three steps, none of which is ever retried:

1. :func:`_checked_mechanism` refuses what the facts cannot do, and :class:`_Grain` says
   what one unit of the split is.
2. :func:`greenres._sizing.size_units` gives every partition a whole number of units, or
   the complete list of what does not fit (it returns the PlanError's text; it raises
   nothing); :mod:`greenres._planner_resources` checks the locality domains and workqueue
   budgets beside the SMs.
3. :func:`_assemble` lays the units out on the one split and makes the plan and its
   recipe together.

``mechanism="auto"`` is decided between steps 2 and 3 by :func:`auto_uses_groups`, a
function of the spec, the facts and the structured sizing, before any plan exists.
The words of every reason and violation are :mod:`greenres._plan_messages`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from greenres import _plan_messages as words
from greenres._planner_resources import (
    NO_QUEUE,
    Queue,
    domain_violations,
    located,
    plan_workqueues,
)
from greenres._sizing import size_units
from greenres._validators import value_text
from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts, resolve_facts
from greenres.plan import MECHANISMS, ModalPlan, Plan, PlannedPartition
from greenres.recipe import (
    GROUP_BACKFILL,
    LOCALITY_DOMAIN_ANY,
    SPLIT_IGNORE_SM_COSCHEDULING,
    WORKQUEUE_SCOPE_VALUES,
    Granularity,
    PartitionRecipe,
    SplitRecipe,
)
from greenres.spec import (
    LOCALITY_SPREAD,
    REMAINDER_KEYWORDS,
    REMAINDER_PARTITION_NAME,
    ModalSpec,
    Partition,
    PartitionSpec,
)

__all__ = ["auto_uses_groups", "plan_counts", "plan_modes", "plan_spec"]


class _Grain:
    """What one unit of a split is, for one spec, device and mechanism."""

    __slots__ = ("alignment", "mechanism", "min_size", "min_units", "total_units", "unit")

    def __init__(self, spec: PartitionSpec, facts: SmFacts, mechanism: str) -> None:
        self.mechanism = mechanism
        if spec.coscheduling:
            self.min_size, self.alignment = facts.min_partition_size, facts.alignment
        else:
            self.min_size = facts.uncoscheduled_min_partition_size
            self.alignment = facts.uncoscheduled_alignment
        if mechanism == "groups":
            self.unit = facts.group_size(spec.coscheduling)
            self.min_units = 1
        else:
            # smCount must be a multiple of coscheduledSmCount (= the alignment) unless
            # backfill, which only asks for a multiple of the finest alignment; a group
            # never has fewer SMs than the minimum nor than coscheduledSmCount.
            self.unit = facts.uncoscheduled_alignment if spec.backfill else self.alignment
            self.min_units = -(-max(self.min_size, self.alignment) // self.unit)
        self.total_units = facts.sm_count // self.unit

    def words(self) -> str:
        """The granularity in words, for messages."""
        if self.mechanism == "groups":
            return f"in groups of {self.unit}"
        return f"in multiples of {self.unit}, at least {self.min_units * self.unit}"

    def units_words(self, units: int) -> str:
        if self.mechanism == "groups":
            return f"{units} group{'s' if units != 1 else ''} of {self.unit}"
        return words.sms(units * self.unit)


def _checked_mechanism(spec: PartitionSpec, facts: SmFacts, mechanism: str) -> str:
    """The mechanism to size with: ``mechanism`` itself, or for ``"auto"`` the structured
    split when the facts have it. Raises for what the facts or the spec cannot do."""
    if not isinstance(mechanism, str) or mechanism not in ("auto", *MECHANISMS):
        raise SpecError(
            f"'mechanism' must be 'auto', 'groups' or 'structured' (got {value_text(mechanism)})"
        )
    if not facts.structured_split:
        missing = words.missing_structured_split(facts)
        if spec.backfill:
            raise DriverTooOldError(
                "backfill=True needs the structured split cuDevSmResourceSplit of CUDA 13.1 "
                f"(driver 13.1 and cuda-bindings that expose it); {missing}"
            )
        if mechanism == "structured":
            raise DriverTooOldError(
                f"mechanism 'structured' needs cuDevSmResourceSplit of CUDA 13.1; {missing}"
            )
    if mechanism == "groups" and spec.backfill:
        raise SpecError("backfill=True needs mechanism 'structured' (got mechanism='groups')")
    if mechanism == "auto":
        return "structured" if facts.structured_split else "groups"
    return mechanism


def auto_uses_groups(
    spec: PartitionSpec, facts: SmFacts, grain: _Grain, units: dict[str, int] | None
) -> bool:
    """Whether ``mechanism="auto"`` plans with groups although the facts have the
    structured split. ``grain`` and ``units`` are the structured sizing (``units`` None when
    it does not fit: then the structured plan's error is the answer).

    cuDevResourceGenerateDesc combines only resources of one ``smCoscheduledAlignment``;
    the split's remainder reports the device's alignment, a structured group without
    co-scheduling its own. So a partition that must take both (``remainder=<a name>``,
    ``coscheduling=False``, alignments that differ, a split that has a remainder) cannot
    be structured; groups can (every output of a split by count has one alignment),
    unless backfill, which only the structured split does.
    """
    if spec.backfill or spec.remainder in REMAINDER_KEYWORDS or units is None:
        return False
    if any(p.locality_domain is not None for p in spec.partitions):
        return False  # only the structured split places groups in domains
    if grain.alignment == facts.alignment:  # always so with co-scheduling
        return False
    return facts.sm_count - sum(units.values()) * grain.unit > 0


def plan_spec(spec: Any, device_or_facts: Any, mechanism: str) -> Plan:
    """:func:`greenres.plan.make_plan`."""
    if not isinstance(spec, PartitionSpec):
        hint = ""
        if isinstance(spec, ModalSpec):
            hint = "; a ModalSpec is planned by make_modal_plan()"
        raise TypeError(f"make_plan() needs a PartitionSpec (got {type(spec).__name__}){hint}")
    facts = device_or_facts if type(device_or_facts) is SmFacts else resolve_facts(device_or_facts)
    is_located = located(spec, facts, mechanism)
    chosen = _checked_mechanism(spec, facts, mechanism)
    grain = _Grain(spec, facts, chosen)
    units, reasons, error = size_units(spec, facts, grain)
    auto_structured = mechanism == "auto" and chosen == "structured"
    if auto_structured and auto_uses_groups(spec, facts, grain, units):
        grain = _Grain(spec, facts, "groups")
        units, reasons, error = size_units(spec, facts, grain)
    queues, queue_violations = plan_workqueues(spec, facts)
    if error is not None:
        raise PlanError(error)
    if is_located:
        queue_violations = domain_violations(spec, facts, grain, units) + queue_violations
    if queue_violations:
        raise PlanError(words.violations_text(spec, facts, grain, queue_violations))
    return _assemble(spec, facts, grain, units, reasons, queues, is_located)


def plan_modes(spec: Any, device_or_facts: Any, mechanism: str) -> ModalPlan:
    """:func:`greenres.plan.make_modal_plan`."""
    if not isinstance(spec, ModalSpec):
        hint = ""
        if isinstance(spec, PartitionSpec):
            hint = "; a PartitionSpec is planned by make_plan()"
        raise TypeError(f"make_modal_plan() needs a ModalSpec (got {type(spec).__name__}){hint}")
    facts = resolve_facts(device_or_facts)
    plans: dict[str, Plan] = {}
    failures: list[str] = []
    for mode, mode_spec in spec.modes.items():
        try:
            plans[mode] = plan_spec(mode_spec, facts, mechanism)
        except PlanError as error:
            failures.append(f"mode {mode!r}: {error}")
    if failures:
        raise PlanError("\n".join(failures))
    return ModalPlan(plans=plans, default=spec.default_mode, facts=facts, spec=spec)


def plan_counts(counts: Any, device_or_facts: Any, mechanism: str) -> Plan:
    """:func:`greenres.plan.plan_counts`."""
    if not isinstance(counts, Mapping):
        raise TypeError(
            "plan_counts() needs a mapping of partition names to SM counts, such as "
            f"{{'decode': 96}} (got {type(counts).__name__})"
        )
    partitions = []
    for name, count in counts.items():
        try:
            partitions.append(Partition(name, sms=count))
        except SpecError as error:
            raise SpecError(f"counts[{value_text(name)}]: {error}") from None
    if not partitions:
        raise SpecError("plan_counts() needs at least one partition (got an empty mapping)")
    return plan_spec(PartitionSpec(partitions, remainder="drop"), device_or_facts, mechanism)


# ----------------------------------------------------------------------------- assembly


def _assemble(
    spec: PartitionSpec,
    facts: SmFacts,
    grain: _Grain,
    units: dict[str, int],
    reasons: dict[str, str],
    queues: dict[str, Queue],
    located: bool = False,
) -> Plan:
    """Lay the units out on the one split: the plan and, from the same numbers, its recipe.

    Raises:
        PlanError: for an owned remainder that would be empty, or a structured group that
            cannot share a descriptor with the split's remainder.
    """
    unit = grain.unit
    by_groups = grain.mechanism == "groups"
    used = sum(units.values())
    if by_groups:
        split_groups = grain.total_units
        split_remainder = facts.sm_count - grain.total_units * unit
        extra_units = grain.total_units - used  # unassigned groups follow the policy
    else:
        split_groups = len(spec.partitions)
        split_remainder = facts.sm_count - used * unit
        extra_units = 0  # unassigned SMs are in the split's remainder already
    extra_sms = extra_units * unit + split_remainder
    policy = spec.remainder
    if policy == "own" and extra_sms == 0:
        raise words.plan_error(
            spec,
            facts,
            grain,
            f"remainder='own' would make an empty partition: the partitions take all "
            f"{words.sms(facts.sm_count)} of {facts.device_name}; use remainder='drop'",
        )
    # The keywords win over partition names spelled the same.
    target = None if policy in REMAINDER_KEYWORDS else policy
    if (
        target is not None
        and not by_groups
        and split_remainder > 0
        and grain.alignment != facts.alignment
    ):
        # see auto_uses_groups: one descriptor needs one co-scheduling alignment
        raise words.plan_error(
            spec,
            facts,
            grain,
            f"{target} cannot also take the split's remainder: one descriptor needs one "
            f"co-scheduling alignment, and a structured group without co-scheduling has "
            f"{grain.alignment} where the remainder has {facts.alignment}; use "
            "remainder='own' or 'drop', coscheduling=true, or mechanism 'groups'",
        )
    if target is not None and split_remainder > 0 and type(spec[target].locality_domain) is int:
        # cuda.h (13.4): one descriptor's SM resources have one localityDomainId, and the
        # split's remainder is in no domain
        raise words.plan_error(
            spec,
            facts,
            grain,
            f"{target} cannot also take the split's remainder: it is in locality domain "
            f"{spec[target].locality_domain} and one descriptor needs one domain; use "
            "remainder='own' or 'drop'",
        )
    planned = []
    recipes = []
    group_sm_counts = []  # "structured": one group per partition, in plan order
    group_localities = []
    first_result = 0
    for p in spec.partitions:
        name = p.name
        result_sms = units[name] * unit
        groups = units[name] if by_groups else 1
        sm_count = result_sms
        takes_remainder = False
        reason = reasons.get(name, "")
        if name == target:
            if by_groups:
                groups += extra_units
                result_sms += extra_units * unit
            takes_remainder = split_remainder > 0
            sm_count = result_sms + split_remainder
            if extra_sms:
                note = words.remainder_note(grain, policy, extra_units, split_remainder)
                reason = f"{reason}; {note}" if reason else note
        streams, priority = p.streams, p.priority
        scope, limit, queue_reason = queues.get(name, NO_QUEUE)
        # positional, in field order: this runs for every partition of every plan
        planned.append(
            PlannedPartition(
                name, p.request, sm_count, groups, result_sms, takes_remainder, reason,
                streams, priority, False, p.role, scope, limit, queue_reason, p.locality_domain,
            )
        )  # fmt: skip
        recipes.append(
            PartitionRecipe(
                name, first_result, groups, takes_remainder, sm_count, streams, priority,
                WORKQUEUE_SCOPE_VALUES.get(scope, -1), limit,
            )
        )  # fmt: skip
        group_sm_counts.append(result_sms)
        domain = p.locality_domain
        group_localities.append(
            -1 if domain is None else LOCALITY_DOMAIN_ANY if domain == LOCALITY_SPREAD else domain
        )
        first_result += groups
    if policy == "own":
        groups = extra_units if by_groups else 0
        scope, limit, queue_reason = queues.get(REMAINDER_PARTITION_NAME, NO_QUEUE)
        planned.append(
            PlannedPartition(
                name=REMAINDER_PARTITION_NAME,
                request="the remainder",
                sm_count=extra_sms,
                groups=groups,
                result_sm_count=extra_units * unit,
                includes_split_remainder=split_remainder > 0,
                reason=words.remainder_note(grain, policy, extra_units, split_remainder, own=True),
                is_remainder=True,
                workqueue_scope=scope,
                workqueue_limit=limit,
                workqueue_reason=queue_reason,
            )
        )
        recipes.append(
            PartitionRecipe(
                name=REMAINDER_PARTITION_NAME,
                first_result=first_result,
                result_count=groups,
                takes_split_remainder=split_remainder > 0,
                sm_count=extra_sms,
                streams=1,
                priority=0,
                workqueue_scope=WORKQUEUE_SCOPE_VALUES.get(scope, -1),
                workqueue_limit=limit,
            )
        )
    granularity = Granularity.from_facts(
        facts, coscheduling=spec.coscheduling, workqueues=bool(queues), locality=located
    )
    if by_groups:
        recipe = SplitRecipe(
            mechanism="groups",
            result_count=split_groups,
            min_count=unit,
            split_flags=0 if spec.coscheduling else SPLIT_IGNORE_SM_COSCHEDULING,
            group_sm_counts=(),
            coscheduled_sm_count=0,
            group_flags=0,
            partitions=tuple(recipes),
            granularity=granularity,
        )
    else:
        recipe = SplitRecipe(
            mechanism="structured",
            result_count=split_groups,
            min_count=0,
            split_flags=0,
            group_sm_counts=tuple(group_sm_counts),
            coscheduled_sm_count=0 if spec.coscheduling else grain.alignment,
            group_flags=GROUP_BACKFILL if spec.backfill else 0,
            partitions=tuple(recipes),
            granularity=granularity,
            group_localities=tuple(group_localities) if located else (),
        )
    return Plan(
        partitions=tuple(planned),
        facts=facts,
        spec=spec,
        mechanism=grain.mechanism,
        group_size=unit,
        min_partition_size=grain.min_size,
        alignment=grain.alignment,
        split_group_count=split_groups,
        split_remainder_sm_count=split_remainder,
        remainder_sm_count=extra_sms if policy == "drop" else 0,
        recipe=recipe,
    )
