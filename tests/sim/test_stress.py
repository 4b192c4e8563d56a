"""A multi-threaded create/use/destroy stress run with slot reuse going on all the time: threads
make green contexts, streams (of green contexts and of the primary context), events and
queued work, hand events between their streams and destroy everything (streams often with
their work still queued), while another thread keeps synchronising the primary context (its
snapshot of streams races with their destruction) and the per-thread and legacy streams are
used. Afterwards: the data is right, every object is freed, and no hazard was recorded, so no
call received a destroyed handle. Run under scripts/sanitize, ASan sees the reclaim paths.
"""

import json

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

STRESS = r"""
import json, threading
import greenres.sim as sim
sim.install("h100")
from cuda.bindings import driver as cu

NON_BLOCKING = cu.CUstream_flags.CU_STREAM_NON_BLOCKING
SM = cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
DEFAULT_STREAM = cu.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM
THREADS, ROUNDS, N = 4, 300, 1024

def ok(result):
    assert result[0] == 0, result
    return result[1] if len(result) == 2 else result[1:]

ok(cu.cuInit(0))
primary = ok(cu.cuDevicePrimaryCtxRetain(0))
ok(cu.cuCtxPushCurrent(primary))
res = ok(cu.cuDeviceGetDevResource(0, SM))
groups, n, _ = ok(cu.cuDevSmResourceSplitByCount(THREADS, res, 0, 8))
descs = [ok(cu.cuDevResourceGenerateDesc([g], 1)) for g in list(groups)[:n]]
before = sim.live_objects()
sim.set_op_delay_us(50)
errors, stop = [], threading.Event()

def worker(k):
    try:
        ok(cu.cuCtxPushCurrent(primary))
        buf = ok(cu.cuMemAlloc(N))
        host = bytearray(N)
        for r in range(ROUNDS):
            green = ok(cu.cuGreenCtxCreate(descs[k % len(descs)], 0, DEFAULT_STREAM))
            gs = ok(cu.cuGreenCtxStreamCreate(green, NON_BLOCKING, 0))
            ps = ok(cu.cuStreamCreate(0))  # blocking: ordered with the legacy stream
            e1, e2 = ok(cu.cuEventCreate(0)), ok(cu.cuEventCreate(0))
            value = (k * 31 + r) % 251
            ok(cu.cuMemsetD8Async(buf, value, N, gs))
            ok(cu.cuEventRecord(e1, gs))
            ok(cu.cuStreamWaitEvent(ps, e1, 0))
            ok(cu.cuMemcpyDtoHAsync(host, buf, N, ps))
            ok(cu.cuEventRecord(e2, ps))
            ok(cu.cuStreamQuery(cu.CUstream(2)) if r % 7 else (0,))  # the per-thread stream
            ok(cu.cuStreamDestroy(gs))       # work still queued on both: it must still run
            ok(cu.cuStreamDestroy(ps))
            ok(cu.cuEventSynchronize(e2))
            if host != bytes([value]) * N:
                errors.append(f"thread {k} round {r}: wrong data")
            ok(cu.cuEventDestroy(e1))
            ok(cu.cuEventDestroy(e2))
            ok(cu.cuGreenCtxDestroy(green))
            if r % 10 == 0:                  # the legacy stream too
                ok(cu.cuMemsetD8(buf, 0, N))
        ok(cu.cuCtxSynchronize())
        ok(cu.cuMemFree(buf))
        ok(cu.cuCtxPopCurrent())
    except BaseException as exc:
        errors.append(f"thread {k}: {exc!r}")

def syncer():
    ok(cu.cuCtxPushCurrent(primary))
    while not stop.is_set():
        ok(cu.cuCtxSynchronize())
    ok(cu.cuCtxPopCurrent())

threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
sync = threading.Thread(target=syncer)
sync.start()
for t in threads: t.start()
for t in threads: t.join()
stop.set()
sync.join()
sim.set_op_delay_us(0)
ok(cu.cuCtxSynchronize())
arena = sim.arena_stats()
reuses = {k: arena[k]["reuses"] for k in ("stream", "event", "green_context")}
print(json.dumps(dict(errors=errors[:5], hazards=sim.hazards()[:5],
                      left=sim.live_objects_since(before), reuses=reuses)))
"""


def test_threads_creating_using_and_destroying_leave_nothing_and_no_hazard():
    out = json.loads(run_python(STRESS).splitlines()[-1])
    assert out["errors"] == [], out
    assert out["hazards"] == [], out
    assert out["left"] == {}, out
    assert out["reuses"]["stream"] > 0 and out["reuses"]["event"] > 0, out
