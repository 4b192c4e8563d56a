"""``layout.verify()``: which SMs each partition of a layout really runs on.

A probe kernel (embedded PTX, named ``greenres_smid_probe`` as the simulator's built-in
model is) is launched in every partition, on the partition's own stream, with the
partition's green context current: each block reads ``%smid`` and writes it to
``out[blockIdx.x]``. The report gives, per partition, the SM ids observed, the SM count
the driver reports for its green context (``cuGreenCtxGetDevResource``), whether the
observed ids fit that count, and whether the partitions' sets are pairwise disjoint.

On the simulator the same code runs: the probe's host model deals the blocks over the SMs
the simulator assigned to the green context, as ``%smid`` would report them.

This is not a hot path: it is plain Python over ``cuda.bindings``. Every module and buffer
is freed, also when a call fails (after the partition's stream is drained: queued work
never runs on freed memory); a destroy call that fails raises
:class:`greenres.DestroyError` and its handle is destroyed at the next ``verify()`` (the
retry ``close()`` offers elsewhere), as is what a stream that could not be drained still
uses. Calls are serialised by a lock, so two threads never
have the same green context current at once.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any

from greenres.errors import ClosedError, DestroyError, DriverError, UsageError

__all__ = ["PROBE_KERNEL", "PROBE_PTX", "PartitionProbe", "VerifyReport", "verify"]

PROBE_KERNEL = "greenres_smid_probe"

#: The probe. Every block first spins about 20,000 cycles (about 10 us): blocks that stay
#: resident a while make the block scheduler spread the grid over all the SMs it may use,
#: instead of a few SMs running short blocks one after the other. Thread 0 of each block
#: then stores %smid at out[blockIdx.x]. PTX ISA 7.0 for sm_70 JIT-compiles on every GPU
#: of compute capability 7.0 or newer and every driver that has green contexts.
PROBE_PTX = b"""\
.version 7.0
.target sm_70
.address_size 64

.visible .entry greenres_smid_probe(.param .u64 out)
{
    .reg .pred %p<3>;
    .reg .b32 %r<4>;
    .reg .b64 %rd<8>;

    mov.u64 %rd1, %clock64;
$L_spin:
    mov.u64 %rd2, %clock64;
    sub.s64 %rd3, %rd2, %rd1;
    setp.lt.s64 %p1, %rd3, 20000;
    @%p1 bra $L_spin;
    mov.u32 %r1, %tid.x;
    setp.ne.u32 %p2, %r1, 0;
    @%p2 bra $L_done;
    ld.param.u64 %rd4, [out];
    cvta.to.global.u64 %rd5, %rd4;
    mov.u32 %r2, %smid;
    mov.u32 %r3, %ctaid.x;
    mul.wide.u32 %rd6, %r3, 4;
    add.s64 %rd7, %rd5, %rd6;
    st.global.u32 [%rd7], %r2;
$L_done:
    ret;
}
\x00"""

_THREADS_PER_BLOCK = 32
_UNWRITTEN = 0xFFFFFFFF  # the buffer's fill before the launch: a block that did not store

_lock = threading.Lock()
#: Destroy calls that failed: (function name, handle, CUcontext to make current or None),
#: retried at the start of the next verify().
_unfreed: list[tuple[str, int, int | None]] = []


@dataclass(frozen=True)
class PartitionProbe:
    """What the probe saw in one partition."""

    name: str
    #: the SM count the driver reports for the partition's green context
    sm_count: int
    #: the distinct SM ids the probe's blocks reported, sorted
    sm_ids: tuple[int, ...]
    #: blocks launched, and how many of them stored no SM id
    blocks: int
    unrecorded: int = 0

    @property
    def within_count(self) -> bool:
        """At least one SM seen, and no more distinct SMs than the driver reports."""
        return 0 < len(self.sm_ids) <= self.sm_count

    @property
    def complete(self) -> bool:
        """Every SM of the count was seen (a real GPU's scheduler need not use them all)."""
        return len(self.sm_ids) == self.sm_count


@dataclass(frozen=True)
class VerifyReport:
    """The result of :func:`verify`; ``ok`` when every partition's SM ids fit its count,
    every block stored its SM id, and no two partitions share an SM."""

    device: str
    partitions: tuple[PartitionProbe, ...]
    #: pairs of partitions that share SMs: (name, name, shared SM ids)
    overlaps: tuple[tuple[str, str, tuple[int, ...]], ...] = field(default=())

    @property
    def disjoint(self) -> bool:
        return not self.overlaps

    @property
    def ok(self) -> bool:
        return self.disjoint and all(p.within_count and not p.unrecorded for p in self.partitions)

    def __getitem__(self, name: str) -> PartitionProbe:
        for probe in self.partitions:
            if probe.name == name:
                return probe
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "ok": self.ok,
            "disjoint": self.disjoint,
            "partitions": [
                {
                    "name": p.name,
                    "sm_count": p.sm_count,
                    "sm_ids": list(p.sm_ids),
                    "observed": len(p.sm_ids),
                    "within_count": p.within_count,
                    "complete": p.complete,
                    "blocks": p.blocks,
                    "unrecorded": p.unrecorded,
                }
                for p in self.partitions
            ],
            "overlaps": [{"a": a, "b": b, "sm_ids": list(ids)} for a, b, ids in self.overlaps],
        }

    def text(self) -> str:
        """The report for a person."""
        lines = [f"device: {self.device}"]
        width = max((len(p.name) for p in self.partitions), default=4)
        for p in self.partitions:
            verdict = "ok" if p.within_count and not p.unrecorded else "WRONG"
            extra = f", {p.unrecorded} block(s) stored nothing" if p.unrecorded else ""
            lines.append(
                f"  {p.name:<{width}}  {len(p.sm_ids):>4} of {p.sm_count:>4} SMs seen "
                f"({p.blocks} blocks){extra}: {verdict}  SMs {_ranges(p.sm_ids)}"
            )
        if self.overlaps:
            for a, b, ids in self.overlaps:
                lines.append(f"  OVERLAP: {a} and {b} share SMs {_ranges(ids)}")
        else:
            lines.append("  the partitions' SM sets are pairwise disjoint")
        lines.append("verify: ok" if self.ok else "verify: FAILED")
        return "\n".join(lines)


def _ranges(ids: tuple[int, ...]) -> str:
    """``0-15,32,40-47``: SM ids for a person."""
    if not ids:
        return "none"
    parts, start, prev = [], ids[0], ids[0]
    for i in (*ids[1:], None):
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def verify(layout, *, blocks_per_sm: int = 8) -> VerifyReport:
    """Launch the ``%smid`` probe in every partition of ``layout`` (``blocks_per_sm``
    blocks per SM the driver reports) and report which SMs each one ran on.

    Raises TypeError for a ``layout`` that is not a :class:`greenres.Layout` or a
    ``blocks_per_sm`` that is not an int, ValueError for ``blocks_per_sm`` < 1,
    ClosedError for a closed layout, UsageError while one of its partitions' streams is
    capturing, DriverError when a driver call fails (and
    DestroyError when only freeing the probe's module or buffer failed)."""
    from greenres import Layout

    if not isinstance(layout, Layout):
        raise TypeError(f"verify() takes a greenres.Layout (got {type(layout).__name__})")
    if isinstance(blocks_per_sm, bool) or not isinstance(blocks_per_sm, int):
        raise TypeError(
            f"'blocks_per_sm' must be an int (got {blocks_per_sm!r} of type "
            f"{type(blocks_per_sm).__name__})"
        )
    if not 1 <= blocks_per_sm <= 1024:
        raise ValueError(f"'blocks_per_sm' must be in 1..1024 (got {blocks_per_sm})")
    if layout.closed:
        raise ClosedError("verify() of a closed greenres.Layout")
    _refuse_captures(layout)
    with _lock:
        _retry_unfreed()
        probes = tuple(_probe(part, blocks_per_sm) for part in layout.partitions)
    overlaps = []
    for i, a in enumerate(probes):
        for b in probes[i + 1 :]:
            shared = tuple(sorted(set(a.sm_ids) & set(b.sm_ids)))
            if shared:
                overlaps.append((a.name, b.name, shared))
    return VerifyReport(layout.device.name, probes, tuple(overlaps))


def _refuse_captures(layout) -> None:
    """UsageError when a partition's stream is capturing: the probe's allocation and launch
    would be refused by the driver (or become part of the user's graph) and invalidate
    the capture."""
    from cuda.bindings import driver as cu

    from greenres._bindings import call

    for part in layout.partitions:
        status = call(cu.cuStreamIsCapturing, cu.CUstream(part.stream.handle))
        if status != cu.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE:
            raise UsageError(
                f"verify() while the stream of partition {part.name!r} is capturing: the "
                "probe would invalidate the capture; verify before or after capturing"
            )


def _driver_sm_count(part) -> int:
    from cuda.bindings import driver as cu

    from greenres._bindings import call

    kind = cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
    resource = call(cu.cuGreenCtxGetDevResource, cu.CUgreenCtx(part.handle), kind)
    return int(resource.sm.smCount)


def _probe(part, blocks_per_sm: int) -> PartitionProbe:
    """One partition: its green context current, a buffer and the module made in it, the
    probe launched on its stream, the result copied back, all freed before returning."""
    from cuda.bindings import driver as cu

    from greenres._bindings import call

    sm_count = _driver_sm_count(part)
    blocks = max(1, sm_count) * blocks_per_sm
    ctx = part.context_handle
    stream = cu.CUstream(part.stream.handle)
    host = (ctypes.c_uint32 * blocks)()
    call(cu.cuCtxPushCurrent, cu.CUcontext(ctx))
    pending: list[tuple[str, int]] = []  # what to destroy, in this order
    queued = False
    try:
        buffer = call(cu.cuMemAlloc, blocks * 4)
        pending.append(("cuMemFree", int(buffer)))
        module = call(cu.cuModuleLoadData, PROBE_PTX)
        pending.insert(0, ("cuModuleUnload", int(module)))
        function = call(cu.cuModuleGetFunction, module, PROBE_KERNEL.encode())
        queued = True  # from here the stream may run work that uses the buffer
        call(cu.cuMemsetD32Async, buffer, _UNWRITTEN, blocks, stream)
        args = ((int(buffer),), (ctypes.c_void_p,))
        block = (_THREADS_PER_BLOCK, 1, 1)
        call(cu.cuLaunchKernel, function, blocks, 1, 1, *block, 0, stream, args, 0)
        call(cu.cuStreamSynchronize, stream)
        queued = False
        call(cu.cuMemcpyDtoH, host, buffer, blocks * 4)
    except BaseException:
        if queued and not _drained(stream):
            # Work that may still use the module and buffer: freeing them now could let
            # it write into memory given to someone else. The next verify() frees them.
            _unfreed.extend((name, handle, ctx) for name, handle in pending)
            pending = []
        _destroy(pending, ctx, raising=False)
        _pop()
        raise
    try:
        _destroy(pending, ctx, raising=True)
    finally:
        _pop()
    values = list(host)
    unrecorded = values.count(_UNWRITTEN)
    ids = tuple(sorted({v for v in values if v != _UNWRITTEN}))
    return PartitionProbe(part.name, sm_count, ids, blocks, unrecorded)


def _destroy_call(name: str, handle: int) -> None:
    from cuda.bindings import driver as cu

    from greenres._bindings import call

    if name == "cuModuleUnload":
        call(cu.cuModuleUnload, cu.CUmodule(handle))
    else:
        call(cu.cuMemFree, cu.CUdeviceptr(handle))


def _destroy(pending: list[tuple[str, int]], ctx: int, *, raising: bool) -> None:
    """Destroy everything in ``pending`` (with ``ctx`` current); what fails is kept for
    the next verify() and, when ``raising``, reported as one DestroyError."""
    failures = []
    for name, handle in pending:
        try:
            _destroy_call(name, handle)
        except DriverError as error:
            failures.append(error)
            _unfreed.append((name, handle, ctx))
    if failures and raising:
        raise DestroyError("the verify probe", failures)


def _drained(stream) -> bool:
    """Wait for the probe's stream after a failed call; one retry. False when the stream
    could not be waited for."""
    from cuda.bindings import driver as cu

    from greenres._bindings import call

    for _attempt in range(2):
        try:
            call(cu.cuStreamSynchronize, stream)
            return True
        except DriverError:
            pass
    return False


def _pop() -> None:
    """Pop the partition's context; one retry, so a failed pop leaves the thread's
    context stack as it was before verify()."""
    from cuda.bindings import driver as cu

    from greenres._bindings import call

    try:
        call(cu.cuCtxPopCurrent)
    except DriverError:
        call(cu.cuCtxPopCurrent)


def _retry_unfreed() -> None:
    """Destroy what an earlier verify() failed to destroy; what fails again is kept (its
    context may be gone with its layout: nothing more can be done for it then)."""
    from cuda.bindings import driver as cu

    from greenres._bindings import call

    for entry in list(_unfreed):
        name, handle, ctx = entry
        try:
            call(cu.cuCtxPushCurrent, cu.CUcontext(ctx))
        except DriverError:
            continue
        try:
            call(cu.cuCtxSynchronize)  # work a failed verify() left queued is done first
            _destroy_call(name, handle)
            _unfreed.remove(entry)
        except DriverError:
            pass
        finally:
            _pop()
