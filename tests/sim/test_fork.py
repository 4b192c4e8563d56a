"""fork(): the child of an initialised process gets CUDA_ERROR_NOT_INITIALIZED from every call
that needs the driver (cuInit included), as a real driver answers there, instead of waiting
forever for stream workers that fork() did not copy. A fork before cuInit leaves a driver the
child can initialise and use. See docs/simulator.md, "fork()".

Each scenario runs in its own interpreter (a fresh simulated machine) that forks; the parent
waits for the forked child with a deadline, so a hang fails the test instead of stalling it.
"""

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

NOT_INITIALIZED = 3

# Shared by both scenarios: fork, run CHILD_CALLS in the child (one line of results written
# straight to fd 1: no buffered stdout to lose at os._exit), wait with a deadline.
PRELUDE = r"""
import os, signal, sys, time
import greenres.sim as sim
sim.install("h100")
from cuda.bindings import driver as cu

def code(result):
    return int(result[0])

def fork_and_wait(child_calls, deadline_s=20.0):
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        try:
            line = "CHILD " + " ".join(f"{name}={value}" for name, value in child_calls())
        except BaseException as exc:
            line = f"CHILD raised {exc!r}"
        os.write(1, (line + "\n").encode())
        os._exit(0)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print("HANG: the forked child did not finish", flush=True)
    return None
"""

AFTER_INIT = (
    PRELUDE
    + r"""
assert code(cu.cuInit(0)) == 0
dev = cu.cuDeviceGet(0)[1]
ctx = cu.cuDevicePrimaryCtxRetain(dev)[1]
assert code(cu.cuCtxPushCurrent(ctx)) == 0
err, stream = cu.cuStreamCreate(1)
err, event = cu.cuEventCreate(0)
err, dptr = cu.cuMemAlloc(4096)
sim.set_op_delay_us(300_000)              # the memset below is still running at fork()
assert code(cu.cuMemsetD8Async(dptr, 7, 4096, stream)) == 0
assert code(cu.cuEventRecord(event, stream)) == 0
assert code(cu.cuStreamQuery(stream)) != 0  # work in flight

def child_calls():
    yield "cuStreamSynchronize", code(cu.cuStreamSynchronize(stream))
    yield "cuEventSynchronize", code(cu.cuEventSynchronize(event))
    yield "cuStreamQuery", code(cu.cuStreamQuery(stream))
    yield "cuCtxSynchronize", code(cu.cuCtxSynchronize())
    yield "cuMemFree", code(cu.cuMemFree(dptr))
    yield "cuStreamCreate", code(cu.cuStreamCreate(1))
    yield "cuInit", code(cu.cuInit(0))
    yield "cuDeviceGetCount", code(cu.cuDeviceGetCount())
    yield "cuDriverGetVersion", code(cu.cuDriverGetVersion())   # needs no cuInit: still works
    yield "hazards", len(sim.hazards())                          # the introspection still works

print("exit", fork_and_wait(child_calls), flush=True)
# The parent is unaffected: its work completes and its stream synchronises.
assert code(cu.cuStreamSynchronize(stream)) == 0
host = bytearray(4096)
assert code(cu.cuMemcpyDtoH(host, dptr, 4096)) == 0
print("PARENT", host == bytes([7]) * 4096, flush=True)
"""
)


def _child_results(out):
    lines = out.splitlines()
    assert not any(line.startswith("HANG") for line in lines), out
    child = [line for line in lines if line.startswith("CHILD")]
    assert len(child) == 1, out
    assert "raised" not in child[0], out
    return dict(item.split("=") for item in child[0].split()[1:])


def test_forked_child_of_an_initialised_process_gets_not_initialized_never_a_hang():
    out = run_python(AFTER_INIT)
    results = _child_results(out)
    for name in (
        "cuStreamSynchronize",
        "cuEventSynchronize",
        "cuStreamQuery",
        "cuCtxSynchronize",
        "cuMemFree",
        "cuStreamCreate",
        "cuInit",
        "cuDeviceGetCount",
    ):
        assert int(results[name]) == NOT_INITIALIZED, (name, out)
    assert int(results["cuDriverGetVersion"]) == 0, out
    assert int(results["hazards"]) == 0, out
    assert "exit 0" in out, out
    assert "PARENT True" in out, out


BEFORE_INIT = (
    PRELUDE
    + r"""
def child_calls():
    # Forked before the parent called cuInit: a fresh driver, fully usable.
    yield "cuInit", code(cu.cuInit(0))
    dev = cu.cuDeviceGet(0)[1]
    ctx = cu.cuDevicePrimaryCtxRetain(dev)[1]
    yield "push", code(cu.cuCtxPushCurrent(ctx))
    err, stream = cu.cuStreamCreate(1)
    err, dptr = cu.cuMemAlloc(64)
    sim.set_op_delay_us(20_000)
    yield "memset", code(cu.cuMemsetD8Async(dptr, 3, 64, stream))
    yield "cuStreamSynchronize", code(cu.cuStreamSynchronize(stream))
    host = bytearray(64)
    cu.cuMemcpyDtoH(host, dptr, 64)
    yield "data", int(host == bytes([3]) * 64)

print("exit", fork_and_wait(child_calls), flush=True)
assert code(cu.cuInit(0)) == 0   # and the parent initialises on its own
print("PARENT initialised", flush=True)
"""
)


def test_fork_before_cuinit_leaves_a_usable_driver():
    out = run_python(BEFORE_INIT)
    results = _child_results(out)
    assert results == {
        "cuInit": "0",
        "push": "0",
        "memset": "0",
        "cuStreamSynchronize": "0",
        "data": "1",
    }, out
    assert "exit 0" in out and "PARENT initialised" in out, out
