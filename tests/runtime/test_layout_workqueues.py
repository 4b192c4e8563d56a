"""Workqueue budgets at run time: each partition's descriptor carries the workqueue-config
resource the plan says, the driver reports exactly that for its green context, and a plan
with workqueue settings refuses a device without them (or with another maximum)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenres
from greenres import Layout
from greenres.spec import MAX_WORKQUEUE_LIMIT, WORKQUEUE_SCOPES, Partition, PartitionSpec

from support import childprocess
from support.rthelpers import SIM, layout_of

pytestmark = pytest.mark.gpu


def _device_max():
    most = greenres.Device(0).workqueue_max_concurrency
    if most == 0:
        pytest.skip("the driver has no workqueue resources (older than 13.1)")
    return most


SPEC = PartitionSpec(
    partitions=(
        Partition("decode", sms=16, workqueue_scope="balanced", workqueue_limit=2),
        Partition("prefill", sms=16, workqueue_scope="balanced"),
        Partition("comm", sms=8, role="comm", workqueue_limit=1),
        Partition("batch", sms=16),
    ),
    remainder="own",
)


def test_device_reports_its_maximum_concurrency():
    most = _device_max()
    assert 1 <= most <= MAX_WORKQUEUE_LIMIT
    assert greenres.Device(0).sm_facts().workqueue_max_concurrency == most
    if SIM:
        assert most == 8  # CUDA_DEVICE_MAX_CONNECTIONS unset


def test_each_green_context_reports_the_planned_configuration():
    most = _device_max()
    plan = SPEC.plan(greenres.Device(0))
    assert [(p.workqueue_scope, p.workqueue_limit) for p in plan] == [
        ("balanced", 2),
        ("balanced", most - 2),
        ("device_ctx", 1),
        ("", 0),
        ("", 0),
    ]
    with layout_of(plan) as layout:
        assert layout["decode"].workqueue == ("balanced", 2)
        assert layout["prefill"].workqueue == ("balanced", most - 2)
        assert layout["comm"].workqueue == ("device_ctx", 1)
        # no configuration: the driver's default for green contexts
        assert layout["batch"].workqueue == ("device_ctx", most)


_limits = st.one_of(st.none(), st.integers(1, 8))
_scopes = st.one_of(st.none(), st.sampled_from(WORKQUEUE_SCOPES))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    asked=st.lists(st.tuples(_scopes, _limits), min_size=1, max_size=4),
    default_scope=_scopes,
    default_limit=_limits,
)
def test_any_workqueue_spec_is_created_as_planned(asked, default_scope, default_limit):
    most = _device_max()
    spec = PartitionSpec(
        partitions=tuple(
            Partition(f"p{i}", sms=16, workqueue_scope=scope, workqueue_limit=limit)
            for i, (scope, limit) in enumerate(asked)
        ),
        workqueue_scope=default_scope,
        workqueue_limit=default_limit,
    )
    if any(limit is not None and limit > most for _, limit in asked) or (
        default_limit is not None and default_limit > most
    ):
        return  # refused by the planner: tests/declarative/test_workqueue_plans.py
    plan = spec.plan(greenres.Device(0))
    with Layout.create(plan) as layout:
        for planned in plan:
            expected = (
                (planned.workqueue_scope, planned.workqueue_limit)
                if planned.workqueue_scope
                else ("device_ctx", most)
            )
            assert layout[planned.name].workqueue == expected


def _child(code, **env):
    return childprocess.run_python(textwrap.dedent(code), GREENRES_SIM=None, **env)


@pytest.mark.sim_only
def test_a_plan_with_workqueues_refuses_a_driver_before_13_1():
    out = _child(
        """
        import greenres.sim as sim
        sim.install("h100", driver_version=12080)
        import greenres
        from greenres.facts import SmFacts
        from greenres.spec import Partition, PartitionSpec
        spec = PartitionSpec(partitions=(Partition("a", sms=16, workqueue_scope="balanced"),))
        plan = spec.plan(SmFacts.for_known_device("h100"))
        try:
            greenres.Layout.create(plan)
        except greenres.DriverTooOldError as error:
            print(error)
        device = greenres.Device(0)
        print(device.workqueue_max_concurrency, device.sm_facts().workqueue_max_concurrency)
        try:
            spec.plan(greenres.Device(0))
        except greenres.DriverTooOldError as error:
            print(error)
        """
    )
    refused, zeros, planned = out.strip().splitlines()
    assert "13.1 (13010)" in refused and "12.8 (12080)" in refused
    assert zeros == "0 0"
    assert "13.1 (13010)" in planned and "12.8 (12080)" in planned


@pytest.mark.sim_only
def test_a_plan_for_another_maximum_is_refused_before_anything_is_made():
    out = _child(
        """
        import greenres.sim as sim
        sim.install("h100")
        import greenres
        from greenres.facts import SmFacts
        from greenres.spec import Partition, PartitionSpec
        spec = PartitionSpec(partitions=(Partition("a", sms=16, workqueue_scope="balanced"),))
        offline = spec.plan(SmFacts.for_known_device("h100"))  # 8: the default maximum
        try:
            greenres.Layout.create(offline)
        except greenres.PlanError as error:
            print(error)
        print(sim.live_objects()["green_context"])
        here = spec.plan(greenres.Device(0))
        with greenres.Layout.create(here) as layout:
            print(layout["a"].workqueue)
        plain = PartitionSpec(partitions=(Partition("a", sms=16),))
        plain = plain.plan(SmFacts.for_known_device("h100"))
        with greenres.Layout.create(plain) as layout:
            print(layout["a"].workqueue)
        """,
        CUDA_DEVICE_MAX_CONNECTIONS="4",
    )
    refused, live, here, plain = out.strip().splitlines()
    assert "workqueue_max_concurrency: plan 8, device 4" in refused
    assert live == "0"
    assert here == "('balanced', 4)"
    # a plan without workqueue settings does not depend on the maximum
    assert plain == "('device_ctx', 4)"
