"""Ordering with real data: enter/exit and handoff, checked through device memory.

The simulator's op delay widens every race window, so a missing dependency shows up as
wrong bytes, not as a log line; the negative control holds a stream with a gate, so its
race is certain on any driver."""

import threading

import pytest
from cuda.bindings import driver as cu

import greenres

from support.rthelpers import copy, layout_of, memset, read, sync
from support.streamgate import Gate

pytestmark = pytest.mark.gpu

N = 4096
ITERATIONS = 40


@pytest.fixture
def slow(op_delay):
    op_delay(200)


def _enter_exit_rounds(part, caller, memory, enter):
    a = memory.alloc(N)  # written on the caller's stream
    b = memory.alloc(N)  # written in the partition
    out = memory.alloc(N * ITERATIONS)
    for i in range(ITERATIONS):
        memset(a, i + 1, N, caller)
        enter()
        copy(b, a, N, part.stream)  # needs the caller's memset (enter's handoff)
        memset(a, 0, N, part.stream)  # ... and must run before the caller's next memset
        part.exit()
        copy(out + i * N, b, N, caller)  # needs the partition's copy (exit's handoff)
    sync(caller)
    data = read(out, N * ITERATIONS)
    for i in range(ITERATIONS):
        chunk = data[i * N : (i + 1) * N]
        assert chunk == bytes([i + 1]) * N, f"iteration {i}: {set(chunk)}"


def test_enter_exit_orders_work_with_explicit_caller_stream(memory, caller_stream, slow):
    with layout_of({"a": 16}) as layout:
        part = layout["a"]
        _enter_exit_rounds(
            part, caller_stream, memory, lambda: part.enter(from_stream=caller_stream)
        )


def test_with_block_orders_after_the_current_contexts_stream(memory, primary, slow):
    """`with part:` with no caller stream given uses the current context's legacy stream."""
    from cuda.bindings import driver as cu

    legacy = cu.CUstream(0)
    with layout_of({"a": 16}) as layout:
        part = layout["a"]
        _enter_exit_rounds(part, legacy, memory, part.__enter__)


def test_nested_enter_of_two_partitions_chains_the_order(memory, caller_stream, slow):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        x, y, z, out = (memory.alloc(N) for _ in range(4))
        for i in range(10):
            memset(x, i + 1, N, caller_stream)
            with a.enter(from_stream=caller_stream):
                copy(y, x, N, a.stream)
                with b:  # caller is a's stream
                    copy(z, y, N, b.stream)
                memset(y, 0, N, a.stream)  # after b's copy: b's exit ordered it
            copy(out, z, N, caller_stream)
            sync(caller_stream)
            assert read(out, N) == bytes([i + 1]) * N
            assert read(y, N) == bytes(N)


def test_same_partition_nests(memory, caller_stream):
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        with a.enter(from_stream=caller_stream):
            with a:
                with a:
                    assert a.entered
            assert a.entered
        assert not a.entered


def test_handoff_orders_partitions(memory, slow):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        x, y = memory.alloc(N), memory.alloc(N)
        out = memory.alloc(N * ITERATIONS)
        for i in range(ITERATIONS):
            memset(x, i + 1, N, a)
            greenres.handoff(a, b)
            copy(y, x, N, b)
            copy(out + i * N, y, N, b)
            greenres.handoff(b, a)  # a's next memset waits for b's reads
        b.synchronize()
        data = read(out, N * ITERATIONS)
        for i in range(ITERATIONS):
            assert data[i * N : (i + 1) * N] == bytes([i + 1]) * N, f"iteration {i}"


def test_handoff_from_many_threads_at_once(memory):
    """The event pool is lock-free; concurrent handoffs between other partitions work."""
    with layout_of({"a": 16, "b": 16, "c": 16, "d": 16}) as layout:
        pairs = [(layout["a"], layout["b"]), (layout["c"], layout["d"])]
        bufs = [(memory.alloc(N), memory.alloc(N)) for _ in pairs]
        errors = []

        ctx = cu.cuCtxGetCurrent()[1]

        def worker(k):
            try:
                cu.cuCtxSetCurrent(ctx)  # the test's memory helpers need a context
                (src, dst), (x, y) = pairs[k], bufs[k]
                for i in range(30):
                    memset(x, i + 1, N, src.stream)
                    greenres.handoff(src.stream, dst.stream)
                    copy(y, x, N, dst.stream)
                    greenres.handoff(dst.stream, src.stream)
                    dst.stream.synchronize()
                    assert read(y, N) == bytes([i + 1]) * N
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors


def test_missing_handoff_gives_wrong_data(memory):
    """The tests above could fail: without a handoff, b copies x before a's memset ran."""
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        x, y = memory.alloc(N), memory.alloc(N)
        memset(x, 0, N, a)
        memset(y, 0, N, a)
        a.synchronize()
        with Gate(a):  # a's memset of x cannot run before b's copy is done
            memset(x, 7, N, a)
            copy(y, x, N, b)  # no handoff
            b.synchronize()
        a.synchronize()
        assert read(y, N) == bytes(N)
        assert read(x, N) == bytes([7]) * N
