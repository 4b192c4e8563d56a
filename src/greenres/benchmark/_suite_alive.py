"""enter+exit against the number of partitions alive: 1 against 64 (the target), and the
series 1, 4, 16, 64 with ``--scale``. Up to 16 partitions are one layout of the smallest
valid size; 64 are four such layouts on the same device (independent splits share SMs:
irrelevant for timing). Each round creates the layouts of every count, times enter+exit
round-robin over all partitions alive (every partition's state is touched) and the C floor
making the same calls over the same partitions, and closes them."""

from __future__ import annotations

import random
import statistics
import time
from functools import partial

import greenres as gr

from . import _loops as L
from ._floor import checked, void_array
from ._report import Target, ratio_row


def run(session, report) -> None:
    counts = (1, 4, 16, 64) if session.settings.scale else (1, 64)
    cycles = session.settings.cycles
    caller = session.stream()
    caller_h = int(caller)
    e1, e2 = session.event(), session.event()
    size = session.device.sm_facts().min_partition_size
    per_layout = min(16, session.device.sm_facts().sm_count // size)
    rng = random.Random(2)
    results = {}
    for n in counts:
        results[f"greenres, {n} alive"] = []
        results[f"C floor, {n} alive"] = []
    for rnd in range(session.settings.rounds + 1):  # round 0 warms up and is dropped
        order = list(counts)
        rng.shuffle(order)
        for n in order:
            layouts = []
            try:
                while sum(len(lay.partitions) for lay in layouts) < n:
                    k = min(per_layout, n - sum(len(lay.partitions) for lay in layouts))
                    name = len(layouts)
                    spec = {f"l{name}p{i}": size for i in range(k)}
                    layouts.append(gr.Layout.create(spec, device=session.device))
                parts = [p for lay in layouts for p in lay.partitions]
                pairs = [(p.enter, p.exit) for p in parts]

                greenres_batch = partial(_greenres_batch, pairs, caller_h, cycles)
                floor_batch = partial(
                    _floor_batch, session, parts, (caller_h, int(e1), int(e2)), cycles
                )
                both = [("greenres", greenres_batch), ("C floor", floor_batch)]
                if rnd % 2:
                    both.reverse()
                for label, fn in both:
                    ns = fn()
                    session.drain(caller_h, *[p.stream.handle for p in parts])
                    if rnd:
                        results[f"{label}, {n} alive"].append(ns)
            finally:
                for lay in layouts:
                    lay.close()
    report.add_contenders(results)
    report.rows.append(
        ratio_row(
            "alive_64_vs_1",
            "enter+exit with 64 vs 1 partitions alive",
            results,
            "greenres, 64 alive",
            "greenres, 1 alive",
            Target("<=", 1.1, "x"),
        )
    )
    report.rows.append(
        ratio_row(
            "floor_alive_64_vs_1",
            "C floor: the same calls with 64 vs 1 partitions alive (the simulator's own growth)",
            results,
            "C floor, 64 alive",
            "C floor, 1 alive",
            None,
        )
    )
    if session.settings.scale:
        for label in ("greenres", "C floor"):
            report.scale.setdefault(
                "enter_exit_vs_partitions_alive",
                {"x": "partitions alive", "y": "ns per enter+exit", "series": {}},
            )["series"][label] = [
                [n, statistics.median(results[f"{label}, {n} alive"])] for n in counts
            ]


def _greenres_batch(pairs, caller_h: int, cycles: int) -> float:
    t0 = time.perf_counter_ns()
    L.round_robin_enter_exit(cycles, pairs, caller_h)
    return (time.perf_counter_ns() - t0) / cycles


def _floor_batch(session, parts, handles, cycles: int) -> float:
    """The C floor's round robin over ``parts`` (handles: caller stream, two events)."""
    caller_h, e1, e2 = handles
    ctxs = void_array([p.context_handle for p in parts])
    streams = void_array([p.stream.handle for p in parts])
    value = session.floor.lib.floor_enter_exit_many(
        caller_h, ctxs, streams, len(parts), e1, e2, cycles
    )
    return checked(value, "floor_enter_exit_many")
