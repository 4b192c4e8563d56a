"""Every Python block of the documentation pages runs, so the docs cannot rot.

Each block runs in a fresh process on the simulated H100, after a prelude that makes what
the pages assume exists (a device, a spec, its plan, a layout, a partition
``part``/``decode``, ``greenres.nvtx``, and ``launch_on(stream)`` queueing real work on a
stream), in a scratch folder where ``examples/`` is this checkout's; whatever layouts it
leaves open are closed after it, and nothing may warn ResourceWarning. Pages whose blocks are run by
tests of their own are listed with those tests; the design notes are not run (they show
the API as planned, not as it is).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support.childprocess import child_env

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)

#: page -> why its blocks are not run here
ELSEWHERE = {
    "errors.md": "its preambles run before every row (tests/*/test_*errors_doc.py)",
    "interop.md": "tests/docs/test_interop.py (PyTorch and CuPy blocks need CUDA builds)",
    "distributed.md": "needs a torchrun job: tests/distributed/test_torchrun.py",
    "architecture.md": "a design note: the API as planned",
    "style.md": "a design note",
}

PRELUDE = """
import greenres.sim
greenres.sim.install("h100")
import greenres
import greenres as gr
from cuda.bindings import driver as _cu
from greenres.facts import SmFacts

dev = gr.Device(0)
spec = gr.PartitionSpec(
    (gr.Partition("decode", sms=64), gr.Partition("prefill", share=0.25), gr.Partition("batch")),
    remainder="batch",
)
plan = spec.plan(dev)
from greenres import nvtx
layout = _prelude_layout = gr.Layout.create(plan, device=dev)
part = decode = layout["decode"]
_, _primary = _cu.cuDevicePrimaryCtxRetain(0)
_cu.cuCtxPushCurrent(_primary)
_, _scratch = _cu.cuMemAlloc(4096)

def launch_on(stream):
    # what a kernel launch does to ordering: queue work on the stream
    (error,) = _cu.cuMemsetD8Async(_scratch, 1, 4096, stream.handle)
    assert error == _cu.CUresult.CUDA_SUCCESS, error
"""

EPILOGUE = """
for _layout in [value for value in list(globals().values()) if isinstance(value, gr.Layout)]:
    _layout.close()
_cu.cuCtxSynchronize()
_cu.cuMemFree(_scratch)
_cu.cuCtxPopCurrent()
_cu.cuDevicePrimaryCtxRelease(0)
print("done")
"""


def blocks():
    return [
        (page.name, index, block)
        for page in sorted(DOCS.glob("*.md"))
        for index, block in enumerate(BLOCK.findall(page.read_text("utf-8")))
    ]


def test_the_pages_have_blocks():
    assert len({page for page, _, _ in blocks()}) >= 8


@pytest.mark.sim_only
@pytest.mark.parametrize(("page", "index", "block"), blocks(), ids=lambda v: str(v)[:20])
def test_doc_block_runs(page, index, block):
    if page in ELSEWHERE:
        pytest.skip(f"{page}: {ELSEWHERE[page]}")
    if "cuda.core" in block:
        pytest.importorskip("cuda.core")
    code = PRELUDE + block + EPILOGUE
    with tempfile.TemporaryDirectory(prefix="greenres-doc-") as cwd:
        os.symlink(ROOT / "examples", Path(cwd) / "examples")
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=120,
            env=child_env(GREENRES_SIM=None, PYTHONWARNINGS="always::ResourceWarning"),
        )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.rstrip().endswith("done")
    assert "ResourceWarning" not in done.stderr, done.stderr[-4000:]
