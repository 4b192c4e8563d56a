"""PyTorch's green contexts as written (torch.cuda.green_contexts.GreenContext and
CUDAGreenContext.cpp), on greenres' layouts: each test is one sentence of the seed's
docstrings or of its C++ semantics.

* ``create(num_sms, device_id)``: "Create a CUDA green context ... The number of SMs to use
  in the green context ... The device index of green context."
* ``set_context()``: "Make the green context the current context." (C++: record an event on
  the current stream, push the green context or set it when none is current, make the
  default stream wait for the event.)
* ``pop_context()``: "Assuming the green context is the current context, pop it from the
  context stack and restore the previous context." (C++: record on the default stream, pop,
  check the popped context, make the previous stream wait.)
* ``Stream()``: "Return the CUDA Stream used by the green context."
"""

from __future__ import annotations

import json
import threading
import warnings

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import ClosedError, DriverTooOldError, GreenContext, ThreadOwnershipError, UsageError

from support.childprocess import run_python
from support.rthelpers import SIM, copy, current_context, layout_of, memset, ok, read, sync

pytestmark = pytest.mark.gpu

N = 4096
ITERATIONS = 30
DEFAULT_STREAM = cu.CUstream(0)  # the NULL stream: the current context's default stream


@pytest.fixture
def slow(op_delay):
    op_delay(200)


def _create(num_sms, device_id=None):
    with warnings.catch_warnings():  # "splits can share SMs", warned once per process
        warnings.simplefilter("ignore", UserWarning)
        return GreenContext.create(num_sms, device_id)


def _granted(num_sms):
    """What the planner grants for ``num_sms`` on device 0 (the seed rounds as it)."""
    from greenres.plan import plan_counts

    return plan_counts({"g": num_sms}, greenres.Device(0))["g"].sm_count


# --------------------------------------------------------------------- create


@pytest.mark.parametrize("num_sms", [8, 20, 64])
def test_create_makes_a_green_context_of_num_sms(num_sms):
    with _create(num_sms) as green:
        assert isinstance(green, GreenContext)
        assert green.sm_count == _granted(num_sms) >= num_sms
        assert green.sm_resource.count == green.sm_count  # as the driver reports it
        assert green.device.ordinal == 0
        assert not green.closed
    assert green.closed


def test_device_id_names_the_device(primary):
    if greenres.device_count() < 2:
        pytest.skip("needs two devices")
    with _create(16, device_id=1) as green:
        assert green.device.ordinal == 1
    # device_id=None: the current context's device (here device 1's primary context)
    device = ok(cu.cuDeviceGet(1))
    ctx = ok(cu.cuDevicePrimaryCtxRetain(device))
    ok(cu.cuCtxPushCurrent(ctx))
    try:
        with _create(16) as green:
            assert green.device.ordinal == 1
    finally:
        ok(cu.cuCtxPopCurrent())
        ok(cu.cuDevicePrimaryCtxRelease(device))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_create_checks_its_arguments():
    with pytest.raises(TypeError, match="'num_sms' must be an int"):
        GreenContext.create(1.5)
    with pytest.raises(TypeError, match="'device_id' must be an int"):
        GreenContext.create(8, "0")
    with pytest.raises(ValueError, match=r"'device_id' must be in \[0, \d+\) \(got 99\)"):
        GreenContext.create(8, 99)
    for bad in (0, -4):
        with pytest.raises(ValueError, match=rf"'num_sms' must be >= 1 \(got {bad}\)"):
            GreenContext.create(bad)
    with pytest.raises(greenres.PlanError, match="asks 100000 SMs"):
        GreenContext.create(100000)


@pytest.mark.sim_only
def test_close_frees_everything(sim):
    before = sim.live_objects()
    green = _create(16)
    stream = green.Stream()
    assert sim.live_objects() != before
    green.close()
    green.close()  # idempotent
    assert stream.closed and green.closed
    assert sim.live_objects() == before
    with pytest.raises(ClosedError):
        green.set_context()
    with pytest.raises(ClosedError):
        green.__enter__()


def test_with_closes_also_when_the_block_raises():
    stack = current_context()
    with pytest.raises(KeyError), _create(16) as green:
        green.set_context()
        assert current_context() == green.context_handle
        raise KeyError("boom")
    # the block's exception is the one raised; the green context was popped and closed
    assert green.closed and not green.entered
    assert current_context() == stack


def test_a_partition_of_a_layout_is_closed_with_its_layout():
    with layout_of({"a": 16}) as layout:
        with pytest.raises(UsageError, match="belongs to a Layout: close the layout"):
            layout["a"].close()
        with layout["a"]:  # `with part:` still enters a layout's partition
            assert layout["a"].entered


_FIRST_CREATES = """
import json, warnings
import greenres
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    a = greenres.GreenContext.create(16)      # no primary context yet: one is made
    b = greenres.GreenContext.create(16)      # a second split: warned once
    c = greenres.GreenContext.create(16)
messages = [str(w.message) for w in caught if w.category is UserWarning]
import greenres.sim as sim
overlap = sorted(set(sim.green_context_sms(a.handle)) & set(sim.green_context_sms(b.handle)))
for g in (a, b, c):
    g.close()
print(json.dumps([messages, len(overlap)]))
"""


@pytest.mark.sim_only
def test_no_primary_context_makes_one_and_a_second_split_warns_once():
    messages, overlap = json.loads(run_python(_FIRST_CREATES, GREENRES_SIM="h100"))
    assert len(messages) == 2, messages
    assert "device 0 had no primary context; creating one" in messages[0]
    assert "green contexts from two calls can share SMs" in messages[1]
    assert "greenres.Layout.create" in messages[1]
    # ... and they do: two splits of the whole device hand out the same first SMs
    assert overlap == 16


_OLD_DRIVER = """
import greenres
try:
    greenres.GreenContext.create(16)
except greenres.DriverTooOldError as error:
    assert isinstance(error, NotImplementedError)
    print(error)
"""


@pytest.mark.sim_only
def test_a_driver_older_than_12_8_is_refused_naming_both_versions():
    out = run_python(_OLD_DRIVER, GREENRES_SIM="h100@12070")
    assert "needs CUDA driver 12.8 (12080) or newer" in out
    assert "the loaded driver is 12.7 (12070)" in out


def test_driver_too_old_is_the_documented_class():
    assert issubclass(DriverTooOldError, NotImplementedError)


# --------------------------------------------------------------- set / pop


def _rounds(green, caller, memory, set_context):
    """The seed's pattern: work on the caller's stream, set_context, work on the default
    stream (NULL), pop_context, work on the caller's stream again: the memory says whether
    every step was ordered after the one before."""
    a, b = memory.alloc(N), memory.alloc(N)
    out = memory.alloc(N * ITERATIONS)
    for i in range(ITERATIONS):
        memset(a, i + 1, N, caller)
        set_context()
        assert current_context() == green.context_handle
        copy(b, a, N, DEFAULT_STREAM)  # needs the caller's memset (set_context's wait)
        memset(a, 0, N, DEFAULT_STREAM)  # ... and runs before the caller's next memset
        green.pop_context()
        copy(out + i * N, b, N, caller)  # needs the default stream's copy (pop's wait)
    sync(caller)
    data = read(out, N * ITERATIONS)
    for i in range(ITERATIONS):
        assert data[i * N : (i + 1) * N] == bytes([i + 1]) * N, f"iteration {i}"


def test_set_context_orders_the_default_stream_after_an_explicit_stream(
    memory, caller_stream, slow
):
    with _create(16) as green:
        _rounds(green, caller_stream, memory, lambda: green.set_context(caller_stream))


def test_set_context_orders_after_the_current_contexts_stream(memory, primary, slow):
    # no stream given: the primary context's legacy stream, as torch's current stream is
    with _create(16) as green:
        _rounds(green, DEFAULT_STREAM, memory, green.set_context)


def test_set_context_takes_any_stream_form(memory, caller_stream, slow):
    with _create(16) as green:
        _rounds(green, caller_stream, memory, lambda: green.set_context(int(caller_stream)))
        other = green.Stream()
        _rounds(green, other, memory, lambda: green.set_context(other))


def test_the_default_stream_runs_in_the_green_context(primary):
    with _create(16) as green:
        green.set_context()
        try:
            # the NULL stream while the green context is current belongs to it
            ctx = ok(cu.cuStreamGetCtx(DEFAULT_STREAM))
            assert int(ctx) == green.context_handle
        finally:
            green.pop_context()
        assert current_context() == int(primary)


def test_set_context_with_no_current_context_sets_it(caller_stream):
    # caller_stream's fixture made the primary current: take it off for this test
    ctx = ok(cu.cuCtxPopCurrent())
    try:
        assert current_context() == 0
        with _create(16) as green:
            green.set_context()  # nothing to order after: none is current
            assert current_context() == green.context_handle
            green.pop_context()
            assert current_context() == 0
    finally:
        ok(cu.cuCtxPushCurrent(ctx))


def test_nested_partitions_order_through_the_default_stream(memory, caller_stream, slow):
    """A layout's partition entered inside set_context: its caller's stream is the green
    context's default stream, both ways."""
    with _create(16) as green, layout_of({"inner": 16}) as layout:
        inner = layout["inner"]
        x, y, out = memory.alloc(N), memory.alloc(N), memory.alloc(N * ITERATIONS)
        for i in range(ITERATIONS):
            green.set_context(caller_stream)
            memset(x, i + 1, N, DEFAULT_STREAM)
            with inner:  # waits for the default stream's memset
                copy(y, x, N, inner.stream)
            memset(x, 0, N, DEFAULT_STREAM)  # after inner's copy (its exit's wait)
            copy(out + i * N, y, N, DEFAULT_STREAM)
            green.pop_context()
        sync(caller_stream)
        data = read(out, N * ITERATIONS)
        for i in range(ITERATIONS):
            assert data[i * N : (i + 1) * N] == bytes([i + 1]) * N, f"iteration {i}"


def test_pop_context_checks_the_popped_context(primary):
    with _create(16) as green:
        green.set_context()
        ok(cu.cuCtxPushCurrent(primary))  # code inside pushed a context and left it
        with pytest.raises(UsageError, match="not the green context of partition 'green_context'"):
            green.pop_context()
        # nothing changed: still set, the pushed context still on top
        assert green.entered and current_context() == int(primary)
        ok(cu.cuCtxPopCurrent())
        green.pop_context()
        assert not green.entered and current_context() == int(primary)


def test_pop_context_in_the_wrong_order_or_place(primary):
    with _create(16) as green, layout_of({"b": 16}) as layout:
        with pytest.raises(ThreadOwnershipError, match="was not entered on this thread"):
            green.pop_context()
        green.set_context()
        layout["b"].enter()
        with pytest.raises(UsageError, match="not the innermost partition"):
            green.pop_context()
        layout["b"].exit()
        green.pop_context()


def test_stream_gives_streams_of_the_green_context():
    with _create(16) as green:
        first, second = green.Stream(), green.Stream()
        assert first.handle != second.handle
        for stream in (first, second):
            assert stream.partition is green
            assert int(ok(cu.cuStreamGetCtx(stream.handle))) == green.context_handle


# -------------------------------------------------------------------- threads


def test_threads_each_with_a_green_context(memory):
    """Two threads run the seed's set/pop pattern at once on their own green contexts; a
    third finds a green context current on another thread refused."""
    greens = [_create(16), _create(16)]
    ctx = ok(cu.cuCtxGetCurrent())
    started, release = threading.Event(), threading.Event()
    errors = []

    def worker(k):
        try:
            ok(cu.cuCtxSetCurrent(ctx))
            caller = ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING))
            try:
                a, b = memory.alloc(N), memory.alloc(N)
                for i in range(20):
                    memset(a, (i + k) % 250 + 1, N, caller)
                    greens[k].set_context(caller)
                    copy(b, a, N, DEFAULT_STREAM)
                    if k == 0 and i == 10:
                        started.set()
                        release.wait(10)
                    greens[k].pop_context()
                    sync(caller)
                    assert read(b, N) == bytes([(i + k) % 250 + 1]) * N
            finally:
                ok(cu.cuStreamSynchronize(caller))
                ok(cu.cuStreamDestroy(caller))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    try:
        for t in threads:
            t.start()
        assert started.wait(10)
        # greens[0] is set on worker 0 now: here it is refused, and cannot be closed
        with pytest.raises(ThreadOwnershipError, match="current on another thread"):
            greens[0].set_context()
        with pytest.raises(ThreadOwnershipError, match="is entered on thread"):
            greens[0].close()
        release.set()
        for t in threads:
            t.join()
        assert not errors, errors
    finally:
        release.set()
        for green in greens:
            green.close()


@pytest.mark.skipif(not SIM, reason="the fault injection is the simulator's")
def test_a_failed_set_or_pop_changes_nothing(sim, primary):
    with _create(16) as green:
        sim.inject_fault("cuStreamWaitEvent", "CUDA_ERROR_LAUNCH_FAILED")
        stack = current_context()
        with pytest.raises(greenres.DriverError, match="cuStreamWaitEvent"):
            green.set_context()
        assert not green.entered and current_context() == stack
        green.set_context()
        sim.inject_fault("cuEventRecord", "CUDA_ERROR_LAUNCH_FAILED")
        with pytest.raises(greenres.DriverError, match="cuEventRecord"):
            green.pop_context()
        assert green.entered and current_context() == green.context_handle
        green.pop_context()
        assert current_context() == stack


def test_popping_a_green_context_not_set_is_a_usage_error(primary):
    """The seed asserts; greenres raises a UsageError (ThreadOwnershipError is one) that says
    which call to make where, and changes nothing."""
    with GreenContext.create(16) as g:
        with pytest.raises(greenres.UsageError, match="pop_context\\(\\) on the thread"):
            g.pop_context()
        g.set_context()
        g.pop_context()  # still usable
