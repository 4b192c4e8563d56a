"""Enter+exit cost versus the number of partitions alive.

    .venv/bin/python bench/bench_scaling.py

For N in 1, 4, 16, 64 partitions alive: 1, 4, 16 are one layout of N partitions of 8 SMs
on the simulated H100 (132 SMs, 8-SM minimum, so 16 fit in one split); 64 is four such
16-partition layouts on the same device. Independent layouts are independent splits and
share SMs (docs/driver-facts.md) - irrelevant for a timing benchmark. Each round creates the
layouts of every N (shuffled order), times ``BENCH_BATCH`` enter(stream)/exit() cycles
round-robin over all N partitions alive (so every partition's state is touched), then the
C floor making the same 6 calls round-robin over the same partitions (order alternating),
and closes them. Target (docs/architecture.md): cost independent of how many partitions are
alive. The simulator's own per-call cost may grow with N (one worker thread per stream,
caches); so two checks: greenres / floor at the same N stays within 1.25x across N (what
greenres adds does not grow), and the raw greenres cost at every N within 1.25x of N=1.
"""

from __future__ import annotations

import os

import _common as C

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
BATCH = int(os.environ.get("BENCH_BATCH", "20000"))
COUNTS = (1, 4, 16, 64)
TOLERANCE = 1.25


def main():
    C.setup("h100")
    from cuda.bindings import driver as cu

    import greenres

    C.primary_context()
    caller = C.ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value))
    caller_h = int(caller)
    floor = C.floor()
    flags = cu.CUevent_flags.CU_EVENT_DISABLE_TIMING.value
    e1, e2 = C.ok(cu.cuEventCreate(flags)), C.ok(cu.cuEventCreate(flags))

    def make(n):
        layouts = []
        per = min(n, 16)
        for k in range(max(1, n // 16)):
            layouts.append(greenres.Layout.create({f"p{k}_{i}": 8 for i in range(per)}))
        parts = [p for lay in layouts for p in lay.partitions]
        assert len(parts) == n, (n, len(parts))
        return layouts, parts

    import random

    rng = random.Random(2)
    results = {}
    for n in COUNTS:
        results[f"greenres, {n} alive"] = []
        results[f"C floor, {n} alive"] = []
    for rnd in range(ROUNDS + 1):  # round 0 is a warm-up, dropped
        order = list(COUNTS)
        rng.shuffle(order)
        for n in order:
            layouts, parts = make(n)
            try:
                pairs = [(p.enter, p.exit) for p in parts]
                ctxs = C.void_array([p.context_handle for p in parts])
                streams = C.void_array([p.stream.handle for p in parts])
                handles = [p.stream.handle for p in parts]

                def run_greenres(pairs=pairs):
                    m = len(pairs)
                    t0 = C.perf()
                    for i in range(BATCH):
                        enter, exit_ = pairs[i % m]
                        enter(caller_h)
                        exit_()
                    return (C.perf() - t0) / BATCH

                def run_floor(ctxs=ctxs, streams=streams, parts=parts):
                    return C.checked(
                        floor.floor_enter_exit_many(
                            caller_h, ctxs, streams, len(parts), int(e1), int(e2), BATCH
                        ),
                        "floor",
                    )

                both = [("greenres", run_greenres), ("C floor", run_floor)]
                if rnd % 2:
                    both.reverse()
                for label, fn in both:
                    ns = fn()
                    C.sync(caller_h, *handles)
                    if rnd:
                        results[f"{label}, {n} alive"].append(ns)
            finally:
                for lay in layouts:
                    lay.close()

    print(
        f"### enter+exit versus partitions alive ({ROUNDS} rounds x {BATCH} cycles, "
        f"round-robin over the partitions alive)\n"
    )
    print(f"{C.machine()}; {C.describe_import()}\n")
    print(
        "| partitions alive | greenres median ns | IQR | C floor median ns | IQR | "
        "greenres vs 1 alive | greenres / floor (same N) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    base = "greenres, 1 alive"
    for n in COUNTS:
        g, f = f"greenres, {n} alive", f"C floor, {n} alive"
        print(
            f"| {n} | {C.median(results[g]):.0f} | {C.spread(results[g])} | "
            f"{C.median(results[f]):.0f} | {C.spread(results[f])} | "
            f"{C.ratio(results, g, base):.2f}x | {C.ratio(results, g, f):.2f}x |"
        )
    print()
    over = [C.ratio(results, f"greenres, {n} alive", f"C floor, {n} alive") for n in COUNTS]
    raw = max(C.ratio(results, f"greenres, {n} alive", base) for n in COUNTS)
    targets = [
        (
            f"greenres' own cost independent of partitions alive: max/min over N of "
            f"(greenres / floor, same N) <= {TOLERANCE}x",
            max(over) / min(over),
            "<=",
            TOLERANCE,
        ),
        (
            f"raw: worst N vs N=1 <= {TOLERANCE}x (includes the simulator's own scaling)",
            raw,
            "<=",
            TOLERANCE,
        ),
    ]
    C.print_targets(targets)

    C.ok(cu.cuEventDestroy(e1))
    C.ok(cu.cuEventDestroy(e2))
    C.ok(cu.cuStreamDestroy(caller))
    return results, targets


if __name__ == "__main__":
    main()
