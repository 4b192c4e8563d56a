"""Helpers of the simulator tests (imported by the test modules)."""

import textwrap

import pytest

import greenres.sim as sim

from support import childprocess

sim.install("h100", count=2)  # no-op when tests/conftest.py's GREENRES_SIM=2xh100 already did it

import cuda.bindings  # noqa: E402
from cuda.bindings import driver  # noqa: E402  (after install: the simulator is the driver)

BINDINGS_VERSION = cuda.bindings.__version__
BINDINGS_MAJOR = int(BINDINGS_VERSION.split(".")[0])

OK = driver.CUresult.CUDA_SUCCESS
E = driver.CUresult
SM = driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
NON_BLOCKING = driver.CUstream_flags.CU_STREAM_NON_BLOCKING


def check(result):
    """Unpack a cuda.bindings result tuple, asserting success; returns the values."""
    err, *values = result
    assert err == OK, f"driver call failed: {err!r}"
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def error_of(result):
    """The CUresult of a cuda.bindings result tuple."""
    return result[0]


def _has(name):
    """True when cuda.bindings.driver has `name` (dotted: an enum member, ``Enum.MEMBER``)."""
    obj = driver
    for part in name.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def requires_bindings(*names):
    """Skip marker: the test needs these cuda.bindings.driver names (functions, types, enum
    members as ``Enum.MEMBER``) that older bindings lack (12.9 has no CUDA 13.x API)."""
    missing = [n for n in names if not _has(n)]
    return pytest.mark.skipif(
        bool(missing),
        reason=f"cuda-bindings {BINDINGS_VERSION} lacks driver.{', driver.'.join(missing)}",
    )


def ctx_create(flags=0, dev=0):
    """cuCtxCreate with no create params: bindings 13 call the v4 ABI cuCtxCreate(params, flags,
    dev); bindings 12.9 call cuCtxCreate(flags, dev) (the _v2 ABI, looked up with 3020)."""
    if BINDINGS_MAJOR >= 13:
        return driver.cuCtxCreate(None, flags, dev)
    return driver.cuCtxCreate(flags, dev)


def capture_info_v3(stream):
    """cuStreamGetCaptureInfo with the 12030 ABI (status, id, graph, deps, edges, n): that is
    cuStreamGetCaptureInfo in bindings 13 and cuStreamGetCaptureInfo_v3 in bindings 12.9 (whose
    cuStreamGetCaptureInfo is the 11030 ABI without edges)."""
    return getattr(driver, "cuStreamGetCaptureInfo_v3", driver.cuStreamGetCaptureInfo)(stream)


_SIM_C = None


def green_ctx_id(g):
    """cuGreenCtxGetId(g): through cuda.bindings when they have it (13.x); else straight from
    the simulator's exported C function (bindings 12.9 do not wrap it; the driver has it)."""
    global _SIM_C
    if hasattr(driver, "cuGreenCtxGetId"):
        return check(driver.cuGreenCtxGetId(g))
    import ctypes

    if _SIM_C is None:
        _SIM_C = ctypes.CDLL(str(sim.LIBRARY_PATH))
        _SIM_C.cuGreenCtxGetId.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulonglong)]
        _SIM_C.cuGreenCtxGetId.restype = ctypes.c_int
    out = ctypes.c_ulonglong()
    err = _SIM_C.cuGreenCtxGetId(int(g) if g is not None else None, ctypes.byref(out))
    assert err == 0, f"cuGreenCtxGetId failed: {err}"
    return out.value


def take_destroyed_handle_hazards():
    """The destroyed_handle hazards recorded so far (``"destroyed_handle: fn: ..."``); every
    hazard is cleared. For tests that pass destroyed handles on purpose (tests/sim's conftest
    fails a test that leaves one behind)."""
    taken = [h for h in sim.hazards() if h.startswith("destroyed_handle")]
    sim.clear_hazards()
    return taken


def run_python(code, env_extra=None):
    """Run dedented ``code`` in a fresh interpreter (another simulated machine) that does not
    inherit this process's GREENRES_SIM; returns its stdout."""
    overrides = {"GREENRES_SIM": None, **(env_extra or {})}
    return childprocess.run_python(textwrap.dedent(code), **overrides)


def device_resource(dev=0):
    return check(driver.cuDeviceGetDevResource(dev, SM))


def split(resource, groups, min_count, flags=0):
    """cuDevSmResourceSplitByCount with room for `groups` groups: (groups, remainder)."""
    result, n, remainder = check(
        driver.cuDevSmResourceSplitByCount(groups, resource, flags, min_count)
    )
    return list(result)[:n], remainder


def make_green(resources, dev=0, flags=None):
    """A green context from resources of one split (DEFAULT_STREAM by default)."""
    if flags is None:
        flags = driver.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM
    desc = check(driver.cuDevResourceGenerateDesc(list(resources), len(resources)))
    return check(driver.cuGreenCtxCreate(desc, dev, flags))


def green_stream(g, priority=0):
    return check(
        driver.cuGreenCtxStreamCreate(g, driver.CUstream_flags.CU_STREAM_NON_BLOCKING, priority)
    )


def stream(flags=NON_BLOCKING):
    return check(driver.cuStreamCreate(flags))


def event(flags=0):
    return check(driver.cuEventCreate(flags))


def node_count(graph):
    _, n = check(driver.cuGraphGetNodes(graph, 0))
    return n
