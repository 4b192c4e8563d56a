"""attrs validators shared by the spec, facts and isolation classes. Each raises
:class:`~greenres.errors.SpecError` naming the field, the rule and the value."""

from __future__ import annotations

from typing import Any

from greenres.errors import SpecError

__all__ = ["check_bool", "check_name", "int_at_least", "is_int"]


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


def check_name(field_name: str, value: Any) -> str:
    """Validate a partition or mode name and return it.

    A name is a non-empty string with no leading or trailing whitespace and no control
    characters (it appears in tables, file keys and NVTX ranges).

    Raises:
        SpecError: naming ``field_name`` and the value.
    """
    if not isinstance(value, str):
        raise SpecError(
            f"'{field_name}' must be a str (got {value!r} of type {type(value).__name__})"
        )
    if not value:
        raise SpecError(f"'{field_name}' must not be empty (got '')")
    if value != value.strip():
        raise SpecError(f"'{field_name}' must not start or end with whitespace (got {value!r})")
    if any(not ch.isprintable() for ch in value):
        raise SpecError(f"'{field_name}' must not contain control characters (got {value!r})")
    return value
