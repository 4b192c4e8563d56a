"""Shared helpers of greenres' benchmarks (not part of the package).

* ``setup()``: install the simulated driver unless ``GREENRES_SIM`` says otherwise, and
  return the ``greenres.sim`` module (or None on a real driver). The benchmarks import the
  installed, compiled greenres (the sources live under ``src/``, so none is imported by
  accident).
* ``floor()``: compile ``bench/floor.c`` with ``cc -O2 -shared -fPIC`` into a temporary
  folder, load it with ctypes and resolve its function pointers through the loaded driver's
  ``cuGetProcAddress_v2``.
* medians, per-round ratios and spreads of what ``greenres.benchmark.interleaved()``
  measured (every method once per round, in a shuffled order each round, so all methods
  see the same machine load). The timed loops and the timing itself are greenres.benchmark's,
  the code ``greenres bench`` runs; import it after ``setup()`` chose the driver.
* ``calls_per_cycle()``: driver calls per cycle from the simulator's call counters.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def setup(profile: str = "h100"):
    """Install the simulator (unless ``GREENRES_SIM`` says otherwise), return greenres.sim
    or None."""
    env = os.environ.get("GREENRES_SIM")
    if env is None:
        os.environ["GREENRES_SIM"] = profile
        env = profile
    import greenres.sim as sim

    if env.strip().lower() in ("", "0", "false", "off"):
        return None
    sim.install_from_env()
    return sim


def describe_import() -> str:
    import greenres

    return f"greenres from {Path(greenres.__file__).parent}"


# ----------------------------------------------------------------------------- the C floor

_FLOOR = None


def floor():
    """The compiled floor library (ctypes.CDLL) with argument types declared, ready."""
    global _FLOOR
    if _FLOOR is not None:
        return _FLOOR
    out = Path(tempfile.mkdtemp(prefix="greenres-floor-")) / "libfloor.so"
    cc = os.environ.get("CC", "cc")
    subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(BENCH / "floor.c"), "-lpthread"],
        check=True,
    )
    lib = ctypes.CDLL(str(out))
    vp, lg = ctypes.c_void_p, ctypes.c_long
    lib.floor_init.argtypes = [vp, ctypes.c_int]
    lib.floor_init.restype = ctypes.c_int
    lib.floor_enter_exit.argtypes = [vp, vp, vp, vp, vp, lg, ctypes.c_int]
    lib.floor_enter_exit.restype = ctypes.c_double
    lib.floor_enter_exit_many.argtypes = [
        vp,
        ctypes.POINTER(vp),
        ctypes.POINTER(vp),
        ctypes.c_int,
        vp,
        vp,
        lg,
    ]
    lib.floor_enter_exit_many.restype = ctypes.c_double
    lib.floor_handoff.argtypes = [vp, vp, vp, lg]
    lib.floor_handoff.restype = ctypes.c_double
    pp = ctypes.POINTER(vp)
    lib.floor_threads.argtypes = [ctypes.c_int, vp, pp, pp, pp, pp, pp, lg]
    lib.floor_threads.restype = ctypes.c_double
    driver = _driver_library()
    gpa = ctypes.cast(driver.cuGetProcAddress_v2, vp).value
    import greenres

    err = lib.floor_init(gpa, greenres.driver_version())
    if err:
        raise RuntimeError(f"floor_init: cuGetProcAddress_v2 failed with CUresult {err}")
    _FLOOR = lib
    return lib


def _driver_library():
    """The libcuda.so.1 already loaded in this process (the simulator's when installed)."""
    if os.environ.get("GREENRES_SIM", "").strip().lower() not in ("", "0", "false", "off"):
        import greenres.sim

        return ctypes.CDLL(str(Path(greenres.sim.__file__).parent / "libcuda.so.1"))
    return ctypes.CDLL("libcuda.so.1")


def checked(value: float, what: str) -> float:
    if value < 0:
        raise RuntimeError(f"{what}: a driver call failed with CUresult {int(-value)}")
    return value


def void_array(values):
    return (ctypes.c_void_p * len(values))(*values)


# ----------------------------------------------------------------------------- timing


def median(values) -> float:
    return statistics.median(values)


def ratio(results: dict, a: str, b: str) -> float:
    """Median over rounds of results[a][i] / results[b][i] (side by side, same round)."""
    return statistics.median(x / y for x, y in zip(results[a], results[b], strict=True))


def spread(values) -> str:
    """The inter-quartile range as text, to show the noise."""
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return f"{q[0]:.0f}-{q[2]:.0f}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ----------------------------------------------------------------------------- call counts


def calls_per_cycle(sim, run, cycles: int = 1000):
    """(total calls per cycle, {name: per cycle}) of ``run(cycles)``, all functions counted."""
    if sim is None:
        return None, {}
    sim.reset_call_counts()
    run(cycles)
    counts = {k: v / cycles for k, v in sim.call_counts().items()}
    return sum(counts.values()), counts


def fmt_calls(total, counts) -> str:
    if total is None:
        return "-"
    return f"{total:g}"


def machine() -> str:
    import platform

    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"loadavg {os.getloadavg()[0]:.2f}"
    )


# ----------------------------------------------------------------------------- driver state

_PRIMARY = None


def ok(result):
    """Unwrap a cuda.bindings (err, value...) result, raising on an error."""
    from cuda.bindings import driver as cu

    err = result[0] if isinstance(result, tuple) else result
    if err != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"driver call failed: {err!r}")
    if isinstance(result, tuple):
        return result[1] if len(result) == 2 else result[1:]
    return None


def primary_context():
    """cuInit, retain device 0's primary context and push it on this thread (once per
    process). Returns (device, primary) as cuda.bindings handles."""
    global _PRIMARY
    if _PRIMARY is None:
        from cuda.bindings import driver as cu

        ok(cu.cuInit(0))
        device = ok(cu.cuDeviceGet(0))
        primary = ok(cu.cuDevicePrimaryCtxRetain(device))
        ok(cu.cuCtxPushCurrent(primary))
        _PRIMARY = (device, primary)
    return _PRIMARY


def sync(*streams):
    """Drain the given streams (cuda.bindings CUstream or int handles; 0 = legacy)."""
    from cuda.bindings import driver as cu

    for s in streams:
        ok(cu.cuStreamSynchronize(s if isinstance(s, cu.CUstream) else cu.CUstream(int(s))))


def perf() -> int:
    import time

    return time.perf_counter_ns()


def print_targets(targets):
    """targets: (label, measured ratio, "<=" or ">=", bound). Prints a Markdown table."""
    print("| target | measured (median of per-round ratios) | result |")
    print("|---|---:|---|")
    for label, value, op, bound in targets:
        good = value <= bound if op == "<=" else value >= bound
        print(f"| {label} | {value:.2f}x | {verdict(good)} |")
    print()
