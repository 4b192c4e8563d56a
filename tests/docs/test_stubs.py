"""src/greenres/_driver.pyi describes the compiled module: mypy's stubtest finds no drift.

tox -e lint runs the same check; this test catches drift locally wherever mypy is
installed (it is not a test dependency: the test skips without it).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ALLOWLIST = Path(__file__).resolve().parents[2] / "src" / "greenres" / "stubtest-allowlist.txt"


def _stubtest(cwd, *args, **env):
    # From a folder outside the source tree, so the installed module and its installed stub
    # are what stubtest compares (not src/).
    return subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "greenres._driver", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _require_stubtest():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy, or run tox -e lint)")


def test_driver_stub_matches_the_compiled_module(tmp_path):
    _require_stubtest()
    done = _stubtest(tmp_path, "--allowlist", str(ALLOWLIST))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_allowlist_entries_say_why():
    # Every entry sits under a comment that gives its reason (a blank line ends a group).
    commented = False
    for line in ALLOWLIST.read_text().splitlines():
        if not line.strip():
            commented = False
        elif line.startswith("#"):
            commented = True
        else:
            assert commented, f"allowlist entry without a comment: {line}"


def test_stubtest_reports_drift(tmp_path):
    # The check can fail: in a copy of the installed package (first on PYTHONPATH, so the
    # copy is both the module imported and the stub read) whose stub lacks
    # current_partition, stubtest reports that function by name.
    _require_stubtest()
    installed = Path(importlib.util.find_spec("greenres").origin).parent
    shutil.copytree(installed, tmp_path / "site" / "greenres")
    stub = tmp_path / "site" / "greenres" / "_driver.pyi"
    line = "def current_partition() -> GreenContext | None: ...\n"
    assert line in stub.read_text()
    stub.write_text(stub.read_text().replace(line, ""))
    done = _stubtest(tmp_path, "--allowlist", str(ALLOWLIST), PYTHONPATH=str(tmp_path / "site"))
    assert done.returncode == 1, done.stdout[-4000:]
    assert "greenres._driver.current_partition is not present in stub" in done.stdout
    assert "Found 1 error" in done.stdout
