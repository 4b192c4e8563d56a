"""docs/errors.md is true for the runtime: every row of its runtime table is run on a fresh
layout (the page's preamble), and its exception class and message excerpt are checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from greenres import errors

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
SECTION = DOC[DOC.index("## The runtime") :]
HEADER = ["misuse", "example", "raises", "message (excerpt)"]
PREAMBLE = re.search(r"```python\n(.*?)```", SECTION, re.S).group(1)
CLASSES = {
    "TypeError": TypeError,
    "ValueError": ValueError,
    "KeyError": KeyError,
    **{name: getattr(errors, name) for name in errors.__all__},
}


def _code(cell: str) -> str:
    cell = cell.strip()
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def _rows():
    rows, inside = [], False
    for line in SECTION.splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [cell.strip() for cell in line.strip()[1:-1].split("|")]
        if cells == HEADER:
            inside = True
        elif inside and not set(line) <= set("|- "):
            assert len(cells) == len(HEADER), line
            rows.append(cells)
    assert len(rows) > 30
    return rows


def _cleanup(namespace):
    """Exit what a row entered, end what it captured, close what the preamble made."""
    import greenres

    while greenres.current_partition() is not None:
        greenres.current_partition().exit()
    graph = namespace["graph"]
    if graph.capturing:
        graph.reset()
    for name in ("graph", "event", "stream"):
        namespace[name].close()
    namespace["layout"].close(abort_captures=True)


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row[0])
def test_every_runtime_row(row):
    _what, example, raises, excerpt = row
    namespace: dict = {}
    exec(PREAMBLE, namespace)
    try:
        with pytest.raises(Exception) as info:
            exec(_code(example), namespace)
        assert type(info.value) is CLASSES[_code(raises)], repr(info.value)
        assert _code(excerpt) in str(info.value), str(info.value)
    finally:
        _cleanup(namespace)
