"""Hold a stream for as long as a test needs: work queued behind a gate runs once it opens.

Negative controls ("without the wait the data is wrong") need a producer that is certainly
late. Sleeps and the simulator's op delay only make it probably late, and a loaded CI
machine can close that window. A host function that blocks on a ``threading.Event`` holds
the stream until the test opens the gate, on the simulated driver and on a real GPU alike.
"""

from __future__ import annotations

import ctypes
import threading

from cuda.bindings import driver

_HOSTFN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
# A gate the test forgets to open lets go after this long instead of hanging the run.
TIMEOUT_S = 30.0
# The driver may still be running a callback after its owner is gone: keep them all alive.
_callbacks: list = []


def host_fn(pyfunc) -> driver.CUhostFn:
    """A CUhostFn calling ``pyfunc(userData)``, kept alive for the session."""
    callback = _HOSTFN(pyfunc)
    _callbacks.append(callback)
    return driver.CUhostFn(ctypes.cast(callback, ctypes.c_void_p).value)


def cu_stream(stream) -> driver.CUstream:
    """A CUstream from a CUstream, an object with ``__cuda_stream__`` or an int handle."""
    if isinstance(stream, driver.CUstream):
        return stream
    if hasattr(stream, "__cuda_stream__"):
        return driver.CUstream(stream.__cuda_stream__()[1])
    return driver.CUstream(int(stream))


class Gate:
    """``with Gate(stream):`` queues a blocking host function on ``stream``; everything
    queued on ``stream`` after it waits until ``open()`` or the end of the block."""

    def __init__(self, stream):
        self._released = threading.Event()
        self._released_after_timeout = False
        (err,) = driver.cuLaunchHostFunc(cu_stream(stream), host_fn(self._hold), None)
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"cuLaunchHostFunc failed: {err!r}")

    def _hold(self, _user_data) -> None:
        if not self._released.wait(TIMEOUT_S):
            self._released_after_timeout = True

    def open(self) -> None:
        if self._released_after_timeout:
            raise AssertionError(f"the gate gave way after {TIMEOUT_S} s: the test hung")
        self._released.set()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc) -> None:
        self._released.set()
