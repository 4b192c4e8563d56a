"""A destroy or release call that fails (fault injection) has no side effect: the object stays
counted in live_objects() (a caller that ignores the error shows as a leak), stays usable, and
its slot is not reclaimed; a later successful call frees it. Driver-level, one case per
destroy/release function of the simulator.
"""

import time

import pytest

import greenres.sim as sim

from support.simhelpers import (
    NON_BLOCKING,
    E,
    check,
    ctx_create,
    device_resource,
    error_of,
    event,
    make_green,
    node_count,
    split,
    stream,
    take_destroyed_handle_hazards,
)
from support.simhelpers import driver as cu

pytestmark = pytest.mark.sim_only

FAULT = "CUDA_ERROR_UNKNOWN"


def _settled_free_slots():
    """Free slots per kind once earlier tests' destroyed streams are reclaimed: a stream's
    slot is freed by its worker thread as it exits, some time after cuStreamDestroy."""
    last = None
    for _ in range(400):
        now = {k: v["free"] for k, v in sim.arena_stats().items()}
        if now == last:
            return now
        last = now
        time.sleep(0.005)
    raise AssertionError(f"the simulator's slabs did not settle: {last}")


def _stream():
    s = stream()
    return s, lambda: cu.cuStreamDestroy(s), lambda: check(cu.cuStreamSynchronize(s))


def _event():
    e = event()
    s = stream()

    def use():
        check(cu.cuEventRecord(e, s))
        check(cu.cuEventSynchronize(e))

    def destroy():
        result = cu.cuEventDestroy(e)
        if result[0] == E.CUDA_SUCCESS:
            check(cu.cuStreamDestroy(s))
        return result

    return e, destroy, use


def _green():
    groups, _ = split(device_resource(), 1, 8)
    g = make_green(groups)

    def use():
        gs = check(cu.cuGreenCtxStreamCreate(g, NON_BLOCKING, 0))
        check(cu.cuStreamSynchronize(gs))
        check(cu.cuStreamDestroy(gs))
        assert sim.green_context_sms(g)

    return g, lambda: cu.cuGreenCtxDestroy(g), use


def _context():
    c = check(ctx_create())  # pushed: current on this thread

    def use():
        current = check(cu.cuCtxGetCurrent())
        assert int(current) == int(c)  # a failed destroy does not pop it either
        check(cu.cuCtxSynchronize())

    def destroy():
        return cu.cuCtxDestroy(c)  # pops it when it succeeds

    return c, destroy, use


def _primary():
    # Device 1: no other test of this process keeps its primary context retained.
    p = check(cu.cuDevicePrimaryCtxRetain(1))

    def use():
        _, active = check(cu.cuDevicePrimaryCtxGetState(1))
        assert active == 1
        check(cu.cuCtxPushCurrent(p))
        check(cu.cuCtxSynchronize())
        check(cu.cuCtxPopCurrent())

    return p, lambda: cu.cuDevicePrimaryCtxRelease(1), use


def _graph():
    g = check(cu.cuGraphCreate(0))
    return g, lambda: cu.cuGraphDestroy(g), lambda: node_count(g)


def _graph_exec():
    g = check(cu.cuGraphCreate(0))
    x = check(cu.cuGraphInstantiate(g, 0))
    s = stream()

    def use():
        check(cu.cuGraphLaunch(x, s))
        check(cu.cuStreamSynchronize(s))

    def destroy():
        result = cu.cuGraphExecDestroy(x)
        if result[0] == E.CUDA_SUCCESS:
            check(cu.cuStreamDestroy(s))
            check(cu.cuGraphDestroy(g))
        return result

    return x, destroy, use


def _allocation():
    d = check(cu.cuMemAlloc(4096))

    def use():
        check(cu.cuMemsetD8(d, 1, 4096))

    return d, lambda: cu.cuMemFree(d), use


CASES = {
    "cuStreamDestroy": (_stream, {"stream": 1}),
    "cuEventDestroy": (_event, {"event": 1, "stream": 1}),
    "cuGreenCtxDestroy": (_green, {"green_context": 1}),
    "cuCtxDestroy": (_context, {"context": 1}),
    "cuDevicePrimaryCtxRelease": (_primary, {"primary_context": 1}),
    "cuGraphDestroy": (_graph, {"graph": 1}),
    "cuGraphExecDestroy": (_graph_exec, {"graph": 1, "graph_exec": 1, "stream": 1}),
    "cuMemFree": (_allocation, {"allocation": 1}),
}


@pytest.mark.parametrize("function", sorted(CASES))
def test_a_failed_destroy_changes_nothing_and_the_object_stays_counted(ctx, function):
    make, made = CASES[function]
    before = sim.live_objects()
    _, destroy, use = make()
    assert sim.live_objects_since(before) == made
    free = _settled_free_slots()

    sim.inject_fault(function, FAULT)
    assert error_of(destroy()) == E.CUDA_ERROR_UNKNOWN
    assert sim.call_counts(function)[function] > 0
    # No side effect: still counted (a leak if the caller gives up here), still usable,
    # nothing reclaimed, no hazard.
    assert sim.live_objects_since(before) == made
    assert {k: v["free"] for k, v in sim.arena_stats().items()} == free
    use()
    assert sim.hazards() == []

    check(destroy())  # the fault fired once: now it is freed
    assert sim.live_objects_since(before) == {}
    assert take_destroyed_handle_hazards() == []
