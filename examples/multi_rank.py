"""A multi-rank job: every rank creates the same layout on its own GPU, checked job-wide.

Launched by torchrun, one process per GPU; each rank plans the spec on device
``LOCAL_RANK``, the ranks all-gather their plans' fingerprints over the process group, and
a rank that planned something else (another spec, another kind of GPU) makes every rank
fail with a message naming it. Then each rank runs a step through its partitions (a
handoff from prefill to decode, checked data) and the job meets at a barrier.

Run it on a node with 4 GPUs:
    torchrun --standalone --nproc-per-node 4 examples/multi_rank.py
or anywhere, on a simulated node of 4 H100s over gloo on the CPU:
    GREENRES_SIM=4xh100 torchrun --standalone --nproc-per-node 4 examples/multi_rank.py
``--broadcast``: rank 0 plans and sends its plan; the others create exactly it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch.distributed as dist
from cuda.bindings import driver as cu

import greenres as gr
import greenres.distributed as grd

WORDS = 1024
NBYTES = WORDS * 4


def check(result):
    """The value(s) of a cuda.bindings call; raise if the driver answered an error."""
    error, *values = result
    if error != cu.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"CUDA error {cu.cuGetErrorName(error)[1].decode()}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def say(stream, text: str) -> None:
    """Write ``text`` and its newline in one write: the ranks share the launcher's pipes,
    and print() writes the newline separately, so lines of ranks could interleave."""
    stream.write(text + "\n")
    stream.flush()


def one_step(layout, rank: int) -> bool:
    """prefill writes this rank's value, decode copies it after a handoff; True when the
    host reads back what was written."""
    prefill, decode = layout["prefill"], layout["decode"]
    ordinal = layout.device.ordinal
    primary = check(cu.cuDevicePrimaryCtxRetain(ordinal))
    check(cu.cuCtxPushCurrent(primary))
    a, b = check(cu.cuMemAlloc(NBYTES)), check(cu.cuMemAlloc(NBYTES))
    host = bytearray(NBYTES)
    try:
        check(cu.cuMemsetD32Async(a, 100 + rank, WORDS, prefill.stream.handle))
        gr.handoff(src=prefill.stream, dst=decode.stream)
        check(cu.cuMemcpyDtoDAsync(b, a, NBYTES, decode.stream.handle))
        check(cu.cuMemcpyDtoHAsync(host, b, NBYTES, decode.stream.handle))
        decode.stream.synchronize()
    finally:
        check(cu.cuMemFree(a))
        check(cu.cuMemFree(b))
        check(cu.cuCtxPopCurrent())
        check(cu.cuDevicePrimaryCtxRelease(ordinal))
    return bytes(host) == (100 + rank).to_bytes(4, "little") * WORDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec",
        default=str(Path(__file__).with_name("serving.toml")),
        help="spec file (default: serving.toml next to this file)",
    )
    parser.add_argument("--broadcast", action="store_true", help="create rank 0's plan")
    args = parser.parse_args(argv)

    dist.init_process_group("gloo")  # CPU collectives: all this job exchanges is small
    rank, size = dist.get_rank(), dist.get_world_size()
    try:
        spec = args.spec if (rank == 0 or not args.broadcast) else None
        with grd.create_layout(spec, broadcast=args.broadcast) as layout:
            parts = ", ".join(f"{p.name} {p.sm_count}" for p in layout)
            ok = one_step(layout, rank)
            say(
                sys.stdout,
                f"rank {rank}/{size}: device {layout.device.ordinal} ({layout.device.name}), "
                f"plan {layout.plan.fingerprint}: {parts}; step {'ok' if ok else 'WRONG'}",
            )
            dist.barrier()  # nobody closes while a peer may still use the job's layouts
        return 0 if ok else 1
    except gr.GreenresError as error:
        say(sys.stderr, f"rank {rank}: {type(error).__name__}: {error}")
        return 3
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
