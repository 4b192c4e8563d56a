"""Layouts with locality domains (CUDA 13.4) on the simulator's two-domain B200: each
partition's SMs lie in its domain; older drivers and other devices are refused."""

import json
import textwrap

import pytest

from support import childprocess

pytestmark = pytest.mark.sim_only


def _child(code, profile="b200@13040"):
    out = childprocess.run_python(textwrap.dedent(code), GREENRES_SIM=profile)
    return json.loads(out.strip().splitlines()[-1])


def test_partitions_are_created_in_their_domains():
    out = _child(
        """
        import json
        import greenres, greenres.sim as sim
        from greenres.spec import Partition, PartitionSpec
        device = greenres.Device(0)
        spec = PartitionSpec([
            Partition("decode", sms=64, locality_domain=1),
            Partition("prefill", sms=40, locality_domain=0),
            Partition("x", sms=16, locality_domain="spread"),
            Partition("y", sms=8),
        ], remainder="own")
        plan = spec.plan(device)
        with greenres.Layout.create(plan) as layout:
            sms = {p.name: list(sim.green_context_sms(p.handle)) for p in layout}
        print(json.dumps([device.locality_domains, device.sm_facts().locality_domain_count,
                          sms]))
        """
    )
    domains, count, sms = out
    assert domains == [2, 74] and count == 2
    assert len(sms["decode"]) == 64 and all(74 <= i < 148 for i in sms["decode"])
    assert len(sms["prefill"]) == 40 and all(0 <= i < 74 for i in sms["prefill"])
    every = [i for ids in sms.values() for i in ids]
    assert len(every) == len(set(every)) == 148  # disjoint, and the remainder owns the rest


def test_a_plan_with_domains_refuses_an_older_driver():
    out = _child(
        """
        import json
        import greenres
        from greenres.facts import SmFacts
        from greenres.spec import Partition, PartitionSpec
        spec = PartitionSpec([Partition("a", sms=16, locality_domain=1)])
        plan = spec.plan(SmFacts.for_known_device("b200", driver_version=13040))
        try:
            greenres.Layout.create(plan)
        except greenres.DriverTooOldError as error:
            print(json.dumps(str(error)))
        """,
        profile="b200",
    )
    assert "13.4 (13040)" in out and "13.1 (13010)" in out


def test_a_plan_for_other_domains_is_refused():
    out = _child(
        """
        import json
        import greenres
        from greenres.facts import SmFacts
        from greenres.spec import Partition, PartitionSpec
        spec = PartitionSpec([Partition("a", sms=16, locality_domain=0)])
        facts = SmFacts.for_known_device("b200", driver_version=13040, locality_domains=4)
        try:
            greenres.Layout.create(spec.plan(facts))
        except greenres.PlanError as error:
            print(json.dumps(str(error)))
        """
    )
    assert "locality_domain_count: plan 4, device 2" in out
    assert "locality_domain_sm_count: plan 37, device 74" in out
