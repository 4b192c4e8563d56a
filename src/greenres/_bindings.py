"""Calling ``cuda.bindings.driver`` from greenres' own Python tools (the demo, the bench)
the way a user's code does, with failures raised as :class:`greenres.DriverError`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cuda.bindings import driver as cu

from greenres.errors import DriverError

__all__ = ["call", "primary_context_current"]


def call(function: Any, *args: Any) -> Any:
    """Call ``function(*args)`` of ``cuda.bindings.driver``; return its value (or values),
    raise DriverError naming the function if the driver answered an error."""
    error, *values = function(*args)
    if error != cu.CUresult.CUDA_SUCCESS:
        name = cu.cuGetErrorName(error)[1].decode()
        text = cu.cuGetErrorString(error)[1].decode()
        raise DriverError(function.__name__, int(error), name, text)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


@contextmanager
def primary_context_current(ordinal: int) -> Iterator[Any]:
    """Retain device ``ordinal``'s primary context and make it current for the block (where
    a CUDA program allocates memory and creates its own streams); pop and release after."""
    primary = call(cu.cuDevicePrimaryCtxRetain, ordinal)
    call(cu.cuCtxPushCurrent, primary)
    try:
        yield primary
    finally:
        call(cu.cuCtxPopCurrent)
        call(cu.cuDevicePrimaryCtxRelease, ordinal)
