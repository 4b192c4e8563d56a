"""examples/multi_rank.py under ``torchrun --nproc-per-node 4`` over gloo on the CPU, every
rank on the simulated ``4xh100`` node selecting device LOCAL_RANK: the job creates one
layout per rank, checked job-wide; a rank given another spec makes every rank fail with
the message naming it; ``--broadcast`` creates rank 0's plan everywhere.

Needs torch (the CPU build is enough: ``pip install torch==2.13.0``, or ``tox -e
distributed``); skipped with the reason where it is not installed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("torch.distributed", reason="torch is not installed (tox -e distributed)")

from greenres.facts import SmFacts
from greenres.serialize import load_spec

from support.childprocess import run_child

pytestmark = pytest.mark.sim_only

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "multi_rank.py"
SERVING = EXAMPLE.with_name("serving.toml")
H100 = SmFacts.for_known_device("h100")
LINE = re.compile(
    r"^rank (\d)/4: device (\d) \(([^)]*)\), plan ([0-9a-f]{16}): (.*); step (ok|WRONG)$", re.M
)


def torchrun(script, *args, tmp_path):
    """``python -m torch.distributed.run --standalone --nproc-per-node 4 script args``."""
    return run_child(
        [
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "4",
            "--log-dir",
            str(tmp_path / "logs"),
            str(script),
            *args,
        ],
        timeout=300,
        GREENRES_SIM="4xh100",
        OMP_NUM_THREADS="1",
    )


def ranks_of(stdout):
    return sorted(LINE.findall(stdout))


def test_every_rank_creates_the_same_layout_on_its_own_device(tmp_path):
    done = torchrun(EXAMPLE, tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    plan = load_spec(SERVING).plan(H100)
    parts = ", ".join(f"{p.name} {p.sm_count}" for p in plan)
    assert ranks_of(done.stdout) == [
        (str(r), str(r), H100.device_name, plan.fingerprint, parts, "ok") for r in range(4)
    ]


def test_a_rank_with_another_spec_fails_the_job_naming_it(tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(
        SERVING.read_text(encoding="utf-8").replace("sms = 64", "sms = 48"), encoding="utf-8"
    )
    wrapper = tmp_path / "rank2_differs.py"
    wrapper.write_text(
        "import os, runpy, sys\n"
        f"sys.argv = [{str(EXAMPLE)!r}]\n"
        f"if os.environ['RANK'] == '2':\n    sys.argv += ['--spec', {str(other)!r}]\n"
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    done = torchrun(wrapper, tmp_path=tmp_path)
    assert done.returncode != 0
    assert ranks_of(done.stdout) == []  # no rank went on
    mine = load_spec(SERVING).plan(H100).fingerprint
    theirs = load_spec(other).plan(H100).fingerprint
    reports = re.findall(r"^rank (\d): LayoutMismatchError: (.*)$", done.stderr, re.M)
    assert sorted(rank for rank, _ in reports) == ["0", "1", "2", "3"], done.stderr[-5000:]
    for _, first_line in reports:
        assert first_line == (
            f"the ranks planned different layouts: ranks 0, 1, 3 planned {mine}; "
            f"rank 2 planned {theirs}"
        )
    assert "partition 'decode': 48 SMs on rank 2, 64 SMs on ranks 0, 1, 3" in done.stderr


def test_broadcast_creates_rank_zeros_plan_everywhere(tmp_path):
    done = torchrun(EXAMPLE, "--broadcast", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    plan = load_spec(SERVING).plan(H100)
    assert {fingerprint for _, _, _, fingerprint, _, _ in ranks_of(done.stdout)} == {
        plan.fingerprint
    }
    assert len(ranks_of(done.stdout)) == 4
