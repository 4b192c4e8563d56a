"""Fixtures of the runtime tests; the helpers are in rthelpers.py."""

from __future__ import annotations

import pytest
from cuda.bindings import driver as cu

from support.rthelpers import SIM, Memory, ok


@pytest.fixture
def primary():
    """The primary context of device 0, retained and current for the test."""
    ok(cu.cuInit(0))
    device = ok(cu.cuDeviceGet(0))
    ctx = ok(cu.cuDevicePrimaryCtxRetain(device))
    ok(cu.cuCtxPushCurrent(ctx))
    try:
        yield ctx
    finally:
        ok(cu.cuCtxPopCurrent())
        ok(cu.cuDevicePrimaryCtxRelease(device))


@pytest.fixture
def memory(primary):
    mem = Memory()
    yield mem
    ok(cu.cuCtxSynchronize())
    mem.free_all()


@pytest.fixture
def caller_stream(primary):
    """A non-blocking stream of the primary context: the 'caller's stream'."""
    stream = ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING))
    yield stream
    ok(cu.cuStreamSynchronize(stream))
    ok(cu.cuStreamDestroy(stream))


@pytest.fixture
def op_delay():
    """``op_delay(us)``: every asynchronous op of the simulated driver sleeps this long
    before it runs, widening race windows (a no-op on a real GPU); 0 again after the test."""
    if not SIM:
        yield lambda _microseconds: None
        return
    import greenres.sim as s

    yield s.set_op_delay_us
    s.set_op_delay_us(0)


@pytest.fixture
def sim():
    """greenres.sim with a clean slate of hazards, faults and delays."""
    if not SIM:
        pytest.skip("needs the simulated driver")
    import greenres.sim as s

    s.clear_hazards()
    s.clear_faults()
    s.set_op_delay_us(0)
    yield s
    s.clear_faults()
    s.set_op_delay_us(0)
