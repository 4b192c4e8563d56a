"""Plans: exact SM counts for a :class:`~greenres.spec.PartitionSpec` on one device.

A :class:`Plan` says, for each partition, what was asked, what the device grants, how the
runtime builds it from ONE split of the device's SMs, and why any number differs from the
request. It is plain data made from :class:`~greenres.facts.SmFacts`; this module never
imports the driver. The runtime reads one value of a plan, :attr:`Plan.recipe` (a
:class:`~greenres.recipe.SplitRecipe`): the planner makes it together with the plan.

This module holds the values, :meth:`Plan.explain` and the entry points; the algorithm is
in :mod:`greenres._planner`, and ``docs/planning.md`` writes out its rules (fixed counts
round up to whole units, shares to the nearest unit with ties up and giving back when
they do not fit, "the rest" takes what is left, the remainder follows the policy, and
``mechanism="auto"`` is decided before the plan is made).

(A little over 450 lines: the four values a plan is made of, each frozen attrs class with
its validators beside its fields, and ``explain()``, which words the whole plan.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from greenres._canonical import digest
from greenres._validators import nfc
from greenres.facts import SmFacts
from greenres.recipe import SplitRecipe
from greenres.spec import REMAINDER_PARTITION_NAME, ModalSpec, PartitionSpec, _ModeMap

if TYPE_CHECKING:
    from greenres.isolation import IsolationSchema

__all__ = [
    "MECHANISMS",
    "ModalPlan",
    "PartitionRef",
    "Plan",
    "PlannedPartition",
    "make_modal_plan",
    "make_plan",
    "plan_counts",
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
        role: ``"compute"`` or ``"comm"`` (the spec's; ``"compute"`` for the remainder).
        workqueue_scope: the planned workqueue sharing scope, ``"device_ctx"`` or
            ``"balanced"``; ``""`` when the partition has no workqueue configuration.
        workqueue_limit: the planned ``wqConcurrencyLimit`` (0 without a configuration).
        workqueue_reason: how the limit was chosen when the spec left it open ("" when
            the spec gave it).
        locality_domain: the CUDA 13.4 locality domain its SMs come from (an index or
            ``"spread"``), as the spec asks; None without one.
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
    role: str = "compute"
    workqueue_scope: str = ""
    workqueue_limit: int = 0
    workqueue_reason: str = ""
    locality_domain: int | str | None = None


def _fingerprint_payload(plan: Plan) -> dict[str, Any]:
    payload = {
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
    # Only plans with workqueue configurations have the key, so the fingerprints of every
    # plan without them stay what they were before workqueues existed.
    workqueues = [[p.name, p.workqueue_scope, p.workqueue_limit] for p in plan.partitions]
    if any(scope for _name, scope, _limit in workqueues):
        payload["workqueues"] = workqueues
    domains = [[p.name, p.locality_domain] for p in plan.partitions]
    if any(domain is not None for _name, domain in domains):  # likewise
        payload["locality_domains"] = domains
    return payload


@frozen
class Plan:
    """Exact SM counts for a spec on a device, and how the runtime creates them.

    Made by :func:`make_plan` (``spec.plan(device)``), :func:`plan_counts` or
    :func:`greenres.serialize.load_plan`, never by hand. Iterating a plan yields its
    :class:`PlannedPartition` objects in declaration order (the owned remainder partition
    last); ``plan["decode"]`` looks one up by name.

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
        recipe: what the runtime builds: the split call and each green context
            (:class:`greenres.recipe.SplitRecipe`), made by the planner with the plan.
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
    recipe: SplitRecipe = field(repr=False)

    def __getitem__(self, name: str) -> PlannedPartition:
        if isinstance(name, str):  # names are str: nothing else is compared with them
            wanted = nfc(name)
            for partition in self.partitions:
                if partition.name == wanted:
                    return partition
        raise KeyError(name)

    def __iter__(self) -> Iterator[PlannedPartition]:
        return iter(self.partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    def __contains__(self, name: object) -> bool:
        wanted = nfc(name)
        return isinstance(wanted, str) and any(p.name == wanted for p in self.partitions)

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
        granularity, every partition's name and SMs, and its workqueue configuration
        (when any partition has one). Stream counts, priorities, roles, the words of
        requests and reasons, and device identity (a compile form of isolation keys) do
        not enter it."""
        return digest(_fingerprint_payload(self), 16)

    def group_slices(self) -> dict[str, range]:
        """Indices into the split's result array that each partition takes, in plan order:
        consecutive, declaration order. The runtime builds each descriptor from these
        results (plus the split's remainder when ``includes_split_remainder``)."""
        return {p.name: p.results for p in self.recipe.partitions}

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
            smallest = max(self.min_partition_size, self.alignment)
            smallest = -(-smallest // self.group_size) * self.group_size
            how = (
                f"one cuDevSmResourceSplit (CUDA 13.1) into {self.split_group_count} "
                f"results, sizes in multiples of {self.group_size}, at least {smallest}"
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
        lines += self._workqueue_lines()
        lines += self._locality_lines()
        comm = [p.name for p in self.partitions if p.role == "comm"]
        if comm:
            lines.append(
                f"communication partitions: {', '.join(map(repr, comm))} (NCCL CTA bounds "
                "from their SM counts: GreenContext.nccl_config())"
            )
        return "\n".join(lines)

    def _locality_lines(self) -> list[str]:
        """The locality-domain part of :meth:`explain`."""
        placed = [p for p in self.partitions if p.locality_domain is not None]
        if not placed:
            return []
        facts = self.facts
        lines = [
            f"locality domains (CUDA 13.4; {facts.locality_domain_count} of "
            f"{facts.locality_domain_sm_count} SMs each):"
        ]
        for domain in sorted({p.locality_domain for p in placed}, key=str):
            names = [p for p in placed if p.locality_domain == domain]
            used = sum(p.sm_count for p in names)
            who = ", ".join(f"{p.name} {p.sm_count}" for p in names)
            if domain == "spread":
                lines.append(f"  spread over every domain: {who}")
            else:
                lines.append(
                    f"  domain {domain}: {who} ({used} of {facts.locality_domain_sm_count} SMs)"
                )
        return lines

    def _workqueue_lines(self) -> list[str]:
        """The workqueue part of :meth:`explain`: one line per configured partition, and
        whether the balanced ones fit the device's maximum concurrency."""
        configured = [p for p in self.partitions if p.workqueue_scope]
        if not configured:
            return []
        most = self.facts.workqueue_max_concurrency
        lines = [
            f"workqueues (CUDA 13.1; at most {most} concurrent stream-ordered workloads, "
            "CUDA_DEVICE_MAX_CONNECTIONS):"
        ]
        for p in configured:
            why = f" ({p.workqueue_reason})" if p.workqueue_reason else ""
            lines.append(f"  {p.name}: {p.workqueue_scope}, limit {p.workqueue_limit}{why}")
        balanced = sum(p.workqueue_limit for p in configured if p.workqueue_scope == "balanced")
        if balanced > most:
            lines.append(
                f"  balanced limits sum to {balanced} > {most}: the driver may overlap their "
                "workqueues (it does not refuse such configurations)"
            )
        return lines

    def to_svg(self) -> str:
        """An SVG picture of the device's SMs, one cell per SM coloured by partition, the
        split's remainder and dropped SMs marked, with a legend (:mod:`greenres.svg`). The
        cells are in split order: which physical SMs they are, the driver decides (see
        :meth:`greenres.Layout.to_svg`)."""
        from greenres.svg import plan_svg

        return plan_svg(self)

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


def _check_ref_plan(_instance: Any, _attribute: Any, value: Any) -> None:
    if not isinstance(value, Plan):
        raise TypeError(
            "'plan' must be a Plan (from spec.plan(device) or load_plan) (got "
            f"{type(value).__name__}); a PartitionRef is made by plan.ref(name)"
        )


def _check_ref_partition(instance: PartitionRef, _attribute: Any, value: Any) -> None:
    if not (isinstance(value, PlannedPartition) and value in instance.plan.partitions):
        raise TypeError(
            "'planned_partition' must be one of the plan's PlannedPartition objects (got "
            f"{type(value).__name__}); a PartitionRef is made by plan.ref(name)"
        )


@frozen
class PartitionRef:
    """One partition of a plan together with its plan (what isolation keys need).

    Made by :meth:`Plan.ref`. The runtime's ``GreenContext`` has the same two attributes,
    so either can be passed to :func:`greenres.isolation.isolation_key`.

    Attributes:
        plan: the :class:`Plan`.
        planned_partition: one of its partitions.

    Raises:
        TypeError: when ``plan`` is not a :class:`Plan` or ``planned_partition`` is not one
            of its partitions.
    """

    plan: Plan = field(validator=_check_ref_plan)
    planned_partition: PlannedPartition = field(validator=_check_ref_partition)

    @property
    def name(self) -> str:
        """The partition's name."""
        return self.planned_partition.name

    def isolation_key(self, schema: IsolationSchema, **kwargs: Any) -> str:
        """This partition's isolation key (see :func:`greenres.isolation.isolation_key`)."""
        from greenres.isolation import isolation_key

        return isolation_key(schema, self, **kwargs)


def _to_plan_map(value: Any) -> Any:
    if isinstance(value, _ModeMap):
        return value
    if isinstance(value, Mapping):
        return _ModeMap(value.items())
    return value  # refused by the validator, which names the type


def _check_plans(_instance: Any, _attribute: Any, value: Any) -> None:
    if not isinstance(value, _ModeMap):
        raise TypeError(
            f"'plans' must be a mapping of mode name to Plan (got {type(value).__name__})"
        )
    for mode, plan in value.items():
        if not isinstance(plan, Plan):
            raise TypeError(f"'plans[{mode!r}]' must be a Plan (got {type(plan).__name__})")


@frozen
class ModalPlan:
    """The plans of every mode of a :class:`~greenres.spec.ModalSpec`, for one device.

    ``modal_plan["decode-heavy"]`` is that mode's :class:`Plan` (and
    ``modal_plan.recipes["decode-heavy"]`` its recipe); iterating yields mode names in
    declaration order. Made by :func:`make_modal_plan` (``modal_spec.plan(device)``).

    Attributes:
        plans: mode name -> :class:`Plan` (an immutable mapping, in declaration order).
        default: the mode active first.
        facts: the device facts every plan was made for.
        spec: the modal spec.
    """

    plans: Mapping[str, Plan] = field(converter=_to_plan_map, validator=_check_plans)
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
    def recipes(self) -> Mapping[str, SplitRecipe]:
        """Mode name -> that mode's :attr:`Plan.recipe`, in declaration order."""
        return _ModeMap((mode, plan.recipe) for mode, plan in self.plans.items())

    @property
    def fingerprint(self) -> str:
        """16 hex characters over every mode's name and plan fingerprint."""
        return digest([[m, p.fingerprint] for m, p in self.plans.items()], 16)

    def to_svg(self) -> str:
        """The SVG picture of every mode's SMs side by side (see :meth:`Plan.to_svg`)."""
        from greenres.svg import plan_svg

        return plan_svg(self)

    def explain(self) -> str:
        """Every mode's :meth:`Plan.explain`, under the mode's name (the default marked)."""
        blocks = []
        for mode, plan in self.plans.items():
            mark = " (default)" if mode == self.default else ""
            blocks.append(f"mode {mode!r}{mark}\n{plan.explain()}")
        return "\n\n".join(blocks)


def make_plan(spec: PartitionSpec, device_or_facts: Any, *, mechanism: str = "auto") -> Plan:
    """Plan ``spec`` for a device; the same as ``spec.plan(device_or_facts)``.

    Args:
        spec: the spec.
        device_or_facts: an :class:`~greenres.facts.SmFacts` or any object with a
            ``sm_facts()`` method (such as ``greenres.Device``).
        mechanism: ``"auto"``, ``"groups"`` or ``"structured"`` (see ``docs/planning.md``).

    Raises:
        PlanError: when the spec does not fit (every violation listed, with numbers).
        DriverTooOldError: when the spec or ``mechanism`` needs CUDA 13.1's structured split
            and the facts say it is missing.
        SpecError: for an unknown ``mechanism``, or backfill with ``mechanism="groups"``.
        TypeError: when ``spec`` is not a PartitionSpec or the device gives no facts.
    """
    return _planner.plan_spec(spec, device_or_facts, mechanism)


def make_modal_plan(spec: ModalSpec, device_or_facts: Any, *, mechanism: str = "auto") -> ModalPlan:
    """Plan every mode of ``spec`` for one device; the same as ``spec.plan(...)``.

    Raises:
        PlanError: when any mode does not fit; every violation of every mode is listed,
            each block headed by its mode name.
        TypeError: when ``spec`` is not a ModalSpec or the device gives no facts.
    """
    return _planner.plan_modes(spec, device_or_facts, mechanism)


def plan_counts(
    counts: Mapping[str, int], device_or_facts: Any, *, mechanism: str = "auto"
) -> Plan:
    """Plan ``{"name": sm_count, ...}``: one partition per item, in the mapping's order,
    each with a fixed ``sms`` count, and the remainder dropped. The shortcut
    ``greenres.Layout.create({"decode": 96, "comm": 8})`` plans with this.

    ``plan_counts({"decode": 96}, dev)`` is
    ``PartitionSpec([Partition("decode", sms=96)], remainder="drop").plan(dev)``.

    Raises:
        TypeError: when ``counts`` is not a mapping, or the device gives no facts.
        SpecError: for a bad name or count, naming the item (``counts['decode']: ...``).
        PlanError: when the counts do not fit the device.
    """
    return _planner.plan_counts(counts, device_or_facts, mechanism)


# Last: the planner builds the classes above (importing it first works too: it imports
# this module before it defines anything).
from greenres import _planner  # noqa: E402
