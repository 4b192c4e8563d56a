"""Kernels run by host models: modules and libraries load PTX or cubin (entry names read
from the image), launches are queued in stream order and run the model registered by name,
a kernel without a model fails loudly, NVRTC output loads, %smid is the context's SMs."""

import ctypes
import json
import threading

import pytest

import greenres.sim as sim

from support import childprocess
from support.simhelpers import (
    NON_BLOCKING,
    E,
    check,
    device_resource,
    driver,
    make_green,
    run_python,
    split,
    stream,
    take_destroyed_handle_hazards,
)

pytestmark = pytest.mark.sim_only

PTX = b"""
.version 8.0
.target sm_90
.address_size 64
.visible .entry greenres_fill_u32(.param .u64 dst, .param .u32 value, .param .u64 n) { ret; }
.visible .entry greenres_spin_ns(.param .u64 ns) { ret; }
.visible .entry greenres_smid_probe(.param .u64 out) { ret; }
.visible .entry mystery() { ret; }
.visible .entry py_scale(.param .u64 dst, .param .u32 factor) { ret; }
"""
U64, U32, VP = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p
HOSTFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@pytest.fixture
def module(ctx):
    mod = check(driver.cuModuleLoadData(PTX))
    yield mod
    check(driver.cuCtxSynchronize())
    check(driver.cuModuleUnload(mod))


def fn(module, name):
    return check(driver.cuModuleGetFunction(module, name.encode()))


def launch(f, s, args, types, grid=1, block=1):
    return driver.cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, s, (args, types), 0)


def fill(f, s, ptr, value, n):
    check(launch(f, s, (int(ptr), value, n), (VP, U32, U64)))


def read_u32(ptr, n):
    out = (ctypes.c_uint32 * n)()
    check(driver.cuMemcpyDtoH(out, ptr, n * 4))
    return list(out)


def test_entries_come_from_the_ptx_and_unknown_names_are_not_found(module):
    names = [check(driver.cuFuncGetName(fn(module, n))) for n in ("greenres_fill_u32", "mystery")]
    assert names == [b"greenres_fill_u32", b"mystery"]
    assert driver.cuModuleGetFunction(module, b"absent")[0] == E.CUDA_ERROR_NOT_FOUND
    assert sim.live_objects()["module"] >= 1


def test_a_launch_runs_its_model_in_stream_order(module):
    f, spin = fn(module, "greenres_fill_u32"), fn(module, "greenres_spin_ns")
    ptr = check(driver.cuMemAlloc(64 * 4))
    s = stream()
    check(launch(spin, s, (200_000_000,), (U64,)))  # 200 ms: the fills wait behind it
    fill(f, s, ptr, 1, 64)
    fill(f, s, ptr, 2, 64)
    assert driver.cuStreamQuery(s)[0] == E.CUDA_ERROR_NOT_READY
    check(driver.cuStreamSynchronize(s))
    assert read_u32(ptr, 64) == [2] * 64
    check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(ptr))


@pytest.mark.parametrize("wait", [True, False])
def test_an_event_orders_launches_across_streams_and_a_missing_wait_shows(module, wait):
    f = fn(module, "greenres_fill_u32")
    ptr = check(driver.cuMemAlloc(16 * 4))
    a, b = stream(), stream()
    ev = check(driver.cuEventCreate(0))
    gate = threading.Event()
    hold = HOSTFN(lambda _: gate.wait(10))  # a is held until b had its chance
    check(driver.cuLaunchHostFunc(a, ctypes.cast(hold, ctypes.c_void_p).value, 0))
    fill(f, a, ptr, 1, 16)
    check(driver.cuEventRecord(ev, a))
    if wait:
        check(driver.cuStreamWaitEvent(b, ev, 0))
    fill(f, b, ptr, 2, 16)
    if not wait:
        check(driver.cuStreamSynchronize(b))  # b's fill ran first: nothing ordered it
    gate.set()
    for s in (a, b):
        check(driver.cuStreamSynchronize(s))
    assert read_u32(ptr, 16) == ([2] * 16 if wait else [1] * 16)
    for s in (a, b):
        check(driver.cuStreamDestroy(s))
    check(driver.cuEventDestroy(ev))
    check(driver.cuMemFree(ptr))


def test_a_kernel_without_a_model_fails_loudly_and_is_counted(module):
    before = sim.unmodelled_launches()
    s = stream()
    err = driver.cuLaunchKernel(fn(module, "mystery"), 1, 1, 1, 1, 1, 1, 0, s, 0, 0)[0]
    assert err == E.CUDA_ERROR_NOT_SUPPORTED
    assert sim.unmodelled_launches() == before + 1
    (hazard,) = [h for h in sim.hazards() if h.startswith("kernel_without_model")]
    assert "'mystery'" in hazard and "cuLaunchKernel" in hazard
    sim.clear_hazards()
    check(driver.cuStreamDestroy(s))


def test_a_python_model_gets_the_arguments_copied_at_launch(module):
    seen = []

    def scale(info):
        dst = ctypes.cast(info.param(0, ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint32))
        factor = info.param(1, ctypes.c_uint32)
        n = info.grid[0] * info.block[0]
        for i in range(n):
            dst[i] *= factor
        seen.append((factor, tuple(info.grid), tuple(info.block), threading.get_ident()))

    sim.register_kernel("py_scale", scale, param_sizes=(8, 4))
    try:
        ptr = check(driver.cuMemAlloc(8 * 4))
        s = stream()
        fill(fn(module, "greenres_fill_u32"), s, ptr, 3, 8)
        factor = U32(5)
        check(launch(fn(module, "py_scale"), s, (int(ptr), factor), (VP, U32), grid=2, block=4))
        factor.value = 100  # changing the argument after the launch changes nothing
        check(driver.cuStreamSynchronize(s))
        assert read_u32(ptr, 8) == [15] * 8
        assert seen[0][:3] == (5, (2, 1, 1), (4, 1, 1))
        assert seen[0][3] != threading.get_ident()  # the stream's worker
        check(driver.cuStreamDestroy(s))
        check(driver.cuMemFree(ptr))
    finally:
        sim.unregister_kernel("py_scale")


def test_smid_probe_sees_the_sms_of_its_green_context(module):
    (group,), _rest = split(device_resource(), 1, 16)
    g = make_green([group])
    owned = sim.green_context_sms(g)
    gs = check(driver.cuGreenCtxStreamCreate(g, NON_BLOCKING, 0))
    out = check(driver.cuMemAlloc(64 * 4))
    check(launch(fn(module, "greenres_smid_probe"), gs, (int(out),), (VP,), grid=64, block=32))
    check(driver.cuStreamSynchronize(gs))
    assert set(read_u32(out, 64)) == set(owned) and len(owned) == 16
    plain = stream()
    check(launch(fn(module, "greenres_smid_probe"), plain, (int(out),), (VP,), grid=64))
    check(driver.cuStreamSynchronize(plain))
    assert set(read_u32(out, 64)) == set(range(64))  # the whole device: 132 SMs, 64 blocks
    for s in (gs, plain):
        check(driver.cuStreamDestroy(s))
    check(driver.cuGreenCtxDestroy(g))
    check(driver.cuMemFree(out))


def test_a_captured_launch_runs_at_every_replay(module):
    runs = []
    sim.register_kernel("py_scale", lambda info: runs.append(info.param(1, U32)), (8, 4))
    try:
        s = stream()
        mode = driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        check(driver.cuStreamBeginCapture(s, mode))
        check(launch(fn(module, "py_scale"), s, (0, 7), (VP, U32)))
        graph = check(driver.cuStreamEndCapture(s))
        assert runs == []
        exe = check(driver.cuGraphInstantiate(graph, 0))
        for _ in range(3):
            check(driver.cuGraphLaunch(exe, s))
        check(driver.cuStreamSynchronize(s))
        assert runs == [7, 7, 7]
        check(driver.cuGraphExecDestroy(exe))
        check(driver.cuGraphDestroy(graph))
        check(driver.cuStreamDestroy(s))
    finally:
        sim.unregister_kernel("py_scale")


# A model replaced or removed while launches of it wait (or a graph holds one): they still
# run the model they were launched with. Freeing that model's callback crashed the process,
# so the program runs in a child and says what ran.
REPLACED_MODELS = r"""
import ctypes, gc, json
import greenres.sim as sim
sim.install("h100")
from cuda.bindings import driver as d

def ok(r):
    assert r[0] == d.CUresult.CUDA_SUCCESS, r
    return r[1] if len(r) == 2 else r[1:]

ok(d.cuInit(0))
ctx = ok(d.cuDevicePrimaryCtxRetain(ok(d.cuDeviceGet(0))))
ok(d.cuCtxPushCurrent(ctx))
mod = ok(d.cuModuleLoadData(PTX))
spin, scale = (ok(d.cuModuleGetFunction(mod, n)) for n in (b"greenres_spin_ns", b"py_scale"))
s = ok(d.cuStreamCreate(1))
U64, U32, VP = ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p

def launch(f, args, types):
    (err,) = d.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, s, (args, types), 0)
    assert err == d.CUresult.CUDA_SUCCESS, err

runs = []
sim.register_kernel("py_scale", lambda info: runs.append("old"), (8, 4))
launch(spin, (100_000_000,), (U64,))  # 100 ms: the launches below wait behind it
for _ in range(3):
    launch(scale, (0, 1), (VP, U32))
sim.register_kernel("py_scale", lambda info: runs.append("new"), (8, 4))
gc.collect()
ok(d.cuStreamSynchronize(s))
queued = list(runs)

ok(d.cuStreamBeginCapture(s, d.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))
launch(scale, (0, 1), (VP, U32))
graph = ok(d.cuStreamEndCapture(s))
exe = ok(d.cuGraphInstantiate(graph, 0))
sim.unregister_kernel("py_scale")
gc.collect()
for _ in range(2):
    ok(d.cuGraphLaunch(exe, s))
ok(d.cuStreamSynchronize(s))
replayed = runs[len(queued):]
later = d.cuLaunchKernel(scale, 1, 1, 1, 1, 1, 1, 0, s, ((0, 1), (VP, U32)), 0)[0]
print(json.dumps({"queued": queued, "replayed": replayed, "later": later.name}))
"""


def test_a_replaced_or_removed_model_still_runs_for_the_launches_made_with_it():
    out = run_python(REPLACED_MODELS.replace("PTX)", repr(PTX) + ")"))
    result = json.loads(out.splitlines()[-1])
    assert result["queued"] == ["old"] * 3  # launched before the replacement
    assert result["replayed"] == ["new"] * 2  # captured before the removal
    assert result["later"] == "CUDA_ERROR_NOT_SUPPORTED"  # a launch after it has no model


def test_a_python_model_that_raises_is_a_hazard_not_a_silent_success(module, capfd):
    def broken(info):
        raise RuntimeError("model bug")

    sim.register_kernel("py_scale", broken, (8, 4))
    try:
        s = stream()
        check(launch(fn(module, "py_scale"), s, (0, 1), (VP, U32)))
        check(driver.cuStreamSynchronize(s))
        (hazard,) = [h for h in sim.hazards() if h.startswith("kernel_model_failed")]
        assert "py_scale: RuntimeError: model bug" in hazard
        assert "RuntimeError: model bug" in capfd.readouterr().err  # the traceback is shown
        sim.clear_hazards()
        check(driver.cuStreamDestroy(s))
    finally:
        sim.unregister_kernel("py_scale")


def test_launch_kernel_ex_and_libraries(ctx):
    lib = check(driver.cuLibraryLoadData(PTX, None, None, 0, None, None, 0))
    kernel = check(driver.cuLibraryGetKernel(lib, b"greenres_fill_u32"))
    assert check(driver.cuKernelGetName(kernel)) == b"greenres_fill_u32"
    f = check(driver.cuKernelGetFunction(kernel))
    assert check(driver.cuFuncGetName(f)) == b"greenres_fill_u32"
    assert (
        check(
            driver.cuKernelGetAttribute(
                driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, kernel, 0
            )
        )
        == 1024
    )
    ptr = check(driver.cuMemAlloc(32 * 4))
    s = stream()
    config = driver.CUlaunchConfig()
    config.gridDimX = config.gridDimY = config.gridDimZ = 1
    config.blockDimX = config.blockDimY = config.blockDimZ = 1
    config.hStream = s
    attr = driver.CUlaunchAttribute()
    attr.id = driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PRIORITY
    attr.value.priority = -1
    config.attrs = [attr]
    config.numAttrs = 1
    check(driver.cuLaunchKernelEx(config, f, ((int(ptr), 9, 32), (VP, U32, U64)), 0))
    check(driver.cuStreamSynchronize(s))
    assert read_u32(ptr, 32) == [9] * 32
    coop = driver.CUlaunchAttribute()
    coop.id = driver.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_COOPERATIVE
    coop.value.cooperative = 1
    config.attrs = [coop]
    err = driver.cuLaunchKernelEx(config, f, ((int(ptr), 9, 32), (VP, U32, U64)), 0)[0]
    assert err == E.CUDA_ERROR_NOT_SUPPORTED  # the device does not advertise cooperative launches
    check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(ptr))
    check(driver.cuLibraryUnload(lib))


def test_bad_images_and_launches(module):
    assert driver.cuModuleLoadData(b"not an image\0")[0] == E.CUDA_ERROR_INVALID_IMAGE
    fatbin = (0xBA55ED50).to_bytes(4, "little") + bytes(60)
    assert driver.cuModuleLoadData(fatbin)[0] == E.CUDA_ERROR_NOT_SUPPORTED
    f = fn(module, "greenres_fill_u32")
    s = stream()
    args = ((0, 1, 0), (VP, U32, U64))
    assert (
        driver.cuLaunchKernel(f, 0, 1, 1, 1, 1, 1, 0, s, args, 0)[0] == E.CUDA_ERROR_INVALID_VALUE
    )
    assert (
        driver.cuLaunchKernel(f, 1, 1, 1, 2048, 1, 1, 0, s, args, 0)[0]
        == E.CUDA_ERROR_INVALID_VALUE
    )
    assert (
        driver.cuLaunchKernel(12345, 1, 1, 1, 1, 1, 1, 0, s, args, 0)[0]
        == E.CUDA_ERROR_INVALID_HANDLE
    )
    assert driver.cuModuleGetFunction(12345, b"x")[0] == E.CUDA_ERROR_INVALID_HANDLE
    sim.inject_fault("cuLaunchKernel", E.CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)
    runs = []
    sim.register_kernel("py_scale", lambda info: runs.append(1), (8, 4))
    try:
        err = launch(fn(module, "py_scale"), s, (0, 1), (VP, U32))[0]
        assert err == E.CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
        check(driver.cuStreamSynchronize(s))
        assert runs == []  # a failed launch queued nothing
    finally:
        sim.unregister_kernel("py_scale")
    with pytest.raises(ValueError):
        sim.register_kernel("", lambda info: None)
    with pytest.raises(ValueError):
        sim.register_kernel("x", lambda info: None, param_sizes=(0,))
    check(driver.cuStreamDestroy(s))


def test_threads_launching_on_their_own_streams(module):
    f = fn(module, "greenres_fill_u32")
    ptrs = [check(driver.cuMemAlloc(256 * 4)) for _ in range(4)]
    primary = ctx_of_thread()
    errors = []

    def work(i):
        check(driver.cuCtxPushCurrent(primary))
        s = stream()
        for v in range(50):
            if launch(f, s, (int(ptrs[i]), v + i, 256), (VP, U32, U64))[0] != E.CUDA_SUCCESS:
                errors.append(v)
        check(driver.cuStreamSynchronize(s))
        check(driver.cuStreamDestroy(s))
        check(driver.cuCtxPopCurrent())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [read_u32(p, 1)[0] for p in ptrs] == [49, 50, 51, 52]
    for p in ptrs:
        check(driver.cuMemFree(p))


def ctx_of_thread():
    return check(driver.cuCtxGetCurrent())


nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC needs cuda-bindings' nvrtc")


def _nvrtc_cubin(source, name):
    err, prog = nvrtc.nvrtcCreateProgram(source, name, 0, [], [])
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        pytest.skip(f"NVRTC is not installed: {err}")
    (err,) = nvrtc.nvrtcCompileProgram(prog, 1, [b"--gpu-architecture=sm_90"])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, err
    size = nvrtc.nvrtcGetCUBINSize(prog)[1]
    cubin = b" " * size
    nvrtc.nvrtcGetCUBIN(prog, cubin)
    nvrtc.nvrtcDestroyProgram(prog)
    return cubin


def test_an_nvrtc_cubin_loads_and_its_kernels_launch_through_their_models(ctx):
    try:
        cubin = _nvrtc_cubin(
            b'extern "C" __global__ void greenres_fill_u32(unsigned* d, unsigned v, size_t n)'
            b" { size_t i = threadIdx.x; if (i < n) d[i] = v; }\n"
            b'extern "C" __global__ void other(int x) {}\n',
            b"fill.cu",
        )
    except RuntimeError as e:  # cuda-pathfinder: no NVRTC library
        pytest.skip(f"NVRTC is not installed: {e}")
    assert cubin[:4] == b"\x7fELF"
    mod = check(driver.cuModuleLoadData(cubin))
    f = check(driver.cuModuleGetFunction(mod, b"greenres_fill_u32"))
    check(driver.cuModuleGetFunction(mod, b"other"))
    ptr = check(driver.cuMemAlloc(8 * 4))
    s = stream()
    fill(f, s, ptr, 4, 8)
    check(driver.cuStreamSynchronize(s))
    assert read_u32(ptr, 8) == [4] * 8
    check(driver.cuStreamDestroy(s))
    check(driver.cuMemFree(ptr))
    check(driver.cuModuleUnload(mod))


def test_modules_and_libraries_load_from_files(ctx, tmp_path):
    before = sim.live_objects()["module"]
    path = tmp_path / "kernels.ptx"
    path.write_bytes(PTX)
    mod = check(driver.cuModuleLoad(str(path).encode()))
    check(driver.cuModuleGetFunction(mod, b"greenres_fill_u32"))
    check(driver.cuModuleUnload(mod))
    lib = check(driver.cuLibraryLoadFromFile(str(path).encode(), None, None, 0, None, None, 0))
    check(driver.cuLibraryGetKernel(lib, b"py_scale"))
    check(driver.cuLibraryUnload(lib))
    missing = str(tmp_path / "absent.ptx").encode()
    assert driver.cuModuleLoad(missing)[0] == E.CUDA_ERROR_FILE_NOT_FOUND
    err = driver.cuLibraryLoadFromFile(missing, None, None, 0, None, None, 0)[0]
    assert err == E.CUDA_ERROR_FILE_NOT_FOUND
    assert sim.live_objects()["module"] == before


PARAMS_PTX = b"""
.version 8.0
.target sm_90
.address_size 64
.visible .entry three(.param .u32 a, .param .u64 b, .param .align 16 .b8 c[24]) { ret; }
.visible .entry none() { ret; }
"""


def test_parameter_layout_of_a_ptx_entry(ctx):
    """cuKernelGetParamInfo / cuFuncGetParamInfo: offsets aligned as the device lays them
    out (cuda.core's Kernel.num_arguments and arguments_info ask for them)."""
    lib = check(driver.cuLibraryLoadData(PARAMS_PTX, None, None, 0, None, None, 0))
    kernel = check(driver.cuLibraryGetKernel(lib, b"three"))
    function = check(driver.cuKernelGetFunction(kernel))
    getters = ((driver.cuKernelGetParamInfo, kernel), (driver.cuFuncGetParamInfo, function))
    for get, handle in getters:
        assert [check(get(handle, i)) for i in range(3)] == [(0, 4), (8, 8), (16, 24)]
        assert get(handle, 3)[0] == E.CUDA_ERROR_INVALID_VALUE
    none = check(driver.cuLibraryGetKernel(lib, b"none"))
    assert driver.cuKernelGetParamInfo(none, 0)[0] == E.CUDA_ERROR_INVALID_VALUE
    check(driver.cuLibraryUnload(lib))
    assert driver.cuKernelGetParamInfo(kernel, 0)[0] == E.CUDA_ERROR_INVALID_HANDLE
    assert take_destroyed_handle_hazards()  # the stale handle was seen for what it is


def test_cuda_core_reads_a_kernels_arguments():
    pytest.importorskip("cuda.core")
    out = run_python(
        f"""
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device, ObjectCode
        Device(0).set_current()
        kernel = ObjectCode.from_ptx({PARAMS_PTX!r}).get_kernel("three")
        print(kernel.num_arguments, [(i.offset, i.size) for i in kernel.arguments_info])
        """
    )
    assert out.strip() == "3 [(0, 4), (8, 8), (16, 24)]"


def test_the_first_refused_launch_of_a_kernel_says_why_on_stderr():
    done = childprocess.run_child(
        [
            "-c",
            "import greenres.sim as sim\n"
            "sim.install('h100')\n"
            "from cuda.bindings import driver as d\n"
            "d.cuInit(0)\n"
            "ctx = d.cuDevicePrimaryCtxRetain(0)[1]\n"
            "d.cuCtxPushCurrent(ctx)\n"
            f"mod = d.cuModuleLoadData({PTX!r})[1]\n"
            "f = d.cuModuleGetFunction(mod, b'mystery')[1]\n"
            "for _ in range(3):\n"
            "    print(d.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0)[0].name)\n",
        ],
        GREENRES_SIM=None,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CUDA_ERROR_NOT_SUPPORTED"] * 3
    assert done.stderr.count("kernel 'mystery' has no host model") == 1, done.stderr
