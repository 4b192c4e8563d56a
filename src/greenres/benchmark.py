"""``greenres bench``: greenres' hot paths side by side with the same driver calls made from
Python through ``cuda.bindings.driver``, on one device, in one run.

Paths (one "cycle" each):

* ``greenres_enter_exit``: ``part.enter(stream)`` then ``part.exit()`` (7 driver calls:
  read the current context (what exit restores), record on the caller's stream, push the
  green context, the partition's stream waits; record on the partition's stream, pop, the
  caller's stream waits);
* ``greenres_with``: ``with part: pass`` (no caller stream given: the primary context being
  current, its legacy stream is the caller's; the same 7 calls);
* ``bindings_enter_exit``: the same 7 calls from ``cuda.bindings.driver``;
* ``greenres_handoff``: ``greenres.handoff(a.stream, b.stream)`` (record + wait, 2 calls);
* ``bindings_handoff``: the same record + wait from ``cuda.bindings.driver``.

Rounds are interleaved: each round runs every path once for ``cycles`` cycles, in a
shuffled order, so every path sees the same machine load; the report gives the median over
rounds of ns per cycle and the median of the per-round ratios bindings / greenres. The
numbers include the driver's own cost of each call (on the simulated driver: the
simulator's). This is the quick in-package version of ``bench/bench_enter_exit.py`` and
``bench/bench_handoff.py`` (which also time a C floor and cuda.core).
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass, field

from cuda.bindings import driver as cu

import greenres as gr
from greenres._bindings import call, primary_context_current

__all__ = [
    "PATHS",
    "RATIOS",
    "BenchReport",
    "bindings_enter_exit",
    "bindings_handoff",
    "greenres_enter_exit",
    "greenres_handoff",
    "greenres_with",
    "interleaved",
    "ns_per_cycle",
    "run_bench",
]

DEFAULT_CYCLES = 20000
DEFAULT_ROUNDS = 7

#: path key -> label, in report order
PATHS = {
    "greenres_enter_exit": "greenres part.enter(stream) / part.exit()",
    "greenres_with": "greenres `with part:`",
    "bindings_enter_exit": "cuda.bindings.driver, the same 6 calls",
    "greenres_handoff": "greenres.handoff(a.stream, b.stream)",
    "bindings_handoff": "cuda.bindings.driver, the same record + wait",
}

#: ratio name -> (bindings path, greenres path)
RATIOS = {
    "enter_exit": ("bindings_enter_exit", "greenres_enter_exit"),
    "with": ("bindings_enter_exit", "greenres_with"),
    "handoff": ("bindings_handoff", "greenres_handoff"),
}
_RATIO_TEXT = {
    "enter_exit": "bindings 6 calls / greenres enter(stream)+exit()",
    "with": "bindings 6 calls / greenres `with part:` (which makes 7)",
    "handoff": "bindings record+wait / greenres.handoff",
}


# ----------------------------------------------------------------------------- the loops
# Shared with bench/bench_enter_exit.py, bench/bench_threads.py and bench/bench_handoff.py,
# as are interleaved() and ns_per_cycle() below.


def greenres_enter_exit(n: int, part, caller: int) -> None:
    """``n`` cycles of ``part.enter(caller)`` + ``part.exit()`` (``caller``: an int handle)."""
    enter, exit_ = part.enter, part.exit
    for _ in range(n):
        enter(caller)
        exit_()


def greenres_with(n: int, part) -> None:
    """``n`` cycles of ``with part: pass``."""
    p = part
    for _ in range(n):
        with p:
            pass


def bindings_enter_exit(n: int, caller, green_ctx, pstream, e1, e2) -> None:
    """``n`` cycles of greenres' enter+exit driver calls made from Python through
    ``cuda.bindings.driver`` (get current, record, push, wait; record, pop, wait), functions
    bound to locals first as a careful Python caller would. Results are not checked."""
    current, record, push, pop, wait = (
        cu.cuCtxGetCurrent,
        cu.cuEventRecord,
        cu.cuCtxPushCurrent,
        cu.cuCtxPopCurrent,
        cu.cuStreamWaitEvent,
    )
    for _ in range(n):
        current()
        record(e1, caller)
        push(green_ctx)
        wait(pstream, e1, 0)
        record(e2, pstream)
        pop()
        wait(caller, e2, 0)


def greenres_handoff(n: int, src, dst) -> None:
    """``n`` calls of ``greenres.handoff(src, dst)``."""
    handoff = gr.handoff
    for _ in range(n):
        handoff(src, dst)


def bindings_handoff(n: int, src, dst, event) -> None:
    """``n`` cycles of record on ``src`` + ``dst`` waits, through ``cuda.bindings.driver``
    with one reused event. Results are not checked."""
    record, wait = cu.cuEventRecord, cu.cuStreamWaitEvent
    for _ in range(n):
        record(event, src)
        wait(dst, event, 0)


# ----------------------------------------------------------------------------- the report


@dataclass
class BenchReport:
    """What ``greenres bench`` measured."""

    device: str
    sm_count: int
    driver: str
    partition_sms: int
    cycles: int
    rounds: int
    #: path key -> {"label", "median_ns", "min_ns", "max_ns", "ns_per_round", "calls_per_cycle",
    #: "calls"}; the call counts are None unless the simulated driver is installed
    paths: dict[str, dict] = field(default_factory=dict)
    #: ratio name -> {"bindings", "greenres", "ratio"} (median of per-round ratios)
    ratios: dict[str, dict] = field(default_factory=dict)
    #: driver objects the benchmark made and left alive (simulated driver only)
    live_after_close: dict[str, int] | None = None
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        """The report for a person."""
        lines = [
            f"device: {self.device}, {self.sm_count} SMs ({self.driver})",
            f"layout: 2 partitions of {self.partition_sms} SMs (the smallest valid size)",
            f"{self.rounds} interleaved rounds x {self.cycles} cycles per path",
            "",
        ]
        width = max(len(p["label"]) for p in self.paths.values())
        lines.append(f"{'path':<{width}}  {'median ns/cycle':>15}  {'driver calls/cycle':>18}")
        for entry in self.paths.values():
            calls = entry["calls_per_cycle"]
            calls_text = "-" if calls is None else f"{calls:g}"
            lines.append(
                f"{entry['label']:<{width}}  {entry['median_ns']:>15.0f}  {calls_text:>18}"
            )
        lines.append("")
        lines.append("cuda.bindings / greenres (median of per-round ratios):")
        for name, entry in self.ratios.items():
            lines.append(f"  {name:<10} {entry['ratio']:6.2f}x  ({_RATIO_TEXT[name]})")
        lines.append("")
        cost = (
            "on the simulated driver that cost is the simulator's, not a GPU driver's"
            if self.live_after_close is not None
            else "measured on the installed driver"
        )
        lines.append(f"Times include the driver's own cost of each call ({cost}).")
        if self.live_after_close is not None:
            lines.append(
                f"simulated driver: live objects after close: {self.live_after_close or 'none'}"
            )
        lines.append(f"({self.elapsed_ms:.0f} ms in all)")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- the run


def interleaved(methods: dict, rounds: int, between=None, seed: int = 1) -> dict:
    """``methods``: key -> fn() returning ns per cycle of one timed batch. Warm every method
    up once, then ``rounds`` rounds, each running every method once in a shuffled order, so
    all methods see the same machine load; ``between()`` runs (untimed) after each batch,
    e.g. to drain stream queues. Returns key -> list of ns per cycle, one per round."""
    rng = random.Random(seed)
    keys = list(methods)
    results = {k: [] for k in keys}
    for fn in methods.values():  # warm up (also starts the simulator's stream workers)
        fn()
        if between:
            between()
    for _ in range(rounds):
        rng.shuffle(keys)
        for k in keys:
            results[k].append(methods[k]())
            if between:
                between()
    return results


def ns_per_cycle(loop, cycles: int):
    """A method for :func:`interleaved`: runs ``loop(cycles)`` and returns ns per cycle."""

    def run() -> float:
        t0 = time.perf_counter_ns()
        loop(cycles)
        return (time.perf_counter_ns() - t0) / cycles

    return run


def run_bench(
    device: gr.Device, cycles: int = DEFAULT_CYCLES, rounds: int = DEFAULT_ROUNDS
) -> BenchReport:
    """Run the benchmark on ``device``; returns the report. Everything it creates (layout,
    streams, events, the primary context retain) is released before it returns."""
    if cycles < 1 or rounds < 1:
        raise ValueError(f"cycles and rounds must be >= 1 (got {cycles}, {rounds})")
    from greenres import sim

    facts = device.sm_facts()
    size = facts.min_partition_size
    if 2 * size > facts.sm_count:
        raise ValueError(
            f"{device.name} has {facts.sm_count} SMs: too few for 2 partitions of {size}"
        )
    on_sim = sim.is_installed()
    driver = "simulated driver" if on_sim else f"driver {facts.driver_version_text}"
    report = BenchReport(device.name, facts.sm_count, driver, size, cycles, rounds)
    before = sim.live_objects() if on_sim else None
    started = time.perf_counter()

    flags = cu.CUevent_flags.CU_EVENT_DISABLE_TIMING.value
    with primary_context_current(device.ordinal):
        caller = call(cu.cuStreamCreate, cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value)
        try:
            events = []
            try:
                for _ in range(3):
                    events.append(call(cu.cuEventCreate, flags))
                with gr.Layout.create({"a": size, "b": size}, device=device) as layout:
                    _measure(report, layout, caller, events, sim if on_sim else None)
            finally:
                for event in events:
                    call(cu.cuEventDestroy, event)
        finally:
            call(cu.cuStreamDestroy, caller)
    report.elapsed_ms = (time.perf_counter() - started) * 1e3
    if before is not None:
        report.live_after_close = sim.live_objects_since(before)
    return report


def _measure(report: BenchReport, layout, caller, events, sim) -> None:
    a, b = layout["a"], layout["b"]
    caller_h = int(caller)
    green_ctx = cu.CUcontext(a.context_handle)
    pstream = cu.CUstream(a.stream.handle)
    src, dst = a.stream, b.stream
    b_src, b_dst = cu.CUstream(src.handle), cu.CUstream(dst.handle)
    e1, e2, e3 = events

    # Check once that the unchecked cuda.bindings loops' calls succeed here.
    call(cu.cuEventRecord, e1, caller)
    call(cu.cuCtxPushCurrent, green_ctx)
    call(cu.cuStreamWaitEvent, pstream, e1, 0)
    call(cu.cuEventRecord, e2, pstream)
    call(cu.cuCtxPopCurrent)
    call(cu.cuStreamWaitEvent, caller, e2, 0)
    call(cu.cuEventRecord, e3, b_src)
    call(cu.cuStreamWaitEvent, b_dst, e3, 0)

    loops = {
        "greenres_enter_exit": lambda n: greenres_enter_exit(n, a, caller_h),
        "greenres_with": lambda n: greenres_with(n, a),
        "bindings_enter_exit": lambda n: bindings_enter_exit(n, caller, green_ctx, pstream, e1, e2),
        "greenres_handoff": lambda n: greenres_handoff(n, src, dst),
        "bindings_handoff": lambda n: bindings_handoff(n, b_src, b_dst, e3),
    }
    cycles = report.cycles

    def drain():
        for stream in (caller, pstream, b_src, b_dst, cu.CUstream(0)):
            call(cu.cuStreamSynchronize, stream)

    methods = {k: ns_per_cycle(f, cycles) for k, f in loops.items()}
    results = interleaved(methods, report.rounds, drain)

    counts: dict[str, dict[str, float] | None] = dict.fromkeys(loops)
    if sim is not None:
        for key, loop in loops.items():
            sim.reset_call_counts()
            loop(cycles)
            counts[key] = {k: v / cycles for k, v in sim.call_counts().items()}
            drain()
        sim.reset_call_counts()

    for key, label in PATHS.items():
        values = results[key]
        per_call = counts[key]
        report.paths[key] = {
            "label": label,
            "median_ns": statistics.median(values),
            "min_ns": min(values),
            "max_ns": max(values),
            "ns_per_round": values,
            "calls_per_cycle": None if per_call is None else sum(per_call.values()),
            "calls": per_call,
        }
    for name, (bindings, greenres) in RATIOS.items():
        ratio = statistics.median(
            x / y for x, y in zip(results[bindings], results[greenres], strict=True)
        )
        report.ratios[name] = {"bindings": bindings, "greenres": greenres, "ratio": ratio}
