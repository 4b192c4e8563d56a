"""Step 2 of the planning algorithm (:mod:`greenres._planner`): every partition of a spec
gets a whole number of the split's units (fixed counts rounded up, shares rounded to the
nearest with the rest given back in declaration order, the rest partition what is left),
or the complete list of what does not fit. ``docs/planning.md`` states the rules.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from greenres import _plan_messages as words
from greenres.facts import SmFacts
from greenres.spec import PartitionSpec

__all__ = ["size_units"]


@lru_cache(maxsize=4096)
def _share_terms(share: float) -> tuple[int, int, str]:
    """``(numerator, denominator, percent)``: the share as the decimal it prints as, in
    lowest terms (0.15 is 3/20, not the binary 0.1499999999999999944..., so 0.15 of 10 groups
    is a tie, 1.5), and as a percentage for reasons (``"15%"``).

    Memoised: a pure function of the float (parsing it is most of a share's cost), and
    shares repeat across plans and modes."""
    from decimal import Decimal

    numerator, denominator = Decimal(repr(share)).as_integer_ratio()
    return numerator, denominator, f"{share * 100:.6g}%"


# A share being sized: (index, partition, target numerator, target denominator, rounded
# units, floor units, percent text).
_Share = tuple[int, Any, int, int, int, int, str]


def size_units(
    spec: PartitionSpec, facts: SmFacts, grain: Any
) -> tuple[dict[str, int] | None, dict[str, str], str | None]:
    """``(units, reasons, None)``: every partition's units (declaration order) and the
    reasons of those that differ from the request; or ``(None, {}, message)`` with the
    PlanError's text listing every violation."""
    unit, min_units, total_units = grain.unit, grain.min_units, grain.total_units
    if total_units < min_units:
        return (
            None,
            {},
            f"cannot plan on {facts.device_name}: it has {words.sms(facts.sm_count)} and the "
            f"smallest partition is {words.sms(min_units * unit)}",
        )
    by_groups = grain.mechanism == "groups"
    units: dict[str, int] = {}
    reasons: dict[str, str] = {}
    violations: list[str] = []
    # per share: (index, partition, target numerator, target denominator, rounded, floor,
    # percent); its target is numerator / denominator units, exactly
    shares: list[_Share] = []
    rest = None
    rest_floor = 0  # units "the rest" needs at least (0 without such a partition)
    for index, p in enumerate(spec.partitions):
        name, sms = p.name, p.sms
        if sms is not None:
            whole = -(-sms // unit)
            need = whole if whole > min_units else min_units
            units[name] = need
            if need * unit != sms:
                if whole < min_units:
                    reasons[name] = f"raised to the minimum of {words.sms(need * unit)}"
                elif by_groups:
                    reasons[name] = f"rounded up to {grain.units_words(need)}"
                else:
                    reasons[name] = f"rounded up to a multiple of {unit}"
            if need > total_units:
                violations.append(
                    f"{name} asks {words.sms(sms)}; {facts.device_name} gives at most "
                    f"{total_units * unit} {grain.words()}"
                )
            continue
        # a share or the rest: at least the minimum, and min_sms when given
        floor = min_units
        if p.min_sms is not None:
            floor_whole = -(-p.min_sms // unit)
            if floor_whole > total_units:
                violations.append(
                    f"{name} asks at least {words.sms(p.min_sms)} (min_sms); {facts.device_name} "
                    f"gives at most {total_units * unit} {grain.words()}"
                )
            if floor_whole > floor:
                floor = floor_whole
        if p.share is None:
            rest, rest_floor = p, floor
            continue
        numerator, denominator, percent = _share_terms(p.share)
        numerator *= total_units
        rounded = (2 * numerator + denominator) // (2 * denominator)  # nearest; ties go up
        units[name] = rounded if rounded > floor else floor
        shares.append((index, p, numerator, denominator, rounded, floor, percent))
    used = sum(units.values())
    trimmed = ()
    if used + rest_floor > total_units and shares:
        trimmed = _give_back(units, shares, used + rest_floor - total_units)
        used = sum(units.values())
    for share in shares:
        name = share[1].name
        if units[name] * share[3] != share[2]:  # granted differs from the exact target
            reasons[name] = words.share_reason(grain, share, units[name], name in trimmed)
    if used + rest_floor > total_units:
        violations.append(words.total_violation(spec, facts, grain, units, used, rest, rest_floor))
    elif rest is not None:
        units[rest.name] = total_units - used
    if violations:
        return None, {}, words.violations_text(spec, facts, grain, violations)
    return units, reasons, None


def _give_back(units: dict[str, int], shares: list[_Share], excess: int) -> set[str]:
    """Take back one unit from shares rounded up, smallest fraction first (ties: the
    later-declared first), from at most ``excess`` shares; the names of those trimmed."""
    from fractions import Fraction  # only here: most plans need no giving back

    candidates = [
        (Fraction(numerator % denominator, denominator), -index, p.name)
        for index, p, numerator, denominator, rounded, floor, _percent in shares
        if units[p.name] == rounded and rounded * denominator > numerator and rounded - 1 >= floor
    ]
    candidates.sort()
    trimmed = set()
    for _fraction, _index, name in candidates[:excess]:
        units[name] -= 1
        trimmed.add(name)
    return trimmed
