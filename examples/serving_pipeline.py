"""A serving loop on one GPU split into a prefill lane and a decode lane.

Every step, the prefill partition writes the step's prompt state into a static input
buffer, hands it off to the decode partition, and the decode partition replays its step:
a CUDA graph captured once on the decode partition's stream (so every replay runs on the
decode SMs, whatever stream launches it). The decode lane hands the buffer back before
prefill overwrites it. Device memory operations stand in for the kernels (the simulated
driver runs no kernels); every step's output is checked, so an ordering bug shows up as a
wrong number and a non-zero exit.

Run it on a GPU:                      python examples/serving_pipeline.py
or anywhere, on the simulated H100:   GREENRES_SIM=h100 python examples/serving_pipeline.py
"""

from __future__ import annotations

import argparse
import sys

from cuda.bindings import driver as cu

import greenres as gr

WORDS = 4096  # 32-bit words per buffer: one step's state
NBYTES = WORDS * 4


def check(result):
    """The value(s) of a cuda.bindings call; raise if the driver answered an error."""
    error, *values = result
    if error != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"CUDA error {cu.cuGetErrorName(error)[1].decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def serving_spec() -> gr.PartitionSpec:
    return gr.PartitionSpec(
        partitions=(
            gr.Partition("prefill", share=0.25, min_sms=16),
            gr.Partition("decode", priority=-1),  # the rest: latency-critical
        ),
        remainder="decode",  # the SMs the split leaves over go to decode too
    )


def run(steps: int) -> int:
    device = gr.Device(0)
    plan = serving_spec().plan(device)
    print(f"device: {device.name}, {device.sm_count} SMs")
    print(plan.explain())

    # Memory is allocated the way any CUDA program does it: in the primary context.
    primary = check(cu.cuDevicePrimaryCtxRetain(device.ordinal))
    check(cu.cuCtxPushCurrent(primary))
    prompt, cache, tokens = (check(cu.cuMemAlloc(NBYTES)) for _ in range(3))
    host = bytearray(NBYTES)
    wrong = []
    try:
        with gr.Layout.create(plan, device=device) as layout:
            prefill, decode = layout["prefill"], layout["decode"]
            for part in layout:
                print(f"partition {part.name}: {part.sm_count} SMs")

            # The decode step, captured once on the decode partition's stream: append the
            # prompt state to the cache, then produce the step's tokens from the cache.
            with gr.Graph() as decode_step:
                with decode_step.capture(decode.stream):
                    s = decode.stream.handle
                    check(cu.cuMemcpyDtoDAsync(cache, prompt, NBYTES, s))
                    check(cu.cuMemcpyDtoDAsync(tokens, cache, NBYTES, s))
                decode_step.instantiate()
                print(f"captured the decode step as a graph on partition {decode.name!r}")

                for step in range(1, steps + 1):
                    value = 1000 * step + 7
                    # prefill may overwrite the input only after decode's last replay read it
                    gr.handoff(src=decode.stream, dst=prefill.stream)
                    check(cu.cuMemsetD32Async(prompt, value, WORDS, prefill.stream.handle))
                    gr.handoff(src=prefill.stream, dst=decode.stream)
                    decode_step.replay(decode.stream)
                    check(cu.cuMemcpyDtoHAsync(host, tokens, NBYTES, decode.stream.handle))
                    decode.stream.synchronize()
                    ok = bytes(host) == value.to_bytes(4, "little") * WORDS
                    got = int.from_bytes(host[:4], "little")
                    print(f"step {step}: decode produced {got} ({'ok' if ok else 'WRONG'})")
                    if not ok:
                        wrong.append(step)
    finally:
        for buffer in (prompt, cache, tokens):
            check(cu.cuMemFree(buffer))
        check(cu.cuCtxPopCurrent())
        check(cu.cuDevicePrimaryCtxRelease(device.ordinal))

    if wrong:
        print(f"WRONG DATA at steps {wrong}")
        return 1
    print(f"{steps} steps, all correct")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="serving steps (default 8)")
    return run(parser.parse_args(argv).steps)


if __name__ == "__main__":
    sys.exit(main())
