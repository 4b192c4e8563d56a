"""Enter+exit of a partition: greenres versus the same driver calls from Python
(``cuda.bindings.driver``), versus cuda.core's nearest path, versus a C loop (the floor).

    .venv/bin/python bench/bench_enter_exit.py          # simulated H100 unless GREENRES_SIM is set

Every path makes the calls greenres' ``enter_partition``/``exit_partition`` make: event
record on the caller's stream, push of the green context, the partition's stream waits;
record on the partition's stream, pop, the caller's stream waits (6 calls). ``with part:``
has no explicit caller stream: it asks ``cuCtxGetCurrent`` and, the primary context being
current, uses its legacy stream (7 calls); the "resolve" rows of the other paths do the
same. The Python and C paths check no thread ownership and keep no nesting state; greenres
does both.

Methods run side by side: each round runs every method once (shuffled order) for
``BENCH_BATCH`` cycles; ``BENCH_ROUNDS`` rounds; medians and per-round ratios are printed
as Markdown, with PASS/MISS against the docs/architecture.md targets (exit status 0 either way):
enter+exit at most 1.5x the C floor and at least 8x faster than the Python paths.
"""

from __future__ import annotations

import os

import _common as C

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
BATCH = int(os.environ.get("BENCH_BATCH", "20000"))


def main():
    sim = C.setup("h100")
    from cuda.bindings import driver as cu

    import greenres
    from greenres import benchmark as B

    C.primary_context()
    caller = C.ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value))
    caller_h = int(caller)
    legacy = cu.CUstream(0)
    floor = C.floor()

    layout = greenres.Layout.create({"a": 16, "b": 16})
    part = layout["a"]
    pstream_h = part.stream.handle
    pctx_h = part.context_handle

    # ---- greenres
    def greenres_explicit(n):
        B.greenres_enter_exit(n, part, caller_h)

    def greenres_with(n):
        B.greenres_with(n, part)

    # ---- cuda.bindings.driver, the same calls
    green_ctx = cu.CUcontext(pctx_h)
    pstream = cu.CUstream(pstream_h)
    flags = cu.CUevent_flags.CU_EVENT_DISABLE_TIMING.value
    e1, e2 = C.ok(cu.cuEventCreate(flags)), C.ok(cu.cuEventCreate(flags))

    def bindings_explicit(n):
        B.bindings_enter_exit(n, caller, green_ctx, pstream, e1, e2)

    def bindings_resolve(n):
        record, push, pop, wait, get = (
            cu.cuEventRecord,
            cu.cuCtxPushCurrent,
            cu.cuCtxPopCurrent,
            cu.cuStreamWaitEvent,
            cu.cuCtxGetCurrent,
        )
        for _ in range(n):
            get()
            record(e1, legacy)
            push(green_ctx)
            wait(pstream, e1, 0)
            record(e2, pstream)
            pop()
            wait(legacy, e2, 0)

    # ---- cuda.core: its own green context (a separate split: its SMs overlap the greenres
    # layout's, irrelevant for timing). No push/pop in cuda.core's public API: the nearest
    # path is Device.set_current(ctx), which swaps the top of the context stack and returns
    # the previous context, and Stream.record/Stream.wait with reused events.
    core_rows = {}
    try:
        from cuda.core import ContextOptions, Device, SMResourceOptions, Stream

        d = Device(0)
        d.set_current()
        groups, _rest = d.resources.sm.split(SMResourceOptions(count=[16]))
        core_ctx = d.create_context(ContextOptions(resources=[groups[0]]))
        core_gs = core_ctx.create_stream()
        core_caller = Stream.from_handle(caller_h)
        ce1, ce2 = d.create_event(), d.create_event()

        def core_path(n):
            dev, ctx, gs, cs = d, core_ctx, core_gs, core_caller
            for _ in range(n):
                cs.record(ce1)
                prev = dev.set_current(ctx)
                gs.wait(ce1)
                gs.record(ce2)
                dev.set_current(prev)
                cs.wait(ce2)

        core_rows["cuda.core set_current(green ctx) + Stream.record/wait"] = core_path
    except Exception as exc:
        print(f"(cuda.core path unavailable: {exc!r})")
        core_gs = None

    # ---- C floor
    def floor_explicit(n):
        return C.checked(
            floor.floor_enter_exit(caller_h, pctx_h, pstream_h, int(e1), int(e2), n, 0), "floor"
        )

    def floor_resolve(n):
        return C.checked(
            floor.floor_enter_exit(caller_h, pctx_h, pstream_h, int(e1), int(e2), n, 1), "floor"
        )

    def timed(fn):
        return B.ns_per_cycle(fn, BATCH)

    paths = {
        "greenres enter(stream)/exit()": (timed(greenres_explicit), greenres_explicit),
        "greenres `with part:`": (timed(greenres_with), greenres_with),
        "cuda.bindings.driver, same 6 calls": (timed(bindings_explicit), bindings_explicit),
        "cuda.bindings.driver, same 7 calls (resolve)": (timed(bindings_resolve), bindings_resolve),
        "C floor, 6 calls": (lambda: floor_explicit(BATCH), floor_explicit),
        "C floor, 7 calls (resolve)": (lambda: floor_resolve(BATCH), floor_resolve),
    }
    for name, fn in core_rows.items():
        paths[name] = (timed(fn), fn)

    def drain():
        streams = [caller_h, pstream_h, 0]
        if core_gs is not None:
            streams.append(int(core_gs.handle))
        C.sync(*streams)

    calls = {}
    for name, (_, fn) in paths.items():
        calls[name] = C.calls_per_cycle(sim, fn)
        drain()
    results = B.interleaved({n: t for n, (t, _) in paths.items()}, ROUNDS, between=drain)

    print(
        f"### enter+exit, one cycle ({ROUNDS} rounds x {BATCH} cycles, "
        f"{'simulated ' + os.environ['GREENRES_SIM'] if sim else 'real driver'})\n"
    )
    print(f"{C.machine()}; {C.describe_import()}\n")
    print("| path | median ns/cycle | IQR | driver calls/cycle | vs C floor |")
    print("|---|---:|---:|---:|---:|")
    floor_of = {
        n: ("C floor, 7 calls (resolve)" if ("with" in n or "resolve" in n) else "C floor, 6 calls")
        for n in results
    }
    for name, vals in results.items():
        total, _counts = calls[name]
        print(
            f"| {name} | {C.median(vals):.0f} | {C.spread(vals)} | "
            f"{C.fmt_calls(total, _counts)} | {C.ratio(results, name, floor_of[name]):.2f}x |"
        )
    print()
    for name, (total, counts) in calls.items():
        if total is not None and name.startswith("cuda.core"):
            print(f"{name}: calls per cycle {counts}\n")

    targets = [
        (
            "greenres enter(stream)/exit() <= 1.5x C floor (6 calls)",
            C.ratio(results, "greenres enter(stream)/exit()", "C floor, 6 calls"),
            "<=",
            1.5,
        ),
        (
            "greenres `with part:` <= 1.5x C floor (7 calls)",
            C.ratio(results, "greenres `with part:`", "C floor, 7 calls (resolve)"),
            "<=",
            1.5,
        ),
        (
            "cuda.bindings (6 calls) / greenres enter(stream) >= 8x",
            C.ratio(results, "cuda.bindings.driver, same 6 calls", "greenres enter(stream)/exit()"),
            ">=",
            8,
        ),
        (
            "cuda.bindings (7 calls) / greenres `with part:` >= 8x",
            C.ratio(
                results, "cuda.bindings.driver, same 7 calls (resolve)", "greenres `with part:`"
            ),
            ">=",
            8,
        ),
    ]
    for name in core_rows:
        targets.append(
            (
                f"{name} / greenres enter(stream) >= 8x",
                C.ratio(results, name, "greenres enter(stream)/exit()"),
                ">=",
                8,
            )
        )
    C.print_targets(targets)

    # What each path adds above the C floor (the simulator's own per-call cost, which is
    # not the real driver's, cancels out): a driver-independent view of the 8x target.
    def over(name, fl):
        return C.median(results[name]) - C.median(results[fl])

    g6, g7 = (
        over("greenres enter(stream)/exit()", "C floor, 6 calls"),
        over("greenres `with part:`", "C floor, 7 calls (resolve)"),
    )
    b6, b7 = (
        over("cuda.bindings.driver, same 6 calls", "C floor, 6 calls"),
        over("cuda.bindings.driver, same 7 calls (resolve)", "C floor, 7 calls (resolve)"),
    )
    print(
        "Overhead above the C floor (difference of medians; noisy when small): "
        f"greenres enter(stream)/exit() {g6:.0f} ns, cuda.bindings 6 calls {b6:.0f} ns"
        f"{f' ({b6 / g6:.1f}x)' if g6 > 0 else ''}; greenres `with` {g7:.0f} ns, "
        f"cuda.bindings 7 calls {b7:.0f} ns{f' ({b7 / g7:.1f}x)' if g7 > 0 else ''}.\n"
    )

    drain()
    C.ok(cu.cuEventDestroy(e1))
    C.ok(cu.cuEventDestroy(e2))
    layout.close()
    C.ok(cu.cuStreamDestroy(caller))
    return results, targets


if __name__ == "__main__":
    main()
