"""cuda.core 1.2 runs on the simulator: devices, resources, split, green contexts, streams, events.

Each test runs in its own interpreter: cuda.core keeps a context current and the
primary context retained for the life of the process.
"""

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

pytest.importorskip("cuda.core")


def test_the_issue_one_liner_prints_132():
    out = run_python(
        """
        import greenres.sim as s; s.install("h100"); from cuda.core import Device; \
d = Device(0); d.set_current(); print(d.resources.sm.sm_count)
        """
    )
    assert out.strip() == "132"


def test_split_create_context_stream_and_events():
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import ContextOptions, Device, SMResourceOptions

        d = Device(0)
        d.set_current()
        sm = d.resources.sm
        assert (sm.sm_count, sm.min_partition_size, sm.coscheduled_alignment) == (132, 8, 8)
        groups, remainder = sm.split(SMResourceOptions(count=[16, 8]))
        assert [g.sm_count for g in groups] == [16, 8] and remainder.sm_count == 108
        before = sim.live_objects()
        ctx = d.create_context(ContextOptions(resources=[groups[0]]))
        assert ctx.is_green
        assert sim.green_context_sms(ctx) == tuple(range(16))
        other = d.create_context(ContextOptions(resources=[groups[1]]))
        assert sim.green_context_sms(other) == tuple(range(16, 24))  # one split: disjoint
        stream = ctx.create_stream()
        event = stream.record()
        event.sync()
        assert event.is_done
        stream.sync()
        stream.close()
        ctx.close()
        other.close()
        del event, stream, ctx, other  # cuda.core releases handles when the last owner goes
        import gc; gc.collect()
        after = sim.live_objects()
        assert after == before, (before, after)
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_workqueue_resources_configure_a_green_context():
    """cuda.core's Device.resources.workqueue asks the device for both workqueue types;
    configured, it goes into a green context with an SM group (CUDA 13.1)."""
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("h100")
        from cuda.bindings import driver as cu
        from cuda.core import ContextOptions, Device, SMResourceOptions, WorkqueueResourceOptions

        d = Device(0)
        d.set_current()
        wq = d.resources.workqueue
        first = (str(wq.sharing_scope), wq.concurrency_limit)
        wq.configure(WorkqueueResourceOptions(sharing_scope="green_ctx_balanced",
                                              concurrency_limit=3))
        groups, _ = d.resources.sm.split(SMResourceOptions(count=[16]))
        ctx = d.create_context(ContextOptions(resources=[groups[0], wq]))
        kind = cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG
        err, got = cu.cuCtxGetDevResource(cu.CUcontext(int(ctx.handle)), kind)
        assert err == cu.CUresult.CUDA_SUCCESS, err
        print(first, got.wqConfig.wqConcurrencyLimit, int(got.wqConfig.sharingScope))
        ctx.close()
        """
    )
    first, limit, scope = out.strip().rsplit(" ", 2)
    assert "8" in first and "DEVICE" in first.upper()
    assert (limit, scope) == ("3", "1")  # balanced
