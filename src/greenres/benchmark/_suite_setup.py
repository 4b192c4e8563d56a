"""What setting up costs: ``plan()`` of 8 and 16 partitions, ``import greenres.spec`` in a
fresh interpreter, and ``Layout.create`` + ``close`` of 2, 4 and 8 partitions against the C
floor of the driver calls that make and free a layout and against cuda.core's
split/create_context/create_stream; with ``--scale``, planning against partitions and
modes (1 to 16) and creation against partitions (1 to 16) and layouts alive."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import greenres as gr
from greenres.plan import plan_counts

from ._floor import checked
from ._report import Target, cuda_core_row, ratio_row, skipped_row, value_row
from ._timing import interleaved

# The events a layout of one mode holds besides its partitions' contexts and streams (see
# _core.pxi): enter and exit events per partition (a fence event per partition only when it
# has modes to switch between; the handoff pool's events are made by handoffs).
EVENTS_PER_PARTITION = 2
CREATE_COUNTS = (2, 4, 8)


def run(session, report) -> None:
    _plan_rows(session, report)
    _import_row(session, report)
    _create_rows(session, report)
    if session.settings.scale:
        _plan_scale(session, report)
        _create_scale(session, report)


# --------------------------------------------------------------------------------- plan()


def _spec(n: int, size: int) -> gr.PartitionSpec:
    return gr.PartitionSpec([gr.Partition(f"p{i}", sms=size) for i in range(n)])


def _plan_us(spec, facts, repeat: int) -> float:
    plan = spec.plan
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        plan(facts)
    return (time.perf_counter_ns() - t0) / repeat / 1e3


def _plan_rows(session, report) -> None:
    facts = session.device.sm_facts()
    size = facts.min_partition_size
    repeat = max(10, session.settings.cycles // 40)
    specs = {n: _spec(n, size) for n in (8, 16) if n * size <= facts.sm_count}
    methods = {n: (lambda spec=spec: _plan_us(spec, facts, repeat)) for n, spec in specs.items()}
    results = interleaved(methods, session.settings.rounds)
    for n, bound in ((8, 10), (16, 20)):
        case = f"`plan()` of {n} partitions"
        if n not in results:
            report.rows.append(
                skipped_row(
                    f"plan_{n}_us",
                    case,
                    Target("<=", bound, "us"),
                    f"{n} partitions of {size} SMs do not fit {facts.sm_count} SMs",
                )
            )
            continue
        report.rows.append(value_row(f"plan_{n}_us", case, results[n], Target("<=", bound, "us")))


def _plan_scale(session, report) -> None:
    facts = session.device.sm_facts()
    size = facts.min_partition_size
    repeat = max(10, session.settings.cycles // 80)
    counts = [n for n in (1, 2, 4, 8, 16) if n * size <= facts.sm_count]
    partitions = interleaved(
        {n: (lambda n=n: _plan_us(_spec(n, size), facts, repeat)) for n in counts},
        session.settings.rounds,
    )
    modes = interleaved(
        {
            k: (
                lambda k=k: _plan_us(
                    gr.ModalSpec({f"m{j}": _spec(4, size) for j in range(k)}), facts, repeat
                )
            )
            for k in (1, 2, 4, 8, 16)
        },
        session.settings.rounds,
    )
    report.scale["plan_vs_partitions"] = {
        "x": "partitions",
        "y": "µs per plan()",
        "series": {"plan()": [[n, statistics.median(v)] for n, v in partitions.items()]},
    }
    report.scale["plan_vs_modes"] = {
        "x": "modes (4 partitions each)",
        "y": "µs per plan()",
        "series": {"ModalSpec.plan()": [[k, statistics.median(v)] for k, v in modes.items()]},
    }


# ------------------------------------------------------------------------ import greenres.spec

_IMPORT_PROBE = (
    "import sys, time, json\n"
    "t0 = time.perf_counter()\n"
    "import {module}\n"
    "ms = (time.perf_counter() - t0) * 1e3\n"
    "print(json.dumps({{'ms': ms, 'extension': 'greenres._driver' in sys.modules,\n"
    "                  'bindings': 'cuda.bindings.driver' in sys.modules,\n"
    "                  'simulator': 'greenres.sim' in sys.modules}}))\n"
)


def _import_once(module: str) -> dict:
    """``import module`` timed in a fresh interpreter, and what it loaded. Without
    GREENRES_SIM (bench/run_all.py sets it for itself): with it ``import greenres`` loads
    the simulated driver, which a declarative-only user does not."""
    env = {k: v for k, v in os.environ.items() if k != "GREENRES_SIM"}
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return json.loads(out)


def _import_row(session, report) -> None:
    """``import greenres.spec`` and, in the same rounds (alternating which goes first),
    ``import attrs`` alone: the declarative classes are attrs classes, so what attrs (and
    the modules it imports: typing, inspect, ast, ...) costs here bounds the row."""
    runs, attrs_ms = [], []
    for k in range(max(3, session.settings.rounds)):
        if k % 2:
            attrs_ms.append(_import_once("attrs")["ms"])
        runs.append(_import_once("greenres.spec"))
        if not k % 2:
            attrs_ms.append(_import_once("attrs")["ms"])
    loaded = [name for name in ("extension", "bindings", "simulator") if any(r[name] for r in runs)]
    note = (
        f"also loaded: {', '.join(loaded)}"
        if loaded
        else "neither the extension, cuda.bindings nor the simulator loaded"
    )
    report.rows.append(
        value_row(
            "import_spec_ms",
            "`import greenres.spec` (declarative layer only, no extension loaded)",
            [r["ms"] for r in runs],
            Target("<=", 25, "ms"),
            note,
        )
    )
    if loaded:
        report.rows[-1].status = "MISS"
    report.rows.append(
        value_row(
            "import_spec_vs_attrs",
            "`import greenres.spec` / `import attrs` alone, in the same rounds (the declarative "
            "classes are attrs classes)",
            [r["ms"] / a for r, a in zip(runs, attrs_ms, strict=True)],
            None,
            f"import attrs alone: {statistics.median(attrs_ms):.1f} ms",
        )
    )


# ------------------------------------------------------------------- Layout.create + close


def _create_rows(session, report) -> None:
    facts = session.device.sm_facts()
    size = facts.min_partition_size
    counts = [n for n in CREATE_COUNTS if n * size <= facts.sm_count]
    iters = max(2, session.settings.cycles // 1000)
    methods, calls = {}, {}
    core = _cuda_core(session)
    for n in counts:
        plan = plan_counts({f"p{i}": size for i in range(n)}, facts)
        methods[f"greenres Layout.create+close, {n} partitions"] = _timed(
            lambda plan=plan: gr.Layout.create(plan, device=session.device).close(), iters
        )
        methods[f"C floor, layout of {n} partitions"] = _floor_create(session, plan, size, iters)
        if core is not None:
            methods[f"cuda.core split+create_context+create_stream, {n}"] = _timed(
                lambda n=n: core(n, size), iters
            )
        if session.sim is not None:
            calls[f"greenres Layout.create+close, {n} partitions"] = session.calls_per_cycle(
                lambda k, plan=plan: [
                    gr.Layout.create(plan, device=session.device).close() for _ in range(k)
                ],
                2,
            )
    results = interleaved(methods, session.settings.rounds)
    report.add_contenders({k: [v * 1e3 for v in vals] for k, vals in results.items()}, calls)
    for n in counts:
        g = f"greenres Layout.create+close, {n} partitions"
        report.rows.append(
            ratio_row(
                f"create_{n}_vs_floor",
                f"`Layout.create` + `close` of {n} partitions vs the C floor of its driver calls",
                results,
                g,
                f"C floor, layout of {n} partitions",
                Target("<=", 1.5, "x"),
            )
        )
        report.rows.append(
            cuda_core_row(
                f"create_{n}_cuda_core_vs_greenres",
                f"cuda.core split/create_context/create_stream of {n} / greenres create+close",
                results,
                f"cuda.core split+create_context+create_stream, {n}",
                g,
                Target(">=", 1.0, "x"),
            )
        )


def _timed(fn, iters):
    """A method returning µs per call of ``fn()``."""

    def run_batch():
        t0 = time.perf_counter_ns()
        for _ in range(iters):
            fn()
        return (time.perf_counter_ns() - t0) / iters / 1e3

    return run_batch


def _floor_create(session, plan, size, iters):
    """The floor of ``Layout.create(plan)`` + ``close()`` of partitions of ``size`` SMs: the
    same driver calls, with the split of the plan's mechanism (the structured split costs
    the driver more than a split by count: ~35,000 against ~21,000 instructions in the
    simulator)."""
    recipe = plan.recipe
    structured = recipe.mechanism == "structured"

    def run_batch():
        value = session.floor.lib.floor_layout_create_close(
            session.device.ordinal,
            len(recipe.partitions),
            size,
            EVENTS_PER_PARTITION,
            iters,
            structured,
            recipe.coscheduled_sm_count,
        )
        return checked(value, "floor_layout_create_close") / 1e3

    return run_batch


def _cuda_core(session):
    """fn(n, size): cuda.core's split of n groups, a context and a stream per group, all
    closed again; or None without cuda.core."""
    try:
        from cuda.core import ContextOptions, Device, SMResourceOptions
    except ImportError:
        return None
    device = Device(session.device.ordinal)
    device.set_current()

    def make(n, size):
        groups, _rest = device.resources.sm.split(SMResourceOptions(count=[size] * n))
        made = []
        for group in groups:
            ctx = device.create_context(ContextOptions(resources=[group]))
            made.append((ctx, ctx.create_stream()))
        for ctx, stream in made:
            stream.close()
            ctx.close()

    return make


def _create_scale(session, report) -> None:
    facts = session.device.sm_facts()
    size = facts.min_partition_size
    iters = max(2, session.settings.cycles // 2000)
    counts = [n for n in (1, 2, 4, 8, 16) if n * size <= facts.sm_count]
    by_count = interleaved(
        {
            n: _timed(
                lambda n=n: gr.Layout.create({f"p{i}": size for i in range(n)}).close(), iters
            )
            for n in counts
        },
        session.settings.rounds,
    )
    alive_counts = (0, 8, 32)
    by_alive = {}
    for alive in alive_counts:
        held = [gr.Layout.create({"x": size}) for _ in range(alive)]
        try:
            by_alive[alive] = [
                _timed(lambda: gr.Layout.create({"a": size, "b": size}).close(), iters)()
                for _ in range(session.settings.rounds)
            ]
        finally:
            for layout in held:
                layout.close()
    report.scale["create_vs_partitions"] = {
        "x": "partitions",
        "y": "µs per Layout.create + close (planning included)",
        "series": {"greenres": [[n, statistics.median(v)] for n, v in by_count.items()]},
    }
    report.scale["create_vs_layouts_alive"] = {
        "x": "layouts alive",
        "y": "µs per Layout.create + close of 2 partitions",
        "series": {"greenres": [[n, statistics.median(v)] for n, v in by_alive.items()]},
    }
