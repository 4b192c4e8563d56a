"""``greenres bench``: the smoke version of the benchmarks (harness correctness, never
timing): every target row present with its target and a verdict, the documented JSON
schema, call counts on the simulator, bad input, nothing left alive."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenres import benchmark
from greenres.benchmark._plot import line_chart
from greenres.cli import main

pytestmark = pytest.mark.gpu

HAVE_CUDA_CORE = importlib.util.find_spec("cuda.core") is not None
QUICK = ["bench", "--cycles", "200", "--rounds", "2"]
ROOT = Path(__file__).resolve().parents[2]

#: row id -> target (op, value, unit), as docs/benchmarks.md tabulates them
TARGET_ROWS = {
    "enter_exit_vs_floor": ("<=", 1.5, "x"),
    "with_vs_floor": ("<=", 1.7, "x"),
    "capi_vs_floor": ("<=", 1.25, "x"),
    "bindings_vs_greenres": (">=", 10, "x"),
    "cuda_core_vs_greenres": (">=", 5, "x"),
    "handoff_vs_floor": ("<=", 1.5, "x"),
    "cuda_core_handoff_vs_greenres": (">=", 2, "x"),
    "threads_2_vs_1": (">=", 1.0, "x"),
    "alive_64_vs_1": ("<=", 1.1, "x"),
    "plan_8_us": ("<=", 10, "us"),
    "plan_16_us": ("<=", 20, "us"),
    "import_spec_ms": ("<=", 25, "ms"),
    "create_2_vs_floor": ("<=", 1.5, "x"),
    "create_4_vs_floor": ("<=", 1.5, "x"),
    "create_8_vs_floor": ("<=", 1.5, "x"),
    "create_2_cuda_core_vs_greenres": (">=", 1.0, "x"),
    "create_4_cuda_core_vs_greenres": (">=", 1.0, "x"),
    "create_8_cuda_core_vs_greenres": (">=", 1.0, "x"),
    "graph_replay_vs_floor": ("<=", 1.5, "x"),
    "nvtx_on_vs_off": ("<=", 1.05, "x"),
}


@pytest.fixture(scope="module")
def report_json():
    """One smoke run of every suite, with the scale series (module-scoped: it takes a few
    seconds)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenres.cli",
            "bench",
            "--json",
            "--cycles",
            "200",
            "--rounds",
            "2",
            "--scale",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.sim_only
def test_every_target_row_with_its_target_and_a_verdict(report_json):
    assert report_json["schema"] == benchmark.SCHEMA
    rows = {row["id"]: row for row in report_json["rows"]}
    for row_id, (op, value, unit) in TARGET_ROWS.items():
        row = rows[row_id]
        assert row["target"] == {"op": op, "value": value, "unit": unit}, row_id
        if row["status"] == "SKIP":  # the only contender that can be missing
            assert "cuda_core" in row_id and not HAVE_CUDA_CORE, row
            assert row["note"] == "cuda.core is not installed" and row["measured"] is None
            continue
        assert row["status"] in ("PASS", "MISS"), row
        assert row["measured"] > 0
        met = row["measured"] <= value if op == "<=" else row["measured"] >= value
        assert (row["status"] == "PASS") == met or row_id == "import_spec_ms", row
        assert row["spread"][0] <= row["spread"][1]
    for row in rows.values():
        if row["id"] not in TARGET_ROWS:
            assert row["status"] == "INFO" and row["target"] is None


@pytest.mark.sim_only
def test_contenders_and_their_driver_calls(report_json):
    contenders = report_json["contenders"]
    for name in (
        "greenres enter(stream)/exit()",
        "C floor, 7 calls",
        "cuda.bindings, the same 7 calls",
        "greenres C-level entry, C loop",
    ):
        assert contenders[name]["calls_per_cycle"] == 7, name
        assert len(contenders[name]["ns_per_round"]) == 2
    assert contenders["greenres enter(stream)/exit()"]["calls"] == {
        "cuEventRecord": 2,
        "cuStreamWaitEvent": 2,
        "cuCtxPushCurrent": 1,
        "cuCtxPopCurrent": 1,
        "cuCtxGetCurrent": 1,
    }
    assert contenders["greenres.handoff(Stream, Stream)"]["calls"] == {
        "cuEventRecord": 1,
        "cuStreamWaitEvent": 1,
    }
    assert contenders["greenres Graph.replay()"]["calls"] == {"cuGraphLaunch": 1}
    # annotation adds no driver call (its NVTX calls are not the driver's)
    for name in ("enter+exit, annotation off", "enter+exit, annotation on"):
        assert contenders[name]["calls_per_cycle"] == 7, name
    assert contenders["greenres.nvtx.range_push + range_pop"]["calls_per_cycle"] == 0


@pytest.mark.sim_only
def test_scale_series_and_nothing_left_alive(report_json):
    scale = report_json["scale"]
    assert set(scale) >= {
        "enter_exit_vs_partitions_alive",
        "handoff_vs_threads",
        "plan_vs_partitions",
        "plan_vs_modes",
        "create_vs_partitions",
        "create_vs_layouts_alive",
    }
    alive = scale["enter_exit_vs_partitions_alive"]["series"]["greenres"]
    assert [n for n, _ in alive] == [1, 4, 16, 64]
    assert report_json["live_after_close"] == {}
    assert report_json["rounds"] == 2 and report_json["cycles"] == 200
    assert report_json["sm_count"] == 132 and report_json["driver"] == "simulated driver"


def _python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter: cuda.core, one of the contenders, keeps the
    primary context retained for the rest of its process, which later tests must not see."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )


def test_one_suite_as_markdown():
    out = _python(
        "import sys; from greenres.cli import main; "
        "sys.exit(main(['bench', '--cycles', '200', '--rounds', '2', '--suite', 'handoff']))"
    )
    assert out.returncode == 0, out.stderr
    assert "| `handoff(Stream, Stream)` vs the C floor |" in out.stdout
    assert "enter+exit" not in out.stdout.split("| contender |")[0]


@pytest.mark.parametrize("option", ["--cycles", "--rounds"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_bad_counts_are_bad_input(capsys, option, value):
    assert main(["bench", option, value]) == 2
    err = capsys.readouterr().err
    assert option in err
    assert value in err


def test_an_unknown_suite_is_bad_input(capsys):
    assert main(["bench", "--suite", "nope"]) == 2
    assert "'nope'" in capsys.readouterr().err


@pytest.mark.sim_only
def test_a_failing_suite_frees_what_it_made():
    out = _python(
        """
import types
import greenres.sim as sim
sim.install_from_env()
import greenres as gr
from greenres import benchmark

def broken(session, report):
    session.layout({"a": 8, "b": 8})
    session.stream()
    raise RuntimeError("suite failed")

benchmark.SUITES["handoff"] = types.SimpleNamespace(run=broken)
device = gr.Device(0)
try:  # once first: cuda.core retains the primary context for good on its first use
    benchmark.run(device, benchmark.Settings(cycles=10, rounds=1), ["handoff"])
except RuntimeError:
    pass
before = sim.live_objects()
try:
    benchmark.run(device, benchmark.Settings(cycles=10, rounds=1), ["handoff"])
except RuntimeError as exc:
    assert str(exc) == "suite failed"
else:
    raise AssertionError("the suite's error was lost")
assert sim.live_objects() == before, sim.live_objects_since(before)
print("ok")
"""
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_run_all_writes_figures_and_markdown(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run_all.py"),
            "--rounds",
            "1",
            "--cycles",
            "100",
            "--suite",
            "alive",
            "--figures",
            str(tmp_path),
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    assert "| enter+exit with 64 vs 1 partitions alive |" in out.stdout
    svg = (tmp_path / "enter_exit_vs_partitions_alive.svg").read_text()
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == benchmark.SCHEMA


def test_line_chart_is_valid_svg_with_a_marker_per_point():
    import xml.etree.ElementTree as ET

    svg = line_chart("t", "x", "y", {"a": [[1, 2.0], [4, 3.0]], "b": [[1, 1.0], [4, 0.5]]})
    root = ET.fromstring(svg)
    circles = [e for e in root.iter() if e.tag.endswith("circle")]
    assert len(circles) == 4
    with pytest.raises(ValueError, match="no points"):
        line_chart("t", "x", "y", {})


@pytest.mark.sim_only
def test_nvtx_benchmark_runs_with_and_without_a_tool():
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_nvtx.py"), "--rounds", "1", "--cycles", "50"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    assert "#### no tool attached" in out.stdout
    assert "| enter+exit, annotation on |" in out.stdout
    assert "#### a tool attached (the tests' recorder)" in out.stdout


def test_the_import_probe_loads_only_the_declarative_layer_even_under_greenres_sim(monkeypatch):
    """bench/run_all.py runs with GREENRES_SIM set; the probe of ``import greenres.spec``
    must not inherit it (``import greenres`` would load the simulated driver)."""
    from greenres.benchmark._suite_setup import _import_once

    monkeypatch.setenv("GREENRES_SIM", "h100")
    for module in ("greenres.spec", "attrs"):
        run = _import_once(module)
        assert run["ms"] > 0
        assert not (run["extension"] or run["bindings"] or run["simulator"]), (module, run)
