"""Threads, each entering and exiting its own partition, against one thread, under both GIL
policies of the hot path (``configure(hot_path_gil=...)``), with the C floor's pthreads as
the simulator's own scaling ceiling; and handoff against threads (scale)."""

from __future__ import annotations

import threading
import time

from cuda.bindings import driver as cu

import greenres as gr
from greenres._bindings import call
from greenres._config import hot_path_gil

from . import _loops as L
from ._floor import checked, void_array
from ._report import Target, ratio_row
from ._timing import interleaved

POLICIES = ("hold", "release")


def _name(policy: str, threads: int) -> str:
    return f"greenres enter/exit, GIL {policy}, {threads} thread{'s' if threads > 1 else ''}"


def run(session, report) -> None:
    cycles = session.settings.cycles
    size = session.device.sm_facts().min_partition_size
    layout = session.layout({"a": size, "b": size})
    parts = layout.partitions
    callers = [session.stream() for _ in parts]
    events = [(session.event(), session.event()) for _ in parts]
    default = hot_path_gil()

    def python_threads(policy, nthreads, body):
        def run_batch():
            gr.configure(hot_path_gil=policy)
            try:
                return _threads(session.primary, nthreads, body, cycles)
            finally:
                gr.configure(hot_path_gil=default)

        return run_batch

    def greenres_body(k, n):
        L.greenres_enter_exit(n, parts[k], int(callers[k]))

    methods = {}
    for policy in POLICIES:
        for nthreads in (1, 2):
            methods[_name(policy, nthreads)] = python_threads(policy, nthreads, greenres_body)
    arrays = [
        void_array(values)
        for values in (
            [int(c) for c in callers],
            [p.context_handle for p in parts],
            [p.stream.handle for p in parts],
            [int(e[0]) for e in events],
            [int(e[1]) for e in events],
        )
    ]
    for nthreads in (1, 2):
        name = f"C floor, {nthreads} pthread{'s' if nthreads > 1 else ''}"
        methods[name] = _floor_threads(session, nthreads, arrays, cycles, name)

    def drain():
        session.drain(*[int(c) for c in callers], *[p.stream.handle for p in parts])

    results = interleaved(methods, session.settings.rounds, between=drain)
    report.add_contenders(results)
    for policy in POLICIES:
        chosen = policy == default
        report.rows.append(
            ratio_row(
                "threads_2_vs_1" if chosen else f"threads_2_vs_1_gil_{policy}",
                f"2 threads, each in its own partition, vs 1 thread (throughput; GIL {policy}"
                f"{', the default' if chosen else ''})",
                results,
                _name(policy, 1),
                _name(policy, 2),
                Target(">=", 1.0, "x") if chosen else None,
            )
        )
    report.rows.append(
        ratio_row(
            "gil_release_vs_hold",
            "one thread's enter+exit, GIL released around the calls / held",
            results,
            _name("release", 1),
            _name("hold", 1),
            None,
        )
    )
    report.rows.append(
        ratio_row(
            "floor_threads_2_vs_1",
            "C floor: 2 pthreads vs 1 (the simulator's own scaling on this machine)",
            results,
            "C floor, 1 pthread",
            "C floor, 2 pthreads",
            None,
        )
    )
    if session.settings.scale:
        _handoff_scale(session, report)


def _threads(primary, nthreads, body, cycles) -> float:
    """Wall ns per cycle over all threads' cycles: first start to last end, taken in the
    threads themselves; each thread has the primary context current, as a server's would."""
    barrier = threading.Barrier(nthreads)
    spans = [None] * nthreads
    errors = []

    def main(k):
        call(cu.cuCtxPushCurrent, primary)
        try:
            barrier.wait()
            t0 = time.perf_counter_ns()
            body(k, cycles)
            spans[k] = (t0, time.perf_counter_ns())
        except BaseException as exc:  # reported by the caller, not lost in the thread
            errors.append(exc)
        finally:
            call(cu.cuCtxPopCurrent)

    threads = [threading.Thread(target=main, args=(k,)) for k in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return wall / (cycles * nthreads)


def _floor_threads(session, nthreads, arrays, cycles, name):
    def run_batch():
        value = session.floor.lib.floor_threads(nthreads, int(session.primary), *arrays, cycles)
        return checked(value, name)

    return run_batch


def _handoff_scale(session, report) -> None:
    """handoff cost (wall ns per handoff over all threads) against threads 1, 2, 4, each
    thread handing off between its own pair of partitions."""
    size = session.device.sm_facts().min_partition_size
    counts = (1, 2, 4)
    layout = session.layout({f"p{i}": size for i in range(2 * max(counts))})
    parts = layout.partitions
    cycles = session.settings.cycles

    def body(k, n):
        L.greenres_handoff(n, parts[2 * k].stream, parts[2 * k + 1].stream)

    methods = {
        f"handoff, {n} threads": (lambda n=n: _threads(session.primary, n, body, cycles))
        for n in counts
    }

    def drain():
        session.drain(*[p.stream.handle for p in parts])

    results = interleaved(methods, session.settings.rounds, between=drain)
    report.scale["handoff_vs_threads"] = {
        "x": "threads",
        "y": "ns per handoff (wall, all threads)",
        "series": {
            "greenres.handoff": [[n, _median(results[f"handoff, {n} threads"])] for n in counts]
        },
    }


def _median(values):
    import statistics

    return statistics.median(values)
