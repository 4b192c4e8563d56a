"""Resources, splits and descriptors: the documented rules and their traps."""

import pytest
from cuda.bindings import driver
from hypothesis import given, settings
from hypothesis import strategies as st

import greenres.sim as sim

from support.simhelpers import (
    SM,
    E,
    check,
    device_resource,
    error_of,
    make_green,
    requires_bindings,
    run_python,
    split,
)

pytestmark = pytest.mark.sim_only

IGNORE_COSCHED = 0x1  # CU_DEV_SM_RESOURCE_SPLIT_IGNORE_SM_COSCHEDULING


# CUdevSmResource has only smCount in CUDA 12.x: bindings 12.9 cannot show the granularity
# fields (the driver still writes them: the union has room for them in both layouts).
HAS_GRANULARITY = hasattr(driver.CUdevSmResource(), "minSmPartitionSize")


def test_device_resource_reports_count_and_granularity():
    res = device_resource()
    assert res.type == SM
    assert res.sm.smCount == 132
    if HAS_GRANULARITY:
        assert (res.sm.minSmPartitionSize, res.sm.smCoscheduledAlignment) == (8, 8)


def test_resource_of_another_device_is_refused():
    assert error_of(driver.cuDeviceGetDevResource(7, SM)) == E.CUDA_ERROR_INVALID_DEVICE


def test_unknown_resource_types_are_refused():
    # the workqueue types of 13.1 are served: tests/sim/test_workqueues.py
    unknown = driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_INVALID
    assert error_of(driver.cuDeviceGetDevResource(0, unknown)) == E.CUDA_ERROR_INVALID_RESOURCE_TYPE


def test_h100_groups_of_8_leave_4_in_the_remainder():
    groups, rem = split(device_resource(), 20, 8)
    assert len(groups) == 16 and all(g.sm.smCount == 8 for g in groups)
    assert rem.sm.smCount == 4


def test_query_mode_counts_groups():
    # cuda.bindings passes result=NULL when nbGroups is 0
    err, _, n, _ = driver.cuDevSmResourceSplitByCount(0, device_resource(), 0, 16)
    assert err == E.CUDA_SUCCESS and n == 8


def test_min_count_is_rounded_up_to_minimum_and_alignment():
    groups, rem = split(device_resource(), 3, 9)  # 9 -> 16 on CC 9.0
    assert [g.sm.smCount for g in groups] == [16, 16, 16] and rem.sm.smCount == 132 - 48
    groups, _ = split(device_resource(), 1, 1)  # below the minimum -> 8
    assert groups[0].sm.smCount == 8


def test_fewer_groups_than_asked_come_back():
    groups, rem = split(device_resource(), 100, 64)
    assert len(groups) == 2 and rem.sm.smCount == 4


def test_ignore_coscheduling_lowers_min_and_alignment():
    groups, _ = split(device_resource(), 1, 2, IGNORE_COSCHED)
    assert groups[0].sm.smCount == 2
    if HAS_GRANULARITY:
        assert groups[0].sm.smCoscheduledAlignment == 2


def test_min_count_above_input_is_invalid():
    assert (
        error_of(driver.cuDevSmResourceSplitByCount(1, device_resource(), 0, 133))
        == E.CUDA_ERROR_INVALID_VALUE
    )


def test_split_outputs_cannot_be_split_again():
    groups, rem = split(device_resource(), 2, 16)
    err = error_of(driver.cuDevSmResourceSplitByCount(1, groups[0], 0, 8))
    assert err == E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION
    # the remainder may be split (cuda.h: discouraged, not forbidden)
    sub, _ = split(rem, 1, 8)
    assert sub[0].sm.smCount == 8


def test_resource_of_a_green_context_is_splittable(ctx):
    groups, _ = split(device_resource(), 1, 32)
    g = make_green(groups[:1])
    res = check(driver.cuGreenCtxGetDevResource(g, SM))
    assert res.sm.smCount == 32
    sub, rem = split(res, 4, 8)
    assert len(sub) == 4 and rem.sm.smCount == 0
    inner = make_green(sub[1:2])
    assert set(sim.green_context_sms(inner)) < set(sim.green_context_sms(g))
    check(driver.cuGreenCtxDestroy(inner))
    check(driver.cuGreenCtxDestroy(g))


def test_descriptor_needs_resources_of_one_split(ctx):
    a, _ = split(device_resource(), 2, 8)
    b, _ = split(device_resource(), 2, 8)
    err = error_of(driver.cuDevResourceGenerateDesc([a[0], b[1]], 2))
    assert err == E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION
    # several groups (and the remainder) of one split are fine: unequal partitions
    groups, rem = split(device_resource(), 4, 8)
    g = make_green([groups[0], groups[1], rem])
    assert len(sim.green_context_sms(g)) == 16 + rem.sm.smCount
    check(driver.cuGreenCtxDestroy(g))


def test_single_whole_device_resource_makes_a_descriptor(ctx):
    g = make_green([device_resource()])
    assert sim.green_context_sms(g) == tuple(range(132))
    check(driver.cuGreenCtxDestroy(g))


def test_two_independent_splits_hand_out_the_same_sms(ctx):
    """The trap: disjointness only holds within one split."""
    first, _ = split(device_resource(), 1, 16)
    second, _ = split(device_resource(), 1, 16)
    g1, g2 = make_green(first), make_green(second)
    assert set(sim.green_context_sms(g1)) == set(sim.green_context_sms(g2)) == set(range(16))
    check(driver.cuGreenCtxDestroy(g1))
    check(driver.cuGreenCtxDestroy(g2))


def test_groups_of_one_split_are_disjoint_green_contexts(ctx):
    groups, _ = split(device_resource(), 3, 40)
    greens = [make_green([gr]) for gr in groups]
    sets = [set(sim.green_context_sms(g)) for g in greens]
    assert all(len(s) == 40 for s in sets)
    assert not (sets[0] & sets[1]) and not (sets[1] & sets[2]) and not (sets[0] & sets[2])
    for g in greens:
        check(driver.cuGreenCtxDestroy(g))


def test_tampered_resource_is_refused():
    res = device_resource()
    res.sm.smCount = 64  # users must not edit resources
    assert error_of(driver.cuDevSmResourceSplitByCount(1, res, 0, 8)) == E.CUDA_ERROR_INVALID_VALUE


def _params(*groups):
    out = []
    for count, cosched, flags in groups:
        p = driver.CU_DEV_SM_RESOURCE_GROUP_PARAMS()
        p.smCount, p.coscheduledSmCount, p.flags = count, cosched, flags
        out.append(p)
    return out


BACKFILL = 0x1  # CU_DEV_SM_RESOURCE_GROUP_BACKFILL
requires_structured_split = requires_bindings(
    "cuDevSmResourceSplit", "CU_DEV_SM_RESOURCE_GROUP_PARAMS"
)  # CUDA 13.1


@requires_structured_split
def test_structured_split_per_group_counts(ctx):
    params = _params((24, 8, 0), (64, 0, 0), (0, 2, BACKFILL))
    err, result, rem = driver.cuDevSmResourceSplit(3, device_resource(), 0, params)
    assert err == E.CUDA_SUCCESS
    assert [r.sm.smCount for r in result] == [24, 64, 44]
    assert rem.type == driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_INVALID  # nothing left
    g = make_green([result[0], result[1]])  # same split, same alignment (8)
    assert len(sim.green_context_sms(g)) == 88
    check(driver.cuGreenCtxDestroy(g))


@requires_structured_split
def test_structured_split_rejects_unaligned_count_without_backfill():
    err, *_ = driver.cuDevSmResourceSplit(1, device_resource(), 0, _params((12, 8, 0)))
    assert err == E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION
    err, result, _ = driver.cuDevSmResourceSplit(
        1, device_resource(), 0, _params((12, 8, BACKFILL))
    )
    assert err == E.CUDA_SUCCESS and result[0].sm.smCount == 12


@requires_structured_split
def test_structured_split_more_than_available_is_a_configuration_error():
    err, *_ = driver.cuDevSmResourceSplit(2, device_resource(), 0, _params((128, 8, 0), (8, 8, 0)))
    assert err == E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION


@requires_structured_split
def test_structured_split_flags_must_be_zero():
    err, *_ = driver.cuDevSmResourceSplit(1, device_resource(), 1, _params((8, 8, 0)))
    assert err == E.CUDA_ERROR_INVALID_VALUE


# ---------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None)
@given(min_count=st.integers(0, 200), wanted=st.integers(1, 80), ignore=st.booleans())
def test_split_arithmetic_properties(min_count, wanted, ignore):
    """The H100 of this process against a pure model of the documented rules;
    every other profile is checked in test_split_properties_on_every_profile."""
    minimum, alignment = 8, 8
    res = device_resource()
    err, result, n, rem = driver.cuDevSmResourceSplitByCount(
        wanted, res, IGNORE_COSCHED if ignore else 0, min_count
    )
    if min_count > 132:
        assert err == E.CUDA_ERROR_INVALID_VALUE
        return
    lo, al = (2, 2) if ignore else (minimum, alignment)
    size = -(-max(min_count, lo) // al) * al
    if size > 132:  # rounding up went past the input: no group can be made
        assert err == E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION
        return
    assert err == E.CUDA_SUCCESS
    assert n == min(wanted, 132 // size)
    groups = list(result)[:n]
    assert all(
        g.sm.smCount == size and g.sm.smCount >= lo and g.sm.smCount % al == 0 for g in groups
    )
    assert sum(g.sm.smCount for g in groups) + rem.sm.smCount == 132


def test_split_properties_on_every_profile():
    """Every profile's granularity: groups disjoint, at least the minimum, aligned,
    never more than the input (hypothesis in a subprocess per profile batch)."""
    for key, prof in sim.PROFILES.items():
        out = run_python(
            f"""
            import greenres.sim as sim
            sim.install({key!r})
            from cuda.bindings import driver
            from hypothesis import given, settings, strategies as st
            driver.cuInit(0)
            SM = driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM
            res = driver.cuDeviceGetDevResource(0, SM)[1]
            expected = ({prof.sm_count}, {prof.min_partition_size}, {prof.alignment})
            n_sms = res.sm.smCount
            # bindings 12.9: CUdevSmResource has only smCount; take the granularity from the profile
            lo = getattr(res.sm, "minSmPartitionSize", expected[1])
            al = getattr(res.sm, "smCoscheduledAlignment", expected[2])
            assert (n_sms, lo, al) == expected
            dev = driver.cuDeviceGet(0)[1]
            ctx = driver.cuDevicePrimaryCtxRetain(dev)[1]
            driver.cuCtxSetCurrent(ctx)

            @settings(max_examples=25, deadline=None, database=None)
            @given(min_count=st.integers(0, n_sms), wanted=st.integers(1, 64))
            def prop(min_count, wanted):
                err, result, n, rem = driver.cuDevSmResourceSplitByCount(wanted, res, 0, min_count)
                if -(-max(min_count, lo) // al) * al > n_sms:  # rounding went past the input
                    assert err == driver.CUresult.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION, err
                    return
                assert err == driver.CUresult.CUDA_SUCCESS, err
                groups = list(result)[:n]
                assert 1 <= n <= wanted
                seen = set()
                for g in groups:
                    count = g.sm.smCount
                    assert count >= lo and count % al == 0 and count >= min_count
                    desc = driver.cuDevResourceGenerateDesc([g], 1)[1]
                    gc = driver.cuGreenCtxCreate(desc, 0, 1)[1]
                    ids = set(sim.green_context_sms(gc))
                    assert len(ids) == g.sm.smCount and not (ids & seen)
                    seen |= ids
                    driver.cuGreenCtxDestroy(gc)
                assert len(seen) + rem.sm.smCount <= n_sms
            prop()
            print("ok")
            """
        )
        assert out.strip() == "ok", key
