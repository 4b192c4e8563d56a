"""A picture of the SM map: every SM of a device as a cell, coloured by partition.

:meth:`greenres.Plan.to_svg` (and :meth:`greenres.ModalPlan.to_svg`, modes side by side)
draws what a plan asks for, with the SMs in split order: the split's outputs in result
order, then its remainder; the driver decides which physical SMs those are.
:meth:`greenres.Layout.to_svg` draws what was created, at the SM ids the simulated
driver reports for each green context (the real driver reports counts, not ids: there
the cells are in split order too, and the picture says so).

Plain Python over plain data; nothing here touches the driver.

Cells carry ``data-sm`` (the SM id or position), ``data-partition`` (empty for a dropped
SM) and ``data-remainder="1"`` for the split's remainder, so tools (and tests) read the
picture as data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import attrs

__all__ = [
    "MapCell",
    "ModeMap",
    "layout_svg",
    "mode_map_of_plan",
    "plan_svg",
    "render",
    "split_order_cells",
]

CELL = 18  # px, one SM
GAP = 3
COLUMNS = 16
MARGIN = 16
LEGEND_ROW = 20
#: Partition colours, in plan order (distinct in colour and in lightness, for print).
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
DROPPED_FILL = "url(#dropped)"


@attrs.frozen
class MapCell:
    """One SM of the picture.

    Attributes:
        sm: the SM id (or its position in split order).
        partition: the partition that has it; None for a dropped SM.
        remainder: True when it comes from the split's remainder output.
    """

    sm: int
    partition: str | None
    remainder: bool = False


@attrs.frozen
class ModeMap:
    """What one panel of the picture shows.

    Attributes:
        title: the panel's title (``plan``, ``mode NAME``).
        cells: every SM of the device.
        partitions: the legend's rows, ``(name, SM count, note)`` in plan order.
        note: which SMs the cells are (split order, or ids a driver reported).
    """

    title: str
    cells: tuple[MapCell, ...]
    partitions: tuple[tuple[str, int, str], ...]
    note: str = ""


def split_order_cells(plan: Any) -> tuple[MapCell, ...]:
    """The SMs of ``plan``'s device in split order: the split's results in result order
    (each partition takes consecutive ones), the results no partition takes (dropped),
    then the split's remainder output (its partition's, or dropped)."""
    planned = {p.name: p for p in plan.partitions}
    cells: list[MapCell] = []
    taker = None
    for recipe in sorted(plan.recipe.partitions, key=lambda r: r.first_result):
        cells += [
            MapCell(len(cells) + i, recipe.name)
            for i in range(planned[recipe.name].result_sm_count)
        ]
        if recipe.takes_split_remainder:
            taker = recipe.name
    results_total = plan.facts.sm_count - plan.split_remainder_sm_count
    cells += [MapCell(i, None) for i in range(len(cells), results_total)]
    cells += [
        MapCell(results_total + i, taker, remainder=True)
        for i in range(plan.split_remainder_sm_count)
    ]
    return tuple(cells)


def _legend_of(plan: Any) -> tuple[tuple[str, int, str], ...]:
    rows = []
    for p in plan.partitions:
        notes = []
        if p.is_remainder:
            notes.append("the remainder, its own partition")
        elif p.includes_split_remainder:
            notes.append(f"incl. the split's remainder of {plan.split_remainder_sm_count}")
        rows.append((p.name, p.sm_count, "; ".join(notes)))
    return tuple(rows)


def mode_map_of_plan(plan: Any, title: str, sm_ids: Mapping[str, Sequence[int]] | None = None):
    """The panel of one plan. ``sm_ids``: partition name -> the SM ids its green context
    owns (as a driver reports them); without it the cells are in split order."""
    if sm_ids is None:
        return ModeMap(title, split_order_cells(plan), _legend_of(plan), "SMs in split order")
    owner: dict[int, str] = {}
    for name, ids in sm_ids.items():
        for sm in ids:
            owner[int(sm)] = name
    remainder_parts = {p.name for p in plan.partitions if p.is_remainder}
    cells = tuple(
        MapCell(sm, owner.get(sm), owner.get(sm) in remainder_parts)
        for sm in range(plan.facts.sm_count)
    )
    return ModeMap(title, cells, _legend_of(plan), "SM ids as the driver reports them")


def _panel_size(panel: ModeMap) -> tuple[int, int]:
    rows = -(-len(panel.cells) // COLUMNS)
    width = COLUMNS * (CELL + GAP) - GAP
    legend = (len(panel.partitions) + 2) * LEGEND_ROW
    return max(width, 260), 28 + rows * (CELL + GAP) + 10 + legend


def _panel(panel: ModeMap, colours: Mapping[str, str], x0: int) -> list[str]:
    out = [f'<g class="mode" data-mode={quoteattr(panel.title)} transform="translate({x0},0)">']
    out.append(f'<text class="title" x="0" y="14" font-weight="bold">{escape(panel.title)}</text>')
    if panel.note:
        out.append(f'<text class="note" x="0" y="26" font-size="10">{escape(panel.note)}</text>')
    for index, cell in enumerate(panel.cells):
        x = (index % COLUMNS) * (CELL + GAP)
        y = 32 + (index // COLUMNS) * (CELL + GAP)
        name = cell.partition
        fill = colours[name] if name is not None else DROPPED_FILL
        classes = "sm" if name is not None else "sm dropped"
        extra = ' data-remainder="1" stroke="#000" stroke-dasharray="3,2"' if cell.remainder else ""
        label = f"SM {cell.sm}: {name if name is not None else 'dropped'}"
        if cell.remainder:
            label += " (remainder)"
        out.append(
            f'<rect class="{classes}" data-sm="{cell.sm}" data-partition={quoteattr(name or "")}'
            f' x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}"{extra}>'
            f"<title>{escape(label)}</title></rect>"
        )
    rows = -(-len(panel.cells) // COLUMNS)
    y = 32 + rows * (CELL + GAP) + 10
    dropped = sum(1 for c in panel.cells if c.partition is None)
    # (key, label, count, note, fill): the dropped entry's key is "", as its cells' are,
    # so a partition called "dropped" cannot be taken for it
    legend = [(n, n, count, note, colours[n]) for n, count, note in panel.partitions]
    legend.append(("", "dropped", dropped, "in no partition", DROPPED_FILL))
    for key, name, count, note, fill in legend:
        text = f"{name}: {count} SMs" + (f" ({note})" if note else "")
        out.append(
            f'<g class="legend-entry" data-partition={quoteattr(key)} data-count="{count}">'
            f'<rect x="0" y="{y}" width="12" height="12" fill="{fill}" stroke="#444"/>'
            f'<text x="18" y="{y + 10}">{escape(text)}</text></g>'
        )
        y += LEGEND_ROW
    if any(c.remainder for c in panel.cells):
        out.append(
            f'<text class="note" x="0" y="{y + 10}" font-size="10">'
            "dashed: the split's remainder</text>"
        )
    out.append("</g>")
    return out


def render(panels: Sequence[ModeMap], title: str) -> str:
    """The SVG document of ``panels`` side by side."""
    names: list[str] = []
    for panel in panels:
        names += [name for name, _, _ in panel.partitions if name not in names]
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    sizes = [_panel_size(p) for p in panels]
    width = MARGIN + sum(w + 2 * MARGIN for w, _ in sizes)
    height = 2 * MARGIN + max(h for _, h in sizes) + 24
    body = []
    x = MARGIN
    for panel, (w, _) in zip(panels, sizes, strict=True):
        body += _panel(panel, colours, x)
        x += w + 2 * MARGIN
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        '<defs><pattern id="dropped" width="6" height="6" patternUnits="userSpaceOnUse">'
        '<rect width="6" height="6" fill="#e8e8e8"/>'
        '<path d="M0,6 L6,0" stroke="#999" stroke-width="1"/></pattern></defs>',
        '<rect width="100%" height="100%" fill="#fff"/>',
        f'<text x="{MARGIN}" y="{MARGIN + 4}" font-size="14">{escape(title)}</text>',
        f'<g transform="translate(0,{MARGIN + 16})">',
    ]
    return "\n".join([*head, *body, "</g>", "</svg>"]) + "\n"


def _device_title(plan: Any) -> str:
    facts = plan.facts
    return f"{facts.device_name}: {facts.sm_count} SMs"


def _plans_by_mode(plan: Any) -> dict[str | None, Any]:
    from greenres.plan import ModalPlan, Plan

    if isinstance(plan, ModalPlan):
        return dict(plan.plans)
    if isinstance(plan, Plan):
        return {None: plan}
    raise TypeError(f"'plan' must be a greenres Plan or ModalPlan (got {type(plan).__name__})")


def plan_svg(plan: Any, sm_ids: Mapping[str | None, Mapping[str, Sequence[int]]] | None = None):
    """The picture of a Plan or a ModalPlan (modes side by side, in declaration order).
    ``sm_ids``: mode (None for a Plan) -> partition name -> the SM ids its green context
    owns; without it the cells are in split order."""
    plans = _plans_by_mode(plan)
    panels = []
    for mode, one in plans.items():
        ids = None if sm_ids is None else sm_ids[mode]
        panels.append(mode_map_of_plan(one, "plan" if mode is None else f"mode {mode}", ids))
    return render(panels, _device_title(next(iter(plans.values()))))


def layout_svg(layout: Any) -> str:
    """The picture of a live layout (every mode side by side): on the simulated driver at
    the SM ids it reports for each green context; on a real driver, which reports SM counts
    but not ids, in split order (the panels say which)."""
    from greenres import sim

    plan = layout.modal_plan if layout.modal_plan is not None else layout.plan
    ids = None
    if sim.is_installed():
        ids = {
            mode: {p.name: sim.green_context_sms(p.handle) for p in layout.mode_partitions(mode)}
            for mode in layout.modes
        }
    return plan_svg(plan, ids)
