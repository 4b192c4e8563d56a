"""Text and files for greenres' serialisation: one reader, parser and writer of JSON and
TOML for specs, schemas and plans. Every problem is a SpecError naming the file; what the
data means is for :mod:`greenres.serialize` to say.

What parsers let through and would fail later, raw, is refused here with the file and the
key: nesting deeper than :data:`MAX_DEPTH` (parsers and Python recurse), integers longer
than Python reads (``int()`` stops at 4300 digits by default), and duplicate JSON keys
(``json`` keeps the last silently; TOML refuses them itself).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from greenres._validators import value_text
from greenres.errors import SpecError

__all__ = ["MAX_DEPTH", "check_depth", "dump", "dumps", "load", "loads"]


def loads(from_dict: Any, text: str, format: str, source: str) -> Any:
    """``from_dict`` of ``text`` parsed as ``format``; ``source`` names it in messages."""
    return from_dict(parse(text, format_of(Path(source), format), source), source=source)


def load(from_dict: Any, path: str | Path, format: str | None) -> Any:
    """``from_dict`` of the file at ``path``, its format from ``format`` or its suffix."""
    path = Path(path)
    kind = format_of(path, format)  # before reading: a bad suffix is named first
    return from_dict(parse(read(path), kind, str(path)), source=str(path))


def dumps(data: Any, format: str) -> str:
    """``data`` (plain dicts, lists and scalars) as TOML or JSON text."""
    if check_format(format) == "toml":
        import tomli_w

        return tomli_w.dumps(data)
    return json.dumps(data, indent=2) + "\n"


def dump(to_text: Any, value: Any, path: str | Path, format: str | None) -> None:
    """Write ``to_text(value, format)`` to ``path`` (format from ``format`` or the suffix)."""
    path = Path(path)
    path.write_text(to_text(value, format_of(path, format)), encoding="utf-8")


def read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read: {error}") from error


def check_format(format: str) -> str:
    # isinstance first: `in` compares, and some values (numpy arrays) refuse to say if equal
    if not isinstance(format, str) or format not in ("toml", "json"):
        raise SpecError(f"'format' must be 'toml' or 'json' (got {value_text(format)})")
    return format


def format_of(path: Path, format: str | None) -> str:
    if format is not None:
        return check_format(format)
    suffix = path.suffix.lower()
    if suffix in (".toml", ".json"):
        return suffix[1:]
    raise SpecError(f"{path}: unknown file type {suffix or '(none)'!r}; use .toml or .json")


def parse(text: str, format: str, source: str) -> Any:
    """The data of ``text``, checked as :func:`check_depth` says.

    Raises:
        SpecError: naming ``source`` for bad syntax, nesting deeper than :data:`MAX_DEPTH`,
            a duplicate JSON key, or an integer longer than Python reads.
    """
    try:
        data = _parse_toml(text, source) if format == "toml" else _parse_json(text, source)
    except RecursionError:
        # the depth of the data it would have been: a TOML document is a table itself
        depth = _text_depth(text) + (format == "toml")
        raise SpecError(
            f"{source}: nested {depth} levels deep; greenres files nest at most {MAX_DEPTH}"
        ) from None
    _check_data(data, source, parsed_json=format == "json")
    return data


def _parse_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_object, parse_int=_json_int)
    except json.JSONDecodeError as error:
        raise SpecError(f"{source}: not valid JSON: {error}") from error


def _parse_toml(text: str, source: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{source}: not valid TOML: {error}") from error
    except ValueError as error:  # an int longer than int() converts; tomllib names no key
        raise SpecError(_long_toml_int(text, source) or f"{source}: {error}") from None


# ----------------------------------------------------------------------------- checks

#: The deepest nesting a greenres file may have. The deepest one greenres writes (a plan
#: with modes: $.spec.modes.<mode>.partitions[0].name) is 6 levels; anything far deeper is
#: refused before any code recurses into it.
MAX_DEPTH = 32


def _int_digits_limit() -> int:
    # Python's limit on the digits int() converts (0: none); 3.10 before 3.10.7 has none.
    return getattr(sys, "get_int_max_str_digits", lambda: 0)()


class _LongInt:
    """Stands in, in parsed JSON, for an integer longer than int() converts."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


class _DuplicateKeys(dict):
    """A parsed JSON object that had some keys more than once (the last value kept)."""

    duplicates: list[str]


def _json_int(text: str) -> Any:
    digits = len(text) - text.startswith("-")
    limit = _int_digits_limit()
    if limit and digits > limit:
        return _LongInt(digits)
    return int(text)


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen: set[str] = set()
    marked = _DuplicateKeys(result)
    marked.duplicates = []
    for key, _value in pairs:
        if key in seen and key not in marked.duplicates:
            marked.duplicates.append(key)
        seen.add(key)
    return marked


def check_depth(data: Any, source: str | None) -> None:
    """Refuse ``data`` nested deeper than :data:`MAX_DEPTH` (a SpecError naming ``source``,
    where and how deep), so nothing recurses into it: for data from a file or a caller."""
    _check_data(data, source, parsed_json=False)


def _check_data(data: Any, source: str | None, *, parsed_json: bool) -> None:
    # Iterative: the data may be nested deeper than Python recurses.
    prefix = f"{source}: " if source else ""
    stack = [(data, "$", 1)]
    too_deep = None  # (path, depth) where MAX_DEPTH was first passed
    deepest = 0
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            children = [(v, f"{path}.{k}") for k, v in value.items()]
            if isinstance(value, _DuplicateKeys):
                keys = ", ".join(repr(k) for k in value.duplicates)
                raise SpecError(f"{prefix}at {path}: duplicate key {keys}")
        elif isinstance(value, (list, tuple)):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(value)]
        else:
            if parsed_json and isinstance(value, _LongInt):
                raise SpecError(
                    f"{prefix}at {path}: an integer of {value.digits} digits; Python reads "
                    f"integers of at most {_int_digits_limit()} digits "
                    "(sys.get_int_max_str_digits())"
                )
            continue
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH and too_deep is None:
            too_deep = path
        stack.extend((child, where, depth + 1) for child, where in children)
    if too_deep is not None:
        raise SpecError(
            f"{prefix}at {_cut(too_deep)}: nested {deepest} levels deep; greenres files nest "
            f"at most {MAX_DEPTH}"
        )


def _cut(path: str) -> str:
    return path if len(path) <= 80 else path[:60] + "..." + path[-12:]


def _text_depth(text: str) -> int:
    """The bracket nesting of JSON or TOML text (strings and comments skipped): how deep a
    file is that the parser could not read for recursing too deep."""
    depth = deepest = 0
    index, end = 0, len(text)
    while index < end:
        char = text[index]
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
        elif char == "#":
            newline = text.find("\n", index)
            index = end if newline < 0 else newline
        elif char in "\"'":
            quote = char * 3 if text.startswith(char * 3, index) else char
            index += len(quote)
            while index < end and not text.startswith(quote, index):
                index += 2 if text[index] == "\\" and quote[0] == '"' else 1
            index += len(quote) - 1  # onto the closing quote's last character
        index += 1
    return deepest


def _long_toml_int(text: str, source: str) -> str | None:
    """The message for the first integer of ``text`` longer than int() converts, naming
    its line and key (tomllib says neither); None when there is none."""
    limit = _int_digits_limit()
    if not limit:
        return None
    for number, line in enumerate(text.splitlines(), 1):
        for match in re.finditer(r"[0-9][0-9_]*", line):
            digits = len(match.group().replace("_", ""))
            before = line[: match.start()]
            if digits <= limit or before.count('"') % 2 or before.count("'") % 2:
                continue  # short, or inside a string
            key = re.search(r"([\w\-.\"']+)\s*=\s*[+-]?$", before)
            what = f"key {key.group(1).strip(chr(34) + chr(39))!r}" if key else "a value"
            return (
                f"{source}: line {number}: {what} has an integer of {digits} digits; Python "
                f"reads integers of at most {limit} digits (sys.get_int_max_str_digits())"
            )
    return None
