"""Green contexts: creation rules, the CUcontext view, streams, destruction, hazards."""

import threading

import pytest
from cuda.bindings import driver

import greenres.sim as sim

from support.simhelpers import (
    SM,
    E,
    check,
    device_resource,
    error_of,
    green_stream,
    make_green,
    requires_bindings,
    split,
    take_destroyed_handle_hazards,
)

pytestmark = pytest.mark.sim_only

DEFAULT_STREAM = driver.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM


def one_green(count=16):
    groups, _ = split(device_resource(), 1, count)
    return make_green(groups)


def test_default_stream_flag_is_required(ctx):
    groups, _ = split(device_resource(), 1, 8)
    desc = check(driver.cuDevResourceGenerateDesc(groups, 1))
    assert error_of(driver.cuGreenCtxCreate(desc, 0, 0)) == E.CUDA_ERROR_INVALID_VALUE
    assert error_of(driver.cuGreenCtxCreate(desc, 5, DEFAULT_STREAM)) == E.CUDA_ERROR_INVALID_DEVICE
    g = check(driver.cuGreenCtxCreate(desc, 0, DEFAULT_STREAM))
    check(driver.cuGreenCtxDestroy(g))
    assert error_of(driver.cuGreenCtxDestroy(g)) == E.CUDA_ERROR_CONTEXT_IS_DESTROYED
    (hazard,) = take_destroyed_handle_hazards()
    assert hazard.startswith("destroyed_handle: cuGreenCtxDestroy: green context handle 0x")


def test_green_ctx_retains_the_primary_context_and_notes_the_slow_path():
    sim.clear_hazards()
    assert sim.live_objects()["primary_context"] == 0
    g = one_green()
    assert sim.live_objects()["primary_context"] == 1  # retained by the green context
    assert any(h.startswith("green_ctx_created_without_primary_ctx:") for h in sim.hazards())
    check(driver.cuGreenCtxDestroy(g))
    assert sim.live_objects()["primary_context"] == 0
    sim.clear_hazards()


def test_no_slow_path_note_with_primary_active(ctx):
    sim.clear_hazards()
    g = one_green()
    assert sim.hazards() == []
    check(driver.cuGreenCtxDestroy(g))


def test_ctx_from_green_ctx_is_a_usable_context(ctx):
    g = one_green(24)
    gctx = check(driver.cuCtxFromGreenCtx(g))
    check(driver.cuCtxPushCurrent(gctx))
    res = check(driver.cuCtxGetDevResource(gctx, SM))
    assert res.sm.smCount == 24
    assert int(check(driver.cuCtxGetDevice())) == 0
    s = check(driver.cuStreamCreate(0))  # made while the green context is current: belongs to it
    assert int(check(driver.cuStreamGetGreenCtx(s))) == int(g)
    assert int(check(driver.cuStreamGetGreenCtx(driver.CUstream(0)))) == int(g)
    check(driver.cuStreamDestroy(s))
    assert int(check(driver.cuCtxPopCurrent())) == int(gctx)
    assert int(check(driver.cuStreamGetGreenCtx(driver.CUstream(0)))) == 0
    check(driver.cuGreenCtxDestroy(g))


@requires_bindings("cuGreenCtxGetId")
def test_green_ctx_get_id_of_the_current_green_context(ctx):
    g = one_green()
    gctx = check(driver.cuCtxFromGreenCtx(g))
    assert error_of(driver.cuGreenCtxGetId(None)) == E.CUDA_ERROR_INVALID_CONTEXT  # none current
    check(driver.cuCtxPushCurrent(gctx))
    assert check(driver.cuGreenCtxGetId(None)) == check(driver.cuGreenCtxGetId(g)) > 0
    check(driver.cuCtxPopCurrent())
    check(driver.cuGreenCtxDestroy(g))


def test_green_stream_needs_non_blocking_and_reports_its_contexts(ctx):
    g = one_green()
    assert error_of(driver.cuGreenCtxStreamCreate(g, 0, 0)) == E.CUDA_ERROR_INVALID_VALUE
    s = green_stream(g, priority=-3)
    assert check(driver.cuStreamGetPriority(s)) == -3
    c, gg = check(driver.cuStreamGetCtx_v2(s))
    assert int(gg) == int(g) and int(c) == int(ctx)  # the primary context of the device
    assert int(check(driver.cuStreamGetCtx(s))) == int(check(driver.cuCtxFromGreenCtx(g)))
    check(driver.cuStreamDestroy(s))
    check(driver.cuGreenCtxDestroy(g))


def test_destroy_detaches_streams(ctx):
    sim.clear_hazards()
    g = one_green()
    s = green_stream(g)
    check(driver.cuGreenCtxDestroy(g))
    if hasattr(E, "CUDA_ERROR_STREAM_DETACHED"):
        assert error_of(driver.cuStreamSynchronize(s)) == E.CUDA_ERROR_STREAM_DETACHED
        assert error_of(driver.cuStreamQuery(s)) == E.CUDA_ERROR_STREAM_DETACHED
    else:  # bindings 12.9 do not know CUDA_ERROR_STREAM_DETACHED (917, new in CUDA 13.0)
        for call in (driver.cuStreamSynchronize, driver.cuStreamQuery):
            with pytest.raises(ValueError, match="917"):
                call(s)
    assert any(h.startswith("stream_used_after_green_ctx_destroyed:") for h in sim.hazards())
    check(driver.cuStreamDestroy(s))  # the one call still allowed, but the order was wrong
    assert any(h.startswith("stream_destroyed_after_green_ctx:") for h in sim.hazards())
    sim.clear_hazards()


def test_streams_destroyed_first_record_no_hazard(ctx):
    sim.clear_hazards()
    g = one_green()
    s = green_stream(g)
    check(driver.cuStreamDestroy(s))
    check(driver.cuGreenCtxDestroy(g))
    assert sim.hazards() == []


def test_destroy_invalidates_a_capture_in_progress(ctx):
    g = one_green()
    s = green_stream(g)
    other = check(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING))
    ev = check(driver.cuEventCreate(0))
    check(driver.cuStreamBeginCapture(s, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED))
    check(driver.cuEventRecord(ev, s))
    check(driver.cuStreamWaitEvent(other, ev, 0))  # `other` joins the capture: it stays observable
    assert (
        check(driver.cuStreamIsCapturing(other))
        == driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_ACTIVE
    )
    check(driver.cuGreenCtxDestroy(g))
    status = check(driver.cuStreamIsCapturing(other))
    assert status == driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_INVALIDATED
    check(driver.cuStreamDestroy(s))
    check(driver.cuStreamDestroy(other))
    check(driver.cuEventDestroy(ev))
    sim.clear_hazards()


def test_green_event_calls_are_not_capturable(ctx):
    g = one_green()
    s = green_stream(g)
    ev = check(driver.cuEventCreate(0))
    check(driver.cuStreamBeginCapture(s, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL))
    assert error_of(driver.cuGreenCtxRecordEvent(g, ev)) == E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    status = check(driver.cuStreamIsCapturing(s))
    assert status == driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_INVALIDATED
    assert error_of(driver.cuStreamEndCapture(s)) == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    check(driver.cuStreamBeginCapture(s, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_GLOBAL))
    assert error_of(driver.cuGreenCtxWaitEvent(g, ev)) == E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    assert error_of(driver.cuStreamEndCapture(s)) == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    check(driver.cuEventDestroy(ev))
    check(driver.cuStreamDestroy(s))
    check(driver.cuGreenCtxDestroy(g))


def test_green_ctx_current_on_two_threads_is_a_hazard(ctx):
    sim.clear_hazards()
    g = one_green()
    gctx = check(driver.cuCtxFromGreenCtx(g))
    check(driver.cuCtxPushCurrent(gctx))
    done = threading.Event()

    def other():
        check(driver.cuCtxSetCurrent(gctx))  # the driver does not refuse: no locking
        check(driver.cuCtxSetCurrent(None))
        done.set()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert done.is_set()
    assert any(h.startswith("green_ctx_current_on_two_threads:") for h in sim.hazards())
    check(driver.cuCtxPopCurrent())
    sim.clear_hazards()
    # one thread after the other is fine
    t = threading.Thread(
        target=lambda: (check(driver.cuCtxSetCurrent(gctx)), check(driver.cuCtxSetCurrent(None)))
    )
    t.start()
    t.join()
    assert sim.hazards() == []
    check(driver.cuGreenCtxDestroy(g))


def test_green_ctx_sms_introspection_rejects_dead_contexts(ctx):
    g = one_green()
    assert len(sim.green_context_sms(g)) == 16
    check(driver.cuGreenCtxDestroy(g))
    with pytest.raises(ValueError):
        sim.green_context_sms(g)
