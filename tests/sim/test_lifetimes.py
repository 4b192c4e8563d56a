"""Slot reuse: the simulator reuses the slot of a destroyed object, but only once nothing
inside it refers to the object any more (queued work, a worker, a context's streams), and a
stale handle to the old object never reaches the newer one in its slot (the generation in the
handle). See docs/simulator.md, "Handles".

Each scenario runs in a fresh interpreter: a fresh arena, so slot reuse is deterministic (a
reclaimed slot is handed out again once more than 1024 reclaimed slots of its kind wait).
"""

import json

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

PRELUDE = r"""
import json, threading, time
import greenres.sim as sim
sim.install("h100")
from cuda.bindings import __version__ as _bindings_version, driver as cu

# cuCtxCreate: the v4 ABI (params, flags, dev) in cuda-bindings 13, (flags, dev) in 12.9
_BINDINGS_13 = int(_bindings_version.split(".")[0]) >= 13
MASK = (1 << 48) - 1
NON_BLOCKING = cu.CUstream_flags.CU_STREAM_NON_BLOCKING
SM = cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
DEFAULT_STREAM = cu.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM

def ok(result):
    assert result[0] == 0, result
    return result[1] if len(result) == 2 else result[1:]

def addr(h):
    return int(h) & MASK

def churn(make, destroy, avoid, n):
    # Makes and destroys n objects; returns the first one that lands in avoid's slot (kept
    # alive), or None.
    for _ in range(n):
        h = make()
        if addr(h) == addr(avoid):
            return h
        destroy(h)
    return None

ok(cu.cuInit(0))
primary = ok(cu.cuDevicePrimaryCtxRetain(0))
ok(cu.cuCtxPushCurrent(primary))
make_stream = lambda: ok(cu.cuStreamCreate(NON_BLOCKING))
kill_stream = lambda h: ok(cu.cuStreamDestroy(h))
res = ok(cu.cuDeviceGetDevResource(0, SM))
desc = ok(cu.cuDevResourceGenerateDesc([res], 1))
make_green = lambda: ok(cu.cuGreenCtxCreate(desc, 0, DEFAULT_STREAM))
kill_green = lambda h: ok(cu.cuGreenCtxDestroy(h))
def make_ctx():
    c = ok(cu.cuCtxCreate(None, 0, 0) if _BINDINGS_13 else cu.cuCtxCreate(0, 0))
    ok(cu.cuCtxPopCurrent())
    return c
kill_ctx = lambda h: ok(cu.cuCtxDestroy(h))
out = {}
"""


def run(code):
    lines = run_python(PRELUDE + code).splitlines()
    return json.loads(lines[-1])


STREAM_WITH_QUEUED_WORK = r"""
s = make_stream()
n = 1 << 16
d = ok(cu.cuMemAlloc(n))
done = ok(cu.cuEventCreate(0))
sim.set_op_delay_us(400_000)
ok(cu.cuMemsetD8Async(d, 5, n, s))
ok(cu.cuEventRecord(done, s))
ok(cu.cuStreamDestroy(s))          # returns at once: the memset is still queued
out["taken_while_queued"] = churn(make_stream, kill_stream, s, 2500) is not None
out["still_queued"] = int(cu.cuEventQuery(done)[0])   # 600: NOT_READY, the churn was quick
free_while_queued = sim.arena_stats()["stream"]["free"]  # the churn's streams had no worker
sim.set_op_delay_us(0)             # (read when an op runs: the memset sleeps already)
ok(cu.cuCtxSynchronize())          # waits for the destroyed stream's work
# s's worker hands its slot back as it exits, a moment after the work it ran completed:
# wait for that, or a loaded machine's churn below could end before the slot is free.
deadline = time.monotonic() + 30
while sim.arena_stats()["stream"]["free"] == free_while_queued and time.monotonic() < deadline:
    time.sleep(0.001)
host = bytearray(n)
ok(cu.cuMemcpyDtoH(host, d, n))
out["work_done"] = host == bytes([5]) * n
newer = churn(make_stream, kill_stream, s, 2500)  # drained: now the slot comes back
out["reused_after"] = newer is not None and int(newer) != int(s)
out["hazards"] = sim.hazards()
print(json.dumps(out))
"""


def test_a_destroyed_stream_keeps_its_slot_until_its_queued_work_ran():
    out = run(STREAM_WITH_QUEUED_WORK)
    assert out["still_queued"] == 600, out  # else the check below proves nothing
    assert not out["taken_while_queued"], out
    assert out["work_done"], out
    assert out["reused_after"], out
    assert out["hazards"] == [], out


ORPHANED_CONTEXTS = r"""
# A user context destroyed with a user stream left (cuCtxDestroy leaves user streams as
# stale handles), after it had a legacy and a per-thread stream: its slot waits for the user
# stream; the internal streams ended with it.
c = ok(cu.cuCtxCreate(None, 0, 0) if _BINDINGS_13 else cu.cuCtxCreate(0, 0))
orphan = make_stream()
ok(cu.cuStreamQuery(cu.CUstream(0)))          # its legacy stream
ok(cu.cuStreamQuery(cu.CUstream(2)))          # its per-thread stream
ok(cu.cuCtxPopCurrent())
ok(cu.cuCtxDestroy(c))
out["ctx_taken_while_orphaned"] = churn(make_ctx, kill_ctx, c, 2500) is not None
out["orphan_use"] = int(cu.cuStreamQuery(orphan)[0])
out["orphan_hazards"] = [h for h in sim.hazards() if h.startswith("destroyed_handle")]
sim.clear_hazards()
ok(cu.cuStreamDestroy(orphan))                 # the cleanup still works
out["ctx_reused_after"] = churn(make_ctx, kill_ctx, c, 2500) is not None

# A green context destroyed before its stream (detached): the same.
g = make_green()
gs = ok(cu.cuGreenCtxStreamCreate(g, NON_BLOCKING, 0))
kill_green(g)
out["green_taken_while_detached"] = churn(make_green, kill_green, g, 2500) is not None
ok(cu.cuStreamDestroy(gs))
out["green_reused_after"] = churn(make_green, kill_green, g, 2500) is not None
out["hazards"] = sim.hazards()
out["live"] = {k: v for k, v in sim.live_objects().items() if v}
print(json.dumps(out))
"""


def test_a_context_keeps_its_slot_while_streams_of_it_are_left():
    out = run(ORPHANED_CONTEXTS)
    assert not out["ctx_taken_while_orphaned"], out
    assert out["orphan_use"] == 400, out  # CUDA_ERROR_INVALID_HANDLE
    assert len(out["orphan_hazards"]) == 1, out
    assert out["orphan_hazards"][0].startswith("destroyed_handle: cuStreamQuery: stream handle")
    assert out["orphan_hazards"][0].endswith("was destroyed, with its context"), out
    assert out["ctx_reused_after"], out
    assert not out["green_taken_while_detached"], out
    assert out["green_reused_after"], out
    assert [h.split(":")[0] for h in out["hazards"]] == ["stream_destroyed_after_green_ctx"], out
    # What is left: the primary context, the newer context and green context the churns kept.
    assert out["live"] == {"primary_context": 1, "context": 1, "green_context": 1}, out


STALE_STACK_ENTRIES = r"""
# Thread T has a context current; another thread destroys it and the slot is reused by a
# newer context. T's entry is stale: it reads as destroyed, never as the newer context.
c = make_ctx()
g = make_green()
g_ctx = ok(cu.cuCtxFromGreenCtx(g))
pushed, destroyed, finished = threading.Event(), threading.Event(), threading.Event()
seen = {}

def thread_t():
    ok(cu.cuCtxPushCurrent(c))
    ok(cu.cuCtxPushCurrent(g_ctx))                     # green on top, counted as current
    pushed.set()
    destroyed.wait()
    seen["current"] = int(ok(cu.cuCtxGetCurrent()))    # the handle T pushed, as pushed
    seen["create"] = int(cu.cuStreamCreate(NON_BLOCKING)[0])
    seen["popped_green"] = int(ok(cu.cuCtxPopCurrent()))
    seen["create_under"] = int(cu.cuStreamCreate(NON_BLOCKING)[0])
    seen["popped"] = int(ok(cu.cuCtxPopCurrent()))
    finished.set()

t = threading.Thread(target=thread_t)
t.start()
pushed.wait()
kill_green(g)
kill_ctx(c)
newer_c = churn(make_ctx, kill_ctx, c, 2500)
newer_g = churn(make_green, kill_green, g, 2500)
newer_g_ctx = ok(cu.cuCtxFromGreenCtx(newer_g))
sim.clear_hazards()
ok(cu.cuCtxPushCurrent(newer_g_ctx))                  # current here: counted once
destroyed.set()
finished.wait()
t.join()
out["seen"] = seen
out["handles"] = dict(c=int(c), g_ctx=int(g_ctx), newer_c=int(newer_c),
                      newer_g_ctx=int(newer_g_ctx))
out["t_hazards"] = sim.hazards()
sim.clear_hazards()

# T's stale pop must not have uncounted the newer green context: made current on a second
# thread now, it is current on two threads.
def thread_u():
    ok(cu.cuCtxPushCurrent(newer_g_ctx))
    ok(cu.cuCtxPopCurrent())
u = threading.Thread(target=thread_u)
u.start(); u.join()
ok(cu.cuCtxPopCurrent())
out["u_hazards"] = sim.hazards()
out["newer_ok"] = int(cu.cuCtxGetId(newer_c)[0])
print(json.dumps(out))
"""


def test_a_stale_context_stack_entry_reads_as_destroyed_never_as_the_newer_context():
    out = run(STALE_STACK_ENTRIES)
    seen, h = out["seen"], out["handles"]
    assert h["newer_c"] != h["c"] and h["newer_g_ctx"] != h["g_ctx"], out
    assert seen["current"] == h["g_ctx"], out
    assert seen["create"] == 709, out  # CUDA_ERROR_CONTEXT_IS_DESTROYED
    assert seen["popped_green"] == h["g_ctx"], out
    assert seen["create_under"] == 709, out
    assert seen["popped"] == h["c"], out
    t = out["t_hazards"]
    assert len(t) == 2, out
    for hazard, handle in zip(t, (h["g_ctx"], h["c"]), strict=True):
        assert hazard == (
            f"destroyed_handle: cuStreamCreate: context handle {handle:#x} was destroyed, "
            "its slot reused since, the current context of this thread"
        ), out
    assert [x.split(":")[0] for x in out["u_hazards"]] == ["green_ctx_current_on_two_threads"]
    assert out["newer_ok"] == 0, out


PER_THREAD_STREAMS = r"""
def worker():
    ok(cu.cuCtxPushCurrent(primary))
    ok(cu.cuStreamQuery(cu.CUstream(2)))  # makes this thread's per-thread stream
    ok(cu.cuCtxPopCurrent())

for _ in range(1500):
    t = threading.Thread(target=worker)
    t.start(); t.join()
stats = sim.arena_stats()["stream"]
out["slots"], out["reuses"] = stats["slots"], stats["reuses"]
print(json.dumps(out))
"""


def test_per_thread_streams_end_with_their_thread():
    """1500 threads that each used CU_STREAM_PER_THREAD: their streams are reclaimed when the
    threads exit, so the stream slab stops growing at the quarantine (1024 waiting slots)."""
    out = run(PER_THREAD_STREAMS)
    assert out["slots"] < 1100, out
    assert out["reuses"] > 400, out
