"""Plan.to_svg() and ModalPlan.to_svg(): a valid SVG with one cell per SM of the device,
as many cells per partition as the plan grants, the dropped SMs and the split's remainder
marked, a legend with names and counts, and modes side by side (no driver involved)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import assume, given

from greenres.errors import PlanError
from greenres.facts import SmFacts
from greenres.plan import ModalPlan
from greenres.spec import ModalSpec, Partition, PartitionSpec
from greenres.svg import plan_svg

from support.strategies import facts, modal_specs, partition_specs
from support.svgmap import SVG, check_panel, panels

H100 = SmFacts.for_known_device("h100")


def test_a_plan_in_split_order():
    spec = PartitionSpec(
        (Partition("decode", sms=64), Partition("prefill", share=0.25), Partition("comm", sms=8)),
        remainder="drop",
    )
    plan = spec.plan(H100)
    [(title, cells, legend)] = panels(plan.to_svg())
    assert title == "plan"
    check_panel(plan, cells, legend)
    # split order: decode's 64 first, then prefill's, then comm's; the 28 SMs nobody takes
    # last: the structured split (driver 13.1) makes three results and a remainder of 28
    names = [name for _, name, _ in sorted(cells)]
    assert names == ["decode"] * 64 + ["prefill"] * 32 + ["comm"] * 8 + [""] * 28
    assert plan.mechanism == "structured" and plan.split_remainder_sm_count == 28
    assert [sm for sm, _, remainder in cells if remainder] == list(range(104, 132))


def test_groups_the_split_does_not_give_to_a_partition_are_dropped():
    facts = SmFacts.for_known_device("h100", driver_version=12080, structured_split=False)
    plan = PartitionSpec((Partition("a", sms=64),), remainder="drop").plan(facts)
    assert plan.mechanism == "groups"
    [(_, cells, legend)] = panels(plan.to_svg())
    check_panel(plan, cells, legend)
    results_total = facts.sm_count - plan.split_remainder_sm_count
    assert [name for _, name, _ in sorted(cells)] == ["a"] * 64 + [""] * 68
    assert [sm for sm, _, remainder in cells if remainder] == list(range(results_total, 132))


def test_the_remainder_given_to_a_partition_is_marked_as_its_cells():
    plan = PartitionSpec((Partition("a", sms=64), Partition("b")), remainder="b").plan(H100)
    [(_, cells, legend)] = panels(plan.to_svg())
    check_panel(plan, cells, legend)
    assert [(sm, name) for sm, name, remainder in cells if remainder] == [
        (sm, "b") for sm in range(128, 132)
    ]
    texts = [t.text for t in ET.fromstring(plan.to_svg()).iter(f"{SVG}text")]
    assert "b: 68 SMs (incl. the split's remainder of 4)" in texts
    assert "dashed: the split's remainder" in texts


def test_a_partition_called_dropped_is_not_the_dropped_sms():
    plan = PartitionSpec((Partition("dropped", sms=64),), remainder="drop").plan(H100)
    [(_, cells, legend)] = panels(plan.to_svg())
    check_panel(plan, cells, legend)
    assert legend == {"dropped": 64, "": 68}


def test_modes_side_by_side_in_declaration_order():
    modal = ModalSpec(
        {
            "decode-heavy": PartitionSpec((Partition("decode", share=0.75), Partition("p"))),
            "prefill-heavy": PartitionSpec((Partition("decode", share=0.25), Partition("p"))),
        }
    ).plan(H100)
    assert isinstance(modal, ModalPlan)
    drawn = panels(modal.to_svg())
    assert [title for title, _, _ in drawn] == ["mode decode-heavy", "mode prefill-heavy"]
    for (_, cells, legend), mode in zip(drawn, modal.mode_names, strict=True):
        check_panel(modal[mode], cells, legend)
    # the same partition has the same colour in every mode
    root = ET.fromstring(modal.to_svg())
    fills = {
        (r.get("data-partition"), r.get("fill"))
        for r in root.iter(f"{SVG}rect")
        if r.get("data-partition") == "decode"
    }
    assert len(fills) == 1


def test_names_are_escaped():
    plan = PartitionSpec((Partition("a<b&\"c'", sms=8), Partition("x")), remainder="x").plan(H100)
    [(_, cells, legend)] = panels(plan.to_svg())
    check_panel(plan, cells, legend)


def test_sm_ids_as_a_driver_reports_them():
    plan = PartitionSpec((Partition("a", sms=16), Partition("b", sms=16))).plan(H100)
    ids = {"a": range(100, 116), "b": range(0, 16)}
    [(_, cells, legend)] = panels(plan_svg(plan, {None: ids}))
    check_panel(plan, cells, legend)
    owner = {sm: name for sm, name, _ in cells}
    assert all(owner[sm] == "a" for sm in range(100, 116))
    assert all(owner[sm] == "b" for sm in range(16))


def test_not_a_plan():
    with pytest.raises(TypeError, match="'plan' must be a greenres Plan or ModalPlan"):
        plan_svg({"a": 8})


@given(partition_specs(), facts())
def test_any_plan_is_pictured_exactly(spec, device):
    try:
        plan = spec.plan(device)
    except PlanError:
        assume(False)
    [(_, cells, legend)] = panels(plan.to_svg())
    check_panel(plan, cells, legend)
    assert sum(remainder for _, _, remainder in cells) == plan.split_remainder_sm_count


@given(modal_specs(max_modes=3, small=True), facts())
def test_any_modal_plan_is_pictured_exactly(spec, device):
    try:
        modal = spec.plan(device)
    except PlanError:
        assume(False)
    drawn = panels(modal.to_svg())
    assert len(drawn) == len(modal)
    for (_, cells, legend), mode in zip(drawn, modal.mode_names, strict=True):
        check_panel(modal[mode], cells, legend)
