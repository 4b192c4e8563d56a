"""docs/interop.md's recipes run as written: the cuda.core block on the simulator, the
PyTorch and CuPy blocks where a CUDA build of the library and a GPU are present (skipped
with the reason otherwise: the simulator runs no kernels, and a CPU build of torch has no
CUDA)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from support.childprocess import run_child

DOC = Path(__file__).resolve().parents[2] / "docs" / "interop.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def _block(first_line: str) -> str:
    [block] = [b for b in BLOCKS if b.startswith(first_line)]
    return block


# What a recipe assumes exists: a partition `part` of a layout, and the library's inputs.
_LAYOUT = """
import greenres as gr
layout = gr.Layout.create({"a": 16, "b": 16})
part = layout["a"]
"""
_CLOSE = """
part.stream.synchronize()
layout.close()
print("ok")
"""


def _cuda_library(name: str) -> str | None:
    """Why the recipes of ``name`` cannot run here, or None when they can."""
    if importlib.util.find_spec(name) is None:
        return f"{name} is not installed"
    probe = {
        "torch": "import torch; assert torch.cuda.is_available(), torch.__version__",
        "cupy": "import cupy; assert cupy.cuda.runtime.getDeviceCount() > 0",
    }[name]
    done = run_child(["-c", probe], GREENRES_SIM=None)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1][-200:]
        return f"no CUDA build of {name} with a GPU here ({last})"
    return None


def test_the_page_has_its_recipes():
    assert len(BLOCKS) == 4


@pytest.mark.sim_only
def test_cuda_core_recipe_on_the_simulator():
    pytest.importorskip("cuda.core")
    code = (
        "import greenres.sim; greenres.sim.install('h100')\n"
        "from cuda.core import Device; Device(0).set_current()\n"
        + _LAYOUT
        + _block("# cuda.core")
        + "assert int(core_stream.handle) == part.stream.handle\n"
        + "core_stream.close()\n"
        + _CLOSE
    )
    done = run_child(["-c", code], GREENRES_SIM=None)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_pytorch_recipe():
    reason = _cuda_library("torch")
    if reason:
        pytest.skip(reason)
    code = (
        "import torch\n"
        + _LAYOUT
        + "model = torch.nn.Linear(64, 64).cuda()\nx = torch.randn(8, 64, device='cuda')\n"
        + _block("# PyTorch")
        + "torch.cuda.synchronize()\nassert y.shape == (8, 64)\n"
        + _CLOSE
    )
    done = run_child(["-c", code], GREENRES_SIM=None)
    assert done.returncode == 0, done.stderr[-3000:]


def test_cupy_recipe():
    reason = _cuda_library("cupy")
    if reason:
        pytest.skip(reason)
    code = (
        "import cupy\n"
        + _LAYOUT
        + "a = cupy.ones((64, 64)); b = cupy.ones((64, 64))\n"
        + _block("# CuPy")
        + "cupy.cuda.Device().synchronize()\nassert float(y[0, 0]) == 64.0\n"
        + _CLOSE
    )
    done = run_child(["-c", code], GREENRES_SIM=None)
    assert done.returncode == 0, done.stderr[-3000:]
