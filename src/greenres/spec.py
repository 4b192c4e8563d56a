"""What a user declares: partitions, partition specs and specs with several modes.

Everything here is a frozen attrs class, validated at construction: a bad value raises
:class:`~greenres.errors.SpecError` (a ``ValueError``) whose message names the field, the
rule and the value, for example ``'sms' must be >= 1 (got 0)``. Planning against a device
is :meth:`PartitionSpec.plan` (see :mod:`greenres.plan`). This module never imports the
driver.

(A little over 450 lines: the three value classes keep their attrs validators and
converters beside the fields they check, each with its message spelled out; the shared
checks are in :mod:`greenres._validators`.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from greenres._validators import (
    C_INT_MAX,
    C_INT_MIN,
    as_int,
    check_bool,
    check_name,
    int_at_least,
    is_int,
    nfc,
    value_text,
)
from greenres.errors import SpecError

if TYPE_CHECKING:
    from greenres.plan import ModalPlan, Plan

__all__ = [
    "LOCALITY_SPREAD",
    "MAX_STREAMS",
    "MAX_WORKQUEUE_LIMIT",
    "REMAINDER_KEYWORDS",
    "REMAINDER_PARTITION_NAME",
    "ROLES",
    "WORKQUEUE_SCOPES",
    "ModalSpec",
    "Partition",
    "PartitionSpec",
]

#: The remainder policies that are keywords rather than partition names.
REMAINDER_KEYWORDS = ("drop", "own")
#: The name of the partition ``remainder="own"`` creates.
REMAINDER_PARTITION_NAME = "remainder"

# Two spellings of one name ("é" composed or as "e" and an accent) are one name.
_NFC_NOTE = "; names are compared in Unicode normalisation form NFC"
# Shares may sum to 1 in decimal but a little over in binary (0.1 * 10).
_SHARE_SUM_TOLERANCE = 1e-9


#: The most streams one partition may ask for. Each is a driver stream the layout creates
#: up front; past the device's hardware work queues (at most 32, CUDA_DEVICE_MAX_CONNECTIONS)
#: more streams run no more work at once, and 1024 still leaves room for pools of streams
#: kept for ordering. It also keeps every count within the C ints the runtime passes on.
MAX_STREAMS = 1024

#: The workqueue sharing scopes of CUDA 13.1 (``CUdevWorkqueueConfigScope``):
#: ``"device_ctx"`` shares every workqueue of the device with all contexts (the driver's
#: default), ``"balanced"`` asks for workqueues no other balanced green context uses.
WORKQUEUE_SCOPES = ("device_ctx", "balanced")
#: The largest ``workqueue_limit``: the driver's maximum concurrency is
#: ``CUDA_DEVICE_MAX_CONNECTIONS``, documented as 1 to 32.
MAX_WORKQUEUE_LIMIT = 32
#: What a partition is for: ``"compute"`` (the default) or ``"comm"``, a partition for
#: collective-communication kernels (NCCL), whose runtime object says how to keep NCCL
#: inside its SMs (``GreenContext.nccl_config()``).
ROLES = ("compute", "comm")
#: ``locality_domain="spread"``: SMs from the union of the device's locality domains
#: (``CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID_ANY``, CUDA 13.4).
LOCALITY_SPREAD = "spread"


def _share_to_float(value: Any) -> Any:
    # Accept `share = 1` from a file (and numpy numbers: a float subclass or anything with
    # __index__) as a plain float; leave anything else, and ints too large for a float,
    # for the validator to reject with the original value in the message.
    if type(value) is float or value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        return float(value)
    value = as_int(value)
    if is_int(value):
        try:
            return float(value)
        except OverflowError:
            return value
    return value


def _check_share(_instance: Any, attribute: Any, value: Any) -> None:
    if value is None:
        return
    if is_int(value):  # too large for a float
        raise SpecError(f"'{attribute.name}' must be in (0, 1] (got {value_text(value)})")
    if not isinstance(value, float):
        raise SpecError(
            f"'{attribute.name}' must be a number or None (got {value_text(value)} of type "
            f"{type(value).__name__})"
        )
    if not math.isfinite(value):
        raise SpecError(f"'{attribute.name}' must be a finite number (got {value_text(value)})")
    if not 0.0 < value <= 1.0:
        raise SpecError(f"'{attribute.name}' must be in (0, 1] (got {value_text(value)})")


# SM counts are C ints to the driver (no device has more); priorities are passed to
# cuGreenCtxStreamCreate as one, and the driver clamps them to the device's range.
_sm_count = int_at_least(1, optional=True, maximum=C_INT_MAX)
_stream_count = int_at_least(1, maximum=MAX_STREAMS)
_priority = int_at_least(C_INT_MIN, maximum=C_INT_MAX)


def _validate_name(_instance: Any, attribute: Any, value: Any) -> None:
    check_name(attribute.name, value)


def _one_of(choices: tuple[str, ...], *, optional: bool):
    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not isinstance(value, str) or value not in choices:
            allowed = " or ".join(map(repr, choices)) + (" or None" if optional else "")
            raise SpecError(f"'{attribute.name}' must be {allowed} (got {value_text(value)})")

    return validate


_workqueue_scope = _one_of(WORKQUEUE_SCOPES, optional=True)
_workqueue_limit = int_at_least(1, optional=True, maximum=MAX_WORKQUEUE_LIMIT)
_role = _one_of(ROLES, optional=False)


def _to_domain(value: Any) -> Any:
    return nfc(value) if isinstance(value, str) else as_int(value)


def _check_domain(_instance: Any, attribute: Any, value: Any) -> None:
    if value is None or (isinstance(value, str) and value == LOCALITY_SPREAD):
        return
    if not is_int(value) or not 0 <= value <= C_INT_MAX:
        raise SpecError(
            f"'{attribute.name}' must be a domain index from 0 to {C_INT_MAX}, "
            f"{LOCALITY_SPREAD!r} or None (got {value_text(value)})"
        )


@frozen
class Partition:
    """One partition of a device, as declared.

    Give ``sms`` for a fixed SM count, ``share`` for a fraction of the device, or neither
    for "the rest" (at most one such partition per spec).

    Attributes:
        name: unique within the spec.
        sms: a fixed SM count (rounded up to the device's granularity when planned).
        share: a fraction of the usable SMs, in (0, 1].
        min_sms: a floor for a share or for the rest; not allowed with ``sms``.
        streams: how many streams the runtime creates in the partition (1 to
            :data:`MAX_STREAMS`).
        priority: the priority of those streams (CUDA: lower is more urgent), a C int; the
            driver clamps it to the device's range.
        role: ``"compute"`` or ``"comm"`` (see :data:`ROLES`): planned alike; a ``"comm"``
            partition cannot take the remainder (its SM count is what NCCL is told).
        workqueue_scope: the CUDA 13.1 workqueue sharing scope of its green context,
            ``"device_ctx"`` or ``"balanced"`` (see :data:`WORKQUEUE_SCOPES`); None takes
            the spec's ``workqueue_scope``.
        workqueue_limit: the expected maximum of concurrent stream-ordered workloads
            (``wqConcurrencyLimit``), 1 to :data:`MAX_WORKQUEUE_LIMIT`; None takes the
            spec's, or lets the planner choose (docs/planning.md, "Workqueues").
        locality_domain: the CUDA 13.4 locality domain its SMs come from, by index, or
            ``"spread"`` (from any domain; :data:`LOCALITY_SPREAD`); None: no constraint.

    The integer fields take any integer-like value (``numpy.int64``, anything with
    ``__index__``; not a bool) and store it as an int.
    """

    name: str = field(converter=nfc, validator=_validate_name)
    sms: int | None = field(default=None, converter=as_int, validator=_sm_count)
    share: float | None = field(default=None, converter=_share_to_float, validator=_check_share)
    min_sms: int | None = field(default=None, converter=as_int, validator=_sm_count)
    streams: int = field(default=1, converter=as_int, validator=_stream_count)
    priority: int = field(default=0, converter=as_int, validator=_priority)
    role: str = field(default="compute", converter=nfc, validator=_role)
    workqueue_scope: str | None = field(default=None, converter=nfc, validator=_workqueue_scope)
    workqueue_limit: int | None = field(default=None, converter=as_int, validator=_workqueue_limit)
    locality_domain: int | str | None = field(
        default=None, converter=_to_domain, validator=_check_domain
    )

    def __attrs_post_init__(self) -> None:
        if self.sms is not None and self.share is not None:
            raise SpecError(
                f"partition {self.name!r}: 'sms' and 'share' are exclusive "
                f"(got sms={self.sms}, share={value_text(self.share)})"
            )
        if self.sms is not None and self.min_sms is not None:
            raise SpecError(
                f"partition {self.name!r}: 'min_sms' is a floor for a share or the rest and "
                f"cannot be combined with 'sms' (got sms={self.sms}, min_sms={self.min_sms})"
            )

    @property
    def is_rest(self) -> bool:
        """True when the partition asks for "the rest" (neither ``sms`` nor ``share``)."""
        return self.sms is None and self.share is None

    @cached_property  # every plan of the partition shows it
    def request(self) -> str:
        """The request in words: ``"96 SMs"``, ``"25% share"``, ``"the rest"``."""
        if self.sms is not None:
            text = f"{self.sms} SM" if self.sms == 1 else f"{self.sms} SMs"
        elif self.share is not None:
            text = f"{self.share * 100:.6g}% share"
        else:
            text = "the rest"
        if self.min_sms is not None:
            text += f", at least {self.min_sms} SMs"
        return text


def _to_partition_tuple(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, (str, bytes, Mapping)):
        return value  # rejected by the validator, with the value in the message
    if isinstance(value, Iterable):
        return tuple(value)
    return value


def _check_partitions(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, tuple):
        raise SpecError(
            f"'{attribute.name}' must be a sequence of Partition (got {value_text(value)} of type "
            f"{type(value).__name__})"
        )
    if not value:
        raise SpecError(f"'{attribute.name}' must not be empty (got ())")
    for index, item in enumerate(value):
        if not isinstance(item, Partition):
            raise SpecError(
                f"'{attribute.name}[{index}]' must be a Partition (got {value_text(item)} of type "
                f"{type(item).__name__})"
            )


@frozen
class PartitionSpec:
    """A set of partitions of one device, made from one split so they are disjoint.

    Attributes:
        partitions: the partitions in declaration order (the plan keeps that order).
        remainder: what becomes of the SMs no partition takes: ``"drop"`` (unused),
            ``"own"`` (a partition named ``"remainder"``), or the name of a partition that
            also takes them. The keywords win over partition names of the same spelling.
        coscheduling: False asks for the finer split without SM co-scheduling guarantees
            (``CU_DEV_SM_RESOURCE_SPLIT_IGNORE_SM_COSCHEDULING``).
        backfill: the CUDA 13.1 backfill mode of the structured split (sizes need not be
            multiples of the co-scheduling alignment).
        workqueue_scope: the workqueue sharing scope of every partition that gives none
            (None: the driver's default, no workqueue configuration).
        workqueue_limit: the workqueue concurrency limit of every partition that gives
            none (None: planned, see docs/planning.md).
    """

    partitions: tuple[Partition, ...] = field(
        converter=_to_partition_tuple, validator=_check_partitions
    )
    remainder: str = field(default="drop", converter=nfc)
    coscheduling: bool = field(default=True, validator=check_bool)
    backfill: bool = field(default=False, validator=check_bool)
    workqueue_scope: str | None = field(default=None, converter=nfc, validator=_workqueue_scope)
    workqueue_limit: int | None = field(default=None, converter=as_int, validator=_workqueue_limit)

    @remainder.validator
    def _check_remainder(self, attribute: Any, value: Any) -> None:
        if not isinstance(value, str):
            raise SpecError(
                "'remainder' must be 'drop', 'own' or a partition name "
                f"(got {value_text(value)} of type {type(value).__name__})"
            )

    def __attrs_post_init__(self) -> None:
        # Cross-field rules, all in one place.
        seen: set[str] = set()
        for partition in self.partitions:
            if partition.name in seen:
                # names are in NFC (Partition makes them so): say so where it may matter
                note = "" if partition.name.isascii() else _NFC_NOTE
                raise SpecError(
                    f"'partitions' must have unique names (got {partition.name!r} twice{note})"
                )
            seen.add(partition.name)
        rest = [p.name for p in self.partitions if p.is_rest]
        if len(rest) > 1:
            raise SpecError(
                "at most one partition may ask for the rest (no 'sms', no 'share') "
                f"(got {', '.join(map(repr, rest))})"
            )
        shares = [p.share for p in self.partitions if p.share is not None]
        total = math.fsum(shares)
        if total > 1.0 + _SHARE_SUM_TOLERANCE:
            raise SpecError(f"the shares must sum to <= 1 (got {total:.6g})")
        if self.remainder == "own" and REMAINDER_PARTITION_NAME in seen:
            raise SpecError(
                "remainder='own' creates a partition named 'remainder': rename the "
                "partition called 'remainder'"
            )
        if self.remainder not in REMAINDER_KEYWORDS and self.remainder not in seen:
            raise SpecError(
                "'remainder' must be 'drop', 'own' or the name of a partition "
                f"(got {value_text(self.remainder)}; partitions: {', '.join(map(repr, seen))})"
            )
        if self.remainder not in REMAINDER_KEYWORDS and self[self.remainder].role == "comm":
            raise SpecError(
                f"partition {self.remainder!r}: 'role' 'comm' cannot take the remainder "
                "(a communication partition's SM count is what NCCL is told); give the "
                "remainder to another partition, or use remainder='own' or 'drop'"
            )

    def workqueue_of(self, partition: Partition | None) -> tuple[str | None, int | None]:
        """``(scope, limit)`` asked for ``partition`` (None: the owned remainder): its own
        fields, else the spec's defaults; ``(None, None)`` asks for no workqueue
        configuration."""
        scope = None if partition is None else partition.workqueue_scope
        limit = None if partition is None else partition.workqueue_limit
        return (
            self.workqueue_scope if scope is None else scope,
            self.workqueue_limit if limit is None else limit,
        )

    def __getitem__(self, name: str) -> Partition:
        if isinstance(name, str):  # names are str: nothing else is compared with them
            wanted = nfc(name)
            for partition in self.partitions:
                if partition.name == wanted:
                    return partition
        raise KeyError(name)

    def __iter__(self) -> Iterator[Partition]:
        return iter(self.partitions)

    def __len__(self) -> int:
        return len(self.partitions)

    @property
    def names(self) -> tuple[str, ...]:
        """The partition names in declaration order."""
        return tuple(p.name for p in self.partitions)

    def plan(self, device_or_facts: Any, *, mechanism: str = "auto") -> Plan:
        """Plan this spec for a device.

        Args:
            device_or_facts: an :class:`~greenres.facts.SmFacts` or any object with a
                ``sm_facts()`` method (such as ``greenres.Device``).
            mechanism: ``"auto"`` (the structured split when the facts allow it, else
                groups), ``"groups"`` or ``"structured"``.

        Raises:
            PlanError: when the spec does not fit; the message lists every violation.
            DriverTooOldError: for ``backfill=True`` or ``mechanism="structured"`` without
                the CUDA 13.1 structured split.
        """
        from greenres.plan import make_plan

        return make_plan(self, device_or_facts, mechanism=mechanism)


class _ModeMap(Mapping):
    """An immutable, hashable mapping whose order is part of its value (modes and their
    plans)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, Any]]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[nfc(key)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    # Order is part of the value: the first mode is the default one, and the order enters
    # fingerprints and files. Against another kind of mapping, compare like a dict does
    # (as OrderedDict does).
    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _ModeMap):
            return list(self._items.items()) == list(other._items.items())
        if isinstance(other, Mapping):
            return self._items == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._items)


def _to_mode_map(value: Any) -> Any:
    if isinstance(value, _ModeMap):
        return value
    if not isinstance(value, Mapping):
        return value  # refused by the validator, which names the type
    modes: dict[Any, Any] = {}
    for name, spec in value.items():
        key = nfc(name)
        if key in modes:
            raise SpecError(
                f"'modes' must have unique names (got {value_text(key)} twice{_NFC_NOTE})"
            )
        modes[key] = spec
    return _ModeMap(modes.items())


def _check_modes(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, _ModeMap):
        raise SpecError(
            f"'{attribute.name}' must be a mapping of mode name to PartitionSpec (got "
            f"{value_text(value)} of type {type(value).__name__})"
        )
    if not value:
        raise SpecError(f"'{attribute.name}' must not be empty (got {{}})")
    for name, spec in value.items():
        check_name(f"{attribute.name}[{value_text(name)}]", name)
        if not isinstance(spec, PartitionSpec):
            raise SpecError(
                f"'{attribute.name}[{value_text(name)}]' must be a PartitionSpec "
                f"(got {value_text(spec)} of type {type(spec).__name__})"
            )


@frozen
class ModalSpec:
    """Several named modes: alternative partitionings of the same device.

    Each mode is planned for the same device; the runtime creates every mode's
    partitions once and switches between modes in O(1) (a serving engine switching
    between decode-heavy and prefill-heavy steps, for example).

    Attributes:
        modes: mode name -> :class:`PartitionSpec`, in declaration order (an immutable
            mapping; pass a dict).
        default: the mode active first; ``None`` means the first mode.
    """

    modes: Mapping[str, PartitionSpec] = field(converter=_to_mode_map, validator=_check_modes)
    default: str | None = field(default=None, converter=nfc)

    @default.validator
    def _check_default(self, attribute: Any, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise SpecError(
                f"'default' must be a mode name or None (got {value_text(value)} of type "
                f"{type(value).__name__})"
            )
        if value not in self.modes:
            raise SpecError(
                f"'default' must name a mode (got {value_text(value)}; modes: "
                f"{', '.join(map(repr, self.modes))})"
            )

    @property
    def default_mode(self) -> str:
        """The name of the mode active first (``default`` or the first mode)."""
        return self.default if self.default is not None else next(iter(self.modes))

    @property
    def mode_names(self) -> tuple[str, ...]:
        """The mode names in declaration order."""
        return tuple(self.modes)

    def __getitem__(self, mode: str) -> PartitionSpec:
        return self.modes[mode]

    def __iter__(self) -> Iterator[str]:
        return iter(self.modes)

    def __len__(self) -> int:
        return len(self.modes)

    def plan(self, device_or_facts: Any, *, mechanism: str = "auto") -> ModalPlan:
        """Plan every mode for the same device (see :meth:`PartitionSpec.plan`).

        Raises:
            PlanError: when any mode does not fit; the message lists every violation of
                every mode, each prefixed with its mode name.
        """
        from greenres.plan import make_modal_plan

        return make_modal_plan(self, device_or_facts, mechanism=mechanism)
