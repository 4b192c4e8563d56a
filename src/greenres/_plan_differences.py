"""Where a stored plan differs from the plan greenres makes again from its spec and facts:
the check that lets :func:`greenres.serialize.load_plan` refuse an edited plan file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from greenres._validators import value_text

__all__ = ["plan_differences"]


def plan_differences(stored: Any, made: Any, where: str = "$") -> list[str]:
    """Where two plan dicts differ, as ``"at $.key: file X, planned Y"`` lines (a key only
    in ``stored`` is ``unknown``, one only in ``made`` is ``required ... missing``)."""
    if isinstance(stored, Mapping) and isinstance(made, Mapping):
        lines = []
        for key in sorted(set(stored) | set(made), key=str):
            here = f"{where}.{key}"
            if key not in made:
                lines.append(f"at {here}: unknown key")
            elif key not in stored:
                lines.append(f"at {here}: required key missing")
            else:
                lines += plan_differences(stored[key], made[key], here)
        return lines
    if isinstance(stored, list) and isinstance(made, list) and len(stored) == len(made):
        return [
            line
            for index, (a, b) in enumerate(zip(stored, made, strict=True))
            for line in plan_differences(a, b, f"{where}[{index}]")
        ]
    # the type first: made holds plain values, and some stored ones (numpy arrays) refuse
    # to say whether they are equal
    if type(stored) is not type(made) or stored != made:
        return [f"at {where}: file {value_text(stored)}, planned {value_text(made)}"]
    return []
