"""Switch modes under load: rebalance prefill and decode SMs while work is in flight.

The layout of ``modes.toml`` (next to this file) has two modes of the same GPU,
``decode-heavy`` and ``prefill-heavy``; both are split and created once, up front, and
``layout.switch(mode)`` moves between them in O(1), without synchronising the host. The
switch fences every stream: the new mode's streams wait for all the work the old mode
queued. Each step here reads the state the previous step left (possibly in the other
mode) and writes the next one; the host reads everything back only at the end, so a
switch that did not order the new mode after the old one would show as wrong data.

Run it on a GPU:                      python examples/modes_under_load.py
or anywhere, on the simulated H100:   GREENRES_SIM=h100 python examples/modes_under_load.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cuda.bindings import driver as cu

import greenres as gr

WORDS = 1024
NBYTES = WORDS * 4
SPEC = Path(__file__).with_name("modes.toml")


def check(result):
    """The value(s) of a cuda.bindings call; raise if the driver answered an error."""
    error, *values = result
    if error != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"CUDA error {cu.cuGetErrorName(error)[1].decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def run(steps: int, every: int) -> int:
    device = gr.Device(0)
    plan = gr.load_spec(SPEC).plan(device)  # a ModalPlan: every mode planned
    print(f"device: {device.name}, {device.sm_count} SMs; modes {', '.join(plan.mode_names)}")

    primary = check(cu.cuDevicePrimaryCtxRetain(device.ordinal))
    check(cu.cuCtxPushCurrent(primary))
    state = check(cu.cuMemAlloc(NBYTES))
    history = [check(cu.cuMemAlloc(NBYTES)) for _ in range(steps)]
    hosts = [bytearray(NBYTES) for _ in range(steps)]
    switches = 0
    try:
        with gr.Layout.create(plan, device=device) as layout:
            check(cu.cuMemsetD32Async(state, 0, WORDS, layout["prefill"].stream.handle))
            for step in range(steps):
                if step and step % every == 0:
                    mode = next(m for m in layout.modes if m != layout.mode)
                    layout.switch(mode)  # no host synchronisation: work is still queued
                    switches += 1
                prefill, decode = layout["prefill"], layout["decode"]
                if step % every == 0:
                    print(
                        f"mode {layout.mode}: prefill {prefill.sm_count} SMs, "
                        f"decode {decode.sm_count} SMs"
                    )
                # decode reads the state the previous step left ...
                gr.handoff(src=prefill.stream, dst=decode.stream)
                check(cu.cuMemcpyDtoDAsync(history[step], state, NBYTES, decode.stream.handle))
                # ... and prefill writes the next one once decode has read it
                gr.handoff(src=decode.stream, dst=prefill.stream)
                check(cu.cuMemsetD32Async(state, step + 1, WORDS, prefill.stream.handle))
            last = layout["decode"].stream
            gr.handoff(src=layout["prefill"].stream, dst=last)
            for step in range(steps):
                check(cu.cuMemcpyDtoHAsync(hosts[step], history[step], NBYTES, last.handle))
            last.synchronize()
    finally:
        for buffer in [state, *history]:
            check(cu.cuMemFree(buffer))
        check(cu.cuCtxPopCurrent())
        check(cu.cuDevicePrimaryCtxRelease(device.ordinal))

    wrong = [
        step for step, host in enumerate(hosts) if bytes(host) != step.to_bytes(4, "little") * WORDS
    ]
    print(f"{steps} steps, {switches} mode switches under load")
    if wrong:
        print(f"WRONG DATA at steps {wrong}")
        return 1
    print("every step read the state the step before it wrote: all correct")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="steps (default 12)")
    parser.add_argument("--every", type=int, default=3, help="switch every N steps (default 3)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be >= 1")
    return run(args.steps, args.every)


if __name__ == "__main__":
    sys.exit(main())
