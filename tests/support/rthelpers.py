"""Helpers of the runtime tests (a uniquely named module: several test folders have a
conftest.py). Device memory and streams go through cuda.bindings.driver, so the same tests
run against the simulated driver and a real GPU."""

from __future__ import annotations

import contextlib
import gc
import os
import warnings

from cuda.bindings import driver as cu

import greenres

from support.streamgate import cu_stream

SIM = bool(os.environ.get("GREENRES_SIM"))


def ok(result):
    """Unwrap a cuda.bindings.driver result tuple, raising on failure."""
    if isinstance(result, tuple):
        err, *rest = result
    else:
        err, rest = result, []
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"driver call failed: {err!r}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


class Memory:
    """Device buffers allocated in the primary context (usable from every partition)."""

    def __init__(self):
        self.ptrs = []

    def alloc(self, nbytes):
        ptr = ok(cu.cuMemAlloc(nbytes))
        self.ptrs.append(ptr)
        return int(ptr)

    def free_all(self):
        for ptr in self.ptrs:
            ok(cu.cuMemFree(ptr))
        self.ptrs.clear()


def memset(ptr, value, nbytes, stream):
    ok(cu.cuMemsetD8Async(cu.CUdeviceptr(ptr), value, nbytes, cu_stream(stream)))


def copy(dst, src, nbytes, stream):
    ok(cu.cuMemcpyDtoDAsync(cu.CUdeviceptr(dst), cu.CUdeviceptr(src), nbytes, cu_stream(stream)))


def read(ptr, nbytes):
    out = bytearray(nbytes)
    ok(cu.cuMemcpyDtoH(out, cu.CUdeviceptr(ptr), nbytes))
    return bytes(out)


def sync(stream):
    ok(cu.cuStreamSynchronize(cu_stream(stream)))


def current_context() -> int:
    """This thread's current context as an int handle (0: none)."""
    ctx = ok(cu.cuCtxGetCurrent())
    return int(ctx) if ctx is not None else 0


def facts():
    return greenres.Device(0).sm_facts()


@contextlib.contextmanager
def layout_of(mapping_or_plan, device=0):
    layout = greenres.Layout.create(mapping_or_plan, device=device)
    try:
        yield layout
    finally:
        layout.close()


def live(sim):
    """Live objects of every kind, without zero entries."""
    return {kind: n for kind, n in sim.live_objects().items() if n}


@contextlib.contextmanager
def no_resource_warning():
    """Fail if anything inside (or the garbage collection at its end) warns ResourceWarning.

    greenres warns from ``__dealloc__``, where an exception cannot propagate: under the
    "error" filter the warning would be raised and swallowed there, so record it instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked, leaked
