"""Stream capture and graphs: replay with real data, joins, illegal calls, node contexts."""

import ctypes
import threading

import pytest
from cuda.bindings import driver

import greenres.sim as sim

from support.simhelpers import (
    BINDINGS_MAJOR,
    E,
    capture_info_v3,
    check,
    device_resource,
    error_of,
    green_ctx_id,
    green_stream,
    make_green,
    node_count,
    split,
    stream,
    take_destroyed_handle_hazards,
)

pytestmark = pytest.mark.sim_only

GLOBAL = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL
RELAXED = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED
ACTIVE = driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_ACTIVE
NONE = driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE


def test_capture_then_replay_moves_real_data(ctx):
    s = stream()
    src, dst = check(driver.cuMemAlloc(64)), check(driver.cuMemAlloc(64))
    check(driver.cuMemsetD8(dst, 0, 64))
    check(driver.cuStreamBeginCapture(s, GLOBAL))
    assert check(driver.cuStreamIsCapturing(s)) == ACTIVE
    check(driver.cuMemsetD32Async(src, 0xABCD, 16, s))
    check(driver.cuMemcpyDtoDAsync(dst, src, 64, s))
    graph = check(driver.cuStreamEndCapture(s))
    assert check(driver.cuStreamIsCapturing(s)) == NONE
    assert node_count(graph) == 2
    out = (ctypes.c_uint32 * 16)()
    check(driver.cuMemcpyDtoH(out, dst, 64))
    assert list(out) == [0] * 16  # capture does not run anything
    exe = check(driver.cuGraphInstantiate(graph, 0))
    check(driver.cuGraphLaunch(exe, s))
    check(driver.cuStreamSynchronize(s))
    check(driver.cuMemcpyDtoH(out, dst, 64))
    assert list(out) == [0xABCD] * 16
    live = sim.live_objects()
    assert live["graph"] >= 1 and live["graph_exec"] >= 1
    check(driver.cuGraphExecDestroy(exe))
    check(driver.cuGraphDestroy(graph))
    check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(src))
    check(driver.cuMemFree(dst))


def test_capture_info_reports_id_graph_and_dependencies(ctx):
    s = stream()
    buf = check(driver.cuMemAlloc(16))
    check(driver.cuStreamBeginCapture(s, GLOBAL))
    check(driver.cuMemsetD8Async(buf, 1, 16, s))
    try:
        status, cid, graph, deps, _edges, n = check(capture_info_v3(s))
        assert status == ACTIVE and int(cid) > 0 and n == 1 and len(deps) == 1
        if BINDINGS_MAJOR < 13:  # 12.x: cuStreamGetCaptureInfo is the 11030 ABI (no edge data)
            status2, cid2, graph2, deps2, n2 = check(driver.cuStreamGetCaptureInfo(s))
            assert (status2, int(cid2), int(graph2), n2) == (ACTIVE, int(cid), int(graph), 1)
            assert len(deps2) == 1
    finally:  # never leave the capture running: it would fail every later test
        g = check(driver.cuStreamEndCapture(s))
    assert int(g) == int(graph)
    check(driver.cuGraphDestroy(g))
    check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(buf))


def test_fork_and_join_through_events(ctx):
    a, b = stream(), stream()
    fork, join = check(driver.cuEventCreate(0)), check(driver.cuEventCreate(0))
    buf = check(driver.cuMemAlloc(8))
    check(driver.cuStreamBeginCapture(a, GLOBAL))
    check(driver.cuMemsetD32Async(buf, 1, 1, a))
    check(driver.cuEventRecord(fork, a))
    check(driver.cuStreamWaitEvent(b, fork, 0))  # b joins the capture
    assert check(driver.cuStreamIsCapturing(b)) == ACTIVE
    check(driver.cuMemsetD32Async(int(buf) + 4, 2, 1, b))
    check(driver.cuEventRecord(join, b))
    check(driver.cuStreamWaitEvent(a, join, 0))
    graph = check(driver.cuStreamEndCapture(a))
    assert node_count(graph) == 2
    assert check(driver.cuStreamIsCapturing(b)) == NONE
    exe = check(driver.cuGraphInstantiate(graph, 0))
    check(driver.cuGraphLaunch(exe, a))
    out = (ctypes.c_uint32 * 2)()
    check(driver.cuStreamSynchronize(a))
    check(driver.cuMemcpyDtoH(out, buf, 8))
    assert list(out) == [1, 2]
    for h in (exe,):
        check(driver.cuGraphExecDestroy(h))
    check(driver.cuGraphDestroy(graph))
    for s in (a, b):
        check(driver.cuStreamDestroy(s))
    for e in (fork, join):
        check(driver.cuEventDestroy(e))
    check(driver.cuMemFree(buf))


def test_unjoined_fork_fails_end_capture(ctx):
    a, b = stream(), stream()
    fork = check(driver.cuEventCreate(0))
    buf = check(driver.cuMemAlloc(8))
    check(driver.cuStreamBeginCapture(a, GLOBAL))
    check(driver.cuEventRecord(fork, a))
    check(driver.cuStreamWaitEvent(b, fork, 0))
    check(driver.cuMemsetD8Async(buf, 1, 8, b))
    assert error_of(driver.cuStreamEndCapture(a)) == E.CUDA_ERROR_STREAM_CAPTURE_UNJOINED
    for s in (a, b):
        check(driver.cuStreamDestroy(s))
    check(driver.cuEventDestroy(fork))
    check(driver.cuMemFree(buf))


def test_illegal_calls_during_capture_invalidate_it(ctx):
    s = stream()
    check(driver.cuStreamBeginCapture(s, GLOBAL))
    assert error_of(driver.cuStreamSynchronize(s)) == E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    assert error_of(driver.cuStreamEndCapture(s)) == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    check(driver.cuStreamBeginCapture(s, GLOBAL))
    assert (
        error_of(driver.cuMemAlloc(16)) == E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    )  # unsafe in GLOBAL mode
    assert error_of(driver.cuStreamEndCapture(s)) == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    check(driver.cuStreamBeginCapture(s, RELAXED))
    p = check(driver.cuMemAlloc(16))  # allowed in RELAXED mode
    graph = check(driver.cuStreamEndCapture(s))
    check(driver.cuGraphDestroy(graph))
    check(driver.cuMemFree(p))
    assert error_of(
        driver.cuStreamBeginCapture(driver.CUstream(driver.CU_STREAM_LEGACY), GLOBAL)
    ) == (E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED)
    check(driver.cuStreamDestroy(s))


def test_event_create_and_context_push_pop_are_safe_during_a_global_capture(ctx):
    """What a first handoff through greenres' pool does while its stream captures: none of
    these calls invalidates the capture, even in the strictest mode."""
    s = stream()
    check(driver.cuStreamBeginCapture(s, GLOBAL))
    check(driver.cuCtxPushCurrent(ctx))
    event = check(driver.cuEventCreate(driver.CUevent_flags.CU_EVENT_DISABLE_TIMING))
    check(driver.cuCtxPopCurrent())
    check(driver.cuEventRecord(event, s))
    assert check(driver.cuStreamIsCapturing(s)) == (
        driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_ACTIVE
    )
    graph = check(driver.cuStreamEndCapture(s))
    check(driver.cuGraphDestroy(graph))
    check(driver.cuEventDestroy(event))
    check(driver.cuStreamDestroy(s))


def test_global_capture_on_another_thread_forbids_unsafe_calls(ctx):
    s = stream()
    check(driver.cuStreamBeginCapture(s, GLOBAL))
    seen = {}

    def other():
        check(driver.cuCtxSetCurrent(ctx))
        seen["err"] = error_of(driver.cuMemAlloc(16))
        check(driver.cuCtxSetCurrent(None))

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["err"] == E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    assert error_of(driver.cuStreamEndCapture(s)) == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    check(driver.cuStreamDestroy(s))


def test_waiting_on_an_uncaptured_event_crosses_the_boundary(ctx):
    s, t = stream(), stream()
    ev = check(driver.cuEventCreate(0))
    check(driver.cuEventRecord(ev, t))
    check(driver.cuStreamBeginCapture(s, GLOBAL))
    assert error_of(driver.cuStreamWaitEvent(s, ev, 0)) == E.CUDA_ERROR_STREAM_CAPTURE_ISOLATION
    assert error_of(driver.cuStreamEndCapture(s)) == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    for x in (s, t):
        check(driver.cuStreamDestroy(x))
    check(driver.cuEventDestroy(ev))


def test_captured_node_keeps_the_green_context_of_its_capture_stream(ctx):
    groups, _ = split(device_resource(), 2, 16)
    g1, g2 = make_green(groups[:1]), make_green(groups[1:])
    s1, s2 = green_stream(g1), green_stream(g2)
    plain = stream()
    buf = check(driver.cuMemAlloc(16))
    fork, join = check(driver.cuEventCreate(0)), check(driver.cuEventCreate(0))
    check(driver.cuStreamBeginCapture(s1, GLOBAL))
    check(driver.cuMemsetD8Async(buf, 1, 8, s1))
    check(driver.cuEventRecord(fork, s1))
    check(driver.cuStreamWaitEvent(plain, fork, 0))
    check(driver.cuMemsetD8Async(int(buf) + 8, 2, 8, plain))
    check(driver.cuEventRecord(join, plain))
    check(driver.cuStreamWaitEvent(s1, join, 0))
    graph = check(driver.cuStreamEndCapture(s1))
    id1 = green_ctx_id(g1)
    assert sim.graph_node_green_contexts(graph) == (id1, 0)
    # launched on g2's stream, the nodes still belong to g1 / no green context
    exe = check(driver.cuGraphInstantiate(graph, 0))
    check(driver.cuGraphLaunch(exe, s2))
    check(driver.cuStreamSynchronize(s2))
    out = (ctypes.c_uint8 * 16)()
    check(driver.cuMemcpyDtoH(out, buf, 16))
    assert list(out) == [1] * 8 + [2] * 8
    check(driver.cuGraphExecDestroy(exe))
    check(driver.cuGraphDestroy(graph))
    for s in (s1, s2, plain):
        check(driver.cuStreamDestroy(s))
    for e in (fork, join):
        check(driver.cuEventDestroy(e))
    check(driver.cuMemFree(buf))
    check(driver.cuGreenCtxDestroy(g1))
    check(driver.cuGreenCtxDestroy(g2))


def test_graph_create_and_errors(ctx):
    g = check(driver.cuGraphCreate(0))
    assert node_count(g) == 0
    assert error_of(driver.cuGraphCreate(1)) == E.CUDA_ERROR_INVALID_VALUE
    check(driver.cuGraphDestroy(g))
    assert error_of(driver.cuGraphDestroy(g)) == E.CUDA_ERROR_INVALID_VALUE
    (hazard,) = take_destroyed_handle_hazards()
    assert hazard.startswith("destroyed_handle: cuGraphDestroy: graph handle 0x")
