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
