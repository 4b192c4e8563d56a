"""cuGetExportTable: NVIDIA's libraries (NVRTC, the CUDA runtime) fetch private tables from
whatever libcuda.so.1 is loaded. The simulator has none and says so cleanly: NVRTC used to
look the symbol up, get NULL and call through it (a segfault in any process running the
simulator). See docs/simulator.md, "cuGetExportTable".
"""

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

INVALID_VALUE = 1
NOT_FOUND = 500

EXPORT_TABLE = r"""
import ctypes
import greenres.sim as sim
sim.install("h100")
L = ctypes.CDLL(str(sim.LIBRARY_PATH))
P = ctypes.c_void_p
fn_t = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(P), ctypes.c_void_p)
by_symbol = fn_t(("cuGetExportTable", L))
pfn, status = P(), ctypes.c_int()
assert L.cuGetProcAddress_v2(b"cuGetExportTable", ctypes.byref(pfn), 13000, ctypes.c_ulonglong(0),
                             ctypes.byref(status)) == 0
by_proc = fn_t(pfn.value)
assert pfn.value == ctypes.cast(L.cuGetExportTable, P).value
# The CUDA runtime's first table id (any id: the simulator has no tables).
uuid = (ctypes.c_ubyte * 16)(*range(16))
for fn in (by_symbol, by_proc):
    table = P(0xDEADBEEF)
    print(fn(ctypes.byref(table), ctypes.addressof(uuid)), table.value)
    table = P(0xDEADBEEF)
    print(fn(ctypes.byref(table), None), table.value)   # no id: the out-pointer is cleared too
    print(fn(None, ctypes.addressof(uuid)))              # no out-pointer: nothing is written
print("calls", sim.call_counts("cuGetExportTable")["cuGetExportTable"])
"""


def test_get_export_table_answers_not_found_with_a_null_table():
    lines = run_python(EXPORT_TABLE).split("\n")
    want = [f"{NOT_FOUND} None", f"{INVALID_VALUE} None", f"{INVALID_VALUE}"] * 2
    assert lines[:6] == want
    assert lines[6] == "calls 6"


NVRTC = r"""
import greenres.sim as sim
sim.install("h100")
from cuda.bindings import driver, nvrtc
try:
    nvrtc.nvrtcVersion()
except Exception as exc:  # the NVRTC wheel is not installed
    print("NO NVRTC", type(exc).__name__, exc)
    raise SystemExit(0)
assert driver.cuInit(0)[0] == 0
src = b'extern "C" __global__ void twice(float* x) { x[threadIdx.x] *= 2.0f; }'
err, prog = nvrtc.nvrtcCreateProgram(src, b"twice.cu", 0, [], [])
assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, err
opts = [b"--gpu-architecture=compute_90"]
err, = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, err
err, size = nvrtc.nvrtcGetPTXSize(prog)
ptx = b" " * size
assert nvrtc.nvrtcGetPTX(prog, ptx)[0] == nvrtc.nvrtcResult.NVRTC_SUCCESS
print("PTX", b".entry twice" in ptx)
print("export table lookups", sim.call_counts("cuGetExportTable")["cuGetExportTable"])
"""


def test_nvrtc_compiles_under_the_simulator():
    """NVRTC loads the simulator as its libcuda.so.1 and asks it for an export table: the
    compile must succeed (run in a child: the old failure was a segfault)."""
    out = run_python(NVRTC)
    if out.startswith("NO NVRTC"):
        pytest.skip(f"the nvidia-cuda-nvrtc wheel is not installed: {out.strip()}")
    lines = out.split("\n")
    assert lines[0] == "PTX True", out
    assert int(lines[1].split()[-1]) >= 1, out  # NVRTC did ask, and got a clean answer
