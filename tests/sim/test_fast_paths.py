"""The simulator's inline fast paths keep stream semantics.

An event record on an idle stream completes at once (nothing is queued), a wait on a
completed event queues nothing; but a record on a busy stream must still complete only
after the work before it ran, and a wait on it must still order later work (wrong data
without the wait, right data with it). See docs/simulator.md, "Fast paths".
"""

import ctypes
import time

import pytest
from cuda.bindings import driver

from support.simhelpers import (
    E,
    check,
    device_resource,
    error_of,
    event,
    green_stream,
    make_green,
    node_count,
    split,
    stream,
)
from support.streamgate import Gate

pytestmark = pytest.mark.sim_only

N = 1 << 16
NO_TIMING = driver.CUevent_flags.CU_EVENT_DISABLE_TIMING
LEGACY = driver.CUstream(driver.CU_STREAM_LEGACY)
GLOBAL = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL
ACTIVE = driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_ACTIVE


def query(ev):
    return error_of(driver.cuEventQuery(ev))


def held_memset(buf, value, s):
    """An async memset on s that waits behind a closed gate: s is busy until it opens."""
    gate = Gate(s)
    check(driver.cuMemsetD8Async(buf, value, N, s))
    return gate


def zeroed(n=N):
    buf = check(driver.cuMemAlloc(n))
    check(driver.cuMemsetD8(buf, 0, n))
    return buf


@pytest.mark.parametrize("kind", ["non_blocking", "blocking", "legacy"])
def test_record_on_an_idle_stream_is_complete_at_once(ctx, kind):
    s = {"non_blocking": lambda: stream(), "blocking": lambda: stream(0), "legacy": lambda: None}[
        kind
    ]()
    target = LEGACY if s is None else s
    check(driver.cuCtxSynchronize())
    ev, a, b = event(NO_TIMING), event(0), event(0)
    for _ in range(3):  # again and again: the record reuses the completed signal
        check(driver.cuEventRecord(ev, target))
        assert query(ev) == E.CUDA_SUCCESS  # no worker had to run
    check(driver.cuEventRecord(a, target))
    time.sleep(0.01)
    check(driver.cuEventRecordWithFlags(b, target, 0))
    ms = check(driver.cuEventElapsedTime(a, b))  # both complete now, not NOT_READY
    assert 5.0 <= ms < 5000.0
    assert error_of(driver.cuStreamQuery(target)) == E.CUDA_SUCCESS
    for e in (ev, a, b):
        check(driver.cuEventDestroy(e))
    if s is not None:
        check(driver.cuStreamDestroy(s))


def test_wait_on_a_completed_event_queues_nothing(ctx):
    a, b = stream(), stream()
    ev = event(NO_TIMING)
    check(driver.cuEventRecord(ev, a))
    assert query(ev) == E.CUDA_SUCCESS
    never = event(NO_TIMING)
    for e in (ev, never):
        check(driver.cuStreamWaitEvent(b, e, 0))
        assert error_of(driver.cuStreamQuery(b)) == E.CUDA_SUCCESS  # nothing queued on b
    # Work after the record on a does not hold b back: the wait covered only the record.
    buf = zeroed()
    out = (ctypes.c_uint8 * N)()
    with held_memset(buf, 5, a):
        check(driver.cuMemcpyDtoHAsync(out, buf, N, b))
        check(driver.cuStreamSynchronize(b))  # returns while a is still held
        assert bytes(out) == bytes(N)
    check(driver.cuStreamSynchronize(a))
    for s in (a, b):
        check(driver.cuStreamDestroy(s))
    for e in (ev, never):
        check(driver.cuEventDestroy(e))
    check(driver.cuMemFree(buf))


@pytest.mark.parametrize("wait", [False, True])
def test_record_on_a_busy_stream_still_orders_work(ctx, wait):
    a, b = stream(), stream()
    ev = event(NO_TIMING)
    buf = zeroed()
    out = (ctypes.c_uint8 * N)()
    with held_memset(buf, 7, a) as gate:
        check(driver.cuEventRecord(ev, a))
        assert query(ev) == E.CUDA_ERROR_NOT_READY  # queued behind the memset, not inline
        if wait:
            check(driver.cuStreamWaitEvent(b, ev, 0))
            assert error_of(driver.cuStreamQuery(b)) == E.CUDA_ERROR_NOT_READY  # a real wait
        check(driver.cuMemcpyDtoHAsync(out, buf, N, b))
        if wait:
            assert error_of(driver.cuStreamQuery(b)) == E.CUDA_ERROR_NOT_READY
            gate.open()
        check(driver.cuStreamSynchronize(b))
        if wait:
            assert bytes(out) == bytes([7]) * N
            assert query(ev) == E.CUDA_SUCCESS
        else:
            assert bytes(out) == bytes(N)  # the copy overtook the memset
            assert query(ev) == E.CUDA_ERROR_NOT_READY
    check(driver.cuStreamSynchronize(a))
    assert query(ev) == E.CUDA_SUCCESS
    for s in (a, b):
        check(driver.cuStreamDestroy(s))
    check(driver.cuEventDestroy(ev))
    check(driver.cuMemFree(buf))


def test_record_waits_for_legacy_implicit_synchronisation(ctx):
    blocking, non_blocking = stream(0), stream()
    ev = event(NO_TIMING)
    buf = zeroed()
    # Busy legacy stream: a record on an idle blocking stream is ordered after it...
    ev2 = event(NO_TIMING)
    with held_memset(buf, 1, LEGACY):
        check(driver.cuEventRecord(ev, blocking))
        assert query(ev) == E.CUDA_ERROR_NOT_READY
        # ...one on an idle non-blocking stream is not.
        check(driver.cuEventRecord(ev2, non_blocking))
        assert query(ev2) == E.CUDA_SUCCESS
    check(driver.cuCtxSynchronize())
    assert query(ev) == E.CUDA_SUCCESS
    # Busy blocking stream: a record on the legacy stream waits for it; a busy
    # non-blocking stream does not hold the legacy stream back.
    with held_memset(buf, 2, blocking):
        check(driver.cuEventRecord(ev, LEGACY))
        assert query(ev) == E.CUDA_ERROR_NOT_READY
    check(driver.cuCtxSynchronize())
    with held_memset(buf, 3, non_blocking):
        check(driver.cuEventRecord(ev, LEGACY))
        assert query(ev) == E.CUDA_SUCCESS
    check(driver.cuCtxSynchronize())
    for s in (blocking, non_blocking):
        check(driver.cuStreamDestroy(s))
    for e in (ev, ev2):
        check(driver.cuEventDestroy(e))
    check(driver.cuMemFree(buf))


def test_green_ctx_record_is_inline_only_when_every_stream_is_idle(ctx):
    groups, _ = split(device_resource(), 2, 16)
    g1, g2 = make_green(groups[:1]), make_green(groups[1:2])
    s1, s2 = green_stream(g1), green_stream(g2)
    ev = event(NO_TIMING)
    check(driver.cuGreenCtxRecordEvent(g1, ev))
    assert query(ev) == E.CUDA_SUCCESS  # idle green context: complete at once
    buf = zeroed()
    out = (ctypes.c_uint8 * N)()
    with held_memset(buf, 9, s1):
        check(driver.cuGreenCtxRecordEvent(g1, ev))
        assert query(ev) == E.CUDA_ERROR_NOT_READY
        check(driver.cuGreenCtxWaitEvent(g2, ev))
        check(driver.cuMemcpyDtoHAsync(out, buf, N, s2))
        assert error_of(driver.cuStreamQuery(s2)) == E.CUDA_ERROR_NOT_READY  # held by g1
    check(driver.cuStreamSynchronize(s2))
    assert bytes(out) == bytes([9]) * N
    for s in (s1, s2):
        check(driver.cuStreamDestroy(s))
    check(driver.cuEventDestroy(ev))
    check(driver.cuMemFree(buf))
    check(driver.cuGreenCtxDestroy(g1))
    check(driver.cuGreenCtxDestroy(g2))


def test_record_on_an_idle_capturing_stream_still_forks(ctx):
    a, b = stream(), stream()
    fork, join = event(NO_TIMING), event(NO_TIMING)
    buf = check(driver.cuMemAlloc(8))
    check(driver.cuStreamBeginCapture(a, GLOBAL))
    check(driver.cuEventRecord(fork, a))  # idle queue, but capturing: a graph record
    check(driver.cuStreamWaitEvent(b, fork, 0))
    assert check(driver.cuStreamIsCapturing(b)) == ACTIVE  # b joined the capture
    check(driver.cuMemsetD32Async(buf, 4, 2, b))
    check(driver.cuEventRecord(join, b))
    check(driver.cuStreamWaitEvent(a, join, 0))
    graph = check(driver.cuStreamEndCapture(a))
    assert node_count(graph) == 1
    check(driver.cuGraphDestroy(graph))
    for s in (a, b):
        check(driver.cuStreamDestroy(s))
    for e in (fork, join):
        check(driver.cuEventDestroy(e))
    check(driver.cuMemFree(buf))
