"""Communication partitions: role="comm" is planned like any partition, and nccl_config()
derives NCCL's CTA bounds from its SM count (greenres.comm states the rule and its source)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenres import SpecError
from greenres.comm import NCCL_MAX_CTAS, nccl_config
from greenres.facts import SmFacts
from greenres.spec import Partition, PartitionSpec

H100 = SmFacts.for_known_device("h100")


def _plan(comm_sms, **spec_options):
    return PartitionSpec(
        [Partition("decode", share=0.5), Partition("comm", sms=comm_sms, role="comm")],
        **spec_options,
    ).plan(H100)


@given(comm_sms=st.integers(1, 64), communicators=st.integers(1, 8))
def test_ctas_are_the_communicators_share_of_the_sms(comm_sms, communicators):
    plan = _plan(comm_sms)
    granted = plan["comm"].sm_count
    if communicators > granted:
        with pytest.raises(SpecError, match="'communicators' must be from 1"):
            nccl_config(plan.ref("comm"), communicators)
        return
    config = nccl_config(plan.ref("comm"), communicators)
    share = min(granted // communicators, NCCL_MAX_CTAS)
    assert config.min_ctas == config.max_ctas == share
    assert 1 <= share <= NCCL_MAX_CTAS
    # the communicators together never ask for more CTAs than the partition has SMs
    assert share * communicators <= granted
    assert config.config_fields() == {"minCTAs": share, "maxCTAs": share}
    assert config.keyword_arguments() == {"min_ctas": share, "max_ctas": share}
    assert config.environment() == {"NCCL_MIN_CTAS": str(share), "NCCL_MAX_CTAS": str(share)}


def test_role_is_planned_like_any_partition_and_explained():
    plan = _plan(16)
    compute = PartitionSpec([Partition("decode", share=0.5), Partition("comm", sms=16)]).plan(H100)
    assert [p.sm_count for p in plan] == [p.sm_count for p in compute]
    assert plan.fingerprint == compute.fingerprint  # a role changes no number
    assert plan["comm"].role == "comm" and plan["decode"].role == "compute"
    assert "communication partitions: 'comm'" in plan.explain()
    assert "communication partitions" not in compute.explain()


def test_a_large_partition_is_capped_at_nccls_limit():
    assert nccl_config(_plan(64).ref("comm")).max_ctas == 32


def test_only_communication_partitions_have_a_config():
    with pytest.raises(SpecError, match="role 'compute': nccl_config\\(\\) is for"):
        nccl_config(_plan(16).ref("decode"))
    with pytest.raises(TypeError, match="needs a planned partition"):
        nccl_config("comm")


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "2"])
def test_bad_communicator_counts_are_refused(bad):
    with pytest.raises(SpecError, match="'communicators' must be"):
        nccl_config(_plan(16).ref("comm"), bad)


def test_a_comm_partition_may_take_the_rest_but_not_the_remainder():
    plan = PartitionSpec(
        [Partition("decode", sms=64), Partition("comm", role="comm")], remainder="own"
    ).plan(H100)
    assert plan["comm"].role == "comm"
    with pytest.raises(SpecError, match="partition 'comm': 'role' 'comm' cannot take"):
        PartitionSpec([Partition("comm", sms=8, role="comm")], remainder="comm")
