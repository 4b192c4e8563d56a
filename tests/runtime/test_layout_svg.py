"""Layout.to_svg(): the SMs each created green context owns, at the ids the simulated driver
reports, every mode side by side; cell counts per partition equal the plan."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

import greenres as gr
from greenres import sim

from support.rthelpers import layout_of
from support.svgmap import check_panel, panels

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.sim_only


def test_a_layout_is_drawn_at_the_sm_ids_the_driver_reports():
    with layout_of({"decode": 64, "prefill": 32, "comm": 8}) as layout:
        [(title, cells, legend)] = panels(layout.to_svg())
        assert title == "plan"
        check_panel(layout.plan, cells, legend)
        owner = {sm: name for sm, name, _ in cells}
        for part in layout:
            ids = sim.green_context_sms(part.handle)
            assert len(ids) == part.sm_count
            assert all(owner[sm] == part.name for sm in ids)


def test_a_modal_layout_shows_every_mode_side_by_side():
    modal = gr.load_spec(EXAMPLES / "modes.toml").plan(gr.Device(0))
    with gr.Layout.create(modal) as layout:
        drawn = panels(layout.to_svg())
        assert [t for t, _, _ in drawn] == [f"mode {m}" for m in modal.mode_names]
        for (_, cells, legend), mode in zip(drawn, modal.mode_names, strict=True):
            check_panel(modal[mode], cells, legend)
            owner = {sm: name for sm, name, _ in cells}
            for part in layout.mode_partitions(mode):
                assert Counter(owner[sm] for sm in sim.green_context_sms(part.handle)) == {
                    part.name: part.sm_count
                }
        # the picture does not depend on the current mode
        before = layout.to_svg()
        layout.switch(modal.mode_names[1])
        assert layout.to_svg() == before


def test_a_closed_layout_has_no_picture():
    with layout_of({"a": 16}) as layout:
        pass
    with pytest.raises(gr.ClosedError):
        layout.to_svg()
