"""``layout.verify()``: the %smid probe launched in every partition reports SM sets that
are disjoint and within the counts the driver reports; on the simulator, exactly the SMs
it assigned, on every device profile; nothing is left alive, also when a call fails; bad
input is refused; a report can fail (overlapping or unrecorded SM ids)."""

from __future__ import annotations

import json
import threading

import pytest

import greenres
from greenres import ClosedError, Layout
from greenres.sim.profiles import PROFILES
from greenres.spec import Partition, PartitionSpec
from greenres.verify import PROBE_KERNEL, PROBE_PTX, PartitionProbe, VerifyReport, verify

from support.childprocess import run_child
from support.rthelpers import SIM, current_context


def _three_partitions(device):
    """Three partitions any device can hold: two quarters and the rest."""
    spec = PartitionSpec(
        [Partition("a", share=0.25), Partition("b", share=0.25), Partition("rest")],
        remainder="rest",
    )
    return spec.plan(device.sm_facts())


@pytest.mark.gpu
def test_partitions_run_on_disjoint_sms_within_their_counts():
    """What a real GPU answers too: each partition's blocks ran on no more SMs than its
    green context has, and no SM served two partitions."""
    device = greenres.Device(0)
    stack = current_context()
    with Layout.create(_three_partitions(device), device=device) as layout:
        report = layout.verify()
        counts = {p.name: p.sm_count for p in layout}
    assert current_context() == stack
    assert report.ok and report.disjoint, report.text()
    assert [p.name for p in report.partitions] == ["a", "b", "rest"]
    for probe in report.partitions:
        assert probe.sm_count == counts[probe.name]
        assert 0 < len(probe.sm_ids) <= probe.sm_count
        assert probe.unrecorded == 0
        assert probe.blocks == 8 * probe.sm_count
    seen = [i for p in report.partitions for i in p.sm_ids]
    assert len(seen) == len(set(seen))
    assert "pairwise disjoint" in report.text() and report.text().endswith("verify: ok")


@pytest.mark.sim_only
def test_on_the_simulator_the_probe_sees_exactly_the_assigned_sms(sim):
    baseline = sim.live_objects()
    with Layout.create({"x": 16, "y": 32, "z": 8}) as layout:
        assigned = {p.name: tuple(sorted(sim.green_context_sms(p.handle))) for p in layout}
        held = sim.live_objects()
        report = verify(layout, blocks_per_sm=2)
        assert sim.live_objects() == held  # the module and buffers are gone
    for probe in report.partitions:
        assert probe.sm_ids == assigned[probe.name]
        assert probe.complete and probe.blocks == 2 * probe.sm_count
    assert report["y"].sm_count == 32
    assert sim.live_objects() == baseline and sim.hazards() == []
    as_dict = json.loads(json.dumps(report.to_dict()))
    assert as_dict["ok"] and as_dict["partitions"][1]["sm_ids"] == list(assigned["y"])


def _profile_child():
    return """
import json, sys
import greenres
from greenres import sim
from greenres.spec import Partition, PartitionSpec
device = greenres.Device(0)
spec = PartitionSpec(
    [Partition("a", share=0.25), Partition("b", share=0.25), Partition("rest")],
    remainder="rest",
)
before = sim.live_objects()
with greenres.Layout.create(spec.plan(device.sm_facts()), device=device) as layout:
    assigned = {p.name: sorted(sim.green_context_sms(p.handle)) for p in layout}
    report = layout.verify()
print(json.dumps({"report": report.to_dict(), "assigned": assigned,
                  "leaked": sim.live_objects() != before, "hazards": sim.hazards()}))
"""


@pytest.mark.sim_only
@pytest.mark.skipif(not SIM, reason="profiles are simulated devices")
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_reports_disjoint_sets_within_their_counts(profile):
    done = run_child(["-c", _profile_child()], GREENRES_SIM=profile)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    report = result["report"]
    assert report["ok"] and report["disjoint"], report
    assert len(report["partitions"]) == 3
    for part in report["partitions"]:
        assert part["sm_ids"] == result["assigned"][part["name"]]
        assert part["observed"] == part["sm_count"] and part["within_count"]
    assert not result["leaked"] and result["hazards"] == []


_BROKEN_PROBE = """
import ctypes, json, sys
from greenres import sim
from greenres.cli import main

def same_sm_everywhere(info):
    out = ctypes.cast(info.param(0, ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint32))
    for b in range(info.grid[0]):
        out[b] = 0

def stores_nothing(info):
    pass

sim.register_kernel("greenres_smid_probe", {model}, param_sizes=(8,))
sys.exit(main(["verify", sys.argv[1], "--json"]))
"""


@pytest.mark.sim_only
@pytest.mark.skipif(not SIM, reason="replaces the simulator's probe model")
@pytest.mark.parametrize("model", ["same_sm_everywhere", "stores_nothing"])
def test_a_probe_that_reports_wrong_sms_fails_the_check(model, tmp_path):
    """The check can fail: a probe whose blocks all report SM 0 (an overlap), or whose
    blocks store nothing, gives a report that is not ok, and ``greenres verify`` exits 1."""
    spec = tmp_path / "spec.toml"
    spec.write_text(
        '[[partitions]]\nname = "a"\nsms = 16\n\n[[partitions]]\nname = "b"\nsms = 16\n'
    )
    done = run_child(["-c", _BROKEN_PROBE.format(model=model), str(spec)], GREENRES_SIM="h100")
    assert done.returncode == 1, done.stderr[-4000:]
    report = json.loads(done.stdout)
    assert not report["ok"]
    if model == "same_sm_everywhere":
        assert report["overlaps"] == [{"a": "a", "b": "b", "sm_ids": [0]}]
    else:
        assert report["disjoint"] and not report["partitions"][0]["within_count"]
        assert report["partitions"][0]["unrecorded"] == report["partitions"][0]["blocks"]


@pytest.mark.sim_only
def test_verify_from_several_threads_at_once(sim):
    """verify() is serialised: two threads never have one green context current at once
    (the simulator records that as a hazard), and every report is right."""
    baseline = sim.live_objects()
    with Layout.create({"a": 16, "b": 16}) as layout:
        reports, errors = [], []

        def run():
            try:
                for _ in range(3):
                    reports.append(layout.verify(blocks_per_sm=1))
            except Exception as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and len(reports) == 12
    assert all(r.ok for r in reports) and len({r.partitions for r in reports}) == 1
    assert sim.hazards() == [] and sim.live_objects() == baseline


@pytest.mark.parametrize(
    ("kwargs", "error", "excerpt"),
    [
        ({"blocks_per_sm": 0}, ValueError, "'blocks_per_sm' must be in 1..1024 (got 0)"),
        ({"blocks_per_sm": 2000}, ValueError, "'blocks_per_sm' must be in 1..1024 (got 2000)"),
        ({"blocks_per_sm": 1.5}, TypeError, "'blocks_per_sm' must be an int (got 1.5"),
        ({"blocks_per_sm": True}, TypeError, "'blocks_per_sm' must be an int (got True"),
    ],
)
def test_bad_blocks_per_sm_is_refused(kwargs, error, excerpt):
    with Layout.create({"a": 16}) as layout:
        with pytest.raises(error) as info:
            layout.verify(**kwargs)
    assert excerpt in str(info.value)


def test_verify_takes_an_open_layout():
    with pytest.raises(TypeError, match=r"takes a greenres\.Layout"):
        verify({"a": 16})
    layout = Layout.create({"a": 16})
    layout.close()
    with pytest.raises(ClosedError, match=r"closed greenres\.Layout"):
        layout.verify()


def test_verify_during_a_capture_is_refused_and_the_capture_goes_on():
    with Layout.create({"a": 16, "b": 16}) as layout:
        graph = greenres.Graph()
        with graph.capture(layout["b"].stream):
            with pytest.raises(greenres.UsageError, match="partition 'b' is capturing"):
                layout.verify()
        assert graph.captured  # the capture was not invalidated
        graph.close()
        assert layout.verify().ok


def test_the_probe_is_named_as_the_simulators_model_and_has_one_entry():
    text = PROBE_PTX.rstrip(b"\0").decode()
    assert PROBE_PTX.endswith(b"\0")  # cuModuleLoadData reads PTX as a C string
    assert text.count(".entry") == 1 and f".entry {PROBE_KERNEL}(" in text
    assert "%smid" in text and "%ctaid.x" in text


def test_report_text_names_overlaps_and_unrecorded_blocks():
    a = PartitionProbe("a", 8, (0, 1, 2, 3), blocks=64)
    b = PartitionProbe("b", 8, (3, 4, 5, 7), blocks=64, unrecorded=2)
    report = VerifyReport("dev", (a, b), (("a", "b", (3,)),))
    assert not report.ok and not report.disjoint
    text = report.text()
    assert "OVERLAP: a and b share SMs 3" in text
    assert "SMs 0-3" in text and "SMs 3-5,7" in text
    assert "2 block(s) stored nothing" in text and text.endswith("verify: FAILED")
    with pytest.raises(KeyError):
        report["c"]


@pytest.mark.sim_only
def test_a_failed_free_is_reported_and_retried_by_the_next_verify(sim):
    with Layout.create({"a": 16, "b": 16}) as layout:
        held = sim.live_objects()
        sim.inject_fault("cuMemFree", "CUDA_ERROR_INVALID_VALUE")
        with pytest.raises(greenres.DestroyError) as info:
            layout.verify()
        assert [f.function for f in info.value.failures] == ["cuMemFree"]
        assert "the verify probe" in str(info.value)
        assert sim.live_objects()["allocation"] == held["allocation"] + 1
        assert layout.verify().ok  # frees what the first one could not, first
        assert sim.live_objects() == held
    assert sim.hazards() == []


@pytest.mark.sim_only
def test_a_stream_that_cannot_be_drained_keeps_the_probe_alive_until_the_next_verify(sim):
    """After a failed call, the probe's buffer and module are freed only once its stream
    is drained: when waiting fails too, the next verify() waits (cuCtxSynchronize) and
    frees them. No queued operation ever runs on freed memory."""
    with Layout.create({"a": 16, "b": 16}) as layout:
        held = sim.live_objects()
        stack = current_context()
        for nth in (1, 2, 3):  # the wait after the launch, and both waits of the drain
            sim.inject_fault("cuStreamSynchronize", "CUDA_ERROR_LAUNCH_FAILED", nth=nth)
        with pytest.raises(greenres.DriverError, match="cuStreamSynchronize"):
            layout.verify()
        sim.clear_faults()
        assert current_context() == stack
        left = sim.live_objects()
        assert left["allocation"] == held["allocation"] + 1
        assert left["module"] == held["module"] + 1
        assert layout.verify().ok
        assert sim.live_objects() == held
    assert sim.hazards() == []


def test_verify_inside_an_entered_partition_leaves_its_context_stack_alone():
    import warnings

    with Layout.create({"a": 16, "b": 16}) as layout:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ContextStackWarning at exit fails the test
            with layout["a"]:
                before = current_context()
                assert layout.verify().ok
                assert current_context() == before
                assert greenres.current_partition() is layout["a"]
