"""attrs validators shared by the spec, facts and isolation classes. Each raises
:class:`~greenres.errors.SpecError` naming the field, the rule and the value.

:func:`value_text` is how every declarative message shows a value: ``repr``, except that
it cannot fail (deep nesting, ints too long for ``str``, a broken ``__repr__``) and stays
short. This module imports nothing of greenres but the errors.
"""

from __future__ import annotations

import math
import operator
from typing import Any

from greenres.errors import SpecError

__all__ = [
    "C_INT_MAX",
    "C_INT_MIN",
    "as_int",
    "check_bool",
    "check_name",
    "int_at_least",
    "is_int",
    "nfc",
    "value_text",
]

#: Longer reprs are cut in messages: a message names a value, it does not reproduce it.
_MAX_TEXT = 200
#: Ints of more bits (about 60 digits) are described by their size: nobody reads them,
#: and ``str`` refuses past 4300 digits.
_MAX_INT_BITS = 200


def value_text(value: Any) -> str:
    """``repr(value)`` for a message: never raises, at most about 200 characters."""
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value.bit_length() > _MAX_INT_BITS
    ):
        return _int_size(value)
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        # nested deeper than repr goes, or holding an int longer than str makes
        text = _shape(value)
    except Exception:  # a __repr__ of the caller's that fails: name the type instead
        text = f"<{type(value).__name__} object>"
    if len(text) > _MAX_TEXT:
        text = text[: _MAX_TEXT - 20] + " ... " + text[-12:]
    return text


def _int_size(value: int) -> str:
    sign = "a negative" if value < 0 else "an"
    bits = value.bit_length()
    digits = math.floor((bits - 1) * math.log10(2)) + 1  # the digits of 2 ** (bits - 1)
    if bits > 1 << 20:  # over 300,000 digits: counting them exactly takes a while
        return f"{sign} int of about {digits} digits"
    if abs(value) >= 10**digits:  # str() refuses past 4300 digits: compare instead
        digits += 1
    return f"{sign} int of {digits} digits"


def _shape(value: Any) -> str:
    try:
        size = len(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return f"<{type(value).__name__} of {size} item{'s' if size != 1 else ''}>"


#: The range of a C ``int``: what the driver takes for priorities and counts.
C_INT_MIN, C_INT_MAX = -(2**31), 2**31 - 1


def is_int(value: Any) -> bool:
    """An int that is not a bool (``True`` is an int to Python, not to a spec)."""
    return isinstance(value, int) and not isinstance(value, bool)


def as_int(value: Any) -> Any:
    """A converter: any integer-like value (an int subclass, ``numpy.int64``, anything with
    ``__index__``) as a plain int; bools and everything else unchanged, for the validator
    to refuse with the value as given."""
    if type(value) is int or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if getattr(type(value), "__index__", None) is None:
        return value
    try:
        return operator.index(value)
    except Exception:  # numpy.bool_ has __index__ and refuses to be one
        return value


def int_at_least(minimum: int, optional: bool = False, maximum: int | None = None):
    """A validator: an int from ``minimum`` to ``maximum`` (or None when ``optional``).
    Pair it with the :func:`as_int` converter so integer-likes arrive as ints."""

    def validate(_instance: Any, attribute: Any, value: Any) -> None:
        if value is None and optional:
            return
        if not is_int(value):
            kind = "an int or None" if optional else "an int"
            raise SpecError(
                f"'{attribute.name}' must be {kind} (got {value_text(value)} of type "
                f"{type(value).__name__})"
            )
        if value < minimum:
            raise SpecError(f"'{attribute.name}' must be >= {minimum} (got {value_text(value)})")
        if maximum is not None and value > maximum:
            raise SpecError(f"'{attribute.name}' must be <= {maximum} (got {value_text(value)})")

    return validate


def check_bool(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecError(f"'{attribute.name}' must be a bool (got {value_text(value)})")


def nfc(value: Any) -> Any:
    """A converter and lookup key for names: a str in Unicode normalisation form C (the
    composed "é", whichever way it was typed), as a plain str; anything else unchanged."""
    if type(value) is str and value.isascii():  # ASCII is always NFC
        return value
    if isinstance(value, str):
        import unicodedata  # only for names that need it: importing costs more than a name

        return unicodedata.normalize("NFC", str.__str__(value))
    return value


# What a name must not contain, by Unicode general category, in the words of the message.
# A plain space (Zs) between other characters is the one separator allowed.
_REFUSED_CATEGORIES = {
    "Cc": "control characters",
    "Zs": "whitespace other than a plain space",
    "Zl": "whitespace other than a plain space",
    "Zp": "whitespace other than a plain space",
    "Cf": "invisible format characters",
    "Cs": "surrogates",
    "Co": "private-use characters",
    "Cn": "unassigned characters",
}


def check_name(field_name: str, value: Any) -> str:
    """Validate a partition or mode name (already in NFC, see :func:`nfc`) and return it.

    A name is a non-empty string with no leading or trailing whitespace, whose characters
    are letters, marks, numbers, punctuation, symbols and plain spaces (U+0020): no other
    whitespace (tabs, newlines, no-break or other Unicode spaces, line and paragraph
    separators), no control, invisible format, surrogate, private-use or unassigned
    characters. It appears in tables, file keys and NVTX ranges.

    Raises:
        SpecError: naming ``field_name``, what is wrong and the value.
    """
    if not isinstance(value, str):
        raise SpecError(
            f"'{field_name}' must be a str (got {value_text(value)} of type {type(value).__name__})"
        )
    if not value:
        raise SpecError(f"'{field_name}' must not be empty (got '')")
    if value != value.strip():
        raise SpecError(
            f"'{field_name}' must not start or end with whitespace (got {value_text(value)})"
        )
    if not value.isprintable():  # what Python prints as is: every category refused above
        import unicodedata

        for character in value:
            if not character.isprintable():
                what = _REFUSED_CATEGORIES.get(
                    unicodedata.category(character), "characters that do not print"
                )
                raise SpecError(f"'{field_name}' must not contain {what} (got {value_text(value)})")
    return value
