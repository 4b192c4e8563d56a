"""``greenres bench``: every target of docs/benchmarks.md measured side by side in one run.

Each suite runs its contenders (greenres, the C floor of the same driver calls, the same
calls from ``cuda.bindings``, cuda.core's nearest path) in interleaved rounds, so all of
them see the same machine load, and reports rows: a ratio of two contenders (the median of
per-round ratios) or an absolute time, each with its target and PASS/MISS. The C floor is
``floor.c``, built with the package. Times include the driver's own cost of each call (on
the simulated driver, the simulator's). ``bench/run_all.py`` runs the same with the scale
series and draws them.

    from greenres import benchmark
    report = benchmark.run(gr.Device(0))            # Report; .to_dict(), .markdown()
"""

from __future__ import annotations

import contextlib
import gc
import time

import greenres as gr

from . import (
    _suite_alive,
    _suite_enter_exit,
    _suite_graph,
    _suite_handoff,
    _suite_nvtx,
    _suite_setup,
    _suite_threads,
)
from ._report import SCHEMA, Report, Row, Target
from ._session import Session, Settings

__all__ = ["SCHEMA", "SUITES", "Report", "Row", "Settings", "Target", "run"]

#: suite name -> module with run(session, report), in report order
SUITES = {
    "enter_exit": _suite_enter_exit,
    "handoff": _suite_handoff,
    "threads": _suite_threads,
    "alive": _suite_alive,
    "setup": _suite_setup,
    "graph": _suite_graph,
    "nvtx": _suite_nvtx,
}


def run(
    device: gr.Device,
    settings: Settings | None = None,
    suites: list[str] | None = None,
) -> Report:
    """Run ``suites`` (default: all of :data:`SUITES`) on ``device``. Everything a suite
    creates is released before this returns, also when a suite raises.

    Raises:
        ValueError: for an unknown suite name or settings below 1.
    """
    settings = settings or Settings()
    if settings.cycles < 1 or settings.rounds < 1:
        raise ValueError(
            f"cycles and rounds must be >= 1 (got {settings.cycles}, {settings.rounds})"
        )
    names = list(SUITES) if suites is None else list(suites)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite {unknown[0]!r} (suites: {', '.join(SUITES)})")
    from cuda.bindings import driver as cu

    from greenres import sim
    from greenres._bindings import call

    # cuda.core (a contender) makes the primary context current with cuCtxSetCurrent and
    # keeps it retained for the life of the process: start it first, so that its retain is
    # not counted as left alive, and put this thread's current context back afterwards.
    current = call(cu.cuCtxGetCurrent)
    _start_cuda_core(device.ordinal)
    before = sim.live_objects() if sim.is_installed() else None
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            session = Session.open(device, settings, stack)
            report = Report(session.meta())
            for name in names:
                with contextlib.ExitStack() as suite_stack:
                    session.stack = suite_stack
                    SUITES[name].run(session, report)
            session.stack = stack
        gc.collect()  # cuda.core frees its handles when its objects go
    finally:
        call(cu.cuCtxSetCurrent, current)
    report.meta["elapsed_s"] = round(time.perf_counter() - started, 3)
    report.meta["suites"] = names
    if before is not None:
        report.live_after_close = sim.live_objects_since(before)
    return report


def _start_cuda_core(ordinal: int) -> None:
    try:
        from cuda.core import Device
    except ImportError:
        return
    Device(ordinal).set_current()
