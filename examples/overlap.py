"""Compute/communication overlap: a small partition sends while the big one computes.

A training or serving step produces a result on the compute partition; a communication
partition of 8 SMs (where NCCL-style kernels would run) sends it out while the compute
partition already works on the next step. Two result buffers alternate (double
buffering): the compute partition writes buffer ``i % 2`` only after the send of step
``i - 2`` read it, ordered by one event per buffer, never by synchronising the host. The
send is a device-to-device copy into a "remote" buffer followed by a copy to the host;
every step's data is checked, so a missing dependency shows as a wrong number.

Run it on a GPU:                      python examples/overlap.py
or anywhere, on the simulated H100:   GREENRES_SIM=h100 python examples/overlap.py
"""

from __future__ import annotations

import argparse
import sys

from cuda.bindings import driver as cu

import greenres as gr

WORDS = 2048
NBYTES = WORDS * 4


def check(result):
    """The value(s) of a cuda.bindings call; raise if the driver answered an error."""
    error, *values = result
    if error != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"CUDA error {cu.cuGetErrorName(error)[1].decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def run(steps: int) -> int:
    device = gr.Device(0)
    spec = gr.PartitionSpec(
        partitions=(gr.Partition("compute"), gr.Partition("comm", sms=8)),
        remainder="compute",
    )
    plan = spec.plan(device)
    print(f"device: {device.name}, {device.sm_count} SMs")
    for p in plan:
        print(f"partition {p.name}: {p.sm_count} SMs")

    primary = check(cu.cuDevicePrimaryCtxRetain(device.ordinal))
    check(cu.cuCtxPushCurrent(primary))
    scratch = check(cu.cuMemAlloc(NBYTES))
    results = [check(cu.cuMemAlloc(NBYTES)) for _ in range(2)]
    remote = [check(cu.cuMemAlloc(NBYTES)) for _ in range(steps)]
    hosts = [bytearray(NBYTES) for _ in range(steps)]
    # sent[b]: the send that last read results[b] is done (timing off: ordering only)
    sent = [gr.Event(device=device.ordinal) for _ in range(2)]
    try:
        with gr.Layout.create(plan, device=device) as layout:
            compute, comm = layout["compute"], layout["comm"]
            for step in range(steps):
                b = step % 2
                if step >= 2:
                    sent[b].wait(compute.stream)  # do not overwrite what is being sent
                # "compute": two operations standing in for the step's kernels
                check(cu.cuMemsetD32Async(scratch, 100 + step, WORDS, compute.stream.handle))
                check(cu.cuMemcpyDtoDAsync(results[b], scratch, NBYTES, compute.stream.handle))
                gr.handoff(src=compute.stream, dst=comm.stream)
                # "communicate": send the result out, then let compute reuse the buffer
                check(cu.cuMemcpyDtoDAsync(remote[step], results[b], NBYTES, comm.stream.handle))
                sent[b].record(comm.stream)
                check(cu.cuMemcpyDtoHAsync(hosts[step], remote[step], NBYTES, comm.stream.handle))
            # the host waits once, at the end
            comm.stream.synchronize()
            compute.stream.synchronize()
    finally:
        for event in sent:
            event.close()
        for buffer in [scratch, *results, *remote]:
            check(cu.cuMemFree(buffer))
        check(cu.cuCtxPopCurrent())
        check(cu.cuDevicePrimaryCtxRelease(device.ordinal))

    wrong = []
    for step, host in enumerate(hosts):
        ok = bytes(host) == (100 + step).to_bytes(4, "little") * WORDS
        print(f"step {step}: sent {int.from_bytes(host[:4], 'little')} ({'ok' if ok else 'WRONG'})")
        if not ok:
            wrong.append(step)
    if wrong:
        print(f"WRONG DATA at steps {wrong}")
        return 1
    print(f"{steps} steps overlapped, all correct")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps (default 8)")
    return run(parser.parse_args(argv).steps)


if __name__ == "__main__":
    sys.exit(main())
