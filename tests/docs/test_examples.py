"""The example programs of examples/*.py run as a user runs them, and say what they should.

Each runs in a fresh process on the simulated H100 (``GREENRES_SIM=h100``, as their
docstrings tell users without a GPU), then again with every asynchronous operation slowed
down (the simulator's op delay), where a missing dependency between streams shows as wrong
data. With ``greenres.handoff`` replaced by a no-op (and the producers made slow) the same
programs must notice and fail: their checks are real.
"""

import re
from pathlib import Path

import pytest

from greenres.facts import SmFacts
from greenres.serialize import load_spec
from greenres.spec import Partition, PartitionSpec

from support.childprocess import run_child

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
H100 = SmFacts.for_known_device("h100")

pytestmark = pytest.mark.sim_only

_RUNNER = """
import runpy, sys
import greenres.sim as sim
sim.install("h100")
sim.set_op_delay_us({delay})
if {broken}:
    import greenres
    from cuda.bindings import driver as cu

    # The bug: nothing waits. Every memset also becomes a slow kernel (5 operations queued
    # ahead of it on its stream), so a consumer that does not wait reads before it wrote.
    greenres.handoff = lambda src, dst: None
    real_memset, pad = cu.cuMemsetD32Async, []

    def slow_memset(ptr, value, count, stream):
        if not pad:
            pad.append(cu.cuMemAlloc(256)[1])
        for _ in range(5):
            real_memset(pad[0], 0, 64, stream)
        return real_memset(ptr, value, count, stream)

    cu.cuMemsetD32Async = slow_memset
sys.argv = [{path!r}, *{args!r}]
runpy.run_path({path!r}, run_name="__main__")
"""


def run_example(name, *args, delay=0, broken=False):
    path = str(EXAMPLES / name)
    if not delay and not broken:  # exactly as the docstring says to run it
        return run_child([path, *args], GREENRES_SIM="h100")
    code = _RUNNER.format(delay=delay, broken=broken, path=path, args=list(args))
    return run_child(["-c", code], GREENRES_SIM=None)


def assert_ran(done):
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ResourceWarning" not in done.stderr, done.stderr[-3000:]
    assert "WRONG" not in done.stdout
    return done.stdout


def sm_counts(stdout):
    return {m[1]: int(m[2]) for m in re.finditer(r"^partition (\w+): (\d+) SMs$", stdout, re.M)}


def test_every_example_is_tested():
    tested = {"serving_pipeline.py", "overlap.py", "modes_under_load.py", "multi_rank.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} <= tested


@pytest.mark.parametrize("delay", [0, 300])
def test_serving_pipeline(delay):
    out = assert_ran(run_example("serving_pipeline.py", "--steps", "5", delay=delay))
    plan = PartitionSpec(
        partitions=(Partition("prefill", share=0.25, min_sms=16), Partition("decode")),
        remainder="decode",
    ).plan(H100)
    assert sm_counts(out) == {p.name: p.sm_count for p in plan}
    assert "captured the decode step as a graph on partition 'decode'" in out
    steps = re.findall(r"^step (\d+): decode produced (\d+) \(ok\)$", out, re.M)
    assert steps == [(str(i), str(1000 * i + 7)) for i in range(1, 6)]
    assert out.rstrip().endswith("5 steps, all correct")


@pytest.mark.parametrize("delay", [0, 300])
def test_overlap(delay):
    out = assert_ran(run_example("overlap.py", "--steps", "6", delay=delay))
    assert sm_counts(out) == {"compute": 124, "comm": 8}
    steps = re.findall(r"^step (\d+): sent (\d+) \(ok\)$", out, re.M)
    assert steps == [(str(i), str(100 + i)) for i in range(6)]
    assert out.rstrip().endswith("6 steps overlapped, all correct")


@pytest.mark.parametrize("delay", [0, 300])
def test_modes_under_load(delay):
    done = run_example("modes_under_load.py", "--steps", "7", "--every", "2", delay=delay)
    out = assert_ran(done)
    modal = load_spec(EXAMPLES / "modes.toml").plan(H100)
    seen = re.findall(r"^mode ([\w-]+): prefill (\d+) SMs, decode (\d+) SMs$", out, re.M)
    expected_modes = ["decode-heavy", "prefill-heavy"] * 2
    assert [m for m, _, _ in seen] == expected_modes
    for mode, prefill, decode in seen:
        assert (int(prefill), int(decode)) == (
            modal[mode]["prefill"].sm_count,
            modal[mode]["decode"].sm_count,
        )
    assert "7 steps, 3 mode switches under load" in out


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("serving_pipeline.py", ["--steps", "4"]),
        ("overlap.py", ["--steps", "4"]),
        ("modes_under_load.py", ["--steps", "6"]),
    ],
)
def test_an_ordering_bug_makes_the_example_fail(name, args):
    done = run_example(name, *args, delay=1000, broken=True)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "WRONG DATA at steps" in done.stdout


def test_examples_reject_bad_arguments():
    done = run_example("modes_under_load.py", "--every", "0")
    assert done.returncode == 2
    assert "--every must be >= 1" in done.stderr
