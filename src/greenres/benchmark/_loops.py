"""The timed loops of the hot-path contenders: each runs ``n`` cycles of one way of making
greenres' driver calls, bound to locals first as a careful caller would. The loops through
``cuda.bindings`` and cuda.core check no results (the suites check once that the calls
succeed); greenres' raise on any error."""

from __future__ import annotations

import gc
import operator
import threading

from cuda.bindings import driver as cu

import greenres as gr

__all__ = [
    "PYTHON_FLOOR_ENTER_EXIT",
    "PYTHON_FLOOR_HANDOFF",
    "PYTHON_FLOOR_WITH",
    "bindings_enter_exit",
    "bindings_handoff",
    "cuda_core_enter_exit",
    "cuda_core_handoff",
    "greenres_enter_exit",
    "greenres_handoff",
    "greenres_with",
    "round_robin_enter_exit",
]


def greenres_enter_exit(n: int, part, caller: int) -> None:
    """``part.enter(caller)`` + ``part.exit()`` (``caller``: an int handle): 7 driver calls
    (read the current context, which exit restores; record on the caller's stream, push the
    green context, the partition's stream waits; record on it, pop, the caller waits)."""
    enter, exit_ = part.enter, part.exit
    for _ in range(n):
        enter(caller)
        exit_()


def greenres_with(n: int, part) -> None:
    """``with part: pass``: no caller stream given, the primary context being current its
    legacy stream is the caller's; the same 7 calls."""
    p = part
    for _ in range(n):
        with p:
            pass


def round_robin_enter_exit(n: int, pairs, caller: int) -> None:
    """enter+exit on partition ``i % len(pairs)`` in cycle ``i`` (``pairs``: bound enter and
    exit methods of every partition alive), so every partition's state is touched."""
    m = len(pairs)
    for i in range(n):
        enter, exit_ = pairs[i % m]
        enter(caller)
        exit_()


def bindings_enter_exit(n: int, caller, green_ctx, pstream, e1, e2) -> None:
    """greenres' 7 enter+exit calls from ``cuda.bindings.driver``."""
    current, record, push, pop, wait = (
        cu.cuCtxGetCurrent,
        cu.cuEventRecord,
        cu.cuCtxPushCurrent,
        cu.cuCtxPopCurrent,
        cu.cuStreamWaitEvent,
    )
    for _ in range(n):
        current()
        record(e1, caller)
        push(green_ctx)
        wait(pstream, e1, 0)
        record(e2, pstream)
        pop()
        wait(caller, e2, 0)


def cuda_core_enter_exit(n: int, device, ctx, green_stream, caller, e1, e2) -> None:
    """cuda.core's nearest path: it has no push/pop, so ``Device.set_current(ctx)`` (which
    swaps the top of the context stack and returns the previous context) and
    ``Stream.record``/``Stream.wait`` with reused events."""
    dev, c, gs, cs = device, ctx, green_stream, caller
    for _ in range(n):
        cs.record(e1)
        prev = dev.set_current(c)
        gs.wait(e1)
        gs.record(e2)
        dev.set_current(prev)
        cs.wait(e2)


def greenres_handoff(n: int, src, dst) -> None:
    """``greenres.handoff(src, dst)`` (greenres Streams: an event of the pool; 2 calls)."""
    handoff = gr.handoff
    for _ in range(n):
        handoff(src, dst)


def bindings_handoff(n: int, src, dst, event) -> None:
    """Record on ``src``, ``dst`` waits, through ``cuda.bindings.driver`` (one event)."""
    record, wait = cu.cuEventRecord, cu.cuStreamWaitEvent
    for _ in range(n):
        record(event, src)
        wait(dst, event, 0)


def cuda_core_handoff(n: int, src, dst, event) -> None:
    """cuda.core with a reused event: ``dst.wait(src.record(event))``."""
    s, d, e = src, dst, event
    for _ in range(n):
        d.wait(s.record(e))


# ------------------------------------------------------------------- Python's own cost
# The same loops calling C builtins that do (almost) nothing, with the same arguments: what
# any Python API costs before it does its work. With the C floor, this bounds the ratio a
# Python caller can reach (docs/benchmarks.md, "What Python costs").


def python_floor_enter_exit(n: int, caller: int) -> None:
    """A one-argument and a no-argument builtin call per cycle (``abs``, ``gc.isenabled``)."""
    enter, exit_ = abs, gc.isenabled
    for _ in range(n):
        enter(caller)
        exit_()


def python_floor_handoff(n: int, src, dst) -> None:
    """A two-argument builtin call per cycle (``operator.is_``)."""
    call = operator.is_
    for _ in range(n):
        call(src, dst)


def python_floor_with(n: int) -> None:
    """``with`` on an uncontended ``threading.Lock`` (C ``__enter__``/``__exit__``)."""
    lock = threading.Lock()
    for _ in range(n):
        with lock:
            pass


PYTHON_FLOOR_ENTER_EXIT = "Python's own cost: loop + abs(caller) + gc.isenabled()"
PYTHON_FLOOR_HANDOFF = "Python's own cost: loop + operator.is_(src, dst)"
PYTHON_FLOOR_WITH = "Python's own cost: loop + `with` on a threading.Lock"
