"""The ``greenres`` command: output, --json, exit codes (0 ok, 1 driver error, 2 bad input)."""

import json
from pathlib import Path

import pytest

from greenres import sim
from greenres.cli import main

from support.childprocess import run_child

pytestmark = pytest.mark.gpu

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SERVING = EXAMPLES / "serving.toml"


def run_cli(*argv):
    """Run ``python -m greenres.cli`` in a fresh process with no GREENRES_SIM: the CLI
    chooses the driver itself."""
    return run_child(["-m", "greenres.cli", *argv], GREENRES_SIM=None)


def test_info_json_lists_every_device(capsys):
    assert main(["info", "--json"]) == 0
    devices = json.loads(capsys.readouterr().out)["devices"]
    import greenres

    assert len(devices) == greenres.device_count()
    first = devices[0]
    facts = greenres.Device(0).sm_facts()
    assert first["sm_count"] == facts.sm_count
    assert first["min_partition_size"] == facts.min_partition_size
    assert first["alignment"] == facts.alignment


def test_plan_prints_the_explanation(capsys):
    assert main(["plan", str(SERVING)]) == 0
    out = capsys.readouterr().out
    for name in ("decode", "prefill", "comm", "batch"):
        assert name in out


def test_plan_json_matches_the_library(capsys):
    import greenres

    assert main(["plan", str(SERVING), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    plan = greenres.load_spec(SERVING).plan(greenres.Device(0))
    granted = {p["name"]: p["sm_count"] for p in data["partitions"]}
    assert granted == {p.name: p.sm_count for p in plan.partitions}


def test_plan_json_is_a_plan_file(capsys, tmp_path):
    import greenres

    assert main(["plan", str(SERVING), "--json"]) == 0
    path = tmp_path / "plan.json"
    path.write_text(capsys.readouterr().out)
    assert greenres.load_plan(path) == greenres.load_spec(SERVING).plan(greenres.Device(0))


def test_plan_of_each_mode(capsys):
    modes = EXAMPLES / "modes.toml"
    import greenres

    spec = greenres.load_spec(modes)
    for mode in spec.modes:
        assert main(["plan", str(modes), "--mode", mode, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        expected = spec.plan(greenres.Device(0)).plans[mode]
        assert [p["sm_count"] for p in data["partitions"]] == [
            p.sm_count for p in expected.partitions
        ]


def test_unknown_mode_is_bad_input(capsys):
    assert main(["plan", str(EXAMPLES / "modes.toml"), "--mode", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_mode_on_a_spec_without_modes_is_bad_input(capsys):
    assert main(["plan", str(SERVING), "--mode", "x"]) == 2
    assert "no modes" in capsys.readouterr().err


def test_key_is_the_library_key(capsys):
    import greenres

    assert main(["key", str(SERVING), "decode"]) == 0
    key = capsys.readouterr().out.strip()
    plan = greenres.load_spec(SERVING).plan(greenres.Device(0))
    assert key == greenres.isolation_key(greenres.IsolationSchema(), plan.ref("decode"))
    assert len(key) == 32 and int(key, 16) >= 0


def test_key_of_an_unknown_partition_is_bad_input(capsys):
    assert main(["key", str(SERVING), "nope"]) == 2
    assert "'nope' is not in the plan" in capsys.readouterr().err


def test_missing_spec_file_is_bad_input(tmp_path, capsys):
    assert main(["plan", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_invalid_spec_names_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[partitions]]\nname = "a"\nsms = 0\n')
    assert main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "sms" in err


def test_infeasible_plan_is_bad_input_and_says_what_fits(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text('[[partitions]]\nname = "decode"\nsms = 100000\n')
    assert main(["plan", str(big)]) == 2
    assert "decode" in capsys.readouterr().err


def test_device_out_of_range_is_bad_input(capsys):
    assert main(["plan", str(SERVING), "--device", "99"]) == 2
    assert "99" in capsys.readouterr().err


def test_bad_device_spelling_is_bad_input(capsys):
    assert main(["info", "--device", "gpu0"]) == 2
    assert "sim:h100" in capsys.readouterr().err


@pytest.mark.sim_only
def test_driver_error_exits_1(capsys):
    sim.inject_fault("cuGreenCtxCreate", "CUDA_ERROR_OUT_OF_MEMORY")
    try:
        assert main(["demo"]) == 1
    finally:
        sim.clear_faults()
    assert "CUDA_ERROR_OUT_OF_MEMORY" in capsys.readouterr().err


@pytest.mark.sim_only
def test_demo_runs_checks_data_and_frees_everything(capsys):
    before = sim.live_objects()
    assert main(["demo", "--spec", str(SERVING)]) == 0
    out = capsys.readouterr().out
    assert "all data correct" in out
    assert "live objects after close: none" in out
    assert sim.live_objects() == before


@pytest.mark.sim_only
def test_demo_reports_what_it_leaves_alive(monkeypatch):
    """The demo's leak check can fail: buffers it forgets to free are reported."""
    import greenres
    from greenres import demo

    before = sim.live_objects()
    real_call = demo.call
    leaked = []

    def call_but_never_free(function, *args):
        if function.__name__ == "cuMemFree":
            leaked.append(args[0])
            return None
        return real_call(function, *args)

    monkeypatch.setattr(demo, "call", call_but_never_free)
    report = demo.run_demo(greenres.Device(0))
    monkeypatch.undo()
    try:
        assert not report.ok
        assert report.live_after_close == {"allocation": len(leaked)}
    finally:
        from cuda.bindings import driver as cu

        primary = cu.cuDevicePrimaryCtxRetain(0)[1]
        cu.cuCtxPushCurrent(primary)
        for pointer in leaked:
            cu.cuMemFree(pointer)
        cu.cuCtxPopCurrent()
        cu.cuDevicePrimaryCtxRelease(0)
    assert sim.live_objects()["allocation"] == before["allocation"]


def test_help_lists_the_commands():
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


@pytest.mark.sim_only
def test_simulated_device_option_in_a_fresh_process():
    result = run_cli("info", "--json", "--device", "sim:a100")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["devices"][0]["sm_count"] == 108


@pytest.mark.sim_only
def test_no_driver_falls_back_to_the_simulated_h100_and_says_so(tmp_path):
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    assert "simulated h100" in result.stderr
    assert "all data correct" in result.stdout


def test_simulated_device_with_a_driver_version():
    result = run_cli("info", "--json", "--device", "sim:b200@13040")
    assert result.returncode == 0, result.stderr
    device = json.loads(result.stdout)["devices"][0]
    assert (device["sm_count"], device["driver_version"]) == (148, 13040)
    assert (device["locality_domain_count"], device["locality_domain_sm_count"]) == (2, 74)
    text = run_cli("info", "--device", "sim:b200@13040")
    assert "locality domains (CUDA 13.4): 2 of 74 SMs each" in text.stdout
    for bad, message in (("sim:b200@x", "must be an integer"), ("sim:b200@100", "rejected")):
        result = run_cli("info", "--device", bad)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.sim_only
def test_unknown_simulated_profile_is_bad_input():
    result = run_cli("info", "--device", "sim:nosuchgpu")
    assert result.returncode == 2
    assert "nosuchgpu" in result.stderr


@pytest.mark.sim_only
def test_demo_json_reports_every_check():
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["demo", "--json"]) == 0
    report = json.loads(out.getvalue())
    assert report["ok"] is True
    assert report["steps"] == 8 and report["wrong_steps"] == []
    assert report["replays"] == 8 and report["wrong_replays"] == []
    assert report["handoffs"] == report["steps"] * (len(report["stages"]) - 1)
    ids = [set(p["sm_ids"]) for p in report["partitions"]]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1 :])


@pytest.mark.sim_only
def test_no_driver_with_a_device_ordinal_is_a_driver_error_not_a_traceback():
    result = run_cli("info", "--device", "0")
    assert result.returncode == 1
    assert "no CUDA driver could be loaded" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("deep.json", "[" * 100000 + "]" * 100000, "nested 100000 levels deep"),
        ("deep.toml", "a = " + "[" * 5000 + "]" * 5000, "nested 5001 levels deep"),
        ("long.json", '{"partitions": [{"name": "a", "sms": ' + "1" * 5000 + "}]}", "5000 digits"),
        ("dup.json", '{"partitions": [{"name": "a", "name": "b"}]}', "duplicate key 'name'"),
    ],
)
def test_files_no_parser_can_take_are_bad_input_in_one_line(
    tmp_path, capsys, name, content, fragment
):
    path = tmp_path / name
    path.write_text(content)
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"greenres: error: {path}: ") and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_file_too_deep_is_bad_input_in_a_fresh_process(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    result = run_cli("plan", str(path), "--device", "sim:h100")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nested 100000 levels deep" in result.stderr


def test_plan_svg_writes_the_sm_map(tmp_path, capsys):
    import greenres

    from support.svgmap import check_panel, panels

    picture = tmp_path / "serving.svg"
    assert main(["plan", str(SERVING), "--svg", str(picture)]) == 0
    assert "decode" in capsys.readouterr().out  # the explanation is still printed
    [(title, cells, legend)] = panels(picture.read_text(encoding="utf-8"))
    assert title == "plan"
    check_panel(greenres.load_spec(SERVING).plan(greenres.Device(0)), cells, legend)


def test_plan_svg_of_a_spec_with_modes_draws_every_mode_unless_one_is_chosen(tmp_path):
    import greenres

    from support.svgmap import check_panel, panels

    modes = EXAMPLES / "modes.toml"
    modal = greenres.load_spec(modes).plan(greenres.Device(0))
    every, one = tmp_path / "every.svg", tmp_path / "one.svg"
    assert main(["plan", str(modes), "--svg", str(every)]) == 0
    drawn = panels(every.read_text(encoding="utf-8"))
    assert [t for t, _, _ in drawn] == [f"mode {m}" for m in modal.mode_names]
    assert main(["plan", str(modes), "--mode", "prefill-heavy", "--svg", str(one)]) == 0
    [(_, cells, legend)] = panels(one.read_text(encoding="utf-8"))
    check_panel(modal["prefill-heavy"], cells, legend)


def test_plan_svg_to_a_folder_that_does_not_exist_is_bad_input(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "map.svg"
    assert main(["plan", str(SERVING), "--svg", str(missing)]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_verify_reports_disjoint_partitions(capsys):
    assert main(["verify", str(SERVING)]) == 0
    out = capsys.readouterr().out
    assert "pairwise disjoint" in out and out.rstrip().endswith("verify: ok")
    for name in ("decode", "prefill", "comm", "batch"):
        assert f"  {name} " in out


def test_verify_json_has_every_partition_within_its_count(capsys):
    assert main(["verify", str(EXAMPLES / "modes.toml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["disjoint"] and report["overlaps"] == []
    for part in report["partitions"]:
        assert 0 < part["observed"] <= part["sm_count"] and part["unrecorded"] == 0


def test_verify_bad_input_exits_2(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing.toml")]) == 2
    assert main(["verify", str(SERVING), "--mode", "x"]) == 2
    assert "no modes" in capsys.readouterr().err


@pytest.mark.sim_only
def test_verify_driver_error_exits_1_and_leaves_nothing_alive(capsys):
    before = sim.live_objects()
    sim.inject_fault("cuLaunchKernel", "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", nth=2)
    try:
        assert main(["verify", str(SERVING)]) == 1
    finally:
        sim.clear_faults()
    err = capsys.readouterr().err
    assert "cuLaunchKernel" in err and "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES" in err
    assert sim.live_objects() == before and sim.hazards() == []


def test_a_reader_that_goes_away_is_not_an_error():
    """``greenres info --json | head -1``: stdout is a pipe nobody reads any more."""
    code = (
        "import os, sys\n"
        "r, w = os.pipe(); os.close(r); os.dup2(w, 1)\n"
        "from greenres.cli import main\n"
        "sys.exit(main(['info', '--json', '--device', 'sim:h100']))\n"
    )
    done = run_child(["-c", code], GREENRES_SIM=None)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
