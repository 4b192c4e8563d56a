"""layout.graphs: one capture per (name, mode, partition, isolation key), replayed after
every switch with the right data, freed at close."""

from __future__ import annotations

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import ClosedError, IsolationSchema, SelectedRuntimeContext
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.rthelpers import copy, layout_of, live, memset, ok, read

pytestmark = pytest.mark.gpu

N = 4096


def _modal_plan():
    spec = ModalSpec(
        modes={
            "decode-heavy": PartitionSpec(
                partitions=(Partition("decode", share=0.7), Partition("prefill", share=0.25))
            ),
            "prefill-heavy": PartitionSpec(
                partitions=(Partition("decode", share=0.25), Partition("prefill", share=0.7))
            ),
        }
    )
    return spec.plan(greenres.Device(0))


VALUES = {"decode-heavy": 7, "prefill-heavy": 9}


def test_each_mode_captures_once_and_replays_after_every_switch(memory):
    src, dst = memory.alloc(N), memory.alloc(N)
    calls = []
    with layout_of(_modal_plan()) as layout:
        cache = layout.graphs
        assert layout.graphs is cache

        def step(stream):
            # the pipeline step of the current mode: fill, then copy to the output
            calls.append(layout.mode)
            memset(src, VALUES[layout.mode], N, stream)
            copy(dst, src, N, stream)

        for i in range(100):
            for mode in ("decode-heavy", "prefill-heavy"):
                layout.switch(mode)
                ok(cu.cuMemsetD8(cu.CUdeviceptr(dst), 0, N))
                graph = cache.replay("step", step, "decode")
                layout["decode"].stream.synchronize()
                assert read(dst, N) == bytes([VALUES[mode]]) * N, f"round {i}, {mode}"
                assert graph is cache.graph("step", step, "decode")
        assert calls == ["decode-heavy", "prefill-heavy"]  # one capture per key
        assert cache.captures == 2 and cache.replays == 200 and len(cache) == 2
        assert [key[:3] for key in cache.keys()] == [
            ("step", "decode-heavy", "decode"),
            ("step", "prefill-heavy", "decode"),
        ]
        # the two modes' decode partitions differ: so do their isolation keys
        assert cache.keys()[0][3] != cache.keys()[1][3]


def test_another_partition_or_schema_is_another_capture(memory):
    buf = memory.alloc(N)
    with layout_of(_modal_plan()) as layout:
        cache = layout.graphs

        def step(stream):
            memset(buf, 1, N, stream)

        cache.replay("step", step, "decode")
        cache.replay("step", step, "prefill")
        cache.replay("step", step, layout["prefill"])
        assert cache.captures == 2
        narrow = IsolationSchema(
            runtime_context=SelectedRuntimeContext(environment=False, stream_priority=False),
            compile_context=False,
        )
        cache.replay("step", step, "decode", schema=narrow)
        cache.replay("step", step, "decode", schema=narrow)
        assert cache.captures == 3
        cache.clear()
        assert len(cache) == 0
        cache.replay("step", step, "decode")
        assert cache.captures == 4
        layout["decode"].stream.synchronize()


@pytest.mark.sim_only
def test_graphs_are_freed_at_close(sim, memory):
    buf = memory.alloc(N)
    before = live(sim)
    layout = greenres.Layout.create(_modal_plan())
    cache = layout.graphs
    for mode in layout.modes:
        layout.switch(mode)
        cache.replay("step", lambda s: memset(buf, 3, N, s), "prefill")
    layout["prefill"].stream.synchronize()
    assert len(cache) == 2
    layout.close()
    assert cache.closed and len(cache) == 0
    assert live(sim) == before
    with pytest.raises(ClosedError):
        cache.replay("step", lambda s: None, "prefill")
    with pytest.raises(ClosedError):
        _ = layout.graphs


def test_a_failed_capture_caches_nothing(memory):
    with layout_of(_modal_plan()) as layout:
        cache = layout.graphs

        def broken(stream):
            raise ValueError("the step failed")

        with pytest.raises(ValueError, match="the step failed"):
            cache.replay("step", broken, "decode")
        assert len(cache) == 0 and cache.captures == 0
        with pytest.raises(KeyError):
            cache.replay("step", broken, "nope")
        old = layout["decode"]
        layout.switch("prefill-heavy")
        with pytest.raises(KeyError, match="not a partition of the layout's current mode"):
            cache.replay("step", broken, old)
        with pytest.raises(TypeError):
            cache.replay(3, broken, "decode")
        for bad in (5, None, layout):
            with pytest.raises(TypeError, match="'partition' must be a partition name or a"):
                cache.replay("step", broken, bad)
        assert len(cache) == 0 and cache.captures == 0


@pytest.mark.sim_only
def test_closing_the_layout_while_another_thread_replays(sim, memory):
    import threading

    buf = memory.alloc(N)
    before = live(sim)
    layout = greenres.Layout.create(_modal_plan())
    cache = layout.graphs
    cache.replay("step", lambda s: memset(buf, 5, N, s), "decode")
    started, outcome = threading.Event(), []

    def replay_until_closed():
        try:
            while True:
                cache.replay("step", lambda s: memset(buf, 5, N, s), "decode")
                started.set()
        except ClosedError as error:
            outcome.append(error)
        except BaseException as error:  # reported to the main thread
            outcome.append(error)
        finally:
            started.set()

    thread = threading.Thread(target=replay_until_closed)
    thread.start()
    started.wait(10)
    layout.close()
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ClosedError), outcome
    assert cache.closed and len(cache) == 0
    assert live(sim) == before
