"""greenres.handoff(src, dst) between two partitions' streams versus the same record+wait
from Python (``cuda.bindings.driver``), cuda.core, and a C loop (the floor).

    .venv/bin/python bench/bench_handoff.py

greenres claims an event from the layout's lock-free pool (one compare-and-swap), records
it on ``src`` and makes ``dst`` wait (2 driver calls, nogil). The Python and C paths reuse
one event. cuda.core: ``dst.wait(src.record(event))`` with a reused event (2 calls), and
``dst.wait(src)`` (cuda.core creates and destroys an event each time: shown for reference).
Targets (by analogy with enter+exit; docs/architecture.md names none for handoff): at most 1.5x
the floor, at least 8x faster than the Python paths. Exit status 0 either way.
"""

from __future__ import annotations

import os

import _common as C

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
BATCH = int(os.environ.get("BENCH_BATCH", "40000"))


def main():
    sim = C.setup("h100")
    from cuda.bindings import driver as cu

    import greenres
    from greenres import benchmark as B

    C.primary_context()
    floor = C.floor()
    layout = greenres.Layout.create({"a": 16, "b": 16})
    src, dst = layout["a"].stream, layout["b"].stream
    src_h, dst_h = src.handle, dst.handle
    flags = cu.CUevent_flags.CU_EVENT_DISABLE_TIMING.value
    ev = C.ok(cu.cuEventCreate(flags))

    def greenres_streams(n):
        B.greenres_handoff(n, src, dst)

    def greenres_ints(n):
        # Raw int handles: no greenres Stream, so no pool is found -> temporary event path.
        h, s, d = greenres.handoff, src_h, dst_h
        for _ in range(n):
            h(s, d)

    bindings_src, bindings_dst = cu.CUstream(src_h), cu.CUstream(dst_h)

    def bindings(n):
        B.bindings_handoff(n, bindings_src, bindings_dst, ev)

    fns = {
        "greenres.handoff(Stream, Stream)": greenres_streams,
        "greenres.handoff(int, int) (temporary event)": greenres_ints,
        "cuda.bindings.driver, record + wait": bindings,
    }
    try:
        from cuda.core import Device, Stream

        d = Device(0)
        d.set_current()
        cs, cd = Stream.from_handle(src_h), Stream.from_handle(dst_h)
        cev = d.create_event()

        def core_event(n):
            for _ in range(n):
                cd.wait(cs.record(cev))

        def core_stream(n):
            for _ in range(n):
                cd.wait(cs)

        fns["cuda.core dst.wait(src.record(event))"] = core_event
        fns["cuda.core dst.wait(src) (new event each call)"] = core_stream
    except Exception as exc:
        print(f"(cuda.core path unavailable: {exc!r})")

    def floor_fn(n):
        return C.checked(floor.floor_handoff(src_h, dst_h, int(ev), n), "floor")

    methods = {name: B.ns_per_cycle(fn, BATCH) for name, fn in fns.items()}
    methods["C floor, record + wait"] = lambda: floor_fn(BATCH)
    fns["C floor, record + wait"] = floor_fn

    def drain():
        C.sync(src_h, dst_h)

    calls = {}
    for name, fn in fns.items():
        calls[name] = C.calls_per_cycle(sim, fn)
        drain()
    results = B.interleaved(methods, ROUNDS, between=drain)

    fl = "C floor, record + wait"
    print(f"### handoff between two partitions' streams ({ROUNDS} rounds x {BATCH} calls)\n")
    print(f"{C.machine()}; {C.describe_import()}\n")
    print("| path | median ns/handoff | IQR | driver calls/handoff | vs C floor |")
    print("|---|---:|---:|---:|---:|")
    for name, vals in results.items():
        total, counts = calls[name]
        print(
            f"| {name} | {C.median(vals):.0f} | {C.spread(vals)} | "
            f"{C.fmt_calls(total, counts)} | {C.ratio(results, name, fl):.2f}x |"
        )
    print()
    g = "greenres.handoff(Stream, Stream)"
    targets = [
        (f"{g} <= 1.5x C floor", C.ratio(results, g, fl), "<=", 1.5),
        (
            f"cuda.bindings / {g} >= 8x",
            C.ratio(results, "cuda.bindings.driver, record + wait", g),
            ">=",
            8,
        ),
    ]
    if "cuda.core dst.wait(src.record(event))" in results:
        targets.append(
            (
                f"cuda.core (reused event) / {g} >= 8x",
                C.ratio(results, "cuda.core dst.wait(src.record(event))", g),
                ">=",
                8,
            )
        )
    C.print_targets(targets)

    drain()
    C.ok(cu.cuEventDestroy(ev))
    layout.close()
    return results, targets


if __name__ == "__main__":
    main()
