"""Text and files for greenres' serialisation: one reader, parser and writer of JSON and
TOML for specs, schemas and plans. Every problem is a SpecError naming the file; what the
data means is for :mod:`greenres.serialize` to say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greenres._validators import value_text
from greenres.errors import SpecError

__all__ = ["dump", "dumps", "load", "loads"]


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
    if format not in ("toml", "json"):
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
    if format == "toml":
        return _parse_toml(text, source)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(f"{source}: not valid JSON: {error}") from error


def _parse_toml(text: str, source: str) -> Any:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{source}: not valid TOML: {error}") from error
