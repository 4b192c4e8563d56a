"""The README's Python examples run as written (on the simulated H100, in a fresh process)."""

import re
from pathlib import Path

import pytest

from support.childprocess import run_child, run_python

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)

pytestmark = pytest.mark.sim_only


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index):
    code = BLOCKS[index]
    if "cuda.core" in code:
        pytest.importorskip("cuda.core")  # not installed with cuda-bindings 12.9 (Python 3.10)
    if "sim.install" not in code:
        code = "import greenres.sim\ngreenres.sim.install('h100')\n" + code
    # An example that leaks a handle warns ResourceWarning from __dealloc__, where the
    # "error" filter cannot stop it: show every such warning and look for it on stderr.
    done = run_child(["-c", code], GREENRES_SIM=None, PYTHONWARNINGS="always::ResourceWarning")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "ResourceWarning" not in done.stderr, done.stderr[-4000:]


def test_the_cuda_core_example_prints_132():
    pytest.importorskip("cuda.core")
    block = next(b for b in BLOCKS if "cuda.core" in b)
    assert run_python(block, GREENRES_SIM=None).strip() == "132"
