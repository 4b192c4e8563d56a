"""What NVTX annotation costs, side by side in one process: enter+exit of a partition of a
layout with annotation off and on (with whatever tool this process has attached: none,
unless ``NVTX_INJECTION64_PATH`` names one), and ``greenres.nvtx.range_push``/``range_pop``
against the ``nvtx`` package's ``push_range``/``pop_range`` (the Python calls
``torch.cuda.nvtx`` users make), when that package is installed. ``bench/bench_nvtx.py``
runs this suite a second time in a process with a recording tool attached."""

from __future__ import annotations

import importlib.util
from functools import partial

from greenres import nvtx

from . import _loops as L
from ._report import Target, ratio_row
from ._timing import ns_per_cycle

OFF, ON = "enter+exit, annotation off", "enter+exit, annotation on"
GREENRES_RANGE, PACKAGE_RANGE = (
    "greenres.nvtx.range_push + range_pop",
    "nvtx package push_range + pop_range",
)


def _ranges(n: int, push, pop) -> None:
    """``n`` times ``push("step")`` + ``pop()``: a range API's Python call cost."""
    for _ in range(n):
        push("step")
        pop()


def run(session, report) -> None:
    cycles = session.settings.cycles
    size = session.device.sm_facts().min_partition_size
    off = session.layout({"off": size, "caller": size}, nvtx=False)
    on = session.layout({"on": size}, nvtx=True)
    caller = int(off["caller"].stream)
    loops = {
        OFF: partial(L.greenres_enter_exit, part=off["off"], caller=caller),
        ON: partial(L.greenres_enter_exit, part=on["on"], caller=caller),
        GREENRES_RANGE: partial(_ranges, push=nvtx.range_push, pop=nvtx.range_pop),
    }
    if importlib.util.find_spec("nvtx") is not None:
        import nvtx as package

        loops[PACKAGE_RANGE] = partial(_ranges, push=package.push_range, pop=package.pop_range)
    methods = {name: ns_per_cycle(loop, cycles) for name, loop in loops.items()}

    def drain():
        session.drain(caller, off["off"].stream.handle, on["on"].stream.handle)

    results, calls = session.measure(loops, methods, drain)
    report.add_contenders(results, calls)
    # issue 8: with no tool attached, annotation costs nothing measurable beyond NVTX's
    # own no-op calls (5% is below this machine's round-to-round spread)
    report.rows.append(
        ratio_row(
            "nvtx_on_vs_off",
            "enter+exit with NVTX annotation on vs off (no tool attached unless "
            "NVTX_INJECTION64_PATH names one)",
            results,
            ON,
            OFF,
            Target("<=", 1.05, "x"),
        )
    )
    if PACKAGE_RANGE in results:  # an INFO row, left out without the package
        report.rows.append(
            ratio_row(
                "nvtx_range_vs_package",
                "greenres.nvtx range_push+range_pop vs the nvtx package's push/pop_range",
                results,
                GREENRES_RANGE,
                PACKAGE_RANGE,
                None,
            )
        )
