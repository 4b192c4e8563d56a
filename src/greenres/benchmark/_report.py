"""What ``greenres bench`` reports: rows with their targets, the contenders behind them, the
scale series; as JSON (schema ``greenres.bench/1``, docs/benchmarks.md) or Markdown."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

from ._timing import quartiles, round_ratio

__all__ = ["SCHEMA", "Report", "Row", "Target"]

SCHEMA = "greenres.bench/1"


@dataclass(frozen=True)
class Target:
    """``measured <op> value``: ``op`` is ``"<="`` or ``">="``; ``unit`` is ``"x"`` (a
    ratio of two contenders measured side by side), ``"us"`` or ``"ms"``."""

    op: str
    value: float
    unit: str

    def met(self, measured: float) -> bool:
        return measured <= self.value if self.op == "<=" else measured >= self.value

    def text(self) -> str:
        suffix = "x" if self.unit == "x" else f" {self.unit}"
        return f"{self.op} {self.value:g}{suffix}"


@dataclass
class Row:
    """One target of the issue's table. ``status``: ``PASS``/``MISS`` against the target,
    ``SKIP`` (with ``note`` saying why) when a contender is unavailable, ``INFO`` for a
    measurement with no target."""

    id: str
    case: str
    measured: float | None
    target: Target | None
    status: str
    spread: tuple[float, float] | None = None
    note: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["spread"] = list(self.spread) if self.spread is not None else None
        return out


def ratio_row(row_id, case, results, numerator, denominator, target, note="") -> Row:
    """A row whose value is the median of per-round ratios of two contenders."""
    per_round = [a / b for a, b in zip(results[numerator], results[denominator], strict=True)]
    measured = round_ratio(results, numerator, denominator)
    status = "INFO" if target is None else ("PASS" if target.met(measured) else "MISS")
    return Row(row_id, case, measured, target, status, quartiles(per_round), note)


def value_row(row_id, case, values, target, note="") -> Row:
    """A row whose value is the median of repeated absolute measurements."""
    measured = statistics.median(values)
    status = "INFO" if target is None else ("PASS" if target.met(measured) else "MISS")
    return Row(row_id, case, measured, target, status, quartiles(list(values)), note)


def bound_row(row_id, case, results, python_cost, floor, note="") -> Row:
    """The best ratio to ``floor`` a Python caller can reach: per round, (Python's own cost
    of the loop and calls + the floor) / the floor. A target below it cannot be met from
    Python on this driver and machine."""
    per_round = [(p + f) / f for p, f in zip(results[python_cost], results[floor], strict=True)]
    return value_row(row_id, case, per_round, None, note)


def skipped_row(row_id, case, target, why) -> Row:
    return Row(row_id, case, None, target, "SKIP", None, why)


def cuda_core_row(row_id, case, results, core, greenres, target) -> Row:
    """A ratio row against a cuda.core contender, skipped when cuda.core is not installed
    (the contender is then missing from ``results``)."""
    if core not in results:
        return skipped_row(row_id, case, target, "cuda.core is not installed")
    return ratio_row(row_id, case, results, core, greenres, target)


@dataclass
class Report:
    """Everything one ``greenres bench`` run measured."""

    meta: dict
    rows: list[Row] = field(default_factory=list)
    #: contender name -> {"median_ns", "ns_per_round", "calls_per_cycle", "calls"}; the call
    #: counts are None unless the simulated driver is installed
    contenders: dict[str, dict] = field(default_factory=dict)
    #: series name -> {"x": label, "y": label, "points": [[n, value], ...]}
    scale: dict[str, dict] = field(default_factory=dict)
    #: simulated driver objects the run made and left alive (None on a real driver)
    live_after_close: dict[str, int] | None = None

    def add_contenders(self, results: dict[str, list[float]], calls: dict | None = None):
        for name, values in results.items():
            total, per_call = (calls or {}).get(name, (None, None))
            self.contenders[name] = {
                "median_ns": statistics.median(values),
                "ns_per_round": values,
                "calls_per_cycle": total,
                "calls": per_call,
            }

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            **self.meta,
            "rows": [row.to_dict() for row in self.rows],
            "contenders": self.contenders,
            "scale": self.scale,
            "live_after_close": self.live_after_close,
        }

    def markdown(self) -> str:
        """The rows as a Markdown table, then the contenders' medians."""
        m = self.meta
        lines = [
            f"{m['device']} ({m['driver']}), {m['machine']}; {m['rounds']} interleaved rounds, "
            f"{m['cycles']} cycles per batch",
            "",
            "| case | measured | target | result | spread (IQR) | note |",
            "|---|---:|---|---|---|---|",
        ]
        for row in self.rows:
            lines.append(
                f"| {row.case} | {_value(row.measured, row.target)} | "
                f"{row.target.text() if row.target else '-'} | {row.status} | "
                f"{_spread(row.spread, row.target)} | {row.note} |"
            )
        lines += ["", "| contender | median ns per cycle | driver calls per cycle |"]
        lines.append("|---|---:|---:|")
        for name, entry in self.contenders.items():
            calls = entry["calls_per_cycle"]
            lines.append(
                f"| {name} | {entry['median_ns']:.0f} | {'-' if calls is None else f'{calls:g}'} |"
            )
        if self.live_after_close is not None:
            lines += ["", f"simulated driver objects left alive: {self.live_after_close or 'none'}"]
        return "\n".join(lines)


def _value(measured, target) -> str:
    if measured is None:
        return "-"
    unit = target.unit if target else "x"
    return f"{measured:.2f}x" if unit == "x" else f"{measured:.1f} {unit}"


def _spread(spread, target) -> str:
    if spread is None:
        return "-"
    unit = target.unit if target else "x"
    return f"{spread[0]:.2f}-{spread[1]:.2f}" if unit == "x" else f"{spread[0]:.1f}-{spread[1]:.1f}"
