"""Streams really run: in order per stream, with real cross-stream dependencies."""

import ctypes
import threading

import pytest
from cuda.bindings import driver

import greenres.sim as sim

from support.simhelpers import (
    NON_BLOCKING,
    E,
    check,
    device_resource,
    error_of,
    event,
    green_stream,
    make_green,
    split,
    stream,
    take_destroyed_handle_hazards,
)
from support.streamgate import Gate, host_fn

pytestmark = pytest.mark.sim_only

N = 1 << 16


def host_buffer(n=N):
    return (ctypes.c_uint8 * n)()


def produce_then_consume(wait):
    """Stream a fills a buffer while held by a gate; stream b copies it out, with or without
    a wait. Without the wait, b's copy finishes while a is still held."""
    a, b = stream(), stream()
    buf = check(driver.cuMemAlloc(N))
    check(driver.cuMemsetD8(buf, 0, N))
    ev = event(driver.CUevent_flags.CU_EVENT_DISABLE_TIMING)
    out = host_buffer()
    with Gate(a) as gate:
        check(driver.cuMemsetD8Async(buf, 7, N, a))
        check(driver.cuEventRecord(ev, a))
        if wait:
            check(driver.cuStreamWaitEvent(b, ev, 0))
        check(driver.cuMemcpyDtoHAsync(out, buf, N, b))
        if wait:
            gate.open()
        check(driver.cuStreamSynchronize(b))
    check(driver.cuStreamSynchronize(a))
    result = bytes(out)
    for s in (a, b):
        check(driver.cuStreamDestroy(s))
    check(driver.cuEventDestroy(ev))
    check(driver.cuMemFree(buf))
    return result


def test_missing_wait_produces_wrong_data(ctx):
    assert produce_then_consume(wait=False) == bytes(N)  # the copy overtook the memset


def test_wait_event_produces_right_data(ctx):
    assert produce_then_consume(wait=True) == bytes([7]) * N


def test_work_in_one_stream_runs_in_order(ctx):
    sim.set_op_delay_us(2000)
    s = stream()
    buf = check(driver.cuMemAlloc(16))
    for v in range(1, 6):
        check(driver.cuMemsetD32Async(buf, v, 4, s))
    out = (ctypes.c_uint32 * 4)()
    check(driver.cuMemcpyDtoHAsync(out, buf, 16, s))
    assert error_of(driver.cuStreamQuery(s)) == E.CUDA_ERROR_NOT_READY
    check(driver.cuStreamSynchronize(s))
    assert list(out) == [5] * 4
    assert error_of(driver.cuStreamQuery(s)) == E.CUDA_SUCCESS
    check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(buf))


def test_legacy_stream_waits_for_blocking_streams_only(ctx):
    sim.set_op_delay_us(20000)
    blocking, non_blocking = stream(0), stream()
    b1, b2 = check(driver.cuMemAlloc(N)), check(driver.cuMemAlloc(N))
    check(driver.cuMemsetD8(b1, 0, N))
    check(driver.cuMemsetD8(b2, 0, N))
    check(driver.cuMemsetD8Async(b1, 1, N, blocking))
    o1, o2 = host_buffer(), host_buffer()
    with Gate(non_blocking):  # keeps it busy
        check(driver.cuMemsetD8Async(b2, 2, N, non_blocking))
        check(driver.cuMemcpyDtoHAsync(o1, b1, N, driver.CUstream(driver.CU_STREAM_LEGACY)))
        check(driver.cuMemcpyDtoHAsync(o2, b2, N, driver.CUstream(driver.CU_STREAM_LEGACY)))
        check(driver.cuStreamSynchronize(driver.CUstream(driver.CU_STREAM_LEGACY)))
    assert bytes(o1) == bytes([1]) * N  # implicit synchronisation with the blocking stream
    assert bytes(o2) == bytes(N)  # none with the non-blocking one
    check(driver.cuCtxSynchronize())
    for s in (blocking, non_blocking):
        check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(b1))
    check(driver.cuMemFree(b2))


def test_host_function_runs_in_stream_order(ctx):
    sim.set_op_delay_us(5000)
    s = stream()
    seen = []
    buf = check(driver.cuMemAlloc(4))
    check(driver.cuMemsetD32Async(buf, 3, 1, s))

    out = (ctypes.c_uint32 * 1)()

    def cb(data):
        seen.append(out[0])

    check(driver.cuMemcpyDtoHAsync(out, buf, 4, s))
    check(driver.cuLaunchHostFunc(s, host_fn(cb), None))
    check(driver.cuStreamSynchronize(s))
    assert seen == [3]
    check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(buf))


def test_events_timing_and_errors(ctx):
    s = stream()
    a, b = event(), event()
    never = event()
    no_timing = event(driver.CUevent_flags.CU_EVENT_DISABLE_TIMING)
    assert error_of(driver.cuEventQuery(never)) == E.CUDA_SUCCESS  # never recorded: complete
    check(driver.cuEventRecord(a, s))
    sim.set_op_delay_us(2000)
    check(driver.cuLaunchHostFunc(s, host_fn(lambda _: None), None))
    check(driver.cuEventRecord(b, s))
    check(driver.cuEventRecord(no_timing, s))
    check(driver.cuEventSynchronize(b))
    ms = check(driver.cuEventElapsedTime(a, b))
    assert ms >= 1.0
    assert error_of(driver.cuEventElapsedTime(a, never)) == E.CUDA_ERROR_INVALID_HANDLE
    assert error_of(driver.cuEventElapsedTime(a, no_timing)) == E.CUDA_ERROR_INVALID_HANDLE
    assert (
        error_of(driver.cuEventCreate(driver.CUevent_flags.CU_EVENT_INTERPROCESS))
        == E.CUDA_ERROR_INVALID_VALUE
    )
    for e in (a, b, never, no_timing):
        check(driver.cuEventDestroy(e))
    assert error_of(driver.cuEventQuery(a)) == E.CUDA_ERROR_INVALID_HANDLE
    assert take_destroyed_handle_hazards() == [
        f"destroyed_handle: cuEventQuery: event handle {int(a):#x} was destroyed"
    ]
    check(driver.cuStreamDestroy(s))


def test_stream_properties(ctx):
    least, greatest = check(driver.cuCtxGetStreamPriorityRange())
    assert (least, greatest) == (0, -5)
    s = check(driver.cuStreamCreateWithPriority(NON_BLOCKING, -99))
    assert check(driver.cuStreamGetPriority(s)) == -5  # clamped
    assert check(driver.cuStreamGetFlags(s)) == int(NON_BLOCKING)
    assert int(check(driver.cuStreamGetDevice(s))) == 0
    assert int(check(driver.cuStreamGetCtx(s))) == int(ctx)
    c, g = check(driver.cuStreamGetCtx_v2(s))
    assert int(c) == int(ctx) and int(g) == 0
    i1, i2 = check(driver.cuStreamGetId(s)), check(driver.cuStreamGetId(driver.CUstream(0)))
    assert i1 != i2
    check(driver.cuStreamDestroy(s))
    assert error_of(driver.cuStreamDestroy(s)) == E.CUDA_ERROR_INVALID_HANDLE
    assert take_destroyed_handle_hazards() == [
        f"destroyed_handle: cuStreamDestroy: stream handle {int(s):#x} was destroyed"
    ]
    assert error_of(driver.cuStreamCreate(0x8)) == E.CUDA_ERROR_INVALID_VALUE


def test_memory_validation_and_info(ctx):
    free0, total = check(driver.cuMemGetInfo())
    assert total == 80 << 30
    p = check(driver.cuMemAlloc(1000))
    assert check(driver.cuMemGetInfo())[0] < free0
    out = host_buffer(16)
    assert (
        error_of(driver.cuMemcpyDtoH(out, int(p) + 996, 16)) == E.CUDA_ERROR_INVALID_VALUE
    )  # past the end
    assert error_of(driver.cuMemsetD8(12345678, 0, 4)) == E.CUDA_ERROR_INVALID_VALUE
    assert error_of(driver.cuMemAlloc(0)) == E.CUDA_ERROR_INVALID_VALUE
    assert error_of(driver.cuMemAlloc(1 << 50)) == E.CUDA_ERROR_OUT_OF_MEMORY
    src = (ctypes.c_uint8 * 16)(*range(16))
    check(driver.cuMemcpyHtoD(p, src, 16))
    q = check(driver.cuMemAlloc(16))
    check(driver.cuMemcpyDtoD(q, p, 16))
    check(driver.cuMemcpyDtoH(out, q, 16))
    assert list(out) == list(range(16))
    check(driver.cuMemFree(p))
    check(driver.cuMemFree(q))
    assert error_of(driver.cuMemFree(p)) == E.CUDA_ERROR_INVALID_VALUE
    assert check(driver.cuMemGetInfo())[0] == free0


def test_calls_before_a_context_need_one():
    assert error_of(driver.cuStreamCreate(0)) == E.CUDA_ERROR_INVALID_CONTEXT
    assert error_of(driver.cuMemAlloc(16)) == E.CUDA_ERROR_INVALID_CONTEXT


def test_green_streams_run_concurrently_with_their_own_order(ctx):
    groups, _ = split(device_resource(), 2, 16)
    g1, g2 = make_green(groups[:1]), make_green(groups[1:2])
    s1, s2 = green_stream(g1), green_stream(g2)
    sim.set_op_delay_us(10000)
    buf = check(driver.cuMemAlloc(N))
    check(driver.cuMemsetD8(buf, 0, N))
    check(driver.cuMemsetD8Async(buf, 9, N, s1))
    ev = event()
    check(driver.cuGreenCtxRecordEvent(g1, ev))  # all work of g1 so far
    check(driver.cuGreenCtxWaitEvent(g2, ev))
    out = host_buffer()
    check(driver.cuMemcpyDtoHAsync(out, buf, N, s2))
    check(driver.cuStreamSynchronize(s2))
    assert bytes(out) == bytes([9]) * N
    for s in (s1, s2):
        check(driver.cuStreamDestroy(s))
    check(driver.cuEventDestroy(ev))
    check(driver.cuMemFree(buf))
    check(driver.cuGreenCtxDestroy(g1))
    check(driver.cuGreenCtxDestroy(g2))


def test_threads_have_their_own_context_stack(ctx):
    seen = {}

    def worker():
        seen["current"] = int(check(driver.cuCtxGetCurrent()))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["current"] == 0
    assert int(check(driver.cuCtxGetCurrent())) == int(ctx)
