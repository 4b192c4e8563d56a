"""greenres' simulated CUDA driver: load it, configure it, look inside it.

``install("h100")`` loads ``libcuda.so.1`` of this package (a CPU model of the
driver API subset greenres and cuda.core use) into the process before any
driver call, so cuda-bindings, cuda.core and greenres run against it
unchanged. Everything else here is introspection for tests: live objects, the
SM ownership of green contexts, call counts, hazards, fault injection.

This module only needs ctypes and the device table of :mod:`greenres.devices`; it never
imports the runtime, so it can load the driver before anything calls it.

Environment: ``GREENRES_SIM`` = ``PROFILE``, ``NxPROFILE`` and optionally
``@VERSION`` for the driver version, e.g. ``h100``, ``8xh100``,
``h100@13000``; read by :func:`install_from_env`.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from greenres.cuda_versions import STRUCTURED_SPLIT

from .profiles import PROFILES, DeviceProfile, parse_profile

__all__ = [
    "DEFAULT_DRIVER_VERSION",
    "LIBRARY_PATH",
    "PROFILES",
    "DeviceProfile",
    "LaunchInfo",
    "arena_stats",
    "call_counts",
    "clear_faults",
    "clear_hazards",
    "function_names",
    "graph_node_green_contexts",
    "green_context_sms",
    "hazards",
    "inject_fault",
    "install",
    "install_from_env",
    "is_installed",
    "live_objects",
    "live_objects_since",
    "parse_profile",
    "register_kernel",
    "reset_call_counts",
    "set_op_delay_us",
    "unmodelled_launches",
    "unregister_kernel",
    "wait_user_object_destructors",
]

DEFAULT_DRIVER_VERSION = STRUCTURED_SPLIT
LIBRARY_PATH = Path(__file__).with_name("libcuda.so.1")
LIVE_KINDS = (
    "context",
    "primary_context",
    "green_context",
    "stream",
    "event",
    "allocation",
    "graph",
    "graph_exec",
    "user_object",
    "memory_pool",
    "module",
)

_lib: ctypes.CDLL | None = None
_config: tuple[str, int, int] | None = None


def _foreign_libcuda() -> str | None:
    """The path of a libcuda loaded in this process that is not ours, if any."""
    ours = os.path.realpath(LIBRARY_PATH)
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) < 6:
                    continue
                path = parts[5].strip()
                if (
                    os.path.basename(path).startswith("libcuda.so")
                    and os.path.realpath(path) != ours
                ):
                    return path
    except OSError:  # not Linux: fall back to the loader
        try:
            ctypes.CDLL("libcuda.so.1", mode=getattr(os, "RTLD_NOLOAD", 4))
        except OSError:
            return None
        return "libcuda.so.1"
    return None


def _declare(lib: ctypes.CDLL) -> None:
    c = ctypes
    sig = {
        "greenres_sim_add_device": (
            c.c_int,
            [c.c_char_p, c.c_int, c.c_int, c.c_int, c.c_ulonglong, c.c_int, c.c_int],
        ),
        "greenres_sim_set_driver_version": (c.c_int, [c.c_int]),
        "greenres_sim_set_locality_domains": (c.c_int, [c.c_int, c.c_int]),
        "greenres_sim_is_configured": (c.c_int, []),
        "greenres_sim_is_initialized": (c.c_int, []),
        "greenres_sim_driver_version": (c.c_int, []),
        "greenres_sim_device_count": (c.c_int, []),
        "greenres_sim_live_count": (c.c_int, [c.c_char_p]),
        "greenres_sim_green_ctx_sms": (c.c_int, [c.c_void_p, c.POINTER(c.c_int), c.c_int]),
        "greenres_sim_call_count": (c.c_longlong, [c.c_char_p]),
        "greenres_sim_reset_call_counts": (None, []),
        "greenres_sim_hazard_count": (c.c_int, []),
        "greenres_sim_hazard_get": (c.c_int, [c.c_int, c.c_char_p, c.c_int]),
        "greenres_sim_clear_hazards": (None, []),
        "greenres_sim_inject_fault": (c.c_int, [c.c_char_p, c.c_longlong, c.c_int]),
        "greenres_sim_clear_faults": (None, []),
        "greenres_sim_set_op_delay_us": (None, [c.c_int]),
        "greenres_sim_graph_node_green_ctx": (
            c.c_int,
            [c.c_void_p, c.POINTER(c.c_ulonglong), c.c_int],
        ),
        "greenres_sim_function_count": (c.c_int, []),
        "greenres_sim_function_entry": (c.c_char_p, [c.c_int] + [c.c_void_p] * 3),
        "greenres_sim_arena_stats": (
            c.c_int,
            [c.c_int, c.POINTER(c.c_char_p)] + [c.POINTER(c.c_ulonglong)] * 4,
        ),
        "greenres_sim_wait_user_object_destructors": (c.c_int, [c.c_int]),
        "cuGetErrorName": (c.c_int, [c.c_int, c.POINTER(c.c_char_p)]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args


def _parse_machine(value: str) -> tuple[str, int]:
    """``PROFILE[@VERSION]``, as ``GREENRES_SIM``, ``python -m greenres.sim`` and the CLI's
    ``--device sim:...`` spell a simulated machine: (profile, driver version).

    Raises ValueError for a driver version that is not an integer."""
    spec, _, version = value.partition("@")
    if spec.strip().lower() in ("1", "true", "yes", "on"):
        spec = "h100"
    if not version:
        return spec, DEFAULT_DRIVER_VERSION
    if not version.strip().isdigit():
        raise ValueError(
            f"the driver version after '@' must be an integer like 13040 (got {version!r})"
        )
    return spec, int(version)


def install(
    profile: str = "h100", count: int = 1, driver_version: int = DEFAULT_DRIVER_VERSION
) -> Path:
    """Load the simulated driver into this process and configure its devices.

    ``profile`` is a key of :data:`PROFILES` or ``"NxKEY"`` (then ``count``
    must stay 1); ``count`` devices of that profile are simulated;
    ``driver_version`` is what ``cuDriverGetVersion`` reports and bounds the
    functions ``cuGetProcAddress`` hands out (13000 hides the 13.1 split).

    Installing again with the same configuration does nothing. Returns the
    library path. Raises RuntimeError when a real driver is already loaded or
    the simulator was installed with another configuration, ValueError for
    an unknown profile.
    """
    global _lib, _config
    prof, n = parse_profile(profile)
    if n != 1 and count != 1:
        raise ValueError(f"give the device count once: profile={profile!r} and count={count}")
    n = n * count
    if n < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    config = (prof.key, n, int(driver_version))
    if _lib is not None:
        if config == _config:
            return LIBRARY_PATH
        raise RuntimeError(
            f"the simulated driver is already installed as {_describe(_config)}; "
            f"it cannot be reconfigured as {_describe(config)} in the same process"
        )
    foreign = _foreign_libcuda()
    if foreign is not None:
        raise RuntimeError(
            f"a real CUDA driver ({foreign}) is already loaded in this process: the simulated "
            "driver must be installed before anything loads libcuda (set GREENRES_SIM or call "
            "greenres.sim.install() first)"
        )
    if not LIBRARY_PATH.exists():
        raise RuntimeError(
            f"the simulated driver was not built: {LIBRARY_PATH} is missing "
            "(pip install . builds it)"
        )
    lib = ctypes.CDLL(str(LIBRARY_PATH), mode=ctypes.RTLD_GLOBAL)
    _declare(lib)
    if lib.greenres_sim_is_configured():
        # Configured by another loader in this process (the C API directly).
        raise RuntimeError(
            "the simulated driver was already configured outside greenres.sim.install()"
        )
    rc = lib.greenres_sim_set_driver_version(config[2])
    if rc != 0:
        raise ValueError(f"driver_version {driver_version} rejected by the simulator (error {rc})")
    for ordinal in range(n):
        rc = lib.greenres_sim_add_device(
            prof.name.encode(),
            prof.compute_capability[0],
            prof.compute_capability[1],
            prof.sm_count,
            prof.total_memory,
            prof.min_partition_size,
            prof.alignment,
        )
        if rc == 0 and prof.locality_domains != 1:
            rc = lib.greenres_sim_set_locality_domains(ordinal, prof.locality_domains)
        if rc != 0:
            raise RuntimeError(f"the simulator refused device {prof.key} (error {rc})")
    _lib, _config = lib, config
    return LIBRARY_PATH


def _describe(config: tuple[str, int, int] | None) -> str:
    if config is None:
        return "nothing"
    key, n, version = config
    return f"{n}x{key}@{version}"


def install_from_env(variable: str = "GREENRES_SIM") -> Path | None:
    """Install as the environment variable says; None when it is unset.

    Values: ``h100``, ``8xh100``, ``h100@13000`` (a driver version after ``@``).
    """
    value = os.environ.get(variable, "").strip()
    if not value or value.lower() in ("0", "false", "no", "off"):
        return None
    spec, version = _parse_machine(value)
    return install(spec, driver_version=version)


def is_installed() -> bool:
    """True once :func:`install` loaded and configured the simulator in this process."""
    return _lib is not None


def _need() -> ctypes.CDLL:
    if _lib is None:
        raise RuntimeError(
            "the simulated driver is not installed: call greenres.sim.install() first"
        )
    return _lib


def _handle(obj: Any) -> int:
    """An int handle from an int, a cuda.bindings handle, or an object with .handle."""
    if obj is None:
        return 0
    if isinstance(obj, int):
        return obj
    if hasattr(type(obj), "__int__") or hasattr(type(obj), "__index__"):
        return int(obj)  # cuda.bindings handles convert to their pointer value
    if hasattr(obj, "handle"):
        return _handle(obj.handle)  # cuda.core objects
    return int(obj)


def live_objects() -> dict[str, int]:
    """Live objects of each kind (user contexts, retained primary contexts, green contexts, ...)."""
    lib = _need()
    return {k: lib.greenres_sim_live_count(k.encode()) for k in LIVE_KINDS}


def arena_stats() -> dict[str, dict[str, int]]:
    """How the simulator's handle arena is used, per kind of handle object (``context``,
    ``green_context``, ``stream``, ``event``, ``graph``, ``graph_exec``,
    ``resource_descriptor``): ``slots`` carved so far (live objects, objects still referenced
    inside the simulator, and reclaimed slots), ``free`` reclaimed slots waiting for reuse,
    ``reuses`` slots handed out again, ``mapped_bytes`` memory made accessible. Slots are
    reused, so a program that keeps creating and destroying objects stops carving new ones."""
    lib = _need()
    out = {}
    name = ctypes.c_char_p()
    values = [ctypes.c_ulonglong() for _ in range(4)]
    kind = 0
    while lib.greenres_sim_arena_stats(kind, ctypes.byref(name), *map(ctypes.byref, values)) == 0:
        key = name.value.decode().replace(" ", "_")
        fields = ("slots", "free", "reuses", "mapped_bytes")
        out[key] = dict(zip(fields, (v.value for v in values), strict=True))
        kind += 1
    return out


def live_objects_since(before: dict[str, int]) -> dict[str, int]:
    """What changed since ``before = live_objects()``: kind -> difference, only the kinds
    that changed (an empty dict means everything made since was freed)."""
    after = live_objects()
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def _read_array(fn: Any, obj: Any, ctype: Any) -> tuple[int, ...] | None:
    """Call ``fn(handle, out, capacity)`` the simulator's way: once with no buffer for the
    count (negative: not a live object, then None), once to fill the array."""
    h = _handle(obj)
    n = fn(h, None, 0)
    if n < 0:
        return None
    buf = (ctype * max(n, 1))()
    fn(h, buf, n)
    return tuple(int(x) for x in buf[:n])


def green_context_sms(green_ctx: Any) -> tuple[int, ...]:
    """The SM ids a live green context owns (ints 0..sm_count-1).

    Accepts a CUgreenCtx, the CUcontext of a green context (cuCtxFromGreenCtx),
    a cuda.core Context, or an int handle.
    """
    lib = _need()
    ids = _read_array(lib.greenres_sim_green_ctx_sms, green_ctx, ctypes.c_int)
    if ids is None:
        raise ValueError(f"{green_ctx!r} is not a live green context")
    return ids


def function_names() -> list[str]:
    """Every driver function the simulator implements (base names, like
    ``cuCtxPushCurrent``), sorted: what ``cuGetProcAddress`` can answer."""
    lib = _need()
    names = set()
    for i in range(lib.greenres_sim_function_count()):
        name = lib.greenres_sim_function_entry(i, None, None, None)
        if name:
            names.add(name.decode())
    return sorted(names)


def call_counts(*names: str) -> dict[str, int]:
    """Calls made to each driver function, failed ones included.

    Names are base names without ABI suffix, like ``cuCtxPushCurrent``; with no names,
    every function that was called at least once.
    """
    lib = _need()
    if not names:
        counts = {n: int(lib.greenres_sim_call_count(n.encode())) for n in function_names()}
        return {n: c for n, c in counts.items() if c}
    return {n: int(lib.greenres_sim_call_count(n.encode())) for n in names}


def reset_call_counts() -> None:
    """Set every call count back to zero."""
    _need().greenres_sim_reset_call_counts()


def hazards() -> list[str]:
    """Hazards seen so far, as ``"kind: detail"``."""
    lib = _need()
    out = []
    for i in range(lib.greenres_sim_hazard_count()):
        size = lib.greenres_sim_hazard_get(i, None, 0)
        if size < 0:
            break
        buf = ctypes.create_string_buffer(size + 1)
        lib.greenres_sim_hazard_get(i, buf, size + 1)
        out.append(buf.value.decode())
    return out


def clear_hazards() -> None:
    """Forget the hazards seen so far."""
    _need().greenres_sim_clear_hazards()


_error_codes: dict[str, int] = {}


def _error_code(error: Any) -> int:
    if isinstance(error, str):
        if not _error_codes:
            lib = _need()
            name = ctypes.c_char_p()
            for code in range(0, 1000):
                if lib.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
                    _error_codes[name.value.decode()] = code
        if error not in _error_codes:
            raise ValueError(f"unknown CUresult name {error!r}")
        return _error_codes[error]
    return int(error)


def inject_fault(function: str, error: Any, nth: int = 1) -> None:
    """Make call number ``nth`` from now (1 = the next) of ``function`` fail with ``error``.

    ``error`` is a cuda.bindings CUresult, an int, or a name such as
    ``"CUDA_ERROR_OUT_OF_MEMORY"``. The failing call has no side effect.
    """
    code = _error_code(error)
    if code == 0:
        raise ValueError("a fault must be an error, not CUDA_SUCCESS")
    rc = _need().greenres_sim_inject_fault(function.encode(), int(nth), code)
    if rc != 0:
        raise ValueError(f"fault rejected (error {rc}): nth must be >= 1")


def clear_faults() -> None:
    """Disarm every injected fault."""
    _need().greenres_sim_clear_faults()


def set_op_delay_us(microseconds: int) -> None:
    """Make every asynchronous memset/memcpy/host-function op sleep this long before it runs."""
    _need().greenres_sim_set_op_delay_us(int(microseconds))


def wait_user_object_destructors(timeout: float = 10.0) -> None:
    """Wait until the destructor of every user object that lost its last reference has
    run (they run on the simulator's destructor thread, as on a real driver's internal
    thread, and no CUDA call waits for them). TimeoutError after ``timeout`` seconds."""
    if _need().greenres_sim_wait_user_object_destructors(int(timeout * 1000)) != 0:
        raise TimeoutError(f"user object destructors still pending after {timeout} s")


def graph_node_green_contexts(graph: Any) -> tuple[int, ...]:
    """Per node of a graph, the green context id of the stream it was captured on (0: none)."""
    lib = _need()
    ids = _read_array(lib.greenres_sim_graph_node_green_ctx, graph, ctypes.c_ulonglong)
    if ids is None:
        raise ValueError(f"{graph!r} is not a live graph")
    return ids


# Kernels by host models (their own module; re-exported here).
from .kernels import LaunchInfo, register_kernel, unmodelled_launches, unregister_kernel  # noqa: E402
