"""enter+exit of a partition: greenres from Python (explicit stream and ``with``), from C
through the C-level entry, the same calls from ``cuda.bindings`` and cuda.core's nearest
path, against the C floor of the same calls."""

from __future__ import annotations

from functools import partial

from cuda.bindings import driver as cu

from . import _loops as L
from ._floor import checked
from ._report import Target, bound_row, cuda_core_row, ratio_row
from ._timing import ns_per_cycle

FLOOR, FLOOR_RESOLVE = "C floor, 7 calls", "C floor, 7 calls (legacy stream)"
GREENRES, WITH = "greenres enter(stream)/exit()", "greenres `with part:`"
CAPI = "greenres C-level entry, C loop"
BINDINGS, CORE = "cuda.bindings, the same 7 calls", "cuda.core set_current + record/wait"


def run(session, report) -> None:
    cycles = session.settings.cycles
    floor = session.floor
    caller = session.stream()
    caller_h = int(caller)
    e1, e2 = session.event(), session.event()
    layout = session.layout({"a": _size(session), "b": _size(session)})
    part = layout["a"]
    pctx, pstream = part.context_handle, part.stream.handle
    green_ctx, pstream_b = cu.CUcontext(pctx), cu.CUstream(pstream)
    table = floor.capi_table()
    capi_part = floor.capi_partition(table, part)

    loops = {
        GREENRES: partial(L.greenres_enter_exit, part=part, caller=caller_h),
        WITH: partial(L.greenres_with, part=part),
        L.PYTHON_FLOOR_ENTER_EXIT: partial(L.python_floor_enter_exit, caller=caller_h),
        L.PYTHON_FLOOR_WITH: L.python_floor_with,
        BINDINGS: partial(
            L.bindings_enter_exit,
            caller=caller,
            green_ctx=green_ctx,
            pstream=pstream_b,
            e1=e1,
            e2=e2,
        ),
    }
    methods = {name: ns_per_cycle(loop, cycles) for name, loop in loops.items()}
    floor_loops = {
        FLOOR: lambda n: floor.lib.floor_enter_exit(
            caller_h, pctx, pstream, int(e1), int(e2), n, 0
        ),
        FLOOR_RESOLVE: lambda n: floor.lib.floor_enter_exit(
            caller_h, pctx, pstream, int(e1), int(e2), n, 1
        ),
        CAPI: lambda n: floor.lib.floor_capi_enter_exit(table, capi_part, caller_h, n),
    }
    for name, loop in floor_loops.items():
        methods[name] = partial(lambda loop, name: checked(loop(cycles), name), loop, name)
        loops[name] = loop
    core = _cuda_core(session, caller_h)
    if core is not None:
        loops[CORE] = core[0]
        methods[CORE] = ns_per_cycle(core[0], cycles)
    streams = [caller_h, pstream, 0] + ([core[1]] if core else [])

    def drain():
        session.drain(*streams)

    results, calls = session.measure(loops, methods, drain)
    report.add_contenders(results, calls)

    report.rows += [
        ratio_row(
            "enter_exit_vs_floor",
            "`enter(stream)`+`exit()` from Python vs the C floor of the same calls",
            results,
            GREENRES,
            FLOOR,
            Target("<=", 1.5, "x"),
        ),
        ratio_row(
            "with_vs_floor",
            "`with part:` vs the C floor of its calls",
            results,
            WITH,
            FLOOR_RESOLVE,
            Target("<=", 1.7, "x"),
        ),
        ratio_row(
            "capi_vs_floor",
            "enter+exit from C through the C-level entry vs the C floor",
            results,
            CAPI,
            FLOOR,
            Target("<=", 1.25, "x"),
        ),
        ratio_row(
            "bindings_vs_greenres",
            "the same calls from Python cuda.bindings / greenres enter+exit",
            results,
            BINDINGS,
            GREENRES,
            Target(">=", 10, "x"),
        ),
    ]
    report.rows += [
        bound_row(
            "enter_exit_python_bound",
            "the best `enter`+`exit` ratio a Python API can reach: (Python's own cost + floor)"
            " / floor",
            results,
            L.PYTHON_FLOOR_ENTER_EXIT,
            FLOOR,
        ),
        bound_row(
            "with_python_bound",
            "the best `with` ratio a Python API can reach: (Python's own cost + floor) / floor",
            results,
            L.PYTHON_FLOOR_WITH,
            FLOOR_RESOLVE,
        ),
    ]
    report.rows.append(
        cuda_core_row(
            "cuda_core_vs_greenres",
            "cuda.core's nearest path / greenres enter+exit",
            results,
            CORE,
            GREENRES,
            Target(">=", 5, "x"),
        )
    )


def _size(session) -> int:
    return session.device.sm_facts().min_partition_size


def _cuda_core(session, caller_h):
    """(loop, green stream handle) of cuda.core's nearest path, or None without cuda.core.
    Its green context comes from a split of its own (its SMs overlap the layout's: irrelevant
    for timing)."""
    try:
        from cuda.core import ContextOptions, Device, SMResourceOptions, Stream
    except ImportError:
        return None
    device = Device(session.device.ordinal)
    device.set_current()
    groups, _rest = device.resources.sm.split(SMResourceOptions(count=[_size(session)]))
    ctx = device.create_context(ContextOptions(resources=[groups[0]]))
    green_stream = ctx.create_stream()
    caller = Stream.from_handle(caller_h)
    e1, e2 = device.create_event(), device.create_event()
    session.stack.callback(green_stream.close)
    loop = partial(
        L.cuda_core_enter_exit,
        device=device,
        ctx=ctx,
        green_stream=green_stream,
        caller=caller,
        e1=e1,
        e2=e2,
    )
    return loop, int(green_stream.handle)
