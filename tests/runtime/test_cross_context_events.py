"""The open question of issue 11: greenres' runtime records events created in the primary
context on green-context streams (and other partitions wait on them), while cuda.h says of
cuEventRecord that "hEvent and hStream must be from the same context otherwise
CUDA_ERROR_INVALID_HANDLE is returned". The simulator accepts it (it checks the device, see
docs/simulator.md, "Events across contexts"); this test asks a real driver
(``GREENRES_TEST_REAL_DRIVER=1 pytest -m gpu``, run by scripts/gpu-check).

Driver calls only (cuda.bindings), no greenres runtime: the answer must not depend on
greenres' own code."""

import pytest
from cuda.bindings import driver as cu

from support.rthelpers import SIM, ok

SM = cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
NBYTES = 256 << 20  # a memset long enough on a GPU for the wait to matter


def _two_green_contexts(device):
    whole = ok(cu.cuDeviceGetDevResource(device, SM))
    minimum = max(getattr(whole.sm, "minSmPartitionSize", 0), 8)
    groups, n, _rest = ok(cu.cuDevSmResourceSplitByCount(2, whole, 0, minimum))
    assert n == 2
    greens = []
    for group in list(groups)[:2]:
        desc = ok(cu.cuDevResourceGenerateDesc([group], 1))
        flags = cu.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM
        greens.append(ok(cu.cuGreenCtxCreate(desc, device, flags)))
    return greens


@pytest.mark.gpu
def test_a_primary_context_event_orders_work_across_green_contexts(primary):
    device = ok(cu.cuDeviceGet(0))
    ptr = ok(cu.cuMemAlloc(NBYTES))
    ok(cu.cuMemsetD8(ptr, 0, NBYTES))
    event = ok(cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DISABLE_TIMING))  # primary context
    greens = _two_green_contexts(device)
    nonblocking = cu.CUstream_flags.CU_STREAM_NON_BLOCKING
    a, b = (ok(cu.cuGreenCtxStreamCreate(g, nonblocking, 0)) for g in greens)
    if SIM:
        import greenres.sim

        greenres.sim.set_op_delay_us(50_000)  # the wait must hold b back for the data to be there
    try:
        ok(cu.cuMemsetD8Async(ptr, 0x5A, NBYTES, a))
        # The question: does a real driver accept a primary-context event on a green stream?
        assert cu.cuEventRecord(event, a)[0] == cu.CUresult.CUDA_SUCCESS
        assert cu.cuStreamWaitEvent(b, event, 0)[0] == cu.CUresult.CUDA_SUCCESS
        out = bytearray(16)
        ok(cu.cuMemcpyDtoHAsync(out, cu.CUdeviceptr(int(ptr) + NBYTES - 16), 16, b))
        ok(cu.cuStreamSynchronize(b))
        assert bytes(out) == b"\x5a" * 16  # b ran after a's memset
        assert cu.cuEventQuery(event)[0] == cu.CUresult.CUDA_SUCCESS
    finally:
        if SIM:
            greenres.sim.set_op_delay_us(0)
        for s in (a, b):
            ok(cu.cuStreamSynchronize(s))
            ok(cu.cuStreamDestroy(s))
        for g in greens:
            ok(cu.cuGreenCtxDestroy(g))
        ok(cu.cuEventDestroy(event))
        ok(cu.cuMemFree(ptr))
