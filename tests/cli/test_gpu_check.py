"""scripts/gpu-check: its simulator dry run works end to end (a fast part of it: two gpu
tests, greenres verify, a short bench), and its summary says what ran, what was skipped and why."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check"

pytestmark = pytest.mark.sim_only

# The one gpu test the quick dry run runs: the one whose answer the summary reports.
CROSS_CONTEXT = "test_a_primary_context_event_orders_work_across_green_contexts"


def _run(tmp_path, *extra):
    return subprocess.run(
        [str(SCRIPT), "--dry-run", "--python", sys.executable, "--out", str(tmp_path), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )


def test_dry_run_runs_the_gpu_tests_and_the_bench_and_writes_a_summary(tmp_path):
    done = _run(
        tmp_path, "--tests", "cross_context", "--bench-cycles", "200", "--bench-rounds", "1"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mode"] == "dry-run" and summary["ok"]
    status = {s["name"]: s["status"] for s in summary["steps"]}
    assert status == {
        "build": "skipped",
        "driver": "skipped",
        "gpu-tests": "passed",
        "verify": "passed",
        "bench": "passed",
    }
    tests = summary["gpu_tests"]
    # A module skipped at collection counts as a case of its own.
    assert tests["tests"] - tests["skipped"] == 1 and tests["failures"] == 0
    assert tests["cross_context_event"] == "passed"
    assert "simulated" in summary["bench"]["driver"]
    medians = summary["bench"]["median_ns"]
    assert medians and all(ns > 0 for ns in medians.values())
    assert "primary-context event on a green-context stream: passed" in done.stdout
    assert (tmp_path / "summary.txt").read_text() == done.stdout


def test_a_failing_step_fails_the_check(tmp_path):
    # --bench-cycles 0 is bad input to `greenres bench` (exit 2): the bench step fails.
    done = _run(tmp_path, "--tests", CROSS_CONTEXT, "--bench-cycles", "0")
    assert done.returncode == 1
    summary = json.loads((tmp_path / "summary.json").read_text())
    bench = next(s for s in summary["steps"] if s["name"] == "bench")
    assert bench["status"] == "failed" and bench["exit_status"] == 2
    assert not summary["ok"]


def test_bad_options_are_refused(tmp_path):
    done = _run(tmp_path, "--frobnicate")
    assert done.returncode == 2 and "unknown option --frobnicate" in done.stderr
