"""Soak: create/destroy cycles leave memory bounded, because the slots of destroyed objects are
reused (docs/simulator.md, "Handles"). Before slot reuse every green-context layout cycle cost
~11.5 KB and the event slab ran out after some 800k event cycles.

Each run is a fresh interpreter. The default run is short; GREENRES_SOAK=1 runs the full
length: 10,000 green-context layout cycles (split, descriptor, green context, stream, events,
some work, destroy all) and 1,000,000 event create/destroy cycles. Both check: RSS growth
under 5 MB from the first cycle on, every object freed (live objects back to where they
started), (almost) no new slot carved once the quarantine filled, and no hazard (so no call
received a destroyed handle).
"""

import json
import os

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

FULL = os.environ.get("GREENRES_SOAK") == "1"
LAYOUT_CYCLES = 10_000 if FULL else 1_500
EVENT_CYCLES = 1_000_000 if FULL else 60_000
RSS_LIMIT_KB = 5 * 1024
SANITIZED = os.environ.get("GREENRES_SANITIZED") == "1"

SOAK = r"""
import json, sys
import greenres.sim as sim
sim.install("h100")
from cuda.bindings import driver as cu

MODE, CYCLES = sys.argv[1], int(sys.argv[2])
NON_BLOCKING = cu.CUstream_flags.CU_STREAM_NON_BLOCKING
SM = cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
DEFAULT_STREAM = cu.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM
DISABLE_TIMING = cu.CUevent_flags.CU_EVENT_DISABLE_TIMING

def ok(result):
    assert result[0] == 0, result
    return result[1] if len(result) == 2 else result[1:]

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

ok(cu.cuInit(0))
primary = ok(cu.cuDevicePrimaryCtxRetain(0))
ok(cu.cuCtxPushCurrent(primary))
scratch = ok(cu.cuMemAlloc(4096))

def layout_cycle(i):
    res = ok(cu.cuDeviceGetDevResource(0, SM))
    groups, n, _ = ok(cu.cuDevSmResourceSplitByCount(2, res, 0, 16))
    parts = []
    for group in list(groups)[:n]:
        desc = ok(cu.cuDevResourceGenerateDesc([group], 1))
        green = ok(cu.cuGreenCtxCreate(desc, 0, DEFAULT_STREAM))
        s = ok(cu.cuGreenCtxStreamCreate(green, NON_BLOCKING, 0))
        enter, leave = ok(cu.cuEventCreate(DISABLE_TIMING)), ok(cu.cuEventCreate(DISABLE_TIMING))
        ok(cu.cuEventRecord(enter, cu.CUstream(0)))
        ok(cu.cuStreamWaitEvent(s, enter, 0))
        if i % 4 == 0:  # some queued work: a worker thread, which the reclaim waits for
            ok(cu.cuMemsetD8Async(scratch, i % 256, 4096, s))
        ok(cu.cuEventRecord(leave, s))
        ok(cu.cuStreamWaitEvent(cu.CUstream(0), leave, 0))
        parts.append((green, s, enter, leave))
    ok(cu.cuStreamSynchronize(cu.CUstream(0)))  # waits for `leave`: the work is done
    for green, s, enter, leave in parts:  # streams and events first, then the green context
        ok(cu.cuEventDestroy(enter))
        ok(cu.cuEventDestroy(leave))
        ok(cu.cuStreamDestroy(s))
        ok(cu.cuGreenCtxDestroy(green))

def event_cycle(i):
    ok(cu.cuEventDestroy(ok(cu.cuEventCreate(0))))

cycle = layout_cycle if MODE == "layout" else event_cycle
cycle(0)  # first use of each code path
ok(cu.cuCtxSynchronize())
before, rss0 = sim.live_objects(), rss_kb()
half = CYCLES // 2
for i in range(1, half + 1):
    cycle(i)
ok(cu.cuCtxSynchronize())
slots_half = {k: v["slots"] for k, v in sim.arena_stats().items()}
for i in range(half + 1, CYCLES + 1):
    cycle(i)
ok(cu.cuCtxSynchronize())
arena = sim.arena_stats()
print(json.dumps(dict(
    rss_growth_kb=rss_kb() - rss0,
    live_delta=sim.live_objects_since(before),
    live=sim.live_objects(),
    new_slots_second_half={k: v["slots"] - slots_half[k] for k, v in arena.items()},
    arena=arena,
    hazards=sim.hazards()[:5],
)))
"""


def soak(mode, cycles):
    out = run_python(SOAK.replace("sys.argv[1], int(sys.argv[2])", f"{mode!r}, {cycles}"))
    return json.loads(out.splitlines()[-1])


def check_bounded(out, slack=0):
    """``slack``: new slots allowed in the second half, for objects whose reclaim waits for
    a worker thread to exit (a few may be in flight when a new peak is reached); without
    slot reuse the second half would carve one slot per object it made."""
    assert out["hazards"] == [], out
    assert out["live_delta"] == {}, out
    # Under scripts/sanitize ASan keeps freed heap blocks in its own quarantine (256 MB by
    # default) and maps shadow memory: RSS measures ASan there, the slot counts still hold.
    if not SANITIZED:
        assert out["rss_growth_kb"] < RSS_LIMIT_KB, out
    assert all(0 <= n <= slack for n in out["new_slots_second_half"].values()), out


def test_green_context_layout_cycles_stay_bounded():
    out = soak("layout", LAYOUT_CYCLES)
    check_bounded(out, slack=16)
    # What this process still has: the retained primary context and its scratch allocation.
    assert {k: v for k, v in out["live"].items() if v} == {"primary_context": 1, "allocation": 1}
    arena = out["arena"]
    for kind in ("context", "green_context", "stream", "event"):
        assert arena[kind]["reuses"] > 0, arena
    # Equal descriptors share one object: one per distinct SM set, not one per cycle.
    assert arena["resource_descriptor"]["slots"] == 2, arena


def test_event_create_destroy_cycles_stay_bounded():
    out = soak("event", EVENT_CYCLES)
    check_bounded(out)
    assert out["arena"]["event"]["slots"] <= 1026, out["arena"]
