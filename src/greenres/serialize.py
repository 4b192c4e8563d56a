"""Converting specs, schemas, facts and plans to and from dicts, JSON and TOML.

Serialisation is kept out of the classes: one cattrs :data:`converter` holds the hooks.
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
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cattrs
import tomli_w
from cattrs.gen import make_dict_unstructure_fn, override

from greenres.errors import GreenresError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, SelectedCompileContext, SelectedRuntimeContext
from greenres.plan import MECHANISMS, ModalPlan, Plan, PlannedPartition, make_plan
from greenres.spec import ModalSpec, Partition, PartitionSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "converter",
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
    "plan_from_dict",
    "plan_to_dict",
    "plan_to_json",
    "schema_from_dict",
    "schema_to_dict",
    "spec_from_dict",
    "spec_to_dict",
]

Spec = PartitionSpec | ModalSpec

#: The converter with greenres' hooks (structure: strict, path-aware; unstructure:
#: defaults of partitions omitted so files stay short).
converter = cattrs.Converter(forbid_extra_keys=True)


def _passthrough(value: Any, _type: Any) -> Any:
    # Leave primitives as they are: the attrs validators check the types and say so.
    return value


for _primitive in (int, float, str, bool):
    converter.register_structure_hook(_primitive, _passthrough)


def _structure_selection(kind: type):
    def structure(value: Any, _type: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, Mapping):
            return converter.structure(value, kind)
        raise SpecError(f"must be true, false or a table of form names (got {value!r})")

    return structure


converter.register_structure_hook(
    bool | SelectedRuntimeContext, _structure_selection(SelectedRuntimeContext)
)
converter.register_structure_hook(
    bool | SelectedCompileContext, _structure_selection(SelectedCompileContext)
)


def _require(kind: str, check: Any, hook: Any):
    def structure(value: Any, type_: Any) -> Any:
        if not check(value):
            raise SpecError(f"expected {kind} (got {value!r})")
        return hook(value, type_)

    return structure


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple))


# Registered leaves first: a generated hook captures the hooks of its fields.
def _table_check(cls: type) -> None:
    converter.register_structure_hook(
        cls, _require("a table", _is_table, converter.get_structure_hook(cls))
    )


for _cls in (Partition, SelectedRuntimeContext, SelectedCompileContext, SmFacts):
    _table_check(_cls)
converter.register_structure_hook_func(
    lambda type_: type_ == tuple[Partition, ...],
    _require(
        "an array of tables ([[partitions]])",
        _is_array,
        converter.get_structure_hook(tuple[Partition, ...]),
    ),
)
_table_check(PartitionSpec)
converter.register_structure_hook_func(
    lambda type_: type_ == Mapping[str, PartitionSpec],
    _require(
        "a table of modes", _is_table, converter.get_structure_hook(Mapping[str, PartitionSpec])
    ),
)
_table_check(ModalSpec)
_table_check(IsolationSchema)


def _unstructure_selection(value: Any) -> Any:
    return value if isinstance(value, bool) else converter.unstructure(value)


converter.register_unstructure_hook(
    IsolationSchema,
    lambda schema: {
        "runtime_context": _unstructure_selection(schema.runtime_context),
        "compile_context": _unstructure_selection(schema.compile_context),
    },
)
converter.register_unstructure_hook(
    Partition, make_dict_unstructure_fn(Partition, converter, _cattrs_omit_if_default=True)
)
converter.register_unstructure_hook(
    ModalSpec,
    make_dict_unstructure_fn(
        ModalSpec,
        converter,
        _cattrs_omit_if_default=True,
        modes=override(
            unstruct_hook=lambda modes: {
                name: converter.unstructure(spec, PartitionSpec) for name, spec in modes.items()
            }
        ),
    ),
)
converter.register_unstructure_hook(
    SmFacts,
    make_dict_unstructure_fn(SmFacts, converter, compute_capability=override(unstruct_hook=list)),
)


def _message(error: BaseException, source: str | None, where: str = "$") -> str:
    def fmt(exc: BaseException, _type: Any) -> str:
        if isinstance(exc, SpecError):
            return str(exc)
        if isinstance(exc, KeyError):
            return "required key missing"
        if isinstance(exc, cattrs.ForbiddenExtraKeysError):
            return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''} " + ", ".join(
                repr(k) for k in sorted(exc.extra_fields)
            )
        if isinstance(exc, (TypeError, AttributeError)):
            return f"wrong kind of value ({exc})"
        return f"{type(exc).__name__}: {exc}"

    if isinstance(error, (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError)):
        lines = cattrs.transform_error(error, path=where, format_exception=fmt)
        lines = [_tidy(line) for line in lines]
    else:
        lines = [fmt(error, None) if where == "$" else f"at {where}: {fmt(error, None)}"]
    prefix = f"{source}: " if source else ""
    if len(lines) == 1:
        return prefix + lines[0]
    return prefix + "\n".join(["invalid spec:", *(f"  - {line}" for line in lines)])


def _tidy(line: str) -> str:
    # cattrs writes "problem @ $.path"; say where first.
    problem, sep, where = line.rpartition(" @ ")
    if not sep:
        return line
    return f"at {where}: {problem}"


def _expect_table(data: Any, source: str | None, where: str = "$") -> None:
    if not isinstance(data, Mapping):
        at = "" if where == "$" else f"at {where}: "
        raise SpecError(
            f"{source + ': ' if source else ''}{at}expected a table of keys (got {data!r})"
        )


def _require_keys(data: Mapping[str, Any], keys: tuple[str, ...], source: str, where: str) -> None:
    for key in keys:
        if key not in data:
            raise SpecError(f"{source}: at {where}.{key}: required key missing")


def _structure(data: Any, cls: type, source: str | None, where: str = "$") -> Any:
    """``data`` as a ``cls``; ``where`` is its path inside the file (``$`` at the top)."""
    _expect_table(data, source, where)
    try:
        return converter.structure(data, cls)
    except (SpecError, cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError) as error:
        # SpecError: raised by a class's cross-field checks (in __init__, outside cattrs'
        # detail); _message formats both kinds.
        raise SpecError(_message(error, source, where)) from error


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """A :class:`PartitionSpec` or :class:`ModalSpec` as a plain dict (JSON and TOML
    ready: unset partition fields are omitted)."""
    if not isinstance(spec, (PartitionSpec, ModalSpec)):
        raise TypeError(f"expected a PartitionSpec or ModalSpec (got {type(spec).__name__})")
    return converter.unstructure(spec)


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
    """An :class:`IsolationSchema` as a dict (each context is a bool or a table of forms)."""
    return converter.unstructure(schema)


def schema_from_dict(data: Mapping[str, Any], *, source: str | None = None) -> IsolationSchema:
    """An :class:`IsolationSchema` from a dict.

    Raises:
        SpecError: naming ``source`` (when given), the key and the problem.
    """
    return _structure(data, IsolationSchema, source)


def facts_to_dict(facts: SmFacts) -> dict[str, Any]:
    """:class:`SmFacts` as a dict (``compute_capability`` as a two-item list)."""
    return converter.unstructure(facts)


def facts_from_dict(data: Mapping[str, Any], *, source: str | None = None) -> SmFacts:
    """:class:`SmFacts` from a dict.

    Raises:
        SpecError: naming ``source`` (when given), the key and the problem.
    """
    return _structure(data, SmFacts, source)


def _planned_to_dict(partition: PlannedPartition) -> dict[str, Any]:
    return converter.unstructure(partition, PlannedPartition)


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
        raise TypeError(f"expected a Plan or ModalPlan (got {type(plan).__name__})")
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


def _differences(stored: Any, made: Any, where: str = "$") -> list[str]:
    """Where two plan dicts differ, as ``"at $.key: file X, planned Y"`` lines."""
    if isinstance(stored, Mapping) and isinstance(made, Mapping):
        lines = []
        for key in sorted(set(stored) | set(made)):
            here = f"{where}.{key}"
            if key not in made:
                lines.append(f"at {here}: unknown key")
            elif key not in stored:
                lines.append(f"at {here}: required key missing")
            else:
                lines += _differences(stored[key], made[key], here)
        return lines
    if isinstance(stored, list) and isinstance(made, list) and len(stored) == len(made):
        return [
            line
            for index, (a, b) in enumerate(zip(stored, made, strict=True))
            for line in _differences(a, b, f"{where}[{index}]")
        ]
    if stored != made or type(stored) is not type(made):
        return [f"at {where}: file {stored!r}, planned {made!r}"]
    return []


def _replan(data: Any, source: str, where: str) -> Plan:
    _expect_table(data, source, where)
    _require_keys(data, ("facts", "spec", "mechanism"), source, where)
    facts = _structure(data["facts"], SmFacts, source, f"{where}.facts")
    spec = _structure(data["spec"], PartitionSpec, source, f"{where}.spec")
    mechanism = data["mechanism"]
    if mechanism not in MECHANISMS:
        raise SpecError(
            f"{source}: at {where}.mechanism: must be one of {', '.join(MECHANISMS)} "
            f"(got {mechanism!r})"
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
        raise SpecError(f"{label}: at $.modes: expected a table of modes (got {modes!r})")
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
    _expect_table(data, label)
    if "modes" in data:
        made: Plan | ModalPlan = _modal_plan_from_dict(data, label)
    else:
        made = _replan(data, label, "$")
    differences = _differences(data, plan_to_dict(made))
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
    return _loads(plan_from_dict, text, format, source)


def load_plan(path: str | Path, *, format: str | None = None) -> Plan | ModalPlan:
    """Read a plan written by :func:`dump_plan` or ``greenres plan --json``, checked as
    :func:`plan_from_dict` says. ``Layout.create(load_plan(path))`` then refuses a device
    whose SMs or granularity differ from the plan's facts.

    Raises:
        SpecError: for an unreadable file, bad syntax, or a plan that is not what its
            spec and facts plan to; the message names the file and the keys.
    """
    return _load(plan_from_dict, path, format)


def dumps_plan(plan: Plan | ModalPlan, format: str = "json") -> str:
    """A plan as JSON or TOML text that :func:`loads_plan` reads back to an equal plan."""
    return _dumps(plan_to_dict(plan), format)


def dump_plan(plan: Plan | ModalPlan, path: str | Path, *, format: str | None = None) -> None:
    """Write a plan to a ``.json`` or ``.toml`` file (see :func:`load_plan`)."""
    _dump(dumps_plan, plan, path, format)


# ----------------------------------------------------------------------------- text and files
# One reader, parser and writer for specs, schemas and plans; each from_dict / dumps
# function decides what the data means.


def _loads(from_dict: Any, text: str, format: str, source: str) -> Any:
    return from_dict(_parse(text, _format_of(Path(source), format), source), source=source)


def _load(from_dict: Any, path: str | Path, format: str | None) -> Any:
    path = Path(path)
    kind = _format_of(path, format)  # before reading: a bad suffix is named first
    return from_dict(_parse(_read(path), kind, str(path)), source=str(path))


def _dumps(data: Any, format: str) -> str:
    if _check_format(format) == "toml":
        return tomli_w.dumps(data)
    return json.dumps(data, indent=2) + "\n"


def _dump(dumps: Any, value: Any, path: str | Path, format: str | None) -> None:
    path = Path(path)
    path.write_text(dumps(value, _format_of(path, format)), encoding="utf-8")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read: {error}") from error


def _check_format(format: str) -> str:
    if format not in ("toml", "json"):
        raise SpecError(f"'format' must be 'toml' or 'json' (got {format!r})")
    return format


def _format_of(path: Path, format: str | None) -> str:
    if format is not None:
        return _check_format(format)
    suffix = path.suffix.lower()
    if suffix in (".toml", ".json"):
        return suffix[1:]
    raise SpecError(f"{path}: unknown file type {suffix or '(none)'!r}; use .toml or .json")


def _parse(text: str, format: str, source: str) -> Any:
    try:
        if format == "toml":
            return tomllib.loads(text)
        return json.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{source}: not valid TOML: {error}") from error
    except json.JSONDecodeError as error:
        raise SpecError(f"{source}: not valid JSON: {error}") from error


def loads_spec(text: str, format: str = "toml", *, source: str = "<string>") -> Spec:
    """A spec from TOML or JSON text (see :func:`load_spec`)."""
    return _loads(spec_from_dict, text, format, source)


def load_spec(path: str | Path, *, format: str | None = None) -> Spec:
    """Read a spec from a ``.toml`` or ``.json`` file.

    Returns a :class:`ModalSpec` when the file has a ``modes`` table, else a
    :class:`PartitionSpec`.

    Raises:
        SpecError: for an unreadable file, bad syntax or a bad value; the message names
            the file, the key and the problem.
    """
    return _load(spec_from_dict, path, format)


def dumps_spec(spec: Spec | IsolationSchema, format: str = "toml") -> str:
    """A spec (or isolation schema) as TOML or JSON text that :func:`loads_spec`
    (:func:`loads_schema`) reads back to an equal object."""
    data = schema_to_dict(spec) if isinstance(spec, IsolationSchema) else spec_to_dict(spec)
    return _dumps(data, format)


def dump_spec(spec: Spec | IsolationSchema, path: str | Path, *, format: str | None = None) -> None:
    """Write a spec (or isolation schema) to a ``.toml`` or ``.json`` file."""
    _dump(dumps_spec, spec, path, format)


def loads_schema(text: str, format: str = "toml", *, source: str = "<string>") -> IsolationSchema:
    """An :class:`IsolationSchema` from TOML or JSON text."""
    return _loads(schema_from_dict, text, format, source)


def load_schema(path: str | Path, *, format: str | None = None) -> IsolationSchema:
    """Read an :class:`IsolationSchema` from a ``.toml`` or ``.json`` file.

    Raises:
        SpecError: naming the file, the key and the problem.
    """
    return _load(schema_from_dict, path, format)
