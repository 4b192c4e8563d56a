"""``greenres demo``: plan a serving spec, create it, run a short pipeline, report.

The pipeline is what a serving engine does per step, with device memory operations
standing in for kernels (the simulated driver runs no kernels):

  prefill writes a step's tokens  --handoff-->  decode copies them into its cache
  --handoff-->  comm copies the cache out to the host

then the decode step is captured once as a CUDA graph on the decode partition's stream and
replayed. Every step's data is checked, so an ordering bug shows up as a wrong number.
"""

from __future__ import annotations

import time
from typing import TextIO

from cuda.bindings import driver as cu

import greenres as gr

__all__ = ["run_demo"]

_WORDS = 1024  # 32-bit words per buffer
_STEPS = 8
_REPLAYS = 8


def _call(function, *args):
    """Call a ``cuda.bindings.driver`` function; raise DriverError if it fails."""
    error, *values = function(*args)
    if error != cu.CUresult.CUDA_SUCCESS:
        name = cu.cuGetErrorName(error)[1].decode()
        text = cu.cuGetErrorString(error)[1].decode()
        raise gr.DriverError(function.__name__, int(error), name, text)
    return values[0] if len(values) == 1 else values


def _example_spec():
    """The built-in example: the same serving layout as examples/serving.toml."""
    from greenres.spec import Partition, PartitionSpec

    return PartitionSpec(
        partitions=(
            Partition("decode", sms=64, streams=2, priority=-1),
            Partition("prefill", share=0.25, min_sms=16),
            Partition("comm", sms=8),
            Partition("batch"),
        ),
        remainder="batch",
    )


def _load(spec_path):
    from greenres.serialize import load_spec

    return load_spec(spec_path) if spec_path else _example_spec()


def _partition_line(part) -> str:
    line = f"  {part.name:<10} {part.sm_count:>4} SMs  green context id {part.id}"
    try:
        from greenres import sim

        if sim.is_installed():
            ids = sim.green_context_sms(part.handle)
            line += f"  SMs {ids[0]}..{ids[-1]}" if ids else ""
    except ImportError:  # pragma: no cover - sim ships with the package
        pass
    return line


def run_demo(device: gr.Device, spec_path: str | None, out: TextIO) -> int:
    """Run the demo on ``device``; returns 0 when every check passed, 1 otherwise."""
    spec = _load(spec_path)
    plan = spec.plan(device.sm_facts())
    print(f"device {device.ordinal}: {device.name}, {device.sm_count} SMs\n", file=out)
    print(plan.explain(), file=out)
    names = [p.name for p in plan.partitions]
    stages = [n for n in ("prefill", "decode", "comm") if n in names]
    if len(stages) < 2:
        stages = names[:3]
    print(f"\npipeline: {' -> '.join(stages)} -> host", file=out)

    started = time.perf_counter()
    # Device memory is allocated the way any CUDA program does: in the primary context.
    primary = _call(cu.cuDevicePrimaryCtxRetain, device.ordinal)
    _call(cu.cuCtxPushCurrent, primary)
    try:
        failures = _pipeline(device, plan, stages, out)
    finally:
        _call(cu.cuCtxPopCurrent)
        _call(cu.cuDevicePrimaryCtxRelease, device.ordinal)
    elapsed = (time.perf_counter() - started) * 1e3
    print(f"closed the layout ({elapsed:.1f} ms in all)", file=out)
    from greenres import sim

    if sim.is_installed():
        alive = {kind: n for kind, n in sim.live_objects().items() if n}
        print(f"simulated driver: live objects after close: {alive or 'none'}", file=out)
        failures += bool(alive)
    return 0 if failures == 0 else 1


def _pipeline(device: gr.Device, plan, stages: list[str], out: TextIO) -> int:
    """Create the layout, run the steps and the graph replays; returns the failures."""
    nbytes = _WORDS * 4
    failures = 0
    with gr.Layout.create(plan, device=device) as layout:
        print("created partitions (one split, disjoint):", file=out)
        for part in layout:
            print(_partition_line(part), file=out)
        buffers = [_call(cu.cuMemAlloc, nbytes) for _ in stages]
        host = bytearray(nbytes)
        try:
            first, *rest = [layout[name] for name in stages]
            for step in range(1, _STEPS + 1):
                _call(cu.cuMemsetD32Async, buffers[0], step, _WORDS, first.stream.handle)
                previous = first
                for index, part in enumerate(rest, start=1):
                    gr.handoff(previous.stream, part.stream)
                    _call(
                        cu.cuMemcpyDtoDAsync,
                        buffers[index],
                        buffers[index - 1],
                        nbytes,
                        part.stream.handle,
                    )
                    previous = part
                _call(cu.cuMemcpyDtoHAsync, host, buffers[-1], nbytes, previous.stream.handle)
                previous.stream.synchronize()
                got = int.from_bytes(host[:4], "little")
                if any(
                    int.from_bytes(host[i : i + 4], "little") != step for i in range(0, nbytes, 4)
                ):
                    failures += 1
                    print(f"  step {step}: WRONG DATA (first word {got})", file=out)
            print(
                f"ran {_STEPS} pipeline steps with {_STEPS * len(rest)} handoffs: "
                f"{'all data correct' if not failures else f'{failures} wrong'}",
                file=out,
            )

            decode = layout[stages[1]]
            with gr.Graph() as graph:
                with graph.capture(decode.stream):
                    _call(
                        cu.cuMemcpyDtoDAsync, buffers[1], buffers[0], nbytes, decode.stream.handle
                    )
                graph.instantiate()
                for replay in range(1, _REPLAYS + 1):
                    _call(
                        cu.cuMemsetD32Async, buffers[0], 1000 + replay, _WORDS, first.stream.handle
                    )
                    gr.handoff(first.stream, decode.stream)
                    graph.replay(decode.stream)
                    _call(cu.cuMemcpyDtoHAsync, host, buffers[1], nbytes, decode.stream.handle)
                    decode.stream.synchronize()
                    if int.from_bytes(host[:4], "little") != 1000 + replay:
                        failures += 1
            print(
                f"captured the {decode.name} step as a graph on its partition's stream and "
                f"replayed it {_REPLAYS} times: "
                f"{'all data correct' if not failures else 'WRONG DATA'}",
                file=out,
            )
        finally:
            for buffer in buffers:
                _call(cu.cuMemFree, buffer)
    return failures
