"""Device profiles of the simulated driver: the real products of :mod:`greenres.devices`.

A profile gives a simulated device its name, compute capability, SM count, memory size and
the documented split granularity of its compute capability. ``parse_profile`` reads the
``"h100"`` / ``"8xh100"`` spelling of ``install()`` and ``GREENRES_SIM``.
"""

from __future__ import annotations

import re

from greenres.devices import DEVICE_PROFILES as PROFILES
from greenres.devices import DeviceProfile

__all__ = ["PROFILES", "DeviceProfile", "parse_profile"]

_SPEC = re.compile(r"^\s*(?:(\d+)\s*[xX]\s*)?([A-Za-z0-9_-]+)\s*$")


def parse_profile(spec: str) -> tuple[DeviceProfile, int]:
    """Parse ``"h100"`` or ``"8xh100"`` into (profile, device count).

    Raises ValueError naming the known profiles when the name is unknown.
    """
    m = _SPEC.match(spec) if isinstance(spec, str) else None
    if m is None:
        raise ValueError(
            f"invalid simulated device spec {spec!r}: expected NAME or NxNAME, "
            "e.g. 'h100' or '8xh100'"
        )
    count = int(m.group(1)) if m.group(1) else 1
    key = m.group(2).lower()
    if key not in PROFILES:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown simulated device profile {key!r}; known profiles: {known}")
    if count < 1:
        raise ValueError(f"device count must be at least 1 in {spec!r}")
    return PROFILES[key], count
