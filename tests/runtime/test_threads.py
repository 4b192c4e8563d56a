"""The thread rule: a green context is current on one thread at a time."""

import threading

import pytest
from rthelpers import layout_of

from greenres import ThreadOwnershipError

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
    """Two threads enter and exit their own partitions many times at once."""
    with layout_of({"a": 16, "b": 16}) as layout:
        barrier = threading.Barrier(2)
        errors = []

        def worker(part):
            try:
                barrier.wait()
                for _ in range(2000):
                    with part:
                        pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(p,)) for p in layout]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors


def test_contended_partition_admits_one_thread_at_a_time():
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        inside = []
        refused = []
        lock = threading.Lock()

        def worker():
            for _ in range(500):
                try:
                    a.__enter__()
                except ThreadOwnershipError:
                    refused.append(1)
                    continue
                with lock:
                    inside.append(threading.get_ident())
                    assert len(set(inside)) == 1
                    inside.clear()
                a.exit()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not a.entered


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
