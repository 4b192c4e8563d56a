"""User objects: references of callers, graphs and graph execs; the destructor runs once,
on the simulator's destructor thread, when the last reference goes (cuda.h: "executed by a
shared internal thread"; CU_USER_OBJECT_NO_DESTRUCTOR_SYNC: no CUDA call waits for it)."""

import ctypes
import threading

import pytest

import greenres.sim as sim

from support.simhelpers import NON_BLOCKING, E, check, driver, take_destroyed_handle_hazards

pytestmark = pytest.mark.sim_only

lib = ctypes.CDLL(str(sim.LIBRARY_PATH))
destroy_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
NO_SYNC = 1  # CU_USER_OBJECT_NO_DESTRUCTOR_SYNC
MOVE = 1  # CU_GRAPH_USER_OBJECT_MOVE
MODE = driver.CUstreamCaptureMode

for _name, _args in {
    "cuUserObjectCreate": [
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.c_void_p,
        destroy_t,
        ctypes.c_uint,
        ctypes.c_uint,
    ],
    "cuUserObjectRetain": [ctypes.c_void_p, ctypes.c_uint],
    "cuUserObjectRelease": [ctypes.c_void_p, ctypes.c_uint],
    "cuGraphRetainUserObject": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint],
    "cuGraphReleaseUserObject": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint],
}.items():
    getattr(lib, _name).argtypes = _args
    getattr(lib, _name).restype = ctypes.c_int


class Destructor:
    """A destructor that records each call: its argument and the thread it ran on."""

    def __init__(self):
        self.calls = []
        self.ran = threading.Event()
        self.fn = destroy_t(self._run)  # kept alive by the instance

    def _run(self, ptr):
        self.calls.append((ptr, threading.get_ident()))
        self.ran.set()

    def create(self, count=1, ptr=1234, flags=NO_SYNC):
        out = ctypes.c_void_p()
        err = lib.cuUserObjectCreate(ctypes.byref(out), ptr, self.fn, count, flags)
        assert err == 0, err
        return out.value

    def settled(self):
        """The calls once every destructor queued so far has run."""
        sim.wait_user_object_destructors()
        return list(self.calls)


def test_the_destructor_runs_once_when_the_last_reference_goes(ctx):
    d = Destructor()
    before = sim.live_objects()["user_object"]
    obj = d.create(count=2, ptr=42)
    assert sim.live_objects()["user_object"] == before + 1
    assert lib.cuUserObjectRetain(obj, 3) == 0
    assert lib.cuUserObjectRelease(obj, 4) == 0
    assert d.settled() == []  # one reference left
    assert lib.cuUserObjectRelease(obj, 1) == 0
    ((ptr, thread),) = d.settled()
    assert ptr == 42
    assert thread != threading.get_ident()  # the simulator's destructor thread
    assert sim.live_objects()["user_object"] == before
    # The handle is dead now: a destroyed handle.
    assert lib.cuUserObjectRetain(obj, 1) == E.CUDA_ERROR_INVALID_VALUE
    (hazard,) = take_destroyed_handle_hazards()
    assert "cuUserObjectRetain: user object handle" in hazard


@pytest.mark.parametrize(
    "count, flags",
    [(0, NO_SYNC), (2**31, NO_SYNC), (1, 0), (1, 2), (1, NO_SYNC | 2)],
)
def test_create_refuses_bad_counts_and_flags(ctx, count, flags):
    d = Destructor()
    out = ctypes.c_void_p()
    before = sim.live_objects()["user_object"]
    assert lib.cuUserObjectCreate(ctypes.byref(out), None, d.fn, count, flags) == 1
    assert lib.cuUserObjectCreate(None, None, d.fn, 1, NO_SYNC) == 1
    assert lib.cuUserObjectCreate(ctypes.byref(out), None, destroy_t(), 1, NO_SYNC) == 1
    assert sim.live_objects()["user_object"] == before


def test_bad_counts_and_over_release_change_nothing(ctx):
    d = Destructor()
    obj = d.create(count=2)
    for call in (lib.cuUserObjectRetain, lib.cuUserObjectRelease):
        assert call(obj, 0) == 1
        assert call(obj, 2**31) == 1
    assert lib.cuUserObjectRelease(obj, 3) == 1  # more than held: refused (a guess)
    assert lib.cuUserObjectRetain(12345, 1) == 1  # garbage handle
    assert d.settled() == []
    assert lib.cuUserObjectRelease(obj, 2) == 0
    assert len(d.settled()) == 1


def test_a_graph_owns_references_and_releases_them_when_destroyed(ctx):
    d = Destructor()
    obj = d.create()
    graph = check(driver.cuGraphCreate(0))
    g = int(graph)
    assert lib.cuGraphRetainUserObject(g, obj, 2, 0) == 0  # new references
    assert lib.cuGraphRetainUserObject(g, obj, 1, MOVE) == 0  # the caller's one moves
    assert lib.cuGraphReleaseUserObject(g, obj, 4) == 1  # the graph holds 3
    assert lib.cuGraphReleaseUserObject(g, obj, 1) == 0
    assert lib.cuGraphRetainUserObject(g, obj, 1, 2) == 1  # unknown flag
    assert lib.cuGraphRetainUserObject(12345, obj, 1, 0) == 1
    assert d.settled() == []
    check(driver.cuGraphDestroy(graph))
    assert len(d.settled()) == 1


def test_an_exec_keeps_the_graphs_objects_until_it_is_destroyed(ctx):
    d = Destructor()
    obj = d.create()
    graph = check(driver.cuGraphCreate(0))
    assert lib.cuGraphRetainUserObject(int(graph), obj, 1, MOVE) == 0
    exe = check(driver.cuGraphInstantiate(graph, 0))
    check(driver.cuGraphDestroy(graph))
    assert d.settled() == []
    check(driver.cuGraphExecDestroy(exe))
    assert len(d.settled()) == 1


def test_an_exec_destroyed_while_a_launch_is_queued_releases_after_the_launch(ctx):
    d = Destructor()
    obj = d.create()
    graph = check(driver.cuGraphCreate(0))
    assert lib.cuGraphRetainUserObject(int(graph), obj, 1, MOVE) == 0
    exe = check(driver.cuGraphInstantiate(graph, 0))
    check(driver.cuGraphDestroy(graph))
    stream = check(driver.cuStreamCreate(NON_BLOCKING))
    gate = threading.Event()
    hold = destroy_t(lambda _: gate.wait(10))
    check(driver.cuLaunchHostFunc(stream, ctypes.cast(hold, ctypes.c_void_p).value, 0))
    check(driver.cuGraphLaunch(exe, stream))
    check(driver.cuGraphExecDestroy(exe))
    assert not d.ran.wait(0.2)  # the queued launch still shares the exec's references
    gate.set()
    check(driver.cuStreamSynchronize(stream))
    assert len(d.settled()) == 1
    check(driver.cuStreamDestroy(stream))


def _capture_graph(stream):
    status, _id, graph, *_ = driver.cuStreamGetCaptureInfo(stream)[1:]
    assert status == driver.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_ACTIVE
    return int(graph)


def test_a_graph_under_capture_takes_references_and_keeps_them(ctx):
    d = Destructor()
    obj = d.create()
    stream = check(driver.cuStreamCreate(NON_BLOCKING))
    check(driver.cuStreamBeginCapture(stream, MODE.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL))
    assert lib.cuGraphRetainUserObject(_capture_graph(stream), obj, 1, MOVE) == 0
    graph = check(driver.cuStreamEndCapture(stream))
    assert d.settled() == []
    check(driver.cuGraphDestroy(graph))
    assert len(d.settled()) == 1
    check(driver.cuStreamDestroy(stream))


def test_an_invalidated_capture_releases_its_graphs_references(ctx):
    d = Destructor()
    obj = d.create()
    stream = check(driver.cuStreamCreate(NON_BLOCKING))
    check(driver.cuStreamBeginCapture(stream, MODE.CU_STREAM_CAPTURE_MODE_GLOBAL))
    assert lib.cuGraphRetainUserObject(_capture_graph(stream), obj, 1, MOVE) == 0
    # A synchronous copy is not allowed in a GLOBAL capture: it invalidates the capture.
    assert driver.cuMemAlloc(64)[0] == E.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    err, _graph = driver.cuStreamEndCapture(stream)
    assert err == E.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
    assert len(d.settled()) == 1
    check(driver.cuStreamDestroy(stream))


def test_a_failed_retain_changes_nothing(ctx):
    d = Destructor()
    obj = d.create()
    graph = check(driver.cuGraphCreate(0))
    sim.inject_fault("cuGraphRetainUserObject", driver.CUresult.CUDA_ERROR_OUT_OF_MEMORY)
    assert lib.cuGraphRetainUserObject(int(graph), obj, 1, MOVE) == 2
    check(driver.cuGraphDestroy(graph))
    assert d.settled() == []  # the caller still owns its reference
    sim.inject_fault("cuUserObjectRelease", driver.CUresult.CUDA_ERROR_INVALID_VALUE)
    assert lib.cuUserObjectRelease(obj, 1) == 1
    assert d.settled() == []
    assert lib.cuUserObjectRelease(obj, 1) == 0
    assert len(d.settled()) == 1


def test_threads_racing_retain_and_release_run_the_destructor_once(ctx):
    d = Destructor()
    obj = d.create()
    graphs = [check(driver.cuGraphCreate(0)) for _ in range(4)]
    errors = []

    def churn(graph):
        for _ in range(500):
            rc = (
                lib.cuUserObjectRetain(obj, 2),
                lib.cuGraphRetainUserObject(int(graph), obj, 1, MOVE),
                lib.cuGraphReleaseUserObject(int(graph), obj, 1),
                lib.cuUserObjectRelease(obj, 1),
            )
            if rc != (0, 0, 0, 0):
                errors.append(rc)

    threads = [threading.Thread(target=churn, args=(g,)) for g in graphs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert d.settled() == []
    for g in graphs:
        check(driver.cuGraphDestroy(g))
    assert lib.cuUserObjectRelease(obj, 1) == 0
    assert len(d.settled()) == 1
