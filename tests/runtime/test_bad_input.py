"""Bad input at every public runtime entry point: the exception class and a message that
names the parameter, the rule and the value. Misuse (a call in a state that does not
allow it) raises greenres.UsageError."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

import greenres
from greenres import (
    ClosedError,
    Device,
    Event,
    Graph,
    GraphPool,
    GreenresError,
    Layout,
    PlanError,
    UsageError,
)
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.rthelpers import layout_of

pytestmark = pytest.mark.gpu

STREAM_FORMS = (
    r"must be a greenres\.Stream, an object with __cuda_stream__, an object with an int "
    r"cuda_stream or ptr attribute \(torch\.cuda\.Stream, cupy\.cuda\.Stream\), a "
    r"cuda\.bindings CUstream or an int handle"
)


@pytest.fixture
def env():
    with layout_of({"a": 16, "b": 16}) as layout:
        captured = Graph()
        with captured.capture(layout["a"].stream):
            pass
        pool = GraphPool()
        event = Event()
        yield SimpleNamespace(
            layout=layout,
            a=layout["a"],
            s=layout["a"].stream,
            captured=captured,
            graph=Graph(),
            pool=pool,
            event=event,
        )
        captured.close()
        pool.close()
        event.close()


def _modal_layout():
    spec = ModalSpec(
        modes={
            "x": PartitionSpec(partitions=(Partition("p", sms=16),)),
            "y": PartitionSpec(partitions=(Partition("p", sms=32),)),
        }
    )
    return Layout.create(spec.plan(Device(0)))


def _switch_modal(mode):
    layout = _modal_layout()
    try:
        layout.switch(mode)
    finally:
        layout.close()


# (id, call, exception class, message pattern)
BAD_ARGUMENTS = [
    # Device
    ("Device-str", lambda e: Device("0"), TypeError, r"'ordinal' must be an int \(got '0'\)"),
    ("Device-float", lambda e: Device(1.5), TypeError, r"'ordinal' must be an int \(got 1\.5\)"),
    ("Device-bool", lambda e: Device(True), TypeError, r"'ordinal' must be an int \(got True\)"),
    (
        "Device-negative",
        lambda e: Device(-1),
        ValueError,
        r"'ordinal' must be in \[0, \d+\) \(got -1\)",
    ),
    (
        "Device-too-big",
        lambda e: Device(99),
        ValueError,
        r"'ordinal' must be in \[0, \d+\) \(got 99\)",
    ),
    # Layout.create
    ("create-int", lambda e: Layout.create(42), TypeError, r"Plan.*\(got int\)"),
    (
        "create-device-str",
        lambda e: Layout.create({"a": 16}, device="x"),
        TypeError,
        r"'device' must be a device ordinal \(int\) or a greenres\.Device \(got 'x'\)",
    ),
    (
        "create-device-float",
        lambda e: Layout.create({"a": 16}, device=1.5),
        TypeError,
        r"'device' must be a device ordinal \(int\) or a greenres\.Device \(got 1\.5\)",
    ),
    (
        "create-device-unknown",
        lambda e: Layout.create({"a": 16}, device=99),
        ValueError,
        r"'ordinal' must be in .* \(got 99\)",
    ),
    ("create-too-big", lambda e: Layout.create({"a": 4096}), PlanError, r"a asks 4096 SMs"),
    # Layout lookups and modes
    (
        "getitem-unknown",
        lambda e: e.layout["zz"],
        KeyError,
        r"no partition 'zz'; partitions: 'a', 'b'",
    ),
    (
        "switch-no-modes",
        lambda e: e.layout.switch("x"),
        KeyError,
        r"no mode 'x': this layout has no modes",
    ),
    (
        "mode_partitions-no-modes",
        lambda e: e.layout.mode_partitions("x"),
        KeyError,
        r"this layout has no modes",
    ),
    ("switch-unhashable", lambda e: e.layout.switch([]), KeyError, r"no mode \[\]"),
    (
        "switch-unknown-mode",
        lambda e: _switch_modal("z"),
        KeyError,
        r"no mode 'z'; modes: 'x', 'y'",
    ),
    # GreenContext
    (
        "create_stream-str",
        lambda e: e.a.create_stream(priority="x"),
        TypeError,
        r"'priority' must be an int \(got 'x'\)",
    ),
    (
        "create_stream-float",
        lambda e: e.a.create_stream(priority=1.5),
        TypeError,
        r"'priority' must be an int \(got 1\.5\)",
    ),
    (
        "create_stream-bool",
        lambda e: e.a.create_stream(priority=True),
        TypeError,
        r"'priority' must be an int \(got True\)",
    ),
    (
        "create_stream-huge",
        lambda e: e.a.create_stream(priority=2**40),
        ValueError,
        r"'priority' must fit in a C int \(got 1099511627776\)",
    ),
    (
        "enter-float",
        lambda e: e.a.enter(from_stream=1.5),
        TypeError,
        rf"'from_stream' {STREAM_FORMS} \(got 1\.5\)",
    ),
    (
        "enter-str",
        lambda e: e.a.enter(from_stream="1"),
        TypeError,
        rf"'from_stream' {STREAM_FORMS} \(got '1'\)",
    ),
    # handoff and Stream.wait
    (
        "handoff-src-float",
        lambda e: greenres.handoff(1.5, e.s),
        TypeError,
        rf"'src' {STREAM_FORMS} \(got 1\.5\)",
    ),
    (
        "handoff-dst-bool",
        lambda e: greenres.handoff(e.s, True),
        TypeError,
        rf"'dst' {STREAM_FORMS} \(got True\)",
    ),
    (
        "handoff-src-str",
        lambda e: greenres.handoff("7", e.s),
        TypeError,
        rf"'src' {STREAM_FORMS} \(got '7'\)",
    ),
    (
        "handoff-object",
        lambda e: greenres.handoff(object(), e.s),
        TypeError,
        rf"'src' {STREAM_FORMS}",
    ),
    (
        "handoff-negative",
        lambda e: greenres.handoff(-1, e.s),
        ValueError,
        r"'src' must be a stream handle >= 0 \(got -1\)",
    ),
    ("wait-float", lambda e: e.s.wait(2.0), TypeError, rf"'other' {STREAM_FORMS} \(got 2\.0\)"),
    # Event
    (
        "Event-timing-str",
        lambda e: Event(timing="x"),
        TypeError,
        r"'timing' must be a bool \(got 'x'\)",
    ),
    (
        "Event-timing-int",
        lambda e: Event(timing=1),
        TypeError,
        r"'timing' must be a bool \(got 1\)",
    ),
    (
        "Event-device-str",
        lambda e: Event(device="0"),
        TypeError,
        r"'device' must be a device ordinal \(int\) or a greenres\.Device \(got '0'\)",
    ),
    (
        "record-float",
        lambda e: e.event.record(1.5),
        TypeError,
        rf"'stream' {STREAM_FORMS} \(got 1\.5\)",
    ),
    (
        "event-wait-str",
        lambda e: e.event.wait("s"),
        TypeError,
        rf"'stream' {STREAM_FORMS} \(got 's'\)",
    ),
    (
        "elapsed_time-not-event",
        lambda e: e.event.elapsed_time(3),
        TypeError,
        r"'end' must be a greenres\.Event \(got 3\)",
    ),
    (
        "elapsed_time-no-timing",
        lambda e: e.event.elapsed_time(e.event),
        ValueError,
        r"needs two events created with timing=True",
    ),
    # Graph and GraphPool
    (
        "Graph-keep_graph-str",
        lambda e: Graph(keep_graph="x"),
        TypeError,
        r"'keep_graph' must be a bool \(got 'x'\)",
    ),
    (
        "Graph-keep_graph-int",
        lambda e: Graph(keep_graph=0),
        TypeError,
        r"'keep_graph' must be a bool \(got 0\)",
    ),
    (
        "Graph-pool-str",
        lambda e: Graph(pool="p"),
        TypeError,
        r"'pool' must be a greenres\.GraphPool .*\(got 'p'\)",
    ),
    (
        "capture-mode",
        lambda e: e.graph.capture(e.s, mode="bogus"),
        ValueError,
        r"'mode' must be one of .* \(got 'bogus'\)",
    ),
    (
        "capture-stream",
        lambda e: e.graph.capture(1.5),
        TypeError,
        rf"'stream' {STREAM_FORMS} \(got 1\.5\)",
    ),
    (
        "capture_begin-mode",
        lambda e: e.graph.capture_begin(e.s, mode=3),
        ValueError,
        r"'mode' must be one of 'global', 'thread_local', 'relaxed' \(got 3\)",
    ),
    (
        "replay-stream",
        lambda e: e.captured.replay("x"),
        TypeError,
        rf"'stream' {STREAM_FORMS} \(got 'x'\)",
    ),
    (
        "Graph.allocate-str",
        lambda e: e.graph.allocate("x"),
        TypeError,
        r"'nbytes' must be an int \(got 'x'\)",
    ),
    (
        "Graph.allocate-zero",
        lambda e: e.graph.allocate(0),
        ValueError,
        r"'nbytes' must be > 0 \(got 0\)",
    ),
    (
        "pool.allocate-negative",
        lambda e: e.pool.allocate(-5),
        ValueError,
        r"'nbytes' must be > 0 \(got -5\)",
    ),
    (
        "pool.allocate-float",
        lambda e: e.pool.allocate(1.5),
        TypeError,
        r"'nbytes' must be an int \(got 1\.5\)",
    ),
    (
        "GraphPool-device-float",
        lambda e: GraphPool(device=0.0),
        TypeError,
        r"'device' must be a device ordinal \(int\) or a greenres\.Device \(got 0\.0\)",
    ),
    # Streams
    ("close-default-stream", lambda e: e.s.close(), ValueError, r"default stream of partition 'a'"),
]


@pytest.mark.parametrize(
    "call,error,pattern", [row[1:] for row in BAD_ARGUMENTS], ids=[row[0] for row in BAD_ARGUMENTS]
)
def test_bad_argument(env, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(env)
    assert not env.a.entered  # nothing half done


def _out_of_order(e):
    b = e.layout["b"]
    e.a.enter()
    b.enter()
    try:
        e.a.exit()
    finally:
        b.exit()
        e.a.exit()


def _too_deep(e):
    depth = 0
    try:
        for _ in range(100):
            e.a.enter()
            depth += 1
    finally:
        assert depth == 64
        for _ in range(depth):
            e.a.exit()


def _begin_twice(e):
    e.graph.capture_begin(e.s)
    try:
        e.graph.capture_begin(e.s)
    finally:
        e.graph.capture_end()
        e.graph.close()


def _replay_while_capturing(e):
    e.graph.capture_begin(e.s)
    try:
        e.graph.replay()
    finally:
        e.graph.capture_end()
        e.graph.close()


def _foreign_handoff_without_context(e):
    result = {}

    def run():  # a fresh thread: no context is current
        try:
            greenres.handoff(1, 2)
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    raise result["error"]


def _closed(attribute):
    def call(e):
        layout = Layout.create({"q": 16})
        layout.close()
        return attribute(layout)

    return call


MISUSE = [
    (
        "exit-out-of-order",
        _out_of_order,
        UsageError,
        r"partition 'a' is not the innermost .* reverse order",
    ),
    (
        "nested-too-deep",
        _too_deep,
        UsageError,
        r"partition 'a' cannot be entered: .* at most 64 levels",
    ),
    ("capture_end-not-capturing", lambda e: e.graph.capture_end(), UsageError, r"not capturing"),
    ("replay-before-capture", lambda e: e.graph.replay(), UsageError, r"nothing captured"),
    (
        "instantiate-before-capture",
        lambda e: e.graph.instantiate(),
        UsageError,
        r"nothing captured",
    ),
    ("capture_begin-twice", _begin_twice, UsageError, r"already capturing"),
    (
        "capture_begin-holding-a-capture",
        lambda e: e.captured.capture_begin(e.s),
        UsageError,
        r"reset\(\)",
    ),
    ("replay-while-capturing", _replay_while_capturing, UsageError, r"still capturing"),
    (
        "foreign-handoff-no-context",
        _foreign_handoff_without_context,
        UsageError,
        r"needs a current context",
    ),
    ("closed-len", _closed(len), ClosedError, r"the layout is closed"),
    ("closed-contains", _closed(lambda lay: "q" in lay), ClosedError, r"the layout is closed"),
    ("closed-names", _closed(lambda lay: lay.names), ClosedError, r"the layout is closed"),
    (
        "closed-partitions",
        _closed(lambda lay: lay.partitions),
        ClosedError,
        r"the layout is closed",
    ),
    ("closed-iter", _closed(iter), ClosedError, r"the layout is closed"),
    ("closed-switch", _closed(lambda lay: lay.switch(None)), ClosedError, r"the layout is closed"),
]


@pytest.mark.parametrize(
    "call,error,pattern", [row[1:] for row in MISUSE], ids=[row[0] for row in MISUSE]
)
def test_misuse(env, call, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        call(env)
    assert isinstance(info.value, GreenresError)
    assert not env.a.entered and not env.layout["b"].entered


def test_usage_error_is_a_greenres_runtime_error():
    assert issubclass(UsageError, GreenresError) and issubclass(UsageError, RuntimeError)
    assert "state" in UsageError.__doc__
    assert greenres.UsageError is UsageError


def test_closed_layout_keeps_its_descriptive_attributes():
    """Like a closed file: what it was stays readable, using it raises."""
    layout = Layout.create({"q": 16})
    plan = layout.plan
    layout.close()
    assert layout.closed
    assert layout.plan is plan and layout.mode is None and layout.modes == (None,)
    assert layout.device == Device(0)
    assert "closed" in repr(layout)
