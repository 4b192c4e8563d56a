"""Planning, example by example: every docs/devices.md profile and each rule of docs/planning.md."""

from __future__ import annotations

import pytest

from greenres.devices import DEVICE_PROFILES
from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts
from greenres.plan import ModalPlan, Plan
from greenres.spec import ModalSpec, Partition, PartitionSpec

P = Partition
H100 = "NVIDIA H100 80GB HBM3"  # the name the driver reports


def spec(*parts, **kwargs):
    return PartitionSpec(parts, **kwargs)


def old(profile: str) -> SmFacts:
    """Facts of a profile with a 12.8 driver: mechanism "groups"."""
    return SmFacts.for_known_device(profile, driver_version=12080)


def new(profile: str) -> SmFacts:
    """Facts of a profile with a 13.1 driver: mechanism "structured"."""
    return SmFacts.for_known_device(profile, driver_version=13010)


# profile -> (group size of the split by count, groups, split remainder,
#             structured unit, structured minimum)
GRANULARITY = {
    "v100": (2, 40, 0, 2, 2),
    "t4": (2, 20, 0, 2, 2),
    "a100": (4, 27, 0, 2, 4),
    "a30": (4, 14, 0, 2, 4),
    "a10": (4, 18, 0, 2, 4),
    "l4": (4, 14, 2, 2, 4),
    "l40s": (4, 35, 2, 2, 4),
    "rtx4090": (4, 32, 0, 2, 4),
    "h100": (8, 16, 4, 8, 8),
    "h100-pcie": (8, 14, 2, 8, 8),
    "h200": (8, 16, 4, 8, 8),
    "h20": (8, 9, 6, 8, 8),
    "b200": (8, 18, 4, 8, 8),
    "rtx5090": (8, 21, 2, 8, 8),
}


def test_the_table_covers_every_profile():
    assert set(GRANULARITY) == set(DEVICE_PROFILES)


@pytest.mark.parametrize("profile", sorted(DEVICE_PROFILES))
def test_every_profile_groups(profile):
    group, groups, remainder, _, _ = GRANULARITY[profile]
    facts = old(profile)
    assert facts.group_size() == group
    policy = "own" if remainder else "drop"  # nothing to own when the split has no remainder
    plan = spec(P("decode", share=0.5), P("prefill"), P("comm", sms=1), remainder=policy).plan(
        facts
    )
    assert plan.mechanism == "groups"
    assert plan.group_size == group
    assert plan.split_group_count == groups
    assert plan.split_remainder_sm_count == remainder
    decode, prefill, comm = plan["decode"], plan["prefill"], plan["comm"]
    assert comm.sm_count == group and comm.groups == 1
    assert decode.groups == (groups + 1) // 2  # half, a tie rounds up
    assert prefill.groups == groups - decode.groups - 1
    assert decode.sm_count + prefill.sm_count + comm.sm_count == groups * group
    if remainder:
        own = plan["remainder"]
        assert own.is_remainder and own.sm_count == remainder and own.groups == 0
        assert own.includes_split_remainder
    else:
        assert "remainder" not in plan
    assert plan.total_sm_count + plan.remainder_sm_count == facts.sm_count


@pytest.mark.parametrize("profile", sorted(DEVICE_PROFILES))
def test_every_profile_structured(profile):
    _, _, _, unit, minimum = GRANULARITY[profile]
    facts = new(profile)
    plan = spec(P("decode", share=0.5), P("prefill"), P("comm", sms=1)).plan(facts)
    assert plan.mechanism == "structured"
    assert plan.group_size == unit
    assert plan.split_group_count == 3
    usable = facts.sm_count // unit * unit
    assert plan["comm"].sm_count == minimum
    assert plan["decode"].sm_count % unit == 0
    assert plan["prefill"].sm_count == usable - plan["decode"].sm_count - minimum
    assert all(p.groups == 1 for p in plan)
    assert plan.remainder_sm_count == facts.sm_count - usable


def test_architecture_example_does_not_fit_an_h100_and_says_why():
    s = spec(P("decode", sms=96), P("prefill", share=0.25), P("comm", sms=8))
    with pytest.raises(PlanError) as info:
        s.plan(old("h100"))
    assert str(info.value) == (
        f"cannot plan 3 partitions on {H100} (132 SMs, mechanism 'groups', in groups of 8):\n"
        f"  - the partitions need 17 groups of 8 (136 SMs) but {H100} has 16 (128 SMs): "
        "decode 96, prefill 32, comm 8; ask for at least 8 SMs less"
    )


def test_a_count_over_the_device_names_what_fits():
    with pytest.raises(PlanError) as info:
        spec(P("decode", sms=130)).plan(old("h100"))
    assert "decode asks 130 SMs; NVIDIA H100 80GB HBM3 gives at most 128 in groups of 8" in str(
        info.value
    )


def test_every_violation_is_listed():
    s = spec(
        P("decode", sms=130),
        P("prefill", share=0.5, min_sms=200),
        P("batch", min_sms=300),
    )
    with pytest.raises(PlanError) as info:
        s.plan(old("h100"))
    lines = str(info.value).splitlines()
    assert lines[0].startswith("cannot plan 3 partitions on NVIDIA H100 80GB HBM3")
    assert lines[1:] == [
        f"  - decode asks 130 SMs; {H100} gives at most 128 in groups of 8",
        f"  - prefill asks at least 200 SMs (min_sms); {H100} gives at most 128 in groups of 8",
        f"  - batch asks at least 300 SMs (min_sms); {H100} gives at most 128 in groups of 8",
        f"  - the partitions need 80 groups of 8 (640 SMs) but {H100} has 16 (128 SMs): "
        "decode 136, prefill 200, batch (the rest) at least 304; ask for at least 512 SMs less",
    ]


def test_plan_error_is_a_value_error():
    with pytest.raises(ValueError):
        spec(P("decode", sms=200)).plan(old("h100"))


def test_structured_violation_words():
    with pytest.raises(PlanError) as info:
        spec(P("decode", sms=130)).plan(new("h100"))
    assert (
        "decode asks 130 SMs; NVIDIA H100 80GB HBM3 gives at most 128 in multiples of 8, at least 8"
        in (str(info.value))
    )


def test_counts_round_up_to_whole_groups():
    plan = spec(P("decode", sms=90), P("comm", sms=1)).plan(old("h100"))
    assert plan["decode"].sm_count == 96
    assert plan["decode"].groups == 12
    assert plan["decode"].reason == "rounded up to 12 groups of 8"
    assert plan["decode"].request == "90 SMs"
    assert plan["comm"].sm_count == 8
    assert plan["comm"].reason == "rounded up to 1 group of 8"


def test_exact_counts_have_no_reason():
    plan = spec(P("decode", sms=96), P("prefill", share=0.25)).plan(old("h100"))
    assert plan["decode"].reason == ""
    assert plan["prefill"].sm_count == 32
    assert plan["prefill"].reason == ""


def test_structured_rounds_to_the_alignment_and_the_minimum():
    a100 = new("a100")  # minimum 4, alignment 2
    plan = spec(P("a", sms=5), P("b", sms=1), P("c", sms=6)).plan(a100)
    assert [p.sm_count for p in plan] == [6, 4, 6]
    assert plan["a"].reason == "rounded up to a multiple of 2"
    assert plan["b"].reason == "raised to the minimum of 4 SMs"
    assert plan["c"].reason == ""


def test_share_ties_round_up():
    # A100 by groups: 27 groups of 4; half is 13.5 groups -> 14.
    plan = spec(P("a", share=0.5)).plan(old("a100"))
    assert plan["a"].groups == 14
    assert plan["a"].reason == "50% of 108 usable SMs is 54; rounded to 14 groups of 4"
    assert plan.remainder_sm_count == 108 - 56


def test_shares_are_read_as_decimals():
    # 0.15 of 10 groups is a tie (1.5) in decimal, 1.4999... in binary: it goes up.
    facts = SmFacts.for_device_profile("Ten Groups", (9, 0), 80, driver_version=12080)
    plan = spec(P("a", share=0.15)).plan(facts)
    assert plan["a"].groups == 2


def test_tied_shares_that_do_not_fit_give_back_later_declared_first():
    plan = spec(P("a", share=0.5), P("b", share=0.5)).plan(old("a100"))
    assert (plan["a"].groups, plan["b"].groups) == (14, 13)
    assert plan["b"].reason.endswith("rounded down so the shares fit (each rounded up would not)")
    assert plan.remainder_sm_count == 0


def test_smallest_fraction_gives_back_first():
    # 10 groups of 8 (cc 9.0, 80 SMs): 0.26 -> 2.6, 0.26 -> 2.6, 0.26 -> 2.6, 0.22 -> 2.2.
    facts = SmFacts.for_device_profile("Ten Groups", (9, 0), 80, driver_version=12080)
    plan = spec(
        P("a", share=0.26), P("b", share=0.26), P("c", share=0.26), P("d", share=0.22)
    ).plan(facts)
    # Rounded: 3, 3, 3, 2 = 11 > 10: one of the .6 fractions gives back, the last one.
    assert [p.groups for p in plan] == [3, 3, 2, 2]


def test_shares_never_round_to_nothing():
    plan = spec(P("tiny", share=0.001), P("big", sms=64)).plan(old("h100"))
    assert plan["tiny"].groups == 1
    assert plan["tiny"].reason.endswith("raised to the minimum of 8 SMs")


def test_min_sms_is_a_floor_for_shares():
    plan = spec(P("a", share=0.01, min_sms=20)).plan(old("h100"))
    assert plan["a"].sm_count == 24
    assert plan["a"].request == "1% share, at least 20 SMs"
    assert plan["a"].reason.endswith("raised to min_sms (24 SMs)")


def test_the_rest_gets_what_is_left():
    plan = spec(P("decode", sms=64), P("batch"), P("comm", sms=8)).plan(old("h100"))
    assert plan["batch"].sm_count == 128 - 64 - 8
    assert plan["batch"].request == "the rest"
    assert plan.remainder_sm_count == 4  # the split's remainder, dropped


def test_the_rest_with_nothing_left_is_an_error():
    with pytest.raises(PlanError) as info:
        spec(P("decode", sms=128), P("batch")).plan(old("h100"))
    assert "batch (the rest) at least 8; ask for at least 8 SMs less" in str(info.value)


def test_the_rest_respects_min_sms():
    with pytest.raises(PlanError, match="batch \\(the rest\\) at least 24"):
        spec(P("decode", sms=112), P("batch", min_sms=20)).plan(old("h100"))
    plan = spec(P("decode", sms=104), P("batch", min_sms=20)).plan(old("h100"))
    assert plan["batch"].sm_count == 24


def test_shares_give_back_to_make_room_for_the_rest():
    # 27 groups: 0.5 + 0.5 rounded up (14 + 14) would leave nothing for the rest.
    plan = spec(P("a", share=0.5), P("b", share=0.5), P("c")).plan(old("a100"))
    assert [p.groups for p in plan] == [13, 13, 1]
    plan = spec(P("a", share=0.5), P("b", share=0.48), P("c")).plan(old("a100"))
    assert [p.groups for p in plan] == [13, 13, 1]
    # Giving back stops at the floor of each share: 13 + 13 + 2 > 27.
    with pytest.raises(PlanError, match="c \\(the rest\\) at least 8"):
        spec(P("a", share=0.5), P("b", share=0.5), P("c", min_sms=8)).plan(old("a100"))


def test_remainder_drop():
    plan = spec(P("a", sms=64)).plan(old("h100"))
    assert plan.remainder_sm_count == 68
    assert plan.remainder_policy == "drop"
    assert not plan["a"].includes_split_remainder
    assert plan.group_slices() == {"a": range(0, 8)}


def test_remainder_own():
    plan = spec(P("a", sms=64), remainder="own").plan(old("h100"))
    own = plan["remainder"]
    assert plan.names == ("a", "remainder")
    assert (own.sm_count, own.groups, own.result_sm_count) == (68, 8, 64)
    assert own.includes_split_remainder and own.is_remainder
    assert own.request == "the remainder"
    assert own.reason == "8 groups of 8 no partition took and the split's remainder of 4 SMs"
    assert plan.remainder_sm_count == 0
    assert plan.group_slices() == {"a": range(0, 8), "remainder": range(8, 16)}


def test_remainder_own_with_nothing_left_is_an_error():
    with pytest.raises(PlanError, match="remainder='own' would make an empty partition"):
        spec(P("a", share=0.5), P("b"), remainder="own").plan(old("a100"))


def test_remainder_own_structured_is_the_split_remainder_only():
    plan = spec(P("a", sms=64), remainder="own").plan(new("h100"))
    own = plan["remainder"]
    assert (own.sm_count, own.groups, own.result_sm_count) == (68, 0, 0)
    assert own.includes_split_remainder
    assert plan.split_remainder_sm_count == 68
    assert plan.split_group_count == 1


def test_remainder_to_a_named_partition():
    s = spec(P("decode", sms=64), P("batch", share=0.25), remainder="decode")
    plan = s.plan(old("h100"))
    decode = plan["decode"]
    assert decode.groups == 8 + 4  # its own and the 4 groups no partition took
    assert decode.sm_count == 96 + 4
    assert decode.result_sm_count == 96
    assert decode.includes_split_remainder
    assert decode.reason == (
        "+ 4 groups of 8 no partition took and the split's remainder of 4 SMs (remainder='decode')"
    )
    assert plan.remainder_sm_count == 0
    assert plan.group_slices() == {"decode": range(0, 12), "batch": range(12, 16)}


def test_remainder_named_with_no_split_remainder():
    plan = spec(P("a", sms=100), remainder="a").plan(old("a100"))
    assert plan["a"].sm_count == 108
    assert not plan["a"].includes_split_remainder
    assert plan["a"].groups == 27


def test_rest_and_named_remainder():
    plan = spec(P("a", sms=64), P("b"), remainder="a").plan(old("h100"))
    assert plan["a"].sm_count == 68 and plan["a"].groups == 8
    assert plan["b"].sm_count == 64
    assert plan.total_sm_count == 132


def test_coscheduling_off_uses_the_finer_granularity():
    plan = spec(P("a", sms=13), coscheduling=False).plan(old("h100"))
    assert plan.group_size == 2
    assert plan["a"].sm_count == 14
    assert plan.split_group_count == 66
    assert (plan.min_partition_size, plan.alignment) == (2, 2)


def test_backfill_structured_rounds_to_the_finest_alignment():
    plan = spec(P("a", sms=12), P("b", sms=3), backfill=True).plan(new("h100"))
    assert plan.group_size == 2
    assert plan["a"].sm_count == 12
    assert plan["b"].sm_count == 8  # a group never has fewer SMs than coscheduledSmCount
    assert plan.alignment == 8


def test_backfill_needs_cuda_13_1():
    with pytest.raises(DriverTooOldError) as info:
        spec(P("a", sms=8), backfill=True).plan(old("h100"))
    assert "CUDA 13.1" in str(info.value)
    assert "the driver is 12.8" in str(info.value)
    assert isinstance(info.value, NotImplementedError)


def test_backfill_needs_the_bindings_too():
    facts = SmFacts.for_known_device("h100", driver_version=13010, structured_split=False)
    with pytest.raises(DriverTooOldError, match="cuda-bindings do not expose"):
        spec(P("a", sms=8), backfill=True).plan(facts)


def test_structured_mechanism_needs_cuda_13_1():
    with pytest.raises(DriverTooOldError, match=r"CUDA 13\.1"):
        spec(P("a", sms=8)).plan(old("h100"), mechanism="structured")


def test_mechanism_can_be_forced_to_groups():
    plan = spec(P("a", sms=8)).plan(new("h100"), mechanism="groups")
    assert plan.mechanism == "groups"
    with pytest.raises(SpecError, match="backfill=True needs mechanism 'structured'"):
        spec(P("a", sms=8), backfill=True).plan(new("h100"), mechanism="groups")
    with pytest.raises(SpecError, match="'mechanism' must be"):
        spec(P("a", sms=8)).plan(new("h100"), mechanism="fast")


def test_a_device_smaller_than_a_group():
    facts = SmFacts.for_device_profile("Tiny", (9, 0), 4, driver_version=12080)
    with pytest.raises(PlanError) as info:
        spec(P("a", share=1.0)).plan(facts)
    assert str(info.value) == (
        "cannot plan on Tiny: it has 4 SMs and the smallest partition is 8 SMs"
    )


class FakeDevice:
    def sm_facts(self):
        return old("h100")


def test_plan_accepts_anything_with_sm_facts():
    assert spec(P("a", sms=8)).plan(FakeDevice()).facts == old("h100")


def test_plan_rejects_other_things():
    with pytest.raises(TypeError, match="sm_facts"):
        spec(P("a", sms=8)).plan("sim:h100")


def test_plan_access():
    plan = spec(P("decode", sms=64), P("batch", streams=2, priority=-1)).plan(old("h100"))
    assert isinstance(plan, Plan)
    assert [p.name for p in plan] == ["decode", "batch"]
    assert len(plan) == 2
    assert plan["batch"].streams == 2 and plan["batch"].priority == -1
    assert "decode" in plan and "nope" not in plan
    with pytest.raises(KeyError):
        plan["nope"]
    assert plan.total_sm_count == 128


def test_explain_is_a_table():
    text = (
        spec(
            P("decode", sms=90),
            P("prefill", share=0.125),
            P("comm", sms=8),
            P("batch"),
            remainder="batch",
        )
        .plan(old("h100"))
        .explain()
    )
    lines = text.splitlines()
    assert lines[0] == "NVIDIA H100 80GB HBM3 (cc 9.0, 132 SMs, driver 12.8): mechanism 'groups'"
    assert "16 groups of 8 SMs, remainder 4 SMs" in lines[1]
    header = next(line for line in lines if line.startswith("partition"))
    assert header.split() == ["partition", "request", "SMs", "made", "of", "reason"]
    decode = next(line for line in lines if line.startswith("decode"))
    assert decode.split()[:6] == ["decode", "90", "SMs", "96", "12", "x"]
    assert decode.endswith("rounded up to 12 groups of 8")
    assert lines[-1] == "remainder: given to 'batch'; 132 of 132 SMs in partitions"


def test_explain_structured_and_drop():
    text = spec(P("a", sms=12), backfill=True).plan(new("h100")).explain()
    assert "mechanism 'structured' (backfill)" in text
    assert text.splitlines()[-1] == "remainder: drop (120 SMs unused); 12 of 132 SMs in partitions"


def test_plans_are_deterministic_and_hashable():
    s = spec(P("decode", sms=64), P("batch"))
    a, b = s.plan(old("h100")), s.plan(old("h100"))
    assert a == b and hash(a) == hash(b)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16


def test_fingerprint_follows_the_layout_not_the_words():
    base = spec(P("decode", sms=64), P("batch")).plan(old("h100"))
    streams = spec(P("decode", sms=64, streams=4, priority=-2), P("batch")).plan(old("h100"))
    assert streams.fingerprint == base.fingerprint
    # 60 SMs round to the same 64: same layout, different words.
    words = spec(P("decode", sms=60), P("batch")).plan(old("h100"))
    assert words.fingerprint == base.fingerprint
    other = spec(P("decode", sms=72), P("batch")).plan(old("h100"))
    assert other.fingerprint != base.fingerprint
    renamed = spec(P("prefill", sms=64), P("batch")).plan(old("h100"))
    assert renamed.fingerprint != base.fingerprint
    structured = spec(P("decode", sms=64), P("batch")).plan(new("h100"))
    assert structured.fingerprint != base.fingerprint


def test_modal_plan():
    modal = ModalSpec(
        {
            "decode-heavy": spec(P("decode", share=0.75), P("prefill")),
            "prefill-heavy": spec(P("decode", share=0.25), P("prefill")),
        },
        default="prefill-heavy",
    )
    plans = modal.plan(old("h100"))
    assert isinstance(plans, ModalPlan)
    assert plans.mode_names == ("decode-heavy", "prefill-heavy")
    assert list(plans) == ["decode-heavy", "prefill-heavy"]
    assert plans.default == "prefill-heavy"
    assert plans["decode-heavy"]["decode"].sm_count == 96
    assert plans["prefill-heavy"]["decode"].sm_count == 32
    assert all(p.facts == plans.facts for p in plans.plans.values())
    text = plans.explain()
    assert "mode 'decode-heavy'\n" in text and "mode 'prefill-heavy' (default)\n" in text
    assert len(plans.fingerprint) == 16
    assert hash(plans) == hash(modal.plan(old("h100")))


def test_modal_default_is_the_first_mode():
    modal = ModalSpec({"b": spec(P("x", sms=8)), "a": spec(P("x", sms=16))})
    assert modal.default_mode == "b"
    assert modal.plan(old("h100")).default == "b"


def test_modal_plan_errors_name_every_failing_mode():
    modal = ModalSpec(
        {
            "ok": spec(P("decode", sms=8)),
            "big": spec(P("decode", sms=200)),
            "bigger": spec(P("decode", sms=300)),
        }
    )
    with pytest.raises(PlanError) as info:
        modal.plan(old("h100"))
    text = str(info.value)
    assert text.startswith("mode 'big': cannot plan 1 partition on NVIDIA H100 80GB HBM3")
    assert "mode 'bigger': cannot plan" in text
    assert "decode asks 300 SMs" in text
    assert "mode 'ok'" not in text


@pytest.mark.parametrize("keyword", ["drop", "own"])
def test_partitions_named_like_a_remainder_keyword(keyword):
    plan = spec(P(keyword, sms=8), P("b", sms=8), remainder=keyword).plan(old("h100"))
    assert not plan[keyword].includes_split_remainder
    assert plan[keyword].sm_count == 8
    assert plan.total_sm_count + plan.remainder_sm_count == 132


def test_structured_groups_without_coscheduling_cannot_take_the_remainder():
    # cuDevResourceGenerateDesc combines only resources of one co-scheduling alignment: a
    # structured group of alignment 2 and the H100's remainder (alignment 8) do not mix.
    s = spec(P("a", sms=8), P("b", sms=8), remainder="a", coscheduling=False)
    with pytest.raises(PlanError) as info:
        s.plan(new("h100"), mechanism="structured")
    assert "a cannot also take the split's remainder" in str(info.value)
    # "auto" uses groups instead, where all outputs of the split share one alignment.
    plan = s.plan(new("h100"))
    assert plan.mechanism == "groups"
    assert plan["a"].sm_count == 132 - 8  # 66 groups of 2: no split remainder at all
    # Backfill needs the structured split, so there is no way out.
    with pytest.raises(PlanError, match="cannot also take the split's remainder"):
        spec(P("a", sms=8), remainder="a", coscheduling=False, backfill=True).plan(new("h100"))
    # Where the alignments agree (8.x: 2 and 2), the structured split is used.
    assert s.plan(new("a100")).mechanism == "structured"
    # An owned remainder is made of the remainder alone: no mixing.
    owned = spec(P("a", sms=8), remainder="own", coscheduling=False).plan(new("h100"))
    assert owned.mechanism == "structured"
