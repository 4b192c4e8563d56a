"""The thread rule: a green context is current on one thread at a time."""

import threading
import time

import pytest
from cuda.bindings import driver as cu

from greenres import ThreadOwnershipError

from support.rthelpers import layout_of

pytestmark = pytest.mark.gpu


def _in_thread(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def test_entering_a_partition_current_on_another_thread_raises():
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        with a:
            with pytest.raises(ThreadOwnershipError, match="another thread"):
                _in_thread(a.__enter__)
        _in_thread(lambda: (a.__enter__(), a.exit()))  # free again: another thread may


def test_exit_on_a_thread_that_did_not_enter_raises():
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        a.enter()
        with pytest.raises(ThreadOwnershipError, match="not entered on this thread"):
            _in_thread(a.exit)
        a.exit()
        with pytest.raises(ThreadOwnershipError):
            a.exit()  # not entered at all


def test_exit_out_of_order_raises_and_keeps_state():
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        a.enter()
        b.enter()
        with pytest.raises(RuntimeError, match="reverse order"):
            a.exit()
        b.exit()
        a.exit()
        assert not a.entered and not b.entered


def test_threads_in_different_partitions_run_in_parallel():
    """Two threads are inside their own partitions at the same moment, many times: both
    wait at a barrier inside the ``with``. A lock shared between partitions (or any
    serialisation of enter/exit) makes the barrier time out."""
    with layout_of({"a": 16, "b": 16}) as layout:
        barrier = threading.Barrier(2, timeout=10)
        errors = []

        def worker(part):
            try:
                for _ in range(200):
                    with part:
                        barrier.wait()  # the other thread is inside its partition too
                        assert part.entered
            except BaseException as exc:
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=worker, args=(p,)) for p in layout]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors


def test_contended_partition_admits_one_thread_at_a_time():
    """Four threads race to enter one partition. A counter (deliberately unlocked) is
    incremented after enter and decremented before exit: it never exceeds 1. The first
    thread admitted stays inside until another thread has been refused, so the race
    happens on every run instead of depending on how the scheduler interleaves."""
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        state = {"inside": 0, "max": 0, "refused": 0, "admitted": 0}
        errors = []
        start = threading.Barrier(4, timeout=10)
        someone_refused = threading.Event()

        def worker():
            try:
                start.wait()
                for _ in range(500):
                    try:
                        a.__enter__()
                    except ThreadOwnershipError:
                        state["refused"] += 1
                        someone_refused.set()
                        continue
                    state["inside"] += 1
                    state["max"] = max(state["max"], state["inside"])
                    state["admitted"] += 1
                    # Hold the partition until a rival has been turned away (immediate
                    # once that happened), then let the other threads run while inside.
                    someone_refused.wait(timeout=10)
                    time.sleep(0)
                    state["inside"] -= 1
                    a.exit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert state["max"] == 1
        assert state["inside"] == 0
        assert state["admitted"] > 0
        assert state["refused"] > 0
        assert not a.entered


@pytest.mark.sim_only
def test_no_hazard_seen_by_the_simulator(sim):
    with layout_of({"a": 16, "b": 16}) as layout:

        def worker(part):
            for _ in range(200):
                try:
                    with part:
                        pass
                except ThreadOwnershipError:
                    pass

        threads = [threading.Thread(target=worker, args=(layout[n],)) for n in "abab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sim.hazards() == []


def test_the_pin_of_an_entered_partition_survives_contention():
    """Threads take one partition in turn: each outermost exit drops the reference its
    enter took, even when another thread enters the moment ownership is given up (a drop
    decided after that point would drop the other thread's reference)."""
    import sys

    with layout_of({"a": 16}) as layout:
        part = layout["a"]
        refs = sys.getrefcount(part)

        def worker():
            for _ in range(3000):
                try:
                    with part:
                        pass
                except ThreadOwnershipError:
                    pass

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sys.getrefcount(part) == refs
        assert not part.entered


def test_threads_retrying_a_left_temporary_event_destroy_it_once(sim, primary):
    """A temporary handoff event whose destroy failed is retried by the next foreign
    handoff; threads retrying at once must destroy it exactly once (a second destroy of
    the same handle is a use-after-free on a real driver: a hazard in the simulator)."""
    import greenres

    with layout_of({"a": 16, "b": 16}) as layout:
        src, dst = int(layout["a"].stream), int(layout["b"].stream)
        before = sim.live_objects()
        errors = []
        for _ in range(20):
            sim.inject_fault("cuEventDestroy", "CUDA_ERROR_UNKNOWN")
            with pytest.raises(greenres.DestroyError):
                greenres.handoff(src, dst)
            assert sim.live_objects_since(before) == {"event": 1}
            barrier = threading.Barrier(4)

            def retry(barrier=barrier):
                cu.cuCtxPushCurrent(primary)
                try:
                    barrier.wait()
                    greenres.handoff(src, dst)
                except BaseException as exc:
                    errors.append(exc)
                finally:
                    cu.cuCtxPopCurrent()

            threads = [threading.Thread(target=retry) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            assert sim.live_objects_since(before) == {}
        assert sim.hazards() == []
