"""attrs validators shared by the spec, facts and isolation classes. Each raises
:class:`~greenres.errors.SpecError` naming the field, the rule and the value."""

from __future__ import annotations

from typing import Any

from greenres.errors import SpecError


def is_int(value: Any) -> bool:
    """An int that is not a bool (``True`` is an int to Python, not to a spec)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_at_least(minimum: int, optional: bool = False):
    """A validator: an int >= ``minimum`` (or None when ``optional``)."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not is_int(value):
            kind = "an int or None" if optional else "an int"
            raise SpecError(
                f"'{attribute.name}' must be {kind} (got {value!r} of type {type(value).__name__})"
            )
        if value < minimum:
            raise SpecError(f"'{attribute.name}' must be >= {minimum} (got {value})")

    return validate


def check_bool(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"'{attribute.name}' must be a bool (got {value!r})")
