"""Enter+exit of a partition: greenres versus the same driver calls from Python.

Run against the simulated driver (``GREENRES_SIM=h100 python bench/bench_enter_exit.py``)
or a real GPU. Prints nanoseconds per cycle and driver calls per cycle (simulator only).

The Python path makes the same six calls greenres makes (event record on the caller's
stream, push, stream wait; record on the partition's stream, pop, wait) through
``cuda.bindings.driver``; it checks no thread ownership and handles no errors.
"""

from __future__ import annotations

import os
import time

from cuda.bindings import driver as cu

import greenres

CYCLES = int(os.environ.get("BENCH_CYCLES", "200000"))


def _ok(result):
    err = result[0] if isinstance(result, tuple) else result
    assert err == cu.CUresult.CUDA_SUCCESS, err
    return result[1] if isinstance(result, tuple) and len(result) > 1 else None


def _time(fn, cycles):
    fn(1000)  # warm up
    start = time.perf_counter_ns()
    fn(cycles)
    return (time.perf_counter_ns() - start) / cycles


def main():
    sim = None
    if os.environ.get("GREENRES_SIM"):
        import greenres.sim as sim
    _ok(cu.cuInit(0))
    device = _ok(cu.cuDeviceGet(0))
    primary = _ok(cu.cuDevicePrimaryCtxRetain(device))
    _ok(cu.cuCtxPushCurrent(primary))
    caller = _ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING))
    with greenres.Layout.create({"a": 16, "b": 16}) as layout:
        part = layout["a"]
        caller_handle = int(caller)

        def greenres_with(n):
            for _ in range(n):
                with part:
                    pass

        def greenres_explicit(n):
            enter, exit_ = part.enter, part.exit
            for _ in range(n):
                enter(caller_handle)
                exit_()

        green_ctx = cu.CUcontext(part.context_handle)
        stream = cu.CUstream(part.stream.handle)
        e1 = _ok(cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DISABLE_TIMING))
        e2 = _ok(cu.cuEventCreate(cu.CUevent_flags.CU_EVENT_DISABLE_TIMING))

        def python_bindings(n):
            record, push, pop, wait = (
                cu.cuEventRecord,
                cu.cuCtxPushCurrent,
                cu.cuCtxPopCurrent,
                cu.cuStreamWaitEvent,
            )
            for _ in range(n):
                record(e1, caller)
                push(green_ctx)
                wait(stream, e1, 0)
                record(e2, stream)
                pop()
                wait(caller, e2, 0)

        rows = []
        for name, fn in (
            ("greenres `with part:`", greenres_with),
            ("greenres enter(stream)/exit()", greenres_explicit),
            ("cuda.bindings.driver, same calls", python_bindings),
        ):
            calls = None
            if sim is not None:
                sim.reset_call_counts()
                fn(1000)
                calls = (
                    sum(
                        sim.call_counts(
                            "cuEventRecord",
                            "cuCtxPushCurrent",
                            "cuStreamWaitEvent",
                            "cuCtxPopCurrent",
                            "cuCtxGetCurrent",
                        ).values()
                    )
                    / 1000
                )
            rows.append((name, _time(fn, CYCLES), calls))
        _ok(cu.cuStreamSynchronize(caller))
        _ok(cu.cuStreamSynchronize(stream))
        _ok(cu.cuEventDestroy(e1))
        _ok(cu.cuEventDestroy(e2))
    _ok(cu.cuStreamDestroy(caller))
    _ok(cu.cuCtxPopCurrent())
    _ok(cu.cuDevicePrimaryCtxRelease(device))
    driver = "simulated " + os.environ["GREENRES_SIM"] if sim else "real driver"
    print(f"enter+exit, {CYCLES} cycles, {driver}")
    print(f"{'path':36} {'ns/cycle':>10} {'calls/cycle':>12}")
    for name, ns, calls in rows:
        print(f"{name:36} {ns:10.0f} {calls if calls is not None else '-':>12}")


if __name__ == "__main__":
    main()
