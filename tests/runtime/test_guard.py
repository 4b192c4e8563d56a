"""part.guard(): foreign code that pushes, replaces or pops contexts inside a partition
leaves this thread's whole context stack as it was, and the guard reports what it undid.
Communication partitions: part.nccl_config() on the runtime object."""

from __future__ import annotations

import textwrap
import threading
import warnings

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import ContextStackWarning, Layout, UsageError
from greenres.comm import nccl_config
from greenres.spec import Partition, PartitionSpec

from support import childprocess
from support.rthelpers import ok

pytestmark = pytest.mark.gpu

SPEC = PartitionSpec(
    [
        Partition("decode", sms=32),
        Partition("comm", sms=16, role="comm"),
        Partition("t0", sms=8),
        Partition("t1", sms=8),
        Partition("t2", sms=8),
    ]
)


@pytest.fixture
def layout(primary):
    with Layout.create(SPEC.plan(greenres.Device(0))) as made:
        yield made


def stack():
    """This thread's context stack, top first, read with cuda.bindings only."""
    popped = []
    while True:
        current = ok(cu.cuCtxGetCurrent())
        if current is None or int(current) == 0:
            break
        popped.append(ok(cu.cuCtxPopCurrent()))
    for ctx in reversed(popped):
        ok(cu.cuCtxPushCurrent(ctx))
    return [int(c) for c in popped]


def _quiet_guard(part):
    return part.guard(warn=False)


def test_a_clean_guard_reports_nothing(layout, primary):
    before = stack()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ContextStackWarning)
        with layout["comm"].guard() as guard:
            assert stack() == [layout["comm"].context_handle, *before]
    assert guard.report.clean
    assert guard.report.left_pushed == () and guard.report.pushed_back == ()
    assert stack() == before


def test_contexts_left_pushed_are_popped_and_reported(layout, primary):
    before = stack()
    with pytest.warns(ContextStackWarning, match="the guard of partition 'comm' restored"):
        with layout["comm"].guard() as guard:
            ok(cu.cuCtxPushCurrent(primary))  # as NCCL's init leaves it
            ok(cu.cuCtxPushCurrent(primary))
    assert guard.report.left_pushed == (int(primary), int(primary))
    assert guard.report.pushed_back == ()
    assert stack() == before
    assert not layout["comm"].entered


def test_a_replaced_partition_context_is_put_back(layout, primary):
    before = stack()
    with _quiet_guard(layout["comm"]) as guard:
        ok(cu.cuCtxSetCurrent(layout["decode"].context_handle))
    assert guard.report.left_pushed == (layout["decode"].context_handle,)
    assert guard.report.pushed_back == (layout["comm"].context_handle,)
    assert stack() == before


def test_a_stack_emptied_inside_is_rebuilt_exactly(layout, primary):
    # Deeper than `with part:` repairs: everything under the partition is gone too.
    ok(cu.cuCtxPushCurrent(layout["decode"].context_handle))
    before = stack()
    assert len(before) == 2
    with _quiet_guard(layout["comm"]) as guard:
        for _ in range(3):
            ok(cu.cuCtxPopCurrent())
        assert stack() == []
    assert guard.report.found == ()
    assert guard.report.pushed_back == (layout["comm"].context_handle, *before)
    assert stack() == before
    ok(cu.cuCtxPopCurrent())


def test_the_stack_is_restored_when_the_code_raises(layout, primary):
    before = stack()
    with pytest.raises(KeyError), _quiet_guard(layout["comm"]) as guard:
        ok(cu.cuCtxPushCurrent(primary))
        raise KeyError("inside")
    assert guard.report.left_pushed == (int(primary),)
    assert stack() == before


def test_a_guard_is_used_once(layout, primary):
    guard = layout["comm"].guard()
    with guard:
        pass
    with pytest.raises(UsageError, match="used once"):
        guard.__enter__()


def test_guards_on_threads_restore_each_threads_stack(layout, primary):
    errors = []

    def work(name):
        try:
            ok(cu.cuCtxSetCurrent(primary))
            before = stack()
            for _ in range(50):
                with _quiet_guard(layout[name]) as guard:
                    ok(cu.cuCtxPushCurrent(primary))
                assert guard.report.left_pushed == (int(primary),)
                assert stack() == before
            ok(cu.cuCtxSetCurrent(cu.CUcontext(0)))
        except BaseException as error:  # reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_nccl_config_of_the_runtime_partition_is_the_plans(layout):
    part = layout["comm"]
    assert part.nccl_config() == nccl_config(part.plan.ref("comm"))
    assert part.nccl_config(communicators=2).max_ctas == part.sm_count // 2
    with pytest.raises(greenres.SpecError, match="role 'compute'"):
        layout["decode"].nccl_config()


@pytest.mark.sim_only
def test_cuda_core_set_current_inside_a_guard_is_undone():
    pytest.importorskip("cuda.core")
    out = childprocess.run_python(
        textwrap.dedent(
            """
            import greenres.sim as sim
            sim.install("h100")
            import greenres
            from cuda.bindings import driver as cu
            from cuda.core import Device
            from greenres.spec import Partition, PartitionSpec
            spec = PartitionSpec([Partition("comm", sms=16, role="comm")])
            cu.cuInit(0)
            with greenres.Layout.create(spec.plan(greenres.Device(0))) as layout:
                with layout["comm"].guard(warn=False) as guard:
                    Device(0).set_current()  # cuda.core makes the primary context current
                print(len(guard.report.left_pushed), len(guard.report.pushed_back))
                err, current = cu.cuCtxGetCurrent()
                print(current is None or int(current) == 0)
            """
        ),
        GREENRES_SIM=None,
    )
    assert out.split() == ["1", "1", "True"]
