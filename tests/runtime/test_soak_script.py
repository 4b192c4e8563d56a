"""The soak script (bench/soak.py), short: its checks run in CI; the full run (10,000
layouts, 1,000,000 enter/exit cycles) is what docs/benchmarks.md reports."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.childprocess import child_env

pytestmark = pytest.mark.sim_only

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"


def test_soak_leaves_nothing_behind():
    done = subprocess.run(
        [sys.executable, str(SOAK), "--layouts", "300", "--enters", "30000"],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(GREENRES_SIM="h100"),
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["live_objects_left"] == {} and report["hazards"] == []


def test_soak_fails_when_memory_grows(tmp_path):
    """The check can fail: a bound of zero growth is never met."""
    done = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--layouts",
            "50",
            "--enters",
            "1000",
            "--max-rss-growth-mb",
            "-1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(GREENRES_SIM="h100", GREENRES_SANITIZED=None),
    )
    assert done.returncode == 1, done.stdout + done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] is False
