"""Layout.create, partitions and their properties, streams and events."""

import pytest

import greenres
from greenres import ClosedError, GreenContext, Layout, PlanError, Stream
from greenres.spec import Partition, PartitionSpec

from support.childprocess import run_python
from support.rthelpers import facts, layout_of, ok

pytestmark = pytest.mark.gpu


def test_create_from_mapping_gives_named_partitions_in_order():
    with layout_of({"decode": 40, "prefill": 24}) as layout:
        assert layout.names == ("decode", "prefill")
        assert len(layout) == 2
        assert [p.name for p in layout] == ["decode", "prefill"]
        assert layout["decode"].sm_count == 40
        assert layout["prefill"].sm_count == 24
        assert "decode" in layout and "comm" not in layout
        assert layout.plan.remainder_policy == "drop"


def test_create_from_plan_matches_plan_and_exposes_it():
    spec = PartitionSpec(
        partitions=(Partition("decode", share=0.5), Partition("comm", sms=8), Partition("rest")),
    )
    plan = spec.plan(greenres.Device(0))
    with layout_of(plan) as layout:
        for planned in plan.partitions:
            part = layout[planned.name]
            assert part.sm_count == planned.sm_count
            assert part.sm_resource.count == planned.sm_count
            assert part.plan is plan
            assert part.planned_partition is planned
            assert part.device == greenres.Device(0)


def test_remainder_merged_into_a_partition_and_owned():
    device = greenres.Device(0)
    f = facts()
    given = PartitionSpec(
        partitions=(Partition("a", sms=16), Partition("b", sms=16)), remainder="b"
    )
    plan = given.plan(device)
    with layout_of(plan) as layout:
        assert layout["a"].sm_count == 16
        assert layout["b"].sm_count == f.sm_count - 16
    own = PartitionSpec(partitions=(Partition("a", sms=16),), remainder="own").plan(device)
    with layout_of(own) as layout:
        assert layout.names == ("a", "remainder")
        assert layout["remainder"].sm_count == f.sm_count - 16


def test_partition_handles_and_ids_are_distinct():
    with layout_of({"a": 16, "b": 16, "c": 8}) as layout:
        parts = list(layout)
        assert len({p.handle for p in parts}) == 3
        assert len({p.context_handle for p in parts}) == 3
        assert all(p.handle and p.context_handle for p in parts)
        if greenres.driver_version() >= 13000:
            assert len({p.id for p in parts}) == 3
        else:
            with pytest.raises(greenres.DriverTooOldError):
                _ = parts[0].id


def test_users_cannot_construct_runtime_objects():
    for cls, factory in (
        (Layout, "Layout.create"),
        (GreenContext, "Layout.create"),
        (Stream, "create_stream"),
    ):
        with pytest.raises(TypeError, match=factory):
            cls()


def test_unknown_partition_names_the_known_ones():
    with layout_of({"decode": 16}) as layout:
        with pytest.raises(KeyError, match="decode"):
            _ = layout["prefill"]


def test_bad_argument_type():
    with pytest.raises(TypeError, match="Plan"):
        Layout.create(42)


def test_plan_that_does_not_fit_raises_plan_error():
    with pytest.raises(PlanError):
        Layout.create({"decode": 4096})


def test_closed_objects_raise_and_close_is_idempotent():
    layout = Layout.create({"a": 16})
    part = layout["a"]
    stream = part.stream
    extra = part.create_stream()
    layout.close()
    layout.close()
    assert layout.closed and part.closed and stream.closed and extra.closed
    with pytest.raises(ClosedError):
        _ = layout["a"]
    with pytest.raises(ClosedError):
        _ = part.stream
    with pytest.raises(ClosedError):
        _ = stream.handle
    with pytest.raises(ClosedError):
        part.enter()
    with pytest.raises(ClosedError):
        extra.synchronize()
    extra.close()  # idempotent after the layout destroyed it
    assert isinstance(ClosedError("x"), ValueError)


def test_streams_per_plan_and_priorities():
    plan = PartitionSpec(
        partitions=(Partition("a", sms=16, streams=3, priority=-1), Partition("b", sms=8))
    ).plan(greenres.Device(0))
    with layout_of(plan) as layout:
        a = layout["a"]
        assert len(a.streams) == 3
        assert a.streams[0] is a.stream
        assert len({s.handle for s in a.streams}) == 3
        assert all(s.partition is a for s in a.streams)
        assert all(s.priority <= 0 for s in a.streams)
        s = a.create_stream(priority=0)
        assert s.priority == 0 and s.partition is a
        assert s.query() is True
        s.synchronize()
        s.close()
        s.close()
        assert s.closed


def test_default_stream_cannot_be_closed_alone():
    with layout_of({"a": 8}) as layout:
        with pytest.raises(ValueError, match="default stream"):
            layout["a"].stream.close()


def test_cuda_stream_protocol():
    with layout_of({"a": 8}) as layout:
        s = layout["a"].stream
        assert s.__cuda_stream__() == (0, s.handle)
        assert int(s) == s.handle


_CUDA_CORE_CHILD = """
import greenres
from cuda.core import Device
dev = Device(0)
dev.set_current()
with greenres.Layout.create({"a": 8}) as layout:
    s = layout["a"].stream
    core_stream = dev.create_stream(s)
    assert int(core_stream.handle) == s.handle
    event = core_stream.record()
    event.sync()
    core_stream.sync()
print("ok")
"""


def test_cuda_core_uses_partition_streams():
    """In a child process: cuda.core keeps the primary context it makes current."""
    pytest.importorskip("cuda.core")
    assert run_python(_CUDA_CORE_CHILD).strip() == "ok"


def test_stream_belongs_to_its_green_context():
    from cuda.bindings import driver as cu

    with layout_of({"a": 16, "b": 8}) as layout:
        for part in layout:
            with part.create_stream() as extra:
                for s in (part.stream, extra):
                    green = ok(cu.cuStreamGetGreenCtx(cu.CUstream(s.handle)))
                    assert int(green) == part.handle


def test_events_record_wait_query_time(primary):
    with layout_of({"a": 8}) as layout:
        s = layout["a"].stream
        start = greenres.Event(timing=True)
        end = greenres.Event(timing=True)
        start.record(s)
        end.record(s)
        end.synchronize()
        assert end.query() is True
        assert start.elapsed_time(end) >= 0.0
        plain = greenres.Event()
        plain.record(s)
        with layout["a"].create_stream() as other:
            plain.wait(other)
        with pytest.raises(ValueError, match="timing"):
            plain.elapsed_time(end)
        for e in (start, end, plain):
            e.close()
            e.close()
        with pytest.raises(ClosedError):
            plain.record(s)


def test_sm_facts_match_the_device():
    device = greenres.Device(0)
    f = device.sm_facts()
    r = device.sm_resource
    assert f.sm_count == device.sm_count == r.count
    assert (f.min_partition_size, f.alignment) == (r.min_partition_size, r.alignment)
    assert f.compute_capability == device.compute_capability
    assert f.uncoscheduled_min_partition_size <= f.min_partition_size
    assert f.total_memory == device.total_memory > 0
    assert f.driver_version == greenres.driver_version()


def test_stream_arguments_of_every_form_are_accepted():
    from cuda.bindings import driver as cu

    with layout_of({"a": 8, "b": 8}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        greenres.handoff(a, b)
        greenres.handoff(a.handle, b)
        greenres.handoff(a, cu.CUstream(b.handle))

        class Foreign:
            def __cuda_stream__(self):
                return (0, b.handle)

        greenres.handoff(Foreign(), a)
        with pytest.raises(TypeError, match="__cuda_stream__"):
            greenres.handoff(object(), a)


def test_second_device():
    if greenres.device_count() < 2:
        pytest.skip("one device")
    with layout_of({"a": 16, "b": 8}, device=1) as layout:
        assert layout.device.ordinal == 1
        assert layout["a"].device == greenres.Device(1)
        with layout["a"]:
            pass
        greenres.handoff(layout["a"].stream, layout["b"].stream)
        layout["b"].stream.synchronize()
