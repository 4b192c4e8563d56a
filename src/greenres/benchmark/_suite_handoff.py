"""handoff between two partitions' streams: greenres (pooled event), cuda.core with a
reused event, ``cuda.bindings``, against the C floor (record + wait)."""

from __future__ import annotations

from functools import partial

from cuda.bindings import driver as cu

from . import _loops as L
from ._floor import checked
from ._report import Target, bound_row, cuda_core_row, ratio_row
from ._timing import ns_per_cycle

GREENRES, FLOOR = "greenres.handoff(Stream, Stream)", "C floor, record + wait"
BINDINGS, CORE = "cuda.bindings record + wait", "cuda.core dst.wait(src.record(event))"


def run(session, report) -> None:
    cycles = session.settings.cycles
    size = session.device.sm_facts().min_partition_size
    layout = session.layout({"a": size, "b": size})
    src, dst = layout["a"].stream, layout["b"].stream
    src_h, dst_h = src.handle, dst.handle
    event = session.event()
    loops = {
        GREENRES: partial(L.greenres_handoff, src=src, dst=dst),
        L.PYTHON_FLOOR_HANDOFF: partial(L.python_floor_handoff, src=src, dst=dst),
        BINDINGS: partial(
            L.bindings_handoff, src=cu.CUstream(src_h), dst=cu.CUstream(dst_h), event=event
        ),
    }
    try:
        from cuda.core import Device, Stream
    except ImportError:  # the cuda.core row is skipped
        pass
    else:
        device = Device(session.device.ordinal)
        device.set_current()
        loops[CORE] = partial(
            L.cuda_core_handoff,
            src=Stream.from_handle(src_h),
            dst=Stream.from_handle(dst_h),
            event=device.create_event(),
        )
    methods = {name: ns_per_cycle(loop, cycles) for name, loop in loops.items()}

    def floor_loop(n):
        return session.floor.lib.floor_handoff(src_h, dst_h, int(event), n)

    loops[FLOOR] = floor_loop
    methods[FLOOR] = lambda: checked(floor_loop(cycles), FLOOR)

    def drain():
        session.drain(src_h, dst_h)

    results, calls = session.measure(loops, methods, drain)
    report.add_contenders(results, calls)
    report.rows.append(
        ratio_row(
            "handoff_vs_floor",
            "`handoff(Stream, Stream)` vs the C floor",
            results,
            GREENRES,
            FLOOR,
            Target("<=", 1.5, "x"),
        )
    )
    report.rows.append(
        bound_row(
            "handoff_python_bound",
            "the best handoff ratio a Python API can reach: (Python's own cost + floor) / floor",
            results,
            L.PYTHON_FLOOR_HANDOFF,
            FLOOR,
        )
    )
    report.rows.append(
        cuda_core_row(
            "cuda_core_handoff_vs_greenres",
            "cuda.core with a reused event / greenres handoff",
            results,
            CORE,
            GREENRES,
            Target(">=", 2, "x"),
        )
    )
