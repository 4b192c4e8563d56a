"""User context forms of isolation keys: a registry of named callables.

The Inductor seed's compile forms include ``torch`` and ``triton`` versions; a server wants
its model and tokenizer versions in its keys. :func:`register_form` adds such a form to the
runtime or compile group; :mod:`greenres.isolation` selects it by name like the built-in
forms and calls it each time a context is made. The registry is process-wide (like the
seed's module-level forms) and guarded by a lock, because keys are computed from any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from attrs import frozen

from greenres._canonical import canonical_json
from greenres._validators import value_text
from greenres.errors import FormError, SpecError

__all__ = [
    "BUILTIN_FORMS",
    "GROUPS",
    "UserForm",
    "form_value",
    "register_form",
    "registered_forms",
    "unregister_form",
    "user_form",
]

#: The two groups of context forms.
GROUPS = ("runtime", "compile")
#: The built-in forms of each group, in order (greenres.isolation's RUNTIME_FORMS and
#: COMPILE_FORMS are these).
BUILTIN_FORMS = {
    "runtime": ("partition", "environment", "stream_priority"),
    "compile": ("device", "driver_version", "bindings_version", "greenres_version"),
}


@frozen
class UserForm:
    """A registered context form (:func:`greenres.isolation.register_form`).

    Attributes:
        name: the form's name, the key of its value in the context.
        group: ``"runtime"`` or ``"compile"``.
        compute: called with no arguments for the form's JSON-ready value.
    """

    name: str
    group: str
    compute: Callable[[], Any]


_forms: dict[str, UserForm] = {}
_lock = threading.Lock()


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise SpecError(
            f"'name' must be an ASCII identifier such as 'model_version' (got {value_text(name)})"
        )
    for group, forms in BUILTIN_FORMS.items():
        if name in forms:
            raise SpecError(f"'name' {name!r} is a built-in {group} form")
    return name


def register_form(name: str, group: str, compute: Callable[[], Any], *, replace: bool = False):
    """Add a context form that isolation keys can select by ``name``.

    Args:
        name: an ASCII identifier, not a built-in form's name.
        group: ``"runtime"`` (conditions of the process that runs the work) or
            ``"compile"`` (what compiled artefacts depend on).
        compute: called with no arguments each time a context with this form is made; it
            returns JSON-ready data (dicts with string keys, lists, strings, finite numbers,
            booleans, None).
        replace: allow replacing a form of that name registered before.

    Returns:
        the :class:`UserForm`.

    Raises:
        SpecError: for a bad or built-in name, an unknown group, or a name registered
            already (without ``replace=True``).
        TypeError: when ``compute`` is not callable.
    """
    _check_name(name)
    if group not in GROUPS:
        raise SpecError(f"'group' must be 'runtime' or 'compile' (got {value_text(group)})")
    if not callable(compute):
        raise TypeError(
            f"'compute' must be callable with no arguments (got {value_text(compute)} of type "
            f"{type(compute).__name__})"
        )
    form = UserForm(name, group, compute)
    with _lock:
        if name in _forms and not replace:
            raise SpecError(
                f"a {_forms[name].group} form {name!r} is registered already; pass "
                "replace=True to replace it"
            )
        _forms[name] = form
    return form


def unregister_form(name: str) -> None:
    """Remove a registered form.

    Raises:
        KeyError: when no form of that name is registered.
    """
    with _lock:
        if name not in _forms:
            raise KeyError(f"no registered form {value_text(name)}")
        del _forms[name]


def registered_forms(group: str | None = None) -> tuple[str, ...]:
    """The names of the registered forms (of one group), sorted."""
    with _lock:
        return tuple(sorted(n for n, f in _forms.items() if group is None or f.group == group))


def user_form(name: str) -> UserForm | None:
    """The registered form called ``name``, or None."""
    with _lock:
        return _forms.get(name)


def form_value(form: UserForm) -> Any:
    """Call ``form.compute`` and return its value as the JSON it is hashed as (tuples
    become lists), so the context is exactly what the key is made of.

    Raises:
        FormError: naming the form, when the callable raised or its value is not
            JSON-ready (the cause is chained).
    """
    import json  # here: as in _canonical, only contexts with user forms need it

    try:
        value = form.compute()
    except Exception as exc:
        raise FormError(
            f"the {form.group} form {form.name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        text = canonical_json(value)
    except (TypeError, ValueError, RecursionError) as exc:
        raise FormError(
            f"the {form.group} form {form.name!r} returned {value_text(value)}, which is not "
            f"JSON-ready: {exc}"
        ) from exc
    if _has_non_string_keys(value):
        # json.dumps turns 1 into "1" silently: {1: "a", "1": "b"} would hash ambiguously
        raise FormError(
            f"the {form.group} form {form.name!r} returned a dict with keys that are not "
            f"strings ({value_text(value)})"
        )
    return json.loads(text)


def _has_non_string_keys(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(not isinstance(key, str) for key in item):
                return True
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False
