"""Introspection and fault injection: live objects, call counts, faults, install rules."""

import pytest
from cuda.bindings import driver

import greenres.sim as sim

from support.simhelpers import (
    E,
    check,
    ctx_create,
    device_resource,
    error_of,
    green_stream,
    make_green,
    run_python,
    split,
)

pytestmark = pytest.mark.sim_only


def test_call_counts_count_every_call_including_failures(ctx):
    sim.reset_call_counts()
    for _ in range(3):
        check(driver.cuCtxPushCurrent(ctx))
        check(driver.cuCtxPopCurrent())
    assert error_of(driver.cuCtxPushCurrent(driver.CUcontext(0))) == E.CUDA_ERROR_INVALID_CONTEXT
    counts = sim.call_counts("cuCtxPushCurrent", "cuCtxPopCurrent", "cuNeverCalled")
    assert counts == {"cuCtxPushCurrent": 4, "cuCtxPopCurrent": 3, "cuNeverCalled": 0}
    sim.reset_call_counts()
    assert sim.call_counts("cuCtxPushCurrent") == {"cuCtxPushCurrent": 0}


def test_injected_fault_fails_the_nth_call_without_side_effects(ctx):
    before = sim.live_objects()["stream"]
    sim.inject_fault("cuStreamCreate", "CUDA_ERROR_OUT_OF_MEMORY", nth=2)
    s1 = check(driver.cuStreamCreate(0))
    assert error_of(driver.cuStreamCreate(0)) == E.CUDA_ERROR_OUT_OF_MEMORY
    assert sim.live_objects()["stream"] == before + 1  # the failed call made nothing
    s3 = check(driver.cuStreamCreate(0))  # a fault fires once
    for s in (s1, s3):
        check(driver.cuStreamDestroy(s))


def test_fault_accepts_curesult_and_int(ctx):
    sim.inject_fault("cuEventCreate", E.CUDA_ERROR_INVALID_VALUE)
    assert error_of(driver.cuEventCreate(0)) == E.CUDA_ERROR_INVALID_VALUE
    sim.inject_fault("cuEventCreate", 2)
    sim.clear_faults()
    ev = check(driver.cuEventCreate(0))
    check(driver.cuEventDestroy(ev))
    with pytest.raises(ValueError):
        sim.inject_fault("cuEventCreate", "CUDA_ERROR_NO_SUCH_THING")


def test_fault_in_a_hot_function(ctx):
    sim.inject_fault("cuCtxPushCurrent", E.CUDA_ERROR_INVALID_CONTEXT)
    assert error_of(driver.cuCtxPushCurrent(ctx)) == E.CUDA_ERROR_INVALID_CONTEXT
    assert int(check(driver.cuCtxGetCurrent())) == int(ctx)  # nothing was pushed
    check(driver.cuCtxPushCurrent(ctx))
    check(driver.cuCtxPopCurrent())


def test_zero_live_objects_after_cleanup(ctx):
    start = sim.live_objects()
    groups, _ = split(device_resource(), 2, 8)
    g = make_green(groups)
    s = green_stream(g)
    ev = check(driver.cuEventCreate(0))
    p = check(driver.cuMemAlloc(64))
    graph = check(driver.cuGraphCreate(0))
    exe = check(driver.cuGraphInstantiate(graph, 0))
    uctx = check(ctx_create(0, 0))
    live = sim.live_objects()
    for kind in (
        "green_context",
        "stream",
        "event",
        "allocation",
        "graph",
        "graph_exec",
        "context",
    ):
        assert live[kind] == start[kind] + 1, kind
    check(driver.cuCtxDestroy(uctx))
    check(driver.cuGraphExecDestroy(exe))
    check(driver.cuGraphDestroy(graph))
    check(driver.cuMemFree(p))
    check(driver.cuEventDestroy(ev))
    check(driver.cuStreamDestroy(s))
    check(driver.cuGreenCtxDestroy(g))
    assert sim.live_objects() == start


def test_before_cuinit_calls_fail_not_initialized():
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("a100")
        from cuda.bindings import driver
        print(driver.cuDeviceGetCount()[0].name)
        driver.cuInit(0)
        print(driver.cuDeviceGetCount()[1])
        print(driver.cuDeviceGetName(64, 0)[1].split(b"\\0")[0].decode())
        attr = driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
        print(driver.cuDeviceGetAttribute(attr, 0)[1])
        """
    )
    assert out.split("\n")[:4] == [
        "CUDA_ERROR_NOT_INITIALIZED",
        "1",
        "NVIDIA A100-SXM4-80GB",
        "108",
    ]


def test_install_rules():
    assert sim.is_installed()
    assert sim.install("2xh100") == sim.LIBRARY_PATH  # same configuration: no-op
    with pytest.raises(RuntimeError, match="already installed"):
        sim.install("a100")
    with pytest.raises(ValueError, match=r"known profiles: .*h100"):
        sim.parse_profile("h1000")
    assert sim.parse_profile("8xh100") == (sim.PROFILES["h100"], 8)


def test_install_from_env_with_driver_version():
    out = run_python(
        """
        import greenres.sim as sim
        print(sim.install_from_env())
        from cuda.bindings import driver
        driver.cuInit(0)
        print(driver.cuDriverGetVersion()[1], driver.cuDeviceGetCount()[1])
        """,
        {"GREENRES_SIM": "4xl4@13000"},
    )
    lines = out.split("\n")
    assert lines[0].endswith("libcuda.so.1") and lines[1] == "13000 4"


def test_real_driver_already_loaded_is_refused(tmp_path):
    fake = tmp_path / "libcuda.so.1"
    fake.write_bytes(sim.LIBRARY_PATH.read_bytes())  # another file with the driver's name
    out = run_python(
        f"""
        import ctypes
        ctypes.CDLL({str(fake)!r}, mode=ctypes.RTLD_GLOBAL)
        import greenres.sim as sim
        try:
            sim.install("h100")
        except RuntimeError as e:
            print("refused:", e)
        """
    )
    assert out.startswith("refused: a real CUDA driver")


def test_function_names_and_every_count():
    names = sim.function_names()
    assert "cuGreenCtxCreate" in names and "cuCtxPushCurrent" in names
    assert names == sorted(set(names))
    sim.reset_call_counts()
    driver.cuCtxGetCurrent()
    driver.cuCtxGetCurrent()
    assert sim.call_counts() == {"cuCtxGetCurrent": 2}


def test_live_objects_since_reports_only_what_changed(ctx):
    before = sim.live_objects()
    assert sim.live_objects_since(before) == {}
    event = check(driver.cuEventCreate(0))
    assert sim.live_objects_since(before) == {"event": 1}
    check(driver.cuEventDestroy(event))
    assert sim.live_objects_since(before) == {}
