"""Timing side by side: interleaved rounds, medians, per-round ratios and spreads.

Every contender of a suite runs once per round, in a shuffled order each round, so all of
them see the same machine load; a ratio is the median over rounds of the two contenders'
per-round values, never a ratio of medians taken at different times.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["interleaved", "ns_per_cycle", "quartiles", "round_ratio"]


def interleaved(
    methods: Mapping[str, Callable[[], float]],
    rounds: int,
    between: Callable[[], None] | None = None,
    seed: int = 1,
) -> dict[str, list[float]]:
    """``methods``: name -> fn() returning ns per cycle of one timed batch. Warm every method
    up once, then ``rounds`` rounds, each running every method once in a shuffled order;
    ``between()`` runs (untimed) after each batch, e.g. to drain stream queues. Returns name
    -> list of ns per cycle, one per round."""
    rng = random.Random(seed)
    names = list(methods)
    results: dict[str, list[float]] = {name: [] for name in names}
    for fn in methods.values():  # warm up (also starts the simulator's stream workers)
        fn()
        if between:
            between()
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            results[name].append(methods[name]())
            if between:
                between()
    return results


def ns_per_cycle(loop: Callable[[int], object], cycles: int) -> Callable[[], float]:
    """A method for :func:`interleaved`: runs ``loop(cycles)``, returns ns per cycle."""

    def run() -> float:
        t0 = time.perf_counter_ns()
        loop(cycles)
        return (time.perf_counter_ns() - t0) / cycles

    return run


def round_ratio(results: Mapping[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of ``results[numerator][i] / results[denominator][i]``."""
    pairs = zip(results[numerator], results[denominator], strict=True)
    return statistics.median(a / b for a, b in pairs)


def quartiles(values: list[float]) -> tuple[float, float]:
    """The first and third quartiles (the spread a row reports)."""
    if len(values) < 2:
        return (values[0], values[0])
    q = statistics.quantiles(values, n=4)
    return (q[0], q[2])
