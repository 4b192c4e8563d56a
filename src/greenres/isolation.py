"""Isolation schemas and keys: one stable key per partition for anything cached per partition.

Autotuning results, compiled kernels and captured graphs are only valid for the conditions
they were made under. An :class:`IsolationSchema` selects which conditions ("context
forms") enter the key, grouped like a compiler cache's runtime/compile split:

* runtime forms: ``partition`` (SM count, minimum partition size, alignment, co-scheduling,
  the layout's fingerprint, and the workqueue scope and limit when it has them),
  ``environment`` (``CUDA_DEVICE_MAX_CONNECTIONS``, ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``,
  ``CUDA_VISIBLE_DEVICES``), ``stream_priority``;
* compile forms: ``device`` (name, compute capability, total SMs), ``driver_version``,
  ``bindings_version`` (of cuda-bindings), ``greenres_version``;
* user forms of either group, added with :func:`register_form` (a model version, the
  ``torch`` version, ...), selected by name like the built-in ones.

Selections are ``True`` (every form of the group, registered ones included), ``False``
(none), a ``Selected*Context`` or a plain dict of form names to bools, as the Inductor
seed's ``TypedDict`` selections are written; a form a selection does not name stays
selected.

:func:`isolation_context` returns the selected forms as a dict; :func:`isolation_key` is 32
hex characters of SHA-256 over its canonical JSON (sorted keys, no whitespace, ASCII), so
it is the same in every process, on every Python version and for any dict order.

A *partition* here is anything with ``.plan`` (a :class:`~greenres.plan.Plan`) and
``.planned_partition`` (one of its :class:`~greenres.plan.PlannedPartition`): the
runtime's ``GreenContext``, or ``plan.ref(name)``; a ``(plan, name)`` pair works too.
Called with no arguments, the functions use the default schema and the current device
(the current context's, else device 0): that is the only time this module loads the
runtime, and without a driver the device forms are ``None``, as the seed's
``accelerator_properties`` is without a GPU.

(A little over 450 lines: the schema values, the context's forms and the key form one
path, from selection to hash; the user-form registry is :mod:`greenres._forms`.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from greenres._canonical import digest
from greenres._forms import (
    BUILTIN_FORMS,
    UserForm,
    form_value,
    register_form,
    registered_forms,
    unregister_form,
    user_form,
)
from greenres._validators import check_bool, value_text
from greenres.errors import SpecError
from greenres.facts import SmFacts
from greenres.plan import ModalPlan, Plan, PlannedPartition
from greenres.spec import ModalSpec, Partition, PartitionSpec

__all__ = [
    "COMPILE_FORMS",
    "ENVIRONMENT_VARIABLES",
    "KEY_FORMAT_VERSION",
    "RUNTIME_FORMS",
    "IsolationSchema",
    "SelectedCompileContext",
    "SelectedRuntimeContext",
    "UserForm",
    "installed_versions",
    "isolation_context",
    "isolation_key",
    "key_of_context",
    "register_form",
    "registered_forms",
    "unregister_form",
]

#: The runtime context forms, in order.
RUNTIME_FORMS = BUILTIN_FORMS["runtime"]
#: The compile context forms, in order.
COMPILE_FORMS = BUILTIN_FORMS["compile"]
#: The environment variables of the ``environment`` form.
ENVIRONMENT_VARIABLES = (
    "CUDA_DEVICE_MAX_CONNECTIONS",
    "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE",
    "CUDA_VISIBLE_DEVICES",
)
#: Bumped whenever the content of a form changes, so old keys cannot collide with new.
#: (Defaults, dict selections and user forms added no change to the built-in forms' keys.)
KEY_FORMAT_VERSION = 1


def _user_form_pairs(value: Any) -> Any:
    # stored sorted, as pairs: the selection stays frozen, hashable and order-free
    if isinstance(value, Mapping):
        value = tuple(value.items())
    if isinstance(value, (list, tuple)) and all(
        isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str) for pair in value
    ):
        return tuple(sorted(value, key=lambda pair: pair[0]))
    return value  # the validator names what is wrong


def _user_form_selection(group: str):
    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, tuple):
            raise SpecError(
                f"'{attribute.name}' must be a mapping of registered form names to bools "
                f"(got {value_text(value)})"
            )
        for name, selected in value:
            if not isinstance(selected, bool):
                raise SpecError(f"{name!r} must be a bool (got {value_text(selected)})")
            _check_known_form(group, name)

    return validate


def _check_known_form(group: str, name: Any) -> None:
    if isinstance(name, str):
        form = user_form(name)
        if form is not None and form.group == group:
            return
        other = "compile" if group == "runtime" else "runtime"
        if name in BUILTIN_FORMS[other] or (form is not None and form.group == other):
            raise SpecError(f"{name!r} is a {other} form, not a {group} form")
    known = ", ".join(repr(n) for n in (*BUILTIN_FORMS[group], *registered_forms(group)))
    raise SpecError(
        f"unknown {group} form {value_text(name)}; the {group} forms are {known} "
        "(register others with greenres.isolation.register_form)"
    )


def _selected(selection: Any, group: str) -> tuple[str, ...]:
    built_in = tuple(f for f in BUILTIN_FORMS[group] if getattr(selection, f))
    chosen = dict(selection.user_forms)
    user = [name for name in registered_forms(group) if chosen.get(name, True)]
    # a form selected by name but unregistered since: kept, so the context names it
    user += [name for name, on in chosen.items() if on and name not in user]
    return built_in + tuple(sorted(user))


@frozen
class SelectedRuntimeContext:
    """Which runtime forms enter the key (all by default).

    Attributes:
        partition: the partition's SM count, granularity and the layout's fingerprint.
        environment: ``CUDA_DEVICE_MAX_CONNECTIONS``, ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE``
            and ``CUDA_VISIBLE_DEVICES``.
        stream_priority: the priority of the partition's streams.
        user_forms: registered runtime forms selected or deselected by name, as sorted
            ``(name, bool)`` pairs (a registered form not named here is selected).
    """

    partition: bool = field(default=True, validator=check_bool)
    environment: bool = field(default=True, validator=check_bool)
    stream_priority: bool = field(default=True, validator=check_bool)
    user_forms: tuple[tuple[str, bool], ...] = field(
        default=(), converter=_user_form_pairs, validator=_user_form_selection("runtime")
    )

    @classmethod
    def from_mapping(cls, selection: Mapping[str, bool]) -> SelectedRuntimeContext:
        """A selection from a dict of form names (built-in or registered) to bools."""
        return _from_mapping(cls, "runtime", selection)

    def selected(self) -> tuple[str, ...]:
        """The names of the selected forms: the built-in ones in :data:`RUNTIME_FORMS`
        order, then the registered ones (every one not deselected), sorted."""
        return _selected(self, "runtime")


@frozen
class SelectedCompileContext:
    """Which compile forms enter the key (all by default).

    Attributes:
        device: the device's name, compute capability and total SMs.
        driver_version: the CUDA driver's version.
        bindings_version: cuda-bindings' version.
        greenres_version: greenres' version.
        user_forms: registered compile forms selected or deselected by name, as sorted
            ``(name, bool)`` pairs (a registered form not named here is selected).
    """

    device: bool = field(default=True, validator=check_bool)
    driver_version: bool = field(default=True, validator=check_bool)
    bindings_version: bool = field(default=True, validator=check_bool)
    greenres_version: bool = field(default=True, validator=check_bool)
    user_forms: tuple[tuple[str, bool], ...] = field(
        default=(), converter=_user_form_pairs, validator=_user_form_selection("compile")
    )

    @classmethod
    def from_mapping(cls, selection: Mapping[str, bool]) -> SelectedCompileContext:
        """A selection from a dict of form names (built-in or registered) to bools."""
        return _from_mapping(cls, "compile", selection)

    def selected(self) -> tuple[str, ...]:
        """The names of the selected forms: the built-in ones in :data:`COMPILE_FORMS`
        order, then the registered ones (every one not deselected), sorted."""
        return _selected(self, "compile")


def _from_mapping(cls: type, group: str, selection: Mapping[Any, Any]) -> Any:
    built_in: dict[str, Any] = {}
    user: dict[str, Any] = {}
    for name, selected in selection.items():
        if isinstance(name, str) and name in BUILTIN_FORMS[group]:
            built_in[name] = selected
        else:
            _check_known_form(group, name)
            user[name] = selected
    return cls(**built_in, user_forms=user)


def _selection(kind: type, group: str):
    def convert(value: Any) -> Any:
        return kind.from_mapping(value) if isinstance(value, Mapping) else value

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        if not isinstance(value, (bool, kind)):
            raise SpecError(
                f"'{attribute.name}' must be True, False, a {kind.__name__} or a dict of "
                f"{group} form names to bools (got {value_text(value)})"
            )

    return convert, validate


@frozen
class IsolationSchema:
    """Which context forms an isolation key depends on.

    Attributes:
        runtime_context: True (every runtime form, registered ones included), False
            (none), a :class:`SelectedRuntimeContext` or a dict such as
            ``{"partition": True, "environment": False}`` (made into one; forms it does not
            name stay selected; an unknown name is a :class:`SpecError` naming it).
        compile_context: the same for the compile forms.
    """

    runtime_context: bool | SelectedRuntimeContext = field(
        default=True,
        converter=_selection(SelectedRuntimeContext, "runtime")[0],
        validator=_selection(SelectedRuntimeContext, "runtime")[1],
    )
    compile_context: bool | SelectedCompileContext = field(
        default=True,
        converter=_selection(SelectedCompileContext, "compile")[0],
        validator=_selection(SelectedCompileContext, "compile")[1],
    )

    def runtime_forms(self) -> tuple[str, ...]:
        """The selected runtime forms: built-in ones in :data:`RUNTIME_FORMS` order, then
        registered ones, sorted."""
        if isinstance(self.runtime_context, SelectedRuntimeContext):
            return self.runtime_context.selected()
        return (*RUNTIME_FORMS, *registered_forms("runtime")) if self.runtime_context else ()

    def compile_forms(self) -> tuple[str, ...]:
        """The selected compile forms: built-in ones in :data:`COMPILE_FORMS` order, then
        registered ones, sorted."""
        if isinstance(self.compile_context, SelectedCompileContext):
            return self.compile_context.selected()
        return (*COMPILE_FORMS, *registered_forms("compile")) if self.compile_context else ()


def installed_versions() -> dict[str, str]:
    """``{"bindings_version": ..., "greenres_version": ...}`` from the installed
    distributions' metadata (``"none"`` when cuda-bindings is not installed, ``"unknown"``
    when greenres is not installed, e.g. run from a source tree). Never imports them."""
    import importlib.metadata  # here: reading metadata is slow to import, and rarely needed

    try:
        bindings = importlib.metadata.version("cuda-bindings")
    except importlib.metadata.PackageNotFoundError:
        bindings = "none"
    try:
        greenres = importlib.metadata.version("greenres")
    except importlib.metadata.PackageNotFoundError:
        greenres = "unknown"
    return {"bindings_version": bindings, "greenres_version": greenres}


def _resolve_partition(partition: Any) -> tuple[Plan, PlannedPartition] | None:
    if partition is None:
        return None
    if isinstance(partition, tuple) and len(partition) == 2:
        if isinstance(partition[0], Plan):
            plan, name = partition
            try:
                partition = plan.ref(name)
            except KeyError:
                raise KeyError(
                    f"the plan has no partition {value_text(name)}; it has {plan.names}"
                ) from None
        else:
            _refuse_partition(partition[0])
    plan = getattr(partition, "plan", None)
    planned = getattr(partition, "planned_partition", None)
    if isinstance(plan, Plan) and isinstance(planned, PlannedPartition):
        return plan, planned
    _refuse_partition(partition)
    return None  # not reached: _refuse_partition raises


def _refuse_partition(partition: Any) -> None:
    expected = (
        "'partition' must be a planned partition (plan.ref(name), a (plan, name) pair or "
        "the runtime's GreenContext)"
    )
    if isinstance(partition, PlannedPartition):
        raise TypeError(
            "a PlannedPartition does not know its plan: pass plan.ref(name), a "
            "(plan, name) pair or the runtime's GreenContext"
        )
    if isinstance(partition, (PartitionSpec, ModalSpec, Partition)):
        raise TypeError(
            f"{expected}, not a {type(partition).__name__}: plan it first with "
            "spec.plan(device), then pass plan.ref(name)"
        )
    if isinstance(partition, (Plan, ModalPlan)):
        raise TypeError(f"{expected}, not a whole {type(partition).__name__}: pass plan.ref(name)")
    raise TypeError(
        "'partition' must have .plan and .planned_partition (a GreenContext or "
        f"plan.ref(name)) or be a (plan, name) pair (got {value_text(partition)} of type "
        f"{type(partition).__name__})"
    )


def _check_arguments(facts: Any, environ: Any, versions: Any) -> None:
    if facts is not None and not isinstance(facts, SmFacts):
        raise TypeError(
            f"'facts' must be an SmFacts or None (got {value_text(facts)} of type "
            f"{type(facts).__name__})"
        )
    if environ is not None and not isinstance(environ, Mapping):
        raise TypeError(
            "'environ' must be a mapping of variable names to values, such as os.environ, "
            f"or None (got {value_text(environ)} of type {type(environ).__name__})"
        )
    if versions is not None:
        if not isinstance(versions, Mapping):
            raise TypeError(
                "'versions' must be a mapping such as {'greenres_version': '0.1.0'} or None "
                f"(got {value_text(versions)} of type {type(versions).__name__})"
            )
        unknown = [key for key in versions if key not in _VERSION_FORMS]
        if unknown:
            raise SpecError(
                "'versions' may set 'bindings_version' and 'greenres_version' (got "
                f"{', '.join(value_text(key) for key in unknown)})"
            )


_VERSION_FORMS = ("bindings_version", "greenres_version")


def _driver_identity() -> tuple[dict[str, Any], int] | None:
    """The current device's ``device`` form and driver version, or None without a driver
    (no compiled runtime, no cuda-bindings, no driver library or no device)."""
    try:
        from greenres import _driver  # here: the declarative layer loads it only for this
    except ImportError:
        return None
    try:
        if _driver.device_count() == 0:
            return None
    except RuntimeError:  # a DriverError (no device, cuInit failed) or no libcuda to load
        return None
    # a driver is there: a failure now is an error, not "no GPU"
    return _driver._current_device_identity()


def isolation_context(
    schema: IsolationSchema | None = None,
    partition: Any = None,
    *,
    facts: SmFacts | None = None,
    environ: Mapping[str, str] | None = None,
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The selected context forms as a JSON-ready dict.

    Args:
        schema: which forms to include (default ``IsolationSchema()``: every form).
        partition: a ``GreenContext``, ``plan.ref(name)``, a ``(plan, name)`` pair, or
            None (the whole device: the ``partition`` and ``stream_priority`` forms are
            then ``None``).
        facts: the device facts for the ``device`` and ``driver_version`` forms; taken from
            the partition's plan when omitted (if both are given they must be equal). With
            neither, the current device's (the current context's, else device 0) when a
            driver is present, else both forms are ``None``.
        environ: the environment to read (``os.environ`` when omitted).
        versions: override ``bindings_version`` / ``greenres_version`` (default
            :func:`installed_versions`), e.g. to compute another installation's key.

    Raises:
        SpecError: when ``facts`` disagree with the partition's plan, or a selected user
            form is no longer registered.
        FormError: when a selected user form's callable raised or returned data that is
            not JSON-ready (the message names the form).
        TypeError: for a ``partition`` of another kind (a spec is not planned), or
            ``facts``, ``environ`` or ``versions`` of the wrong type.
    """
    if schema is None:
        schema = IsolationSchema()
    if not isinstance(schema, IsolationSchema):
        raise TypeError(
            f"'schema' must be an IsolationSchema or None (got {value_text(schema)} of type "
            f"{type(schema).__name__})"
        )
    _check_arguments(facts, environ, versions)
    resolved = _resolve_partition(partition)
    if resolved is not None:
        plan, planned = resolved
        if facts is not None and facts != plan.facts:
            raise SpecError("'facts' differ from the facts the partition's plan was made for")
        facts = plan.facts
    runtime: dict[str, Any] = {}
    for form in schema.runtime_forms():
        if form == "partition":
            runtime[form] = None if resolved is None else _partition_form(plan, planned)
        elif form == "environment":
            runtime[form] = _environment(os.environ if environ is None else environ)
        elif form == "stream_priority":
            runtime[form] = None if resolved is None else planned.priority
        else:
            runtime[form] = _user_value(form)
    compile_: dict[str, Any] = {}
    found: dict[str, str] | None = None  # read from package metadata only when a form needs it
    identity: tuple[dict[str, Any], int] | None = None
    if facts is not None:
        identity = (
            {
                "name": facts.device_name,
                "compute_capability": list(facts.compute_capability),
                "sm_count": facts.sm_count,
            },
            facts.driver_version,
        )
    elif {"device", "driver_version"} & set(schema.compile_forms()):
        identity = _driver_identity()
    for form in schema.compile_forms():
        if form == "device":
            compile_[form] = None if identity is None else identity[0]
        elif form == "driver_version":
            compile_[form] = None if identity is None else identity[1]
        elif form in _VERSION_FORMS:
            if found is None:
                found = {**installed_versions(), **(versions or {})}
            compile_[form] = str(found[form])
        else:
            compile_[form] = _user_value(form)
    return {"format": KEY_FORMAT_VERSION, "runtime": runtime, "compile": compile_}


def _partition_form(plan: Plan, planned: PlannedPartition) -> dict[str, Any]:
    form: dict[str, Any] = {
        "sm_count": planned.sm_count,
        "min_partition_size": plan.min_partition_size,
        "alignment": plan.alignment,
        "coscheduling": plan.spec.coscheduling,
        "layout": plan.fingerprint,
    }
    # Only a partition with a workqueue configuration has the key: the keys of every
    # other partition stay what they were before workqueues existed.
    if planned.workqueue_scope:
        form["workqueue"] = {"scope": planned.workqueue_scope, "limit": planned.workqueue_limit}
    if planned.locality_domain is not None:  # likewise
        form["locality_domain"] = planned.locality_domain
    return form


def _user_value(name: str) -> Any:
    form = user_form(name)
    if form is None:
        raise SpecError(f"the schema selects the form {name!r}, which is no longer registered")
    return form_value(form)


def _environment(environ: Mapping[str, Any]) -> dict[str, str | None]:
    values = {}
    for name in ENVIRONMENT_VARIABLES:
        value = environ.get(name)
        if value is not None and not isinstance(value, str):
            raise TypeError(
                f"'environ[{name!r}]' must be a str or None (got {value_text(value)} of type "
                f"{type(value).__name__})"
            )
        values[name] = value
    return values


def key_of_context(context: Mapping[str, Any]) -> str:
    """32 hex characters of SHA-256 over the canonical JSON of ``context`` (sorted keys, no
    whitespace, only ASCII)."""
    return digest(context, 32)


def isolation_key(
    schema: IsolationSchema | None = None,
    partition: Any = None,
    *,
    facts: SmFacts | None = None,
    environ: Mapping[str, str] | None = None,
    versions: Mapping[str, str] | None = None,
) -> str:
    """The isolation key: :func:`key_of_context` of :func:`isolation_context` (same
    arguments; with none, the default schema on the current device)."""
    return key_of_context(
        isolation_context(schema, partition, facts=facts, environ=environ, versions=versions)
    )
