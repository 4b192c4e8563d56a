"""``greenres bench``: every path measured, call counts on the simulator, bad input, no leaks."""

import json

import pytest

from greenres import sim
from greenres.benchmark import PATHS, RATIOS
from greenres.cli import main

pytestmark = pytest.mark.gpu

QUICK = ["bench", "--cycles", "200", "--rounds", "2"]


def bench_json(capsys, *extra):
    assert main([*QUICK, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_has_every_path_with_positive_numbers(capsys):
    data = bench_json(capsys)
    assert data["cycles"] == 200
    assert data["rounds"] == 2
    assert set(data["paths"]) == set(PATHS)
    for entry in data["paths"].values():
        assert entry["median_ns"] > 0
        assert len(entry["ns_per_round"]) == 2
        assert all(value > 0 for value in entry["ns_per_round"])
    assert set(data["ratios"]) == set(RATIOS)
    assert all(entry["ratio"] > 0 for entry in data["ratios"].values())
    assert data["partition_sms"] > 0


@pytest.mark.sim_only
def test_driver_calls_per_cycle_on_the_simulator(capsys):
    paths = bench_json(capsys)["paths"]
    expected = {
        "greenres_enter_exit": 7,
        "greenres_with": 7,
        "bindings_enter_exit": 7,
        "greenres_handoff": 2,
        "bindings_handoff": 2,
    }
    assert {k: p["calls_per_cycle"] for k, p in paths.items()} == expected
    enter_exit = {"cuEventRecord": 2, "cuStreamWaitEvent": 2, "cuCtxPushCurrent": 1}
    enter_exit.update(cuCtxPopCurrent=1, cuCtxGetCurrent=1)
    assert paths["greenres_enter_exit"]["calls"] == enter_exit
    assert paths["bindings_enter_exit"]["calls"] == enter_exit
    assert paths["greenres_with"]["calls"] == enter_exit
    handoff = {"cuEventRecord": 1, "cuStreamWaitEvent": 1}
    assert paths["greenres_handoff"]["calls"] == handoff
    assert paths["bindings_handoff"]["calls"] == handoff


def test_text_mentions_every_path(capsys):
    assert main(QUICK) == 0
    out = capsys.readouterr().out
    for label in PATHS.values():
        assert label in out
    for name in RATIOS:
        assert name in out
    assert "driver's own cost" in out


def test_on_another_device(capsys):
    import greenres

    if greenres.device_count() < 2:
        pytest.skip("needs a second device")
    assert bench_json(capsys, "--device", "1")["paths"]


@pytest.mark.parametrize("option", ["--cycles", "--rounds"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_bad_counts_are_bad_input(capsys, option, value):
    assert main(["bench", option, value]) == 2
    err = capsys.readouterr().err
    assert option in err
    assert value in err


@pytest.mark.sim_only
def test_leaves_no_live_objects(capsys):
    before = sim.live_objects()
    data = bench_json(capsys)
    assert data["live_after_close"] == {}
    assert sim.live_objects() == before
    assert main(QUICK) == 0
    assert "live objects after close: none" in capsys.readouterr().out
    assert sim.live_objects() == before
