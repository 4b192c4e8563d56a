"""A fault sweep generated from the simulator's call counts: every public operation is run
once to learn which driver functions it calls and how often, then again with each of those
calls failing in turn (destroy and release calls included). Each time the operation raises
DriverError naming the function and the error (DestroyError, a DriverError, when a destroy
call failed), the thread's context stack is as before, the same operation succeeds once the
fault is gone, and after closing what the test holds nothing is left alive and no call
received a destroyed handle. A driver call added to an operation is swept without editing
this file."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import DestroyError, DriverError, Event, Graph, Layout
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.rthelpers import current_context, ok

pytestmark = pytest.mark.sim_only

FAULT = "CUDA_ERROR_OUT_OF_MEMORY"


@dataclass
class Operation:
    """``setup()`` makes what the operation needs (a dict), ``run(state)`` is the
    operation, ``cleanup(state)`` closes what the test holds. ``after_failure(state,
    error)`` checks what a failed run left (and undoes what the retry must not see twice);
    ``retry(state)`` runs the operation again, by default ``run``."""

    setup: Callable[[], dict]
    run: Callable[[dict], Any]
    cleanup: Callable[[dict], None]
    retry: Callable[[dict], Any] | None = None
    after_failure: Callable[[dict, DriverError], None] = field(default=lambda s, e: None)


def _layout(state, mapping=None):
    state["layout"] = Layout.create(mapping or {"a": 16, "b": 16})
    return state["layout"]


def _close_all(state):
    for key in ("graph", "other_graph", "event", "stream"):
        obj = state.get(key)
        if obj is not None:
            obj.close()
    for part in state.get("entered", []):
        if part.entered:
            part.exit()
    if state.get("green") is not None:
        state["green"].close()
    if state.get("layout") is not None:
        state["layout"].close()
    if state.get("pushed"):
        ok(cu.cuCtxPopCurrent())
        ok(cu.cuDevicePrimaryCtxRelease(0))


def _with_layout(**extra):
    def setup():
        state = {}
        layout = _layout(state)
        for key, make in extra.items():
            state[key] = make(layout)
        return state

    return setup


def _modal_plan():
    spec = ModalSpec(
        modes={
            "x": PartitionSpec(partitions=(Partition("a", sms=16), Partition("b", sms=16))),
            "y": PartitionSpec(partitions=(Partition("c", sms=32, streams=2),)),
        },
        default="x",
    )
    return spec.plan(greenres.Device(0))


def _workqueue_plan():
    spec = PartitionSpec(
        partitions=(
            Partition("a", sms=16, workqueue_scope="balanced", workqueue_limit=2),
            Partition("b", sms=16, workqueue_scope="device_ctx"),
            Partition("c", sms=16),
        )
    )
    return spec.plan(greenres.Device(0))


def _guarded(state):
    # A foreign library leaves a context pushed inside the partition (and reports a failed
    # push of its own as a DriverError, as greenres would).
    with state["layout"]["a"].guard(warn=False):
        (err,) = cu.cuCtxPushCurrent(state["layout"]["b"].context_handle)
        if err != cu.CUresult.CUDA_SUCCESS:
            raise DriverError("cuCtxPushCurrent", int(err), err.name, "injected")


def _cached_replay(state):
    # the graph cache of a layout: capture once on the partition's stream, then replay
    state["layout"].graphs.replay("step", lambda stream: None, "a")


def _cache_after_failure(state, error):
    cache = state["layout"].graphs
    assert cache.replays == 0, f"a failed cached replay counted ({error})"
    cache.clear()


def _captured(layout, keep=False):
    graph = Graph(keep_graph=keep)
    with graph.capture(layout["a"].stream):
        graph.allocate(512)
    return graph


def _foreign_handoff(state):
    # No greenres Stream on either side: a temporary event of the current context.
    greenres.handoff(int(state["layout"]["a"].stream), int(state["layout"]["b"].stream))


def _setup_foreign():
    state = {}
    _layout(state)
    primary = ok(cu.cuDevicePrimaryCtxRetain(0))
    ok(cu.cuCtxPushCurrent(primary))
    state["pushed"] = True
    return state


def _exit_setup():
    state = {}
    layout = _layout(state)
    layout["a"].enter()
    state["entered"] = [layout["a"]]
    return state


def _exit_after_failure(state, error):
    a = state["layout"]["a"]
    assert a.entered, f"a failed exit changed the state ({error})"
    assert current_context() == a.context_handle


def _enter_after_failure(state, error):
    assert not state["layout"]["a"].entered, f"a failed enter changed the state ({error})"


def _enter(state):
    part = state["layout"]["a"]
    part.enter(from_stream=state["layout"]["b"].stream)
    state.setdefault("entered", []).append(part)


def _with(state):
    with state["layout"]["a"]:
        pass


def _create_stream(state):
    state["stream"] = state["layout"]["a"].create_stream(priority=-1)


def _layout_create(state):
    _layout(state, {"a": 16, "b": 24})


def _modal_create(state):
    state["layout"] = Layout.create(state["plan"])


def _with_after_failure(state, error):
    a = state["layout"]["a"]
    if a.entered:  # the exit failed and changed nothing: the partition is still entered
        assert current_context() == a.context_handle, str(error)
        a.exit()


def _switch_after_failure(state, error):
    assert state["layout"].mode == "x", f"a failed switch changed the mode ({error})"


def _green_create(state):
    with warnings.catch_warnings():  # the second create warns that splits can overlap
        warnings.simplefilter("ignore", UserWarning)
        state["green"] = greenres.GreenContext.create(16)


def _set_context(state):
    part = state["layout"]["a"]
    part.set_context(state["layout"]["b"].stream)
    state.setdefault("entered", []).append(part)


def _set_context_setup():
    state = {}
    layout = _layout(state)
    layout["a"].set_context()
    state["entered"] = [layout["a"]]
    return state


def _green_close_setup():
    state = {}
    _green_create(state)
    return state


def _graph_block(state):
    state["graph"] = Graph()
    with greenres.graph(state["graph"], stream=state["layout"]["a"].stream):
        state["graph"].allocate(512)


def _graph_block_after_failure(state, error):
    assert not state["graph"].capturing and not state["graph"].captured, str(error)


def _close_retry(key):
    def retry(state):
        state[key].close()  # retries what a DestroyError left, or closes what a refusal kept

    return retry


OPERATIONS = {
    "layout create": Operation(lambda: {}, _layout_create, _close_all),
    "modal layout create": Operation(lambda: {"plan": _modal_plan()}, _modal_create, _close_all),
    "layout create with workqueues": Operation(
        lambda: {"plan": _workqueue_plan()}, _modal_create, _close_all
    ),
    "layout close": Operation(
        _with_layout(stream=lambda layout: layout["a"].create_stream()),
        lambda s: s["layout"].close(),
        _close_all,
        retry=_close_retry("layout"),
    ),
    "layout close with a graph": Operation(
        _with_layout(graph=_captured),
        lambda s: s["layout"].close(),
        _close_all,
        retry=_close_retry("layout"),
    ),
    "enter": Operation(_with_layout(), _enter, _close_all, after_failure=_enter_after_failure),
    "exit": Operation(
        _exit_setup,
        lambda s: s["layout"]["a"].exit(),
        _close_all,
        after_failure=_exit_after_failure,
    ),
    "with": Operation(_with_layout(), _with, _close_all, after_failure=_with_after_failure),
    "graph cache replay": Operation(
        _with_layout(), _cached_replay, _close_all, after_failure=_cache_after_failure
    ),
    "guard": Operation(_with_layout(), _guarded, _close_all, after_failure=_with_after_failure),
    "GreenContext.create": Operation(lambda: {}, _green_create, _close_all),
    "set_context": Operation(
        _with_layout(), _set_context, _close_all, after_failure=_enter_after_failure
    ),
    "pop_context": Operation(
        _set_context_setup,
        lambda s: s["layout"]["a"].pop_context(),
        _close_all,
        after_failure=_exit_after_failure,
    ),
    # A failed free is retried by the next verify() (the retry here): nothing leaks.
    "layout verify": Operation(_with_layout(), lambda s: s["layout"].verify(), _close_all),
    "GreenContext.Stream": Operation(
        _with_layout(), lambda s: s.update(stream=s["layout"]["a"].Stream()), _close_all
    ),
    "greenres.graph block": Operation(
        _with_layout(), _graph_block, _close_all, after_failure=_graph_block_after_failure
    ),
    "created green context close": Operation(
        _green_close_setup,
        lambda s: s["green"].close(),
        _close_all,
        retry=_close_retry("green"),
    ),
    "handoff Stream to Stream": Operation(
        _with_layout(),
        lambda s: greenres.handoff(s["layout"]["a"].stream, s["layout"]["b"].stream),
        _close_all,
    ),
    "handoff Stream to int": Operation(
        _with_layout(),
        lambda s: greenres.handoff(s["layout"]["a"].stream, int(s["layout"]["b"].stream)),
        _close_all,
    ),
    "handoff int to Stream": Operation(
        _with_layout(),
        lambda s: greenres.handoff(int(s["layout"]["a"].stream), s["layout"]["b"].stream),
        _close_all,
    ),
    "Stream.wait": Operation(
        _with_layout(),
        lambda s: s["layout"]["b"].stream.wait(s["layout"]["a"].stream),
        _close_all,
    ),
    "handoff of foreign streams": Operation(_setup_foreign, _foreign_handoff, _close_all),
    "create_stream": Operation(_with_layout(), _create_stream, _close_all),
    "stream close": Operation(
        _with_layout(stream=lambda layout: layout["a"].create_stream()),
        lambda s: s["stream"].close(),
        _close_all,
        retry=_close_retry("stream"),
    ),
    "stream synchronize": Operation(
        _with_layout(), lambda s: s["layout"]["a"].stream.synchronize(), _close_all
    ),
    "event create": Operation(lambda: {}, lambda s: s.update(event=Event()), _close_all),
    "event record and wait": Operation(
        _with_layout(event=lambda layout: Event()),
        lambda s: s["event"].record(s["layout"]["a"].stream).wait(s["layout"]["b"].stream),
        _close_all,
    ),
    "event close": Operation(
        lambda: {"event": Event()},
        lambda s: s["event"].close(),
        _close_all,
        retry=_close_retry("event"),
    ),
    "graph capture": Operation(
        _with_layout(), lambda s: s.update(graph=_captured(s["layout"])), _close_all
    ),
    "graph instantiate": Operation(
        _with_layout(graph=_captured), lambda s: s["graph"].instantiate(), _close_all
    ),
    "graph replay": Operation(
        _with_layout(graph=_captured), lambda s: s["graph"].replay(), _close_all
    ),
    "graph replay (kept graph)": Operation(
        _with_layout(graph=lambda layout: _captured(layout, keep=True)),
        lambda s: s["graph"].replay(s["layout"]["b"].stream),
        _close_all,
    ),
    "graph reset": Operation(
        _with_layout(graph=_captured), lambda s: s["graph"].reset(), _close_all
    ),
    "graph close": Operation(
        _with_layout(graph=_captured),
        lambda s: s["graph"].close(),
        _close_all,
        retry=_close_retry("graph"),
    ),
    "graph pool allocate": Operation(
        lambda: {"graph": Graph()}, lambda s: s["graph"].allocate(4096), _close_all
    ),
    "mode switch": Operation(
        lambda: {"layout": Layout.create(_modal_plan())},
        lambda s: s["layout"].switch("y"),
        _close_all,
        after_failure=_switch_after_failure,
    ),
}


def _run_alone(operation, state):
    """``operation.run`` with the garbage collector off: a finalizer of an earlier run's
    object must not make driver calls the operation is blamed for. The device granularity
    Layout.create keeps is forgotten first, so every run makes the calls of a process's
    first create (its later creates make a subset of them)."""
    from greenres import _driver

    _driver._forget_device_granularity()
    gc.disable()
    try:
        return operation.run(state)
    finally:
        gc.enable()


def _learn(sim, operation):
    """The driver functions ``operation.run`` calls, with how often."""
    gc.collect()
    state = operation.setup()
    try:
        sim.reset_call_counts()
        _run_alone(operation, state)
        return sim.call_counts()
    finally:
        operation.cleanup(state)


def _sweep_one(sim, operation, function, nth, times, baseline):
    """One run with call ``nth`` (of ``times``) of ``function`` failing; returns a problem
    or None. An operation may instead succeed by calling the function again (a documented
    retry of a call that restores state, like the thread's capture mode)."""
    gc.collect()
    state = operation.setup()
    stack = current_context()
    try:
        sim.inject_fault(function, FAULT, nth=nth)
        sim.reset_call_counts()
        try:
            _run_alone(operation, state)
        except DriverError as error:
            sim.clear_faults()
            failed = (
                [f.function for f in error.failures]
                if isinstance(error, DestroyError)
                else [error.function]
            )
            if failed != [function] or error.name != FAULT:
                return f"raised for {failed} ({error.name}): {error}"
            operation.after_failure(state, error)
            if current_context() != stack:
                return "the thread's context stack changed"
            (operation.retry or operation.run)(state)
        else:
            if sim.call_counts(function)[function] <= times:
                return "the operation succeeded with its call failing"
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    finally:
        sim.clear_faults()
        try:
            operation.cleanup(state)
        except Exception as error:
            return f"cleanup failed: {type(error).__name__}: {error}"
    live = sim.live_objects()
    if live != baseline:
        leaked = {k: live[k] - baseline[k] for k in live if live[k] != baseline[k]}
        return f"left alive after cleanup: {leaked}"
    if sim.hazards():
        return f"hazards: {sim.hazards()}"
    return None


#: Faults injected and leaks found by the last run (the closing note's figures).
STATS = {"operations": 0, "faults": 0, "destroy_faults": 0, "problems": 0}


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_driver_call_of_an_operation_can_fail(sim, name):
    operation = OPERATIONS[name]
    greenres.Device(0)
    baseline = sim.live_objects()
    counts = _learn(sim, operation)
    assert counts, "the operation made no driver call"
    assert sim.live_objects() == baseline and sim.hazards() == []
    problems = []
    for function, times in sorted(counts.items()):
        if function in ("cuGetErrorName", "cuGetErrorString", "cuGetProcAddress"):
            continue  # what reports an error cannot itself be the error reported
        for nth in range(1, times + 1):
            STATS["faults"] += 1
            STATS["destroy_faults"] += function.endswith(("Destroy", "Release", "Free"))
            problem = _sweep_one(sim, operation, function, nth, times, baseline)
            if problem:
                problems.append(f"{function} call {nth} of {times}: {problem}")
                sim.clear_hazards()
    STATS["operations"] += 1
    STATS["problems"] += len(problems)
    assert not problems, "\n".join(problems)
