"""close() against calls on other threads: enter/exit, handoff, Stream.wait, synchronize,
graph replay, event record, create_stream/close and a partition's streams, all running
while the main thread closes the layout (and the event and the graph). No call may reach
the driver with a destroyed handle (the simulator records every such call as a hazard) and
the only errors the workers may see are the documented ones: ClosedError once closed, and
DestroyError never (nothing fails to destroy here). close() itself may only refuse while a
partition is entered (ThreadOwnershipError), and is retried until it succeeds."""

from __future__ import annotations

import os
import threading

import pytest

import greenres
from greenres import ClosedError, Event, Graph, Layout, ThreadOwnershipError

from support.rthelpers import live

pytestmark = pytest.mark.sim_only

ROUNDS = int(os.environ.get("GREENRES_CLOSE_RACE_ROUNDS", "300"))


def _workers(layout, graph, event, stop):
    a, b = layout["a"], layout["b"]
    sa, sb = a.stream, b.stream

    def enter_exit():
        with a:
            pass
        b.enter(from_stream=sa)
        b.exit()

    def handoffs():
        greenres.handoff(sa, sb)
        sb.wait(sa)
        greenres.handoff(sa, int(sb))

    def synchronize():
        sa.synchronize()
        sb.query()

    def replay():
        graph.replay(sb)

    def record():
        event.record(sa)
        event.wait(sb)

    def streams():
        stream = b.create_stream()
        greenres.handoff(stream, sa)
        stream.close()

    def accessors():
        # close() drops the partitions' references to their streams: a racing read gives
        # the stream or ClosedError, never None
        got = (a.stream, *b.streams)
        if not all(type(s) is greenres.Stream for s in got):
            raise AssertionError(f"a partition's streams read as {got!r}")

    return [enter_exit, handoffs, synchronize, replay, record, streams, accessors]


def _run(target, started, stop, errors, counts, index):
    ran = False
    while not stop.is_set():
        try:
            target()
            ran = True
        except ClosedError:
            break  # the documented end: the object was closed under us
        except Exception as error:
            errors.append(f"{target.__name__}: {type(error).__name__}: {error}")
            break
        finally:
            if not started.is_set():
                started.set()
    counts[index] += ran


def _close_when_allowed(layout):
    """close() refuses only while a worker is inside a partition: retry until it succeeds."""
    refusals = 0
    while True:
        try:
            layout.close()
            return refusals
        except ThreadOwnershipError:
            refusals += 1


def test_close_races_every_kind_of_call(sim):
    greenres.Device(0)
    before = live(sim)
    sim.clear_hazards()
    errors: list[str] = []
    totals = {"rounds": 0, "refusals": 0}
    for _ in range(ROUNDS):
        layout = Layout.create({"a": 16, "b": 16})
        graph = Graph()
        with graph.capture(layout["a"].stream):
            pass
        event = Event()
        stop = threading.Event()
        targets = _workers(layout, graph, event, stop)
        counts = [0] * len(targets)
        started = [threading.Event() for _ in targets]
        threads = [
            threading.Thread(target=_run, args=(t, s, stop, errors, counts, i))
            for i, (t, s) in enumerate(zip(targets, started, strict=True))
        ]
        for thread in threads:
            thread.start()
        for s in started:
            s.wait()
        # Close everything while the workers run: the layout (refused while a worker is
        # inside a partition), the event and the graph.
        totals["refusals"] += _close_when_allowed(layout)
        event.close()
        graph.close()
        stop.set()
        for thread in threads:
            thread.join()
        totals["rounds"] += 1
        assert not errors, errors[:5]
    assert sim.hazards() == [], sim.hazards()[:5]
    assert live(sim) == before
    print(f"close races: {totals}")
