"""cuGetProcAddress: the version rule, not-found answers, and the driver version limit."""

import ctypes

import pytest
from cuda.bindings import driver

import greenres.sim as sim

from support.simhelpers import E, check, requires_bindings, run_python

pytestmark = pytest.mark.sim_only

LIB = ctypes.CDLL(str(sim.LIBRARY_PATH))
LIB.cuGetProcAddress_v2.argtypes = [
    ctypes.c_char_p,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.c_int,
    ctypes.c_uint64,
    ctypes.POINTER(ctypes.c_int),
]
LIB.cuGetProcAddress_v2.restype = ctypes.c_int


def lookup(name, version, flags=0):
    fn = ctypes.c_void_p()
    status = ctypes.c_int(-1)
    err = LIB.cuGetProcAddress_v2(
        name.encode(), ctypes.byref(fn), version, flags, ctypes.byref(status)
    )
    return err, fn.value, status.value


def symbol(name):
    return ctypes.cast(getattr(LIB, name), ctypes.c_void_p).value


@pytest.mark.parametrize(
    "name, version, expected",
    [
        ("cuCtxPushCurrent", 4000, "cuCtxPushCurrent_v2"),
        ("cuCtxPushCurrent", 13000, "cuCtxPushCurrent_v2"),
        ("cuMemAlloc", 3020, "cuMemAlloc_v2"),
        ("cuStreamGetCtx", 9020, "cuStreamGetCtx"),
        ("cuStreamGetCtx", 12050, "cuStreamGetCtx_v2"),
        ("cuStreamGetCaptureInfo", 12030, "cuStreamGetCaptureInfo_v3"),
        ("cuStreamGetCaptureInfo", 11030, "cuStreamGetCaptureInfo_v2"),
        ("cuLaunchHostFunc", 10000, "cuLaunchHostFunc"),
        ("cuLaunchHostFunc", 13020, "cuLaunchHostFunc_v2"),
        ("cuDeviceGetUuid", 11040, "cuDeviceGetUuid_v2"),
        ("cuEventElapsedTime", 12080, "cuEventElapsedTime_v2"),
    ],
)
def test_highest_variant_not_above_the_requested_version(name, version, expected):
    err, fn, status = lookup(name, version)
    assert (err, status) == (0, 0)
    assert fn == symbol(expected)


def test_version_below_every_variant_is_not_sufficient():
    err, fn, status = lookup("cuGreenCtxCreate", 12000)
    assert err == int(E.CUDA_ERROR_NOT_FOUND) and fn is None
    assert status == int(
        driver.CUdriverProcAddressQueryResult.CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
    )


def test_unknown_and_unsimulated_names_are_not_found():
    for name in ("cuNoSuchFunction", "cuMemHostAlloc", "cuLinkCreate"):
        err, fn, status = lookup(name, 13000)
        assert err == int(E.CUDA_ERROR_NOT_FOUND) and fn is None
        assert status == int(
            driver.CUdriverProcAddressQueryResult.CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND
        )


def test_old_32bit_abi_variant_is_never_handed_out():
    err, fn, _ = lookup("cuMemAlloc", 2000)
    assert err == int(E.CUDA_ERROR_NOT_FOUND) and fn is None


def test_per_thread_flag_selects_ptsz_variant():
    flag = int(driver.CUdriverProcAddress_flags.CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM)
    err, fn_pt, _ = lookup("cuStreamSynchronize", 13000, flag)
    err2, fn, _ = lookup("cuStreamSynchronize", 13000)
    assert err == err2 == 0
    assert fn_pt != fn and fn == symbol("cuStreamSynchronize")
    # a function without a stream has no per-thread variant: the default one
    assert lookup("cuCtxPushCurrent", 13000, flag)[1] == symbol("cuCtxPushCurrent_v2")


def test_unimplemented_function_raises_function_not_found():
    from cuda.bindings._internal.utils import FunctionNotFoundError

    with pytest.raises(FunctionNotFoundError):
        driver.cuLinkCreate(0, None, None)


@requires_bindings("cuDevSmResourceSplit", "CU_DEV_SM_RESOURCE_GROUP_PARAMS", "cuGreenCtxGetId")
def test_driver_13000_hides_the_13_1_split():
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("h100", driver_version=13000)
        from cuda.bindings import driver
        from cuda.bindings._internal.utils import FunctionNotFoundError
        driver.cuInit(0)
        print(driver.cuDriverGetVersion()[1])
        res = driver.cuDeviceGetDevResource(0, driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM)[1]
        try:
            driver.cuDevSmResourceSplit(1, res, 0, [driver.CU_DEV_SM_RESOURCE_GROUP_PARAMS()])
        except FunctionNotFoundError:
            print("split not found")
        print(driver.cuGreenCtxGetId(None)[0])
        """
    )
    lines = out.split("\n")
    assert lines[0] == "13000"
    assert lines[1] == "split not found"
    assert "CUDA_ERROR_INVALID_CONTEXT" in lines[2]  # found (no current green ctx), not missing


@requires_bindings("cuGreenCtxGetId")
def test_driver_12080_hides_green_ctx_get_id():
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("h100", driver_version=12080)
        from cuda.bindings import driver
        from cuda.bindings._internal.utils import FunctionNotFoundError
        driver.cuInit(0)
        try:
            driver.cuGreenCtxGetId(None)
        except FunctionNotFoundError:
            print("not found")
        """
    )
    assert out.strip() == "not found"


def test_driver_12040_hides_green_ctx_stream_create():
    """The driver-version limit with a function every supported cuda-bindings has (12.5)."""
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("h100", driver_version=12040)
        from cuda.bindings import driver
        from cuda.bindings._internal.utils import FunctionNotFoundError
        driver.cuInit(0)
        print(driver.cuDriverGetVersion()[1])
        res = driver.cuDeviceGetDevResource(0, driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM)[1]
        print(res.sm.smCount)  # 12.4 functions are there
        try:
            driver.cuGreenCtxStreamCreate(None, 1, 0)
        except FunctionNotFoundError:
            print("not found")
        """
    )
    assert out.split("\n")[:3] == ["12040", "132", "not found"]


def test_error_names_and_strings_cover_every_curesult():
    for code in driver.CUresult:
        err, name = driver.cuGetErrorName(code)
        assert err == E.CUDA_SUCCESS and name.decode() == code.name
        err, text = driver.cuGetErrorString(code)
        assert err == E.CUDA_SUCCESS and text
    assert driver.cuGetErrorName(99999)[0] == E.CUDA_ERROR_INVALID_VALUE


def test_driver_version_default_is_13010():
    assert check(driver.cuDriverGetVersion()) == 13010


# A feature attribute the simulator reports as 1 promises the driver calls that use it:
# libraries (cuda.core) take those paths on the attribute's word. Each entry: the calls
# of the feature; every attribute below that reads 1 must have all of them.
FEATURE_CALLS = {
    "MEMORY_POOLS_SUPPORTED": ("cuDeviceGetMemPool", "cuMemAllocAsync", "cuMemPoolCreate"),
    "STREAM_PRIORITIES_SUPPORTED": ("cuCtxGetStreamPriorityRange",),
    "CLUSTER_LAUNCH": ("cuLaunchKernelEx",),
    "CAN_MAP_HOST_MEMORY": ("cuMemHostAlloc", "cuMemHostGetDevicePointer"),
    "UNIFIED_ADDRESSING": ("cuPointerGetAttribute",),
    "MANAGED_MEMORY": ("cuMemAllocManaged",),
    "HOST_REGISTER_SUPPORTED": ("cuMemHostRegister",),
    "VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED": ("cuMemCreate", "cuMemMap"),
    "COOPERATIVE_LAUNCH": ("cuLaunchCooperativeKernel",),
    "GENERIC_COMPRESSION_SUPPORTED": ("cuMemCreate",),
    "HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED": ("cuMemExportToShareableHandle",),
}


@pytest.mark.parametrize("profile", ["h100", "a100", "b200"])
def test_every_advertised_feature_has_its_driver_calls(profile):
    out = run_python(
        f"""
        import greenres.sim as sim
        sim.install({profile!r})
        from cuda.bindings import driver as d
        FEATURES = {FEATURE_CALLS!r}
        d.cuInit(0)
        dev = d.cuDeviceGet(0)[1]
        missing = []
        for name, calls in FEATURES.items():
            attr = getattr(d.CUdevice_attribute, "CU_DEVICE_ATTRIBUTE_" + name)
            if d.cuDeviceGetAttribute(attr, dev)[1] != 1:
                continue
            for call in calls:
                err = d.cuGetProcAddress(call.encode(), 13010, 0)[0]
                if err != d.CUresult.CUDA_SUCCESS:
                    missing.append((name, call))
        print(missing)
        """
    )
    assert out.strip() == "[]"
