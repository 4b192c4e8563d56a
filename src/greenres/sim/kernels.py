"""Kernels on the simulated driver: host models registered by kernel name.

A module or library loaded on the simulator (``cuModuleLoadData``, ``cuLibraryLoadData``,
cuda.core's ``ObjectCode``, NVRTC output) names its kernels; a launch of one runs the model
registered under that name, on the stream's worker thread, in stream order (and again at
every replay of a graph that captured it). A launch of a kernel with no model fails with
``CUDA_ERROR_NOT_SUPPORTED``, is counted (:func:`unmodelled_launches`) and recorded as the
hazard ``kernel_without_model``; a Python model that raises records ``kernel_model_failed``.
A launch runs the model registered when it was made (replacing a model changes later
launches, not queued or captured ones).

A model is either a C function pointer ``void model(const greenres_sim_launch*, void*)``
(an int address or a ctypes function; the struct is :class:`LaunchInfo`) or a Python
callable taking a :class:`LaunchInfo`; a Python model runs with the GIL, which ctypes
takes on the worker thread (measure: docs/simulator.md, "Kernels"). ``param_sizes`` are
the sizes in bytes of the kernel's parameters: the arguments are copied when the launch is
queued, as the driver does, and ``info.params[i]`` points at the copy of parameter ``i``.

Built in: ``greenres_fill_u32(unsigned* dst, unsigned value, size_t n)``,
``greenres_spin_ns(unsigned long long ns)`` and ``greenres_smid_probe(unsigned* out)``
(``out[block]`` = the SM id the block ran on, dealt round-robin over the SMs of the
context the launch ran in, as ``%smid`` reports).
"""

from __future__ import annotations

import ctypes
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "LaunchInfo",
    "register_kernel",
    "set_conditional",
    "unmodelled_launches",
    "unregister_kernel",
]


class LaunchInfo(ctypes.Structure):
    """``greenres_sim_launch`` (src/simdriver/kernels.h): what a model gets for one launch."""

    _fields_ = (
        ("kernel", ctypes.c_char_p),
        ("grid", ctypes.c_uint * 3),
        ("block", ctypes.c_uint * 3),
        ("shared_mem", ctypes.c_uint),
        ("params", ctypes.POINTER(ctypes.c_void_p)),
        ("nparams", ctypes.c_int),
        ("device", ctypes.c_int),
        ("sm_ids", ctypes.POINTER(ctypes.c_int)),
        ("sm_count", ctypes.c_int),
        ("green_ctx_id", ctypes.c_ulonglong),
    )

    def param(self, index: int, ctype: Any) -> Any:
        """The value of parameter ``index`` read as ``ctype`` (``ctypes.c_uint64``, ...)."""
        if not 0 <= index < self.nparams:
            raise IndexError(f"parameter {index} of {self.nparams}")
        return ctype.from_address(self.params[index]).value

    @property
    def sms(self) -> tuple[int, ...]:
        """The SM ids of the context the launch runs in."""
        return tuple(self.sm_ids[i] for i in range(self.sm_count))


MODEL_FN = ctypes.CFUNCTYPE(None, ctypes.POINTER(LaunchInfo), ctypes.c_void_p)

#: Every model registered from Python (its C callback, or the ctypes function given), kept
#: for the life of the process: a launch queued before the model was replaced or removed,
#: and a graph that captured one, still call the model of their launch (as a kernel
#: launched on a GPU runs the code it was launched with), so freeing it would leave them a
#: dangling pointer. Registration is rare (set-up code), so nothing accumulates in practice.
_kept_alive: list[Any] = []


def _lib() -> ctypes.CDLL:
    from greenres.sim import _need

    lib = _need()
    lib.greenres_sim_register_kernel.restype = ctypes.c_int
    lib.greenres_sim_register_kernel.argtypes = [
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_int,
    ]
    lib.greenres_sim_unmodelled_launches.restype = ctypes.c_longlong
    lib.greenres_sim_model_failed.restype = None
    lib.greenres_sim_model_failed.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib


def _model_failed(name: str, error: BaseException) -> None:
    """A Python model raised on a stream's worker: print it as Python prints an exception
    nobody can catch, and record the hazard ``kernel_model_failed`` (the driver call that
    queued the launch has long returned; a test asserts on the hazards)."""
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    what = f"{type(error).__name__}: {error}"
    _lib().greenres_sim_model_failed(name.encode(), what.encode("utf-8", "replace"))


def register_kernel(
    name: str, model: Callable[[LaunchInfo], None] | int | Any, param_sizes: Sequence[int] = ()
) -> None:
    """Run ``model`` for every launch of a kernel called ``name`` (replacing any model)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"'name' must be a non-empty kernel name (got {name!r})")
    sizes = [int(n) for n in param_sizes]
    if any(n <= 0 or n > 4096 for n in sizes):
        raise ValueError(f"'param_sizes' must be sizes in bytes of 1..4096 (got {sizes})")
    if isinstance(model, int):
        address, keep = model, None
    elif isinstance(model, ctypes._CFuncPtr):
        address, keep = ctypes.cast(model, ctypes.c_void_p).value, model
    elif callable(model):

        def trampoline(info, _user, model=model, name=name):
            try:
                model(info.contents)
            except BaseException as error:
                _model_failed(name, error)

        keep = MODEL_FN(trampoline)
        address = ctypes.cast(keep, ctypes.c_void_p).value
    else:
        raise TypeError(f"'model' must be a callable or a C function pointer (got {model!r})")
    array = (ctypes.c_size_t * max(len(sizes), 1))(*sizes)
    if keep is not None:
        _kept_alive.append(keep)  # before the simulator can call it
    if _lib().greenres_sim_register_kernel(name.encode(), address, None, array, len(sizes)) != 0:
        raise ValueError(f"the simulator refused the model of {name!r}")


def set_conditional(handle: int, value: int) -> None:
    """From a kernel model: set conditional handle ``handle`` to ``value`` for the rest of the
    graph launch that runs the model (what device code does with ``cudaGraphSetConditional``).
    Raises ``ValueError`` outside a graph launch, or for a handle that launch does not have."""
    fn = _lib().greenres_sim_set_conditional
    fn.argtypes = [ctypes.c_ulonglong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(int(handle), int(value)) != 0:
        raise ValueError(
            f"conditional handle {handle} is not one of the graph launch running this model "
            "(set_conditional works only from a kernel model inside a graph launch)"
        )


def unregister_kernel(name: str) -> None:
    """Remove the model of kernel ``name``: launches made after this fail again; launches
    already queued, and graphs that captured one, still run the model they were made with."""
    _lib().greenres_sim_register_kernel(name.encode(), None, None, None, 0)


def unmodelled_launches() -> int:
    """Launches refused so far because their kernel had no model."""
    return int(_lib().greenres_sim_unmodelled_launches())
