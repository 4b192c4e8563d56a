"""Converting specs, schemas, facts and plans to and from dicts, JSON and TOML.

Serialisation is kept out of the classes: a cattrs converter built by
:func:`make_converter` holds the hooks (this module builds one on first use and keeps it).
Values are passed to the classes unchanged (no coercion of ``"96"`` to ``96`` or of
``"false"`` to True), so the classes' own validators judge them and their messages reach
the user, prefixed with the file and the key: ``serving.toml: at $.partitions[0]: 'sms'
must be >= 1 (got 0)``. Every problem of a file is a :class:`~greenres.errors.SpecError`.

The file layout is described in ``docs/spec-format.md``. In short (TOML)::

    remainder = "drop"

    [[partitions]]
    name = "decode"
    sms = 96

and a spec with modes has ``default = "..."`` and one ``[modes.<name>]`` table per mode,
each laid out like a plain spec. This module never imports the driver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from greenres import _files
from greenres._converter import expect_table, make_converter, structure
from greenres._plan_differences import plan_differences
from greenres._validators import value_text
from greenres.errors import GreenresError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema
from greenres.plan import MECHANISMS, ModalPlan, Plan, PlannedPartition, make_plan
from greenres.spec import ModalSpec, PartitionSpec

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "dump_plan",
    "dump_spec",
    "dumps_plan",
    "dumps_spec",
    "facts_from_dict",
    "facts_to_dict",
    "load_plan",
    "load_schema",
    "load_spec",
    "loads_plan",
    "loads_schema",
    "loads_spec",
    "make_converter",
    "plan_from_dict",
    "plan_to_dict",
    "plan_to_json",
    "schema_from_dict",
    "schema_to_dict",
    "spec_from_dict",
    "spec_to_dict",
]

Spec = PartitionSpec | ModalSpec


@cache
def _converter() -> cattrs.Converter:
    # Built on first use (it imports cattrs), once; every function here shares it.
    return make_converter()


def _structure(data: Any, cls: type, source: str | None, where: str = "$") -> Any:
    return structure(_converter(), data, cls, source, where)


def _require_keys(data: Mapping[str, Any], keys: tuple[str, ...], source: str, where: str) -> None:
    for key in keys:
        if key not in data:
            raise SpecError(f"{source}: at {where}.{key}: required key missing")


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """A :class:`PartitionSpec` or :class:`ModalSpec` as a plain dict (JSON and TOML
    ready: unset partition fields are omitted)."""
    if not isinstance(spec, (PartitionSpec, ModalSpec)):
        raise TypeError(
            f"spec_to_dict() needs a PartitionSpec or ModalSpec (got {type(spec).__name__})"
            + _plan_hint(spec)
        )
    return _converter().unstructure(spec)


def _plan_hint(value: Any) -> str:
    return "; plans are written by dump_plan()" if isinstance(value, (Plan, ModalPlan)) else ""


def spec_from_dict(data: Mapping[str, Any], *, source: str | None = None) -> Spec:
    """A spec from a dict: a :class:`ModalSpec` when it has a ``modes`` key, else a
    :class:`PartitionSpec`.

    Raises:
        SpecError: naming ``source`` (when given), the key and the problem.
    """
    if isinstance(data, Mapping) and "modes" in data:
        return _structure(data, ModalSpec, source)
    return _structure(data, PartitionSpec, source)


def schema_to_dict(schema: IsolationSchema) -> dict[str, Any]:
    """An :class:`IsolationSchema` as a dict (each context is a bool or a table of forms).

    Raises:
        TypeError: for anything but an IsolationSchema.
    """
    if not isinstance(schema, IsolationSchema):
        raise TypeError(f"schema_to_dict() needs an IsolationSchema (got {type(schema).__name__})")
    return _converter().unstructure(schema)


def schema_from_dict(data: Mapping[str, Any], *, source: str | None = None) -> IsolationSchema:
    """An :class:`IsolationSchema` from a dict.

    Raises:
        SpecError: naming ``source`` (when given), the key and the problem.
    """
    return _structure(data, IsolationSchema, source)


def facts_to_dict(facts: SmFacts) -> dict[str, Any]:
    """:class:`SmFacts` as a dict (``compute_capability`` as a two-item list).

    Raises:
        TypeError: for anything but SmFacts.
    """
    if not isinstance(facts, SmFacts):
        raise TypeError(f"facts_to_dict() needs SmFacts (got {type(facts).__name__})")
    return _converter().unstructure(facts)


def facts_from_dict(data: Mapping[str, Any], *, source: str | None = None) -> SmFacts:
    """:class:`SmFacts` from a dict.

    Raises:
        SpecError: naming ``source`` (when given), the key and the problem.
    """
    return _structure(data, SmFacts, source)


def _planned_to_dict(partition: PlannedPartition) -> dict[str, Any]:
    return _converter().unstructure(partition, PlannedPartition)


def plan_to_dict(plan: Plan | ModalPlan) -> dict[str, Any]:
    """A :class:`Plan` (or :class:`ModalPlan`) as a dict for ``--json`` output: every
    field, plus ``fingerprint``, ``total_sm_count`` and ``remainder_policy``."""
    if isinstance(plan, ModalPlan):
        return {
            "default": plan.default,
            "fingerprint": plan.fingerprint,
            "facts": facts_to_dict(plan.facts),
            "spec": spec_to_dict(plan.spec),
            "modes": {mode: plan_to_dict(p) for mode, p in plan.plans.items()},
        }
    if not isinstance(plan, Plan):
        hint = ""
        if isinstance(plan, (PartitionSpec, ModalSpec)):
            hint = "; plan the spec first: spec.plan(device)"
        raise TypeError(f"expected a Plan or ModalPlan (got {type(plan).__name__}){hint}")
    return {
        "facts": facts_to_dict(plan.facts),
        "spec": spec_to_dict(plan.spec),
        "mechanism": plan.mechanism,
        "group_size": plan.group_size,
        "min_partition_size": plan.min_partition_size,
        "alignment": plan.alignment,
        "split_group_count": plan.split_group_count,
        "split_remainder_sm_count": plan.split_remainder_sm_count,
        "remainder_policy": plan.remainder_policy,
        "remainder_sm_count": plan.remainder_sm_count,
        "total_sm_count": plan.total_sm_count,
        "fingerprint": plan.fingerprint,
        "partitions": [_planned_to_dict(p) for p in plan.partitions],
    }


def plan_to_json(plan: Plan | ModalPlan, *, indent: int | None = 2) -> str:
    """:func:`plan_to_dict` as JSON text."""
    return json.dumps(plan_to_dict(plan), indent=indent)


def _replan(data: Any, source: str, where: str) -> Plan:
    expect_table(data, source, where)
    _require_keys(data, ("facts", "spec", "mechanism"), source, where)
    facts = _structure(data["facts"], SmFacts, source, f"{where}.facts")
    spec = _structure(data["spec"], PartitionSpec, source, f"{where}.spec")
    mechanism = data["mechanism"]
    if not isinstance(mechanism, str) or mechanism not in MECHANISMS:
        raise SpecError(
            f"{source}: at {where}.mechanism: must be one of {', '.join(MECHANISMS)} "
            f"(got {value_text(mechanism)})"
        )
    try:
        return make_plan(spec, facts, mechanism=mechanism)
    except GreenresError as error:
        raise SpecError(
            f"{source}: at {where}: the spec does not plan on its facts: {error}"
        ) from error


def _modal_plan_from_dict(data: Mapping[str, Any], label: str) -> ModalPlan:
    _require_keys(data, ("facts", "spec"), label, "$")
    modes = data["modes"]
    if not isinstance(modes, Mapping):
        raise SpecError(f"{label}: at $.modes: expected a table of modes (got {value_text(modes)})")
    facts = _structure(data["facts"], SmFacts, label, "$.facts")
    spec = _structure(data["spec"], ModalSpec, label, "$.spec")
    if list(modes) != list(spec.modes):
        raise SpecError(
            f"{label}: at $.modes: the modes {list(modes)} are not the modes of $.spec "
            f"{list(spec.modes)}"
        )
    plans = {mode: _replan(plan, label, f"$.modes.{mode}") for mode, plan in modes.items()}
    for mode, plan in plans.items():
        if plan.facts != facts:
            raise SpecError(f"{label}: at $.modes.{mode}.facts: not the same as $.facts")
        if plan.spec != spec.modes[mode]:
            raise SpecError(f"{label}: at $.modes.{mode}.spec: not the same as $.spec.modes.{mode}")
    return ModalPlan(plans=plans, default=spec.default_mode, facts=facts, spec=spec)


def plan_from_dict(data: Mapping[str, Any], *, source: str | None = None) -> Plan | ModalPlan:
    """A :class:`Plan` or :class:`ModalPlan` from a dict made by :func:`plan_to_dict`.

    A plan is derived data: greenres plans the stored spec on the stored facts again with
    the stored mechanism and checks that the result is the stored plan, field by field. So
    a plan file that was edited, or made by a greenres that rounds differently, is refused
    instead of creating partitions other than the ones it shows.

    Raises:
        SpecError: naming ``source`` (when given), and every key that is missing, unknown
            or differs from the plan made again.
    """
    label = source or "<plan>"
    expect_table(data, label)
    _files.check_depth(data, label)
    if "modes" in data:
        made: Plan | ModalPlan = _modal_plan_from_dict(data, label)
    else:
        made = _replan(data, label, "$")
    differences = plan_differences(data, plan_to_dict(made))
    if differences:
        raise SpecError(
            "\n".join(
                [
                    f"{label}: the stored plan is not what greenres plans for its spec and "
                    "facts (edited, or made by another greenres version):",
                    *(f"  - {line}" for line in differences),
                ]
            )
        )
    return made


def loads_plan(text: str, format: str = "json", *, source: str = "<string>") -> Plan | ModalPlan:
    """A plan from JSON or TOML text (see :func:`plan_from_dict`)."""
    return _files.loads(plan_from_dict, text, format, source)


def load_plan(path: str | Path, *, format: str | None = None) -> Plan | ModalPlan:
    """Read a plan written by :func:`dump_plan` or ``greenres plan --json``, checked as
    :func:`plan_from_dict` says. ``Layout.create(load_plan(path))`` then refuses a device
    whose SMs or granularity differ from the plan's facts.

    Raises:
        SpecError: for an unreadable file, bad syntax, or a plan that is not what its
            spec and facts plan to; the message names the file and the keys.
    """
    return _files.load(plan_from_dict, path, format)


def dumps_plan(plan: Plan | ModalPlan, format: str = "json") -> str:
    """A plan as JSON or TOML text that :func:`loads_plan` reads back to an equal plan."""
    return _files.dumps(plan_to_dict(plan), format)


def dump_plan(plan: Plan | ModalPlan, path: str | Path, *, format: str | None = None) -> None:
    """Write a plan to a ``.json`` or ``.toml`` file (see :func:`load_plan`)."""
    _files.dump(dumps_plan, plan, path, format)


def loads_spec(text: str, format: str = "toml", *, source: str = "<string>") -> Spec:
    """A spec from TOML or JSON text (see :func:`load_spec`)."""
    return _files.loads(spec_from_dict, text, format, source)


def load_spec(path: str | Path, *, format: str | None = None) -> Spec:
    """Read a spec from a ``.toml`` or ``.json`` file.

    Returns a :class:`ModalSpec` when the file has a ``modes`` table, else a
    :class:`PartitionSpec`.

    Raises:
        SpecError: for an unreadable file, bad syntax or a bad value; the message names
            the file, the key and the problem.
    """
    return _files.load(spec_from_dict, path, format)


def dumps_spec(spec: Spec | IsolationSchema, format: str = "toml") -> str:
    """A spec (or isolation schema) as TOML or JSON text that :func:`loads_spec`
    (:func:`loads_schema`) reads back to an equal object."""
    if isinstance(spec, IsolationSchema):
        data = schema_to_dict(spec)
    elif isinstance(spec, (PartitionSpec, ModalSpec)):
        data = spec_to_dict(spec)
    else:
        raise TypeError(
            "dumps_spec() needs a PartitionSpec, ModalSpec or IsolationSchema (got "
            f"{type(spec).__name__}){_plan_hint(spec)}"
        )
    return _files.dumps(data, format)


def dump_spec(spec: Spec | IsolationSchema, path: str | Path, *, format: str | None = None) -> None:
    """Write a spec (or isolation schema) to a ``.toml`` or ``.json`` file."""
    _files.dump(dumps_spec, spec, path, format)


def loads_schema(text: str, format: str = "toml", *, source: str = "<string>") -> IsolationSchema:
    """An :class:`IsolationSchema` from TOML or JSON text."""
    return _files.loads(schema_from_dict, text, format, source)


def load_schema(path: str | Path, *, format: str | None = None) -> IsolationSchema:
    """Read an :class:`IsolationSchema` from a ``.toml`` or ``.json`` file.

    Raises:
        SpecError: naming the file, the key and the problem.
    """
    return _files.load(schema_from_dict, path, format)
