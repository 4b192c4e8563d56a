"""docs/errors.md is true: every row of its tables is run, and its exception class (or exit
code) and message excerpt are checked."""

from __future__ import annotations

import re
import shlex
from contextlib import contextmanager
from pathlib import Path

import pytest

import greenres
from greenres import errors
from greenres.cli import main
from greenres.isolation import registered_forms, unregister_form

from support.childprocess import run_child

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")

API_HEADER = ["bad input", "example", "raises", "message (excerpt)"]
FILE_HEADER = ["bad input", "file", "content", "read with", "message (excerpt)"]
CLI_HEADER = ["bad input", "files", "command", "exit", "stderr (excerpt)"]


def _code(cell: str) -> str:
    """The text of a cell that is one `code span` (empty for an empty cell)."""
    cell = cell.strip()
    if not cell:
        return ""
    assert cell.startswith("`") and cell.endswith("`"), cell
    return cell[1:-1]


def tables(header: list[str]) -> list[list[str]]:
    """The rows (as cells) of every table of DOC whose header is ``header``."""
    rows, inside = [], False
    for line in DOC.splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [cell.strip() for cell in line.strip()[1:-1].split("|")]  # no | in cells
        if cells == header:
            inside = True
        elif inside and not set(line) <= set("|- "):
            assert len(cells) == len(header), line
            rows.append(cells)
    assert rows, f"no table with the header {header}"
    return rows


def _namespace() -> dict:
    block = re.search(r"## The declarative API.*?```python\n(.*?)```", DOC, re.S)
    assert block, "the examples' preamble"
    namespace: dict = {}
    exec(block.group(1), namespace)
    return namespace


@contextmanager
def _registered_forms_restored():
    # the preamble registers user forms: the process-wide registry must not keep them,
    # or every other test's default schema would select them
    before = set(registered_forms())
    try:
        yield
    finally:
        for name in set(registered_forms()) - before:
            unregister_form(name)


with _registered_forms_restored():
    NAMESPACE = _namespace()
CLASSES = {
    "FormError": errors.FormError,
    "SpecError": errors.SpecError,
    "PlanError": errors.PlanError,
    "DriverTooOldError": errors.DriverTooOldError,
    "TypeError": TypeError,
    "KeyError": KeyError,
}


@pytest.mark.parametrize("row", tables(API_HEADER), ids=lambda row: row[0])
def test_every_api_row(row):
    _what, example, raises, excerpt = row
    with _registered_forms_restored(), pytest.raises(Exception) as info:
        eval(_code(example), _namespace())
    assert type(info.value) is CLASSES[_code(raises)], info.value
    assert _code(excerpt) in str(info.value)


@pytest.mark.parametrize("row", tables(FILE_HEADER), ids=lambda row: row[0])
def test_every_file_row(tmp_path, row):
    name, content, read_with, excerpt = (_code(cell) for cell in row[1:])
    path = tmp_path / name
    text = eval(content, dict(NAMESPACE, json=__import__("json")))
    if text is not None:
        path.write_text(text, encoding="utf-8")
    load = getattr(greenres.serialize, read_with)
    with pytest.raises(errors.SpecError) as info:
        load(path)
    message = str(info.value)
    assert excerpt.startswith(f"{name}: ")
    assert message.startswith(f"{path}: ")
    assert excerpt[len(name) + 2 :] in message


def _cli_files(cell: str) -> dict[str, str]:
    files = {}
    for match in re.finditer(r"`([^`]+)` = `(.+?)`(?:,|$)", cell):
        files[match.group(1)] = eval(match.group(2))
    assert bool(files) == bool(cell.strip()), cell
    return files


@pytest.mark.parametrize("row", tables(CLI_HEADER), ids=lambda row: row[0])
def test_every_command_line_row(tmp_path, capsys, row):
    _what, files, command, exit_code, excerpt = row
    names = _cli_files(files)
    for name, text in names.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    argv = shlex.split(_code(command))
    assert argv[0] == "greenres"
    paths = {name: str(tmp_path / name) for name in [*names, "missing.toml"]}
    argv = [
        paths.get(arg, str(ROOT / arg) if arg.startswith("examples/") else arg) for arg in argv[1:]
    ]
    expected = _code(excerpt)
    for name, path in paths.items():
        expected = expected.replace(f"{name}:", f"{path}:")
    if any(arg.startswith("sim:") for arg in argv):
        # a simulated profile is chosen once per process: a fresh one
        done = run_child(["-m", "greenres.cli", *argv], GREENRES_SIM=None)
        code, err = done.returncode, done.stderr
    else:
        code, err = main(argv), capsys.readouterr().err
    assert code == int(exit_code)
    assert expected in err
    assert "Traceback" not in err
