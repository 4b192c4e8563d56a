"""Code written for PyTorch's green contexts, ported by changing one import.

PyTorch's ``torch.cuda.green_contexts.GreenContext`` makes one partition of ``num_sms``
SMs; ``set_context()`` makes it current and its default stream the one work goes to,
ordered after the caller's stream; ``pop_context()`` orders the caller's stream after that
work again. greenres' ``GreenContext.create`` / ``set_context`` / ``pop_context`` do the
same on a greenres layout (docs/seeds.md has the mapping). Here the "model step" is a fill
of a device buffer queued on the default stream while the green context is current, and
the caller copies the result back on its own (legacy) stream after ``pop_context()``:
correct data each step shows the two orderings hold.

Run it on a GPU:                      python examples/torch_style_port.py
or anywhere, on the simulated H100:   GREENRES_SIM=h100 python examples/torch_style_port.py
"""

from __future__ import annotations

import argparse
import sys

from cuda.bindings import driver as cu

# was: from torch.cuda.green_contexts import GreenContext
from greenres import GreenContext

WORDS = 4096
NBYTES = WORDS * 4
LEGACY = cu.CUstream(0)  # the NULL stream: the current context's default stream


def check(result):
    """The value(s) of a cuda.bindings call; raise if the driver answered an error."""
    error, *values = result
    if error != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"CUDA error {cu.cuGetErrorName(error)[1].decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def run(steps: int, num_sms: int) -> int:
    # What torch has done before any green context: the device's primary context is current.
    check(cu.cuInit(0))
    device = check(cu.cuDeviceGet(0))
    primary = check(cu.cuDevicePrimaryCtxRetain(device))
    check(cu.cuCtxPushCurrent(primary))
    buffer = check(cu.cuMemAlloc(NBYTES))
    host = bytearray(NBYTES)
    wrong = []
    try:
        with GreenContext.create(num_sms=num_sms, device_id=0) as green:
            print(f"green context: {green.sm_count} SMs (asked for {num_sms})")
            for step in range(1, steps + 1):
                value = 1000 + step
                green.set_context()
                # Inside: the NULL stream is the green context's default stream, as in the
                # seed; this "kernel" runs on the partition's SMs.
                check(cu.cuMemsetD32Async(buffer, value, WORDS, LEGACY))
                green.pop_context()
                # Back on the caller's stream (the primary context's NULL stream), which
                # pop_context() made wait for the work above.
                check(cu.cuMemcpyDtoHAsync(host, buffer, NBYTES, LEGACY))
                check(cu.cuStreamSynchronize(LEGACY))
                words = {int.from_bytes(host[i : i + 4], "little") for i in range(0, NBYTES, 4)}
                ok = words == {value}
                if not ok:
                    wrong.append(step)
                print(f"step {step}: read {sorted(words)[:3]} ({'ok' if ok else 'WRONG'})")
    finally:
        check(cu.cuCtxSynchronize())
        check(cu.cuMemFree(buffer))
        check(cu.cuCtxPopCurrent())
        check(cu.cuDevicePrimaryCtxRelease(device))
    if wrong:
        print(f"WRONG DATA at steps {wrong}")
        return 1
    print(f"{steps} steps in a torch-style green context, all correct")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--sms", type=int, default=16, help="num_sms of GreenContext.create")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")
    return run(args.steps, args.sms)


if __name__ == "__main__":
    sys.exit(main())
