"""Read greenres' SM map pictures (greenres.svg) back as data, and check one panel against
its plan: the tests of Plan.to_svg, Layout.to_svg and the CLI share these."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter

__all__ = ["SVG", "check_panel", "panels"]

SVG = "{http://www.w3.org/2000/svg}"


def panels(svg: str):
    """Per panel (mode): its title, its cells as (sm, partition, remainder), and its
    legend as name -> count."""
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{SVG}svg"
    out = []
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "mode":
            continue
        cells = [
            (int(r.get("data-sm")), r.get("data-partition"), r.get("data-remainder") == "1")
            for r in group.iter(f"{SVG}rect")
            if "sm" in (r.get("class") or "").split()
        ]
        legend = {
            g.get("data-partition"): int(g.get("data-count"))
            for g in group.iter(f"{SVG}g")
            if g.get("class") == "legend-entry"
        }
        out.append((group.get("data-mode"), cells, legend))
    return out


def check_panel(plan, cells, legend):
    assert sorted(sm for sm, _, _ in cells) == list(range(plan.facts.sm_count))
    counts = Counter(name for _, name, _ in cells)
    for p in plan.partitions:
        assert counts[p.name] == p.sm_count, p.name
        assert legend[p.name] == p.sm_count
    dropped = plan.facts.sm_count - plan.total_sm_count
    assert counts[""] == dropped == legend[""]
    assert set(counts) - {""} == set(plan.names)
