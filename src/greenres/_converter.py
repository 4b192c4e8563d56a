"""The cattrs converter of greenres' values, and structuring with messages that say where.

:func:`make_converter` builds a new converter each time it is called: nothing is
registered at import, and a caller that adds hooks to its converter changes no other.
:func:`structure` turns a dict into a value and every failure into one
:class:`~greenres.errors.SpecError` naming the source, the path (``$.partitions[0]``) and
the problem. cattrs is imported on the first call, not with this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from greenres._files import check_depth
from greenres._validators import value_text
from greenres.errors import SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, SelectedCompileContext, SelectedRuntimeContext
from greenres.plan import PlannedPartition
from greenres.spec import ModalSpec, Partition, PartitionSpec

if TYPE_CHECKING:
    import cattrs

__all__ = ["make_converter", "structure"]


def _passthrough(value: Any, _type: Any) -> Any:
    # Leave primitives as they are: the attrs validators check the types and say so.
    return value


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _require(kind: str, check: Any, hook: Any):
    def structure(value: Any, type_: Any) -> Any:
        if not check(value):
            raise SpecError(f"expected {kind} (got {value_text(value)})")
        return hook(value, type_)

    return structure


def make_converter() -> cattrs.Converter:
    """A new cattrs converter with greenres' hooks: structuring is strict (unknown keys are
    errors, values reach the classes' validators unconverted) and reports paths;
    unstructuring omits the defaults of partitions so files stay short."""
    import attrs
    import cattrs
    from cattrs.gen import make_dict_unstructure_fn, override

    converter = cattrs.Converter(forbid_extra_keys=True)
    for primitive in (int, float, str, bool):
        converter.register_structure_hook(primitive, _passthrough)
    # Partition.locality_domain: an index or "spread"; the validator checks which.
    converter.register_structure_hook_func(lambda type_: type_ == (int | str | None), _passthrough)

    def selection(kind: type):
        def structure(value: Any, _type: Any) -> Any:
            if isinstance(value, bool):
                return value
            if isinstance(value, Mapping):
                # built-in and registered forms by name, as IsolationSchema takes a dict
                return kind.from_mapping(value)
            raise SpecError(
                f"must be true, false or a table of form names (got {value_text(value)})"
            )

        return structure

    converter.register_structure_hook(
        bool | SelectedRuntimeContext, selection(SelectedRuntimeContext)
    )
    converter.register_structure_hook(
        bool | SelectedCompileContext, selection(SelectedCompileContext)
    )

    # Leaves first: a generated hook captures the hooks of its fields when it is made.
    def table(cls: type) -> None:
        converter.register_structure_hook(
            cls, _require("a table", _is_table, converter.get_structure_hook(cls))
        )

    for cls in (Partition, SelectedRuntimeContext, SelectedCompileContext, SmFacts):
        table(cls)
    converter.register_structure_hook_func(
        lambda type_: type_ == tuple[Partition, ...],
        _require(
            "an array of tables ([[partitions]])",
            _is_array,
            converter.get_structure_hook(tuple[Partition, ...]),
        ),
    )
    table(PartitionSpec)
    converter.register_structure_hook_func(
        lambda type_: type_ == Mapping[str, PartitionSpec],
        _require(
            "a table of modes",
            _is_table,
            converter.get_structure_hook(Mapping[str, PartitionSpec]),
        ),
    )
    table(ModalSpec)
    table(IsolationSchema)

    def unstructure_selection(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        # one flat table of form names: registered forms beside the built-in ones
        table = {f.name: getattr(value, f.name) for f in attrs.fields(type(value))}
        table.update(table.pop("user_forms"))
        return table

    converter.register_unstructure_hook(
        IsolationSchema,
        lambda schema: {
            "runtime_context": unstructure_selection(schema.runtime_context),
            "compile_context": unstructure_selection(schema.compile_context),
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
    # Fields added after files existed are written only when set, so the files of specs and
    # plans that do not use them stay byte for byte what they were.
    omitted = override(omit_if_default=True)
    converter.register_unstructure_hook(
        PartitionSpec,
        make_dict_unstructure_fn(
            PartitionSpec, converter, workqueue_scope=omitted, workqueue_limit=omitted
        ),
    )
    converter.register_unstructure_hook(
        PlannedPartition,
        make_dict_unstructure_fn(
            PlannedPartition,
            converter,
            role=omitted,
            workqueue_scope=omitted,
            workqueue_limit=omitted,
            workqueue_reason=omitted,
            locality_domain=omitted,
        ),
    )
    converter.register_unstructure_hook(
        SmFacts,
        make_dict_unstructure_fn(
            SmFacts,
            converter,
            compute_capability=override(unstruct_hook=list),
            workqueue_max_concurrency=omitted,
            locality_domain_count=omitted,
            locality_domain_sm_count=omitted,
        ),
    )
    return converter


def structure(
    converter: cattrs.Converter, data: Any, cls: type, source: str | None, where: str = "$"
) -> Any:
    """``data`` as a ``cls``; ``where`` is its path inside the source (``$`` at the top).

    Raises:
        SpecError: naming ``source`` (when given), the path and every problem.
    """
    import cattrs

    expect_table(data, source, where)
    check_depth(data, source)
    try:
        return converter.structure(data, cls)
    except (SpecError, cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError) as error:
        # SpecError: raised by a class's cross-field checks (in __init__, outside cattrs'
        # detail); _message formats both kinds.
        raise SpecError(_message(error, source, where)) from error


def expect_table(data: Any, source: str | None, where: str = "$") -> None:
    """Raise a SpecError naming ``source`` and ``where`` unless ``data`` is a mapping."""
    if not isinstance(data, Mapping):
        at = "" if where == "$" else f"at {where}: "
        raise SpecError(
            f"{source + ': ' if source else ''}{at}expected a table of keys "
            f"(got {value_text(data)})"
        )


def _message(error: BaseException, source: str | None, where: str = "$") -> str:
    import cattrs

    def fmt(exc: BaseException, _type: Any) -> str:
        if isinstance(exc, SpecError):
            return str(exc)
        if isinstance(exc, KeyError):
            return "required key missing"
        if isinstance(exc, cattrs.ForbiddenExtraKeysError):
            return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''} " + ", ".join(
                repr(k) for k in sorted(exc.extra_fields, key=repr)
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
