"""Memory pools and stream-ordered allocation (cuMemAllocAsync/cuMemFreeAsync): the
attribute that advertises them works, pool accounting, attributes, stream-ordered free,
errors; the memory features the simulator does not model are not advertised."""

import ctypes
import threading

import pytest

import greenres.sim as sim

from support.simhelpers import NON_BLOCKING, E, check, driver, take_destroyed_handle_hazards

pytestmark = pytest.mark.sim_only

A = driver.CUmemPool_attribute
DA = driver.CUdevice_attribute
HOSTFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _attr(pool, attr):
    return int(check(driver.cuMemPoolGetAttribute(pool, attr)))


def _set(pool, attr, value):
    check(driver.cuMemPoolSetAttribute(pool, attr, driver.cuuint64_t(value)))


def test_pools_are_advertised_and_the_unmodelled_memory_features_are_not(ctx):
    dev = check(driver.cuDeviceGet(0))
    assert (
        check(driver.cuDeviceGetAttribute(DA.CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, dev)) == 1
    )
    for absent in (
        DA.CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY,
        DA.CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS,
        DA.CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED,
        DA.CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
        DA.CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH,
        DA.CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY,  # cuMemHostAlloc is not modelled
        DA.CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING,  # nor cuPointerGetAttribute
    ):
        assert check(driver.cuDeviceGetAttribute(absent, dev)) == 0, absent


def test_async_allocations_come_from_the_current_pool_and_free_in_stream_order(ctx):
    dev = check(driver.cuDeviceGet(0))
    pool = check(driver.cuDeviceGetMemPool(dev))
    assert int(pool) == int(check(driver.cuDeviceGetDefaultMemPool(dev)))
    stream = check(driver.cuStreamCreate(NON_BLOCKING))
    used = _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT)
    free_before = check(driver.cuMemGetInfo())[0]
    ptr = check(driver.cuMemAllocAsync(1000, stream))
    assert _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT) == used + 1024  # 256-byte units
    assert check(driver.cuMemGetInfo())[0] == free_before - 1024
    check(driver.cuMemsetD8Async(ptr, 7, 1000, stream))
    out = bytearray(4)
    check(driver.cuMemcpyDtoHAsync(out, ptr, 4, stream))
    sim.set_op_delay_us(100_000)  # the free waits behind slow work on its stream
    check(driver.cuMemsetD8Async(ptr, 1, 1000, stream))
    check(driver.cuMemFreeAsync(ptr, stream))
    assert _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT) == used + 1024  # not reached yet
    check(driver.cuStreamSynchronize(stream))
    sim.set_op_delay_us(0)
    assert out == b"\x07" * 4
    assert _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT) == used
    assert sim.hazards() == []  # the memset ran before the free
    check(driver.cuStreamDestroy(stream))


def test_a_use_on_another_stream_without_a_dependency_is_caught(ctx):
    a = check(driver.cuStreamCreate(NON_BLOCKING))
    b = check(driver.cuStreamCreate(NON_BLOCKING))
    ptr = check(driver.cuMemAllocAsync(256, a))
    gate = threading.Event()
    hold = HOSTFN(lambda _: gate.wait(10))  # b is held until the free on a has run
    check(driver.cuLaunchHostFunc(b, ctypes.cast(hold, ctypes.c_void_p).value, 0))
    check(driver.cuMemsetD8Async(ptr, 1, 256, b))  # no event orders b before the free on a
    check(driver.cuMemFreeAsync(ptr, a))
    check(driver.cuStreamSynchronize(a))
    gate.set()
    check(driver.cuStreamSynchronize(b))
    assert any(h.startswith("memory_op_on_freed_memory") for h in sim.hazards())
    sim.clear_hazards()
    for s in (a, b):
        check(driver.cuStreamDestroy(s))


def _props(dev=0, **fields):
    props = driver.CUmemPoolProps()
    props.allocType = driver.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
    props.location.type = driver.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
    props.location.id = dev
    for k, v in fields.items():
        setattr(props, k, v)
    return props


def test_created_pool_attributes_threshold_trim_and_watermarks(ctx):
    before = sim.live_objects()["memory_pool"]
    pool = check(driver.cuMemPoolCreate(_props()))
    assert sim.live_objects()["memory_pool"] == before + 1
    stream = check(driver.cuStreamCreate(NON_BLOCKING))
    for flag in (
        A.CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES,
        A.CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC,
        A.CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES,
    ):
        assert _attr(pool, flag) == 1  # cuda.h: default enabled
        check(driver.cuMemPoolSetAttribute(pool, flag, 0))
        assert _attr(pool, flag) == 0
    assert _attr(pool, A.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD) == 0
    _set(pool, A.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, 4096)
    ptrs = [check(driver.cuMemAllocFromPoolAsync(2048, pool, stream)) for _ in range(4)]
    assert _attr(pool, A.CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT) == 8192
    for p in ptrs:
        check(driver.cuMemFreeAsync(p, stream))
    check(driver.cuStreamSynchronize(stream))
    assert _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT) == 0
    assert _attr(pool, A.CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT) == 4096  # kept: the threshold
    assert _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_HIGH) == 8192
    # The kept memory serves the next allocation without a new reservation.
    p = check(driver.cuMemAllocFromPoolAsync(2048, pool, stream))
    assert _attr(pool, A.CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT) == 4096
    check(driver.cuMemPoolTrimTo(pool, 0))
    assert _attr(pool, A.CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT) == 2048  # in use: cannot go
    # Watermarks reset only to zero, and then restart from the current value.
    err = driver.cuMemPoolSetAttribute(pool, A.CU_MEMPOOL_ATTR_USED_MEM_HIGH, driver.cuuint64_t(5))
    assert err[0] == E.CUDA_ERROR_INVALID_VALUE
    _set(pool, A.CU_MEMPOOL_ATTR_USED_MEM_HIGH, 0)
    assert _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_HIGH) == 2048
    err = driver.cuMemPoolSetAttribute(
        pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT, driver.cuuint64_t(0)
    )
    assert err[0] == E.CUDA_ERROR_INVALID_VALUE  # read-only
    # Destroyed with an allocation outstanding: freed when the allocation goes.
    check(driver.cuMemPoolDestroy(pool))
    assert sim.live_objects()["memory_pool"] == before + 1
    check(driver.cuMemFreeAsync(p, stream))
    check(driver.cuStreamSynchronize(stream))
    assert sim.live_objects()["memory_pool"] == before
    check(driver.cuStreamDestroy(stream))


def test_set_mem_pool_and_destroying_the_current_pool(ctx):
    dev = check(driver.cuDeviceGet(0))
    default = check(driver.cuDeviceGetDefaultMemPool(dev))
    pool = check(driver.cuMemPoolCreate(_props()))
    check(driver.cuDeviceSetMemPool(dev, pool))
    assert int(check(driver.cuDeviceGetMemPool(dev))) == int(pool)
    other = check(driver.cuDeviceGet(1))
    assert driver.cuDeviceSetMemPool(other, pool)[0] == E.CUDA_ERROR_INVALID_VALUE
    check(driver.cuMemPoolDestroy(pool))  # cuda.h: the default pool is current again
    assert int(check(driver.cuDeviceGetMemPool(dev))) == int(default)
    assert driver.cuMemPoolDestroy(default)[0] == E.CUDA_ERROR_INVALID_VALUE  # cannot be destroyed
    assert driver.cuMemPoolDestroy(pool)[0] == E.CUDA_ERROR_INVALID_VALUE
    (hazard,) = take_destroyed_handle_hazards()
    assert "memory pool handle" in hazard


POSIX_FD = driver.CUmemAllocationHandleType.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"allocType": driver.CUmemAllocationType(0)}, "CUDA_ERROR_INVALID_VALUE"),
        ({"handleTypes": POSIX_FD}, "CUDA_ERROR_NOT_SUPPORTED"),
    ],
)
def test_pool_create_refuses_what_is_not_modelled(ctx, fields, error):
    assert driver.cuMemPoolCreate(_props(**fields))[0] == getattr(E, error)


def test_pool_create_refuses_a_bad_location(ctx):
    assert driver.cuMemPoolCreate(_props(dev=7))[0] == E.CUDA_ERROR_INVALID_VALUE
    host = _props()
    host.location.type = driver.CUmemLocationType.CU_MEM_LOCATION_TYPE_HOST
    assert driver.cuMemPoolCreate(host)[0] == E.CUDA_ERROR_NOT_SUPPORTED


def test_async_allocation_errors(ctx):
    stream = check(driver.cuStreamCreate(NON_BLOCKING))
    assert driver.cuMemAllocAsync(0, stream)[0] == E.CUDA_ERROR_INVALID_VALUE
    assert driver.cuMemFreeAsync(12345, stream)[0] == E.CUDA_ERROR_INVALID_VALUE
    sync_ptr = check(driver.cuMemAlloc(256))
    check(driver.cuMemFreeAsync(sync_ptr, stream))  # any device allocation may be freed async
    check(driver.cuStreamSynchronize(stream))
    # An allocation while capturing would be a graph memory node: not modelled.
    check(
        driver.cuStreamBeginCapture(
            stream, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED
        )
    )
    assert driver.cuMemAllocAsync(256, stream)[0] == E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    assert driver.cuStreamEndCapture(stream)[0] == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    sim.inject_fault("cuMemAllocAsync", E.CUDA_ERROR_OUT_OF_MEMORY)
    used = sim.live_objects()["allocation"]
    assert driver.cuMemAllocAsync(256, stream)[0] == E.CUDA_ERROR_OUT_OF_MEMORY
    assert sim.live_objects()["allocation"] == used
    check(driver.cuStreamDestroy(stream))


def test_pool_access(ctx):
    pool = check(driver.cuMemPoolCreate(_props()))
    loc = driver.CUmemLocation()
    loc.type = driver.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
    loc.id = 0
    rw = driver.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_READWRITE
    assert check(driver.cuMemPoolGetAccess(pool, loc)) == rw
    loc.id = 1
    assert (
        check(driver.cuMemPoolGetAccess(pool, loc))
        == driver.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_NONE
    )
    desc = driver.CUmemAccessDesc()
    desc.location = loc
    desc.flags = rw
    check(driver.cuMemPoolSetAccess(pool, [desc], 1))
    assert check(driver.cuMemPoolGetAccess(pool, loc)) == rw
    check(driver.cuMemPoolDestroy(pool))


def test_threads_allocating_and_freeing_from_one_pool_balance(ctx):
    dev = check(driver.cuDeviceGet(0))
    pool = check(driver.cuDeviceGetMemPool(dev))
    used = _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT)
    primary = ctx
    errors = []

    def churn():
        check(driver.cuCtxPushCurrent(primary))
        s = check(driver.cuStreamCreate(NON_BLOCKING))
        for _ in range(300):
            err, p = driver.cuMemAllocAsync(512, s)
            if err != E.CUDA_SUCCESS or driver.cuMemFreeAsync(p, s)[0] != E.CUDA_SUCCESS:
                errors.append(err)
        check(driver.cuStreamSynchronize(s))
        check(driver.cuStreamDestroy(s))
        check(driver.cuCtxPopCurrent())

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _attr(pool, A.CU_MEMPOOL_ATTR_USED_MEM_CURRENT) == used
