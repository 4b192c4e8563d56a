"""Any value given to the runtime's constructors and calls is accepted or refused with a
documented error (docs/errors.md): a TypeError or ValueError (SpecError, PlanError and
ClosedError are ValueErrors), a UsageError, a DriverTooOldError, or a DriverError when the
driver refuses a handle it was given (the legacy stream 0 with no context current), never an
AttributeError, OverflowError, IndexError or a crash, and whatever was refused leaves
nothing alive."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import greenres
from greenres import DriverError, DriverTooOldError, Event, Graph, GraphPool, Layout, UsageError

from support.rthelpers import SIM

pytestmark = [
    pytest.mark.sim_only,
    pytest.mark.skipif(not SIM, reason="counts live objects in the simulator"),
]

if SIM:
    import greenres.sim as sim


def live(_sim=None):
    return {kind: n for kind, n in sim.live_objects().items() if n}


DOCUMENTED = (TypeError, ValueError, UsageError, DriverTooOldError, DriverError)


class _Odd:
    """An object with the protocols greenres looks for, answering nonsense."""

    def __init__(self, answer):
        self.answer = answer

    def __cuda_stream__(self):
        return self.answer

    def __index__(self):
        if isinstance(self.answer, int):
            return self.answer
        raise TypeError("not an index")


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**64, 2**64 - 1, 2**63, -(2**63), 10**400, -1, 0, 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(math.nan),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.complex_numbers(allow_nan=True),
)
values = st.recursive(
    st.one_of(scalars, scalars.map(_Odd)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
    ),
    max_leaves=6,
)


def _refused_or_fine(call, *args, **kwargs):
    try:
        result = call(*args, **kwargs)
    except DOCUMENTED:
        return None
    return result


@pytest.fixture(scope="module")
def world():
    greenres.Device(0)
    layout = Layout.create({"a": 16, "b": 16})
    # this thread's handoff pool event, made by its first handoff: there before any example
    greenres.handoff(layout["a"].stream, layout["b"].stream)
    yield layout
    layout.close()


@given(ordinal=values)
def test_device(ordinal):
    _refused_or_fine(greenres.Device, ordinal)


@given(timing=values, device=values)
def test_event(timing, device):
    before = live(sim)
    event = _refused_or_fine(Event, timing=timing, device=device)
    if event is not None:
        event.close()
    assert live(sim) == before


@given(keep=values, pool=values)
def test_graph(keep, pool):
    before = live(sim)
    graph = _refused_or_fine(Graph, keep_graph=keep, pool=pool)
    if graph is not None:
        graph.close()
    pool_obj = _refused_or_fine(GraphPool, keep)
    if pool_obj is not None:
        _refused_or_fine(pool_obj.allocate, pool)
        pool_obj.close()
    assert live(sim) == before


@given(plan=values, device=values)
def test_layout_create(plan, device):
    before = live(sim)
    layout = _refused_or_fine(Layout.create, plan, device=device)
    if layout is not None:
        layout.close()
    assert live(sim) == before


@given(src=values, dst=values, priority=values, mode=values)
def test_calls_on_a_layout(world, src, dst, priority, mode):
    a, b = world["a"], world["b"]
    before = live(sim)
    _refused_or_fine(greenres.handoff, src, b.stream)
    _refused_or_fine(greenres.handoff, a.stream, dst)
    _refused_or_fine(a.stream.wait, src)
    stream = _refused_or_fine(a.create_stream, priority)
    if stream is not None:
        stream.close()
    scope = _refused_or_fine(a.enter, src)
    if scope is not None:
        a.exit()
    graph = Graph()
    _refused_or_fine(graph.capture, src, mode)
    _refused_or_fine(graph.replay, dst)
    graph.close()
    assert not a.entered
    assert live(sim) == before
