"""Device profiles of the simulated driver: real products, as data.

Each profile is a real NVIDIA product (SM count, compute capability and memory
size as published). The split granularity follows the compute capability
(the documented guideline of CUDA's green-context API):

====================  =====================  ==========================
compute capability    minimum SMs per group  group size a multiple of
====================  =====================  ==========================
6.x, 7.x              2                      2
8.x                   4                      2
9.0 and newer         8                      8
====================  =====================  ==========================

Memory sizes are the products' nominal sizes in GiB (a real driver reports a
little less).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PROFILES", "DeviceProfile", "granularity", "parse_profile"]

_GIB = 1 << 30


def granularity(major: int) -> tuple[int, int]:
    """(minimum SMs per group, alignment) for a compute capability major version."""
    if major >= 9:
        return 8, 8
    if major == 8:
        return 4, 2
    return 2, 2


@dataclass(frozen=True)
class DeviceProfile:
    """One simulated device: a real product's facts."""

    key: str
    name: str
    compute_capability: tuple[int, int]
    sm_count: int
    total_memory: int
    min_sm_partition: int
    sm_alignment: int

    @classmethod
    def of(cls, key: str, name: str, cc: tuple[int, int], sms: int, gib: int) -> DeviceProfile:
        """A profile whose granularity follows its compute capability."""
        minimum, alignment = granularity(cc[0])
        return cls(key, name, cc, sms, gib * _GIB, minimum, alignment)


PROFILES: dict[str, DeviceProfile] = {
    p.key: p
    for p in (
        DeviceProfile.of("v100", "Tesla V100-SXM2-32GB", (7, 0), 80, 32),
        DeviceProfile.of("t4", "Tesla T4", (7, 5), 40, 16),
        DeviceProfile.of("a100", "NVIDIA A100-SXM4-80GB", (8, 0), 108, 80),
        DeviceProfile.of("a30", "NVIDIA A30", (8, 0), 56, 24),
        DeviceProfile.of("a10", "NVIDIA A10", (8, 6), 72, 24),
        DeviceProfile.of("l4", "NVIDIA L4", (8, 9), 58, 24),
        DeviceProfile.of("l40s", "NVIDIA L40S", (8, 9), 142, 48),
        DeviceProfile.of("rtx4090", "NVIDIA GeForce RTX 4090", (8, 9), 128, 24),
        DeviceProfile.of("h100", "NVIDIA H100 80GB HBM3", (9, 0), 132, 80),
        DeviceProfile.of("h100-pcie", "NVIDIA H100 PCIe", (9, 0), 114, 80),
        DeviceProfile.of("h200", "NVIDIA H200", (9, 0), 132, 141),
        DeviceProfile.of("h20", "NVIDIA H20", (9, 0), 78, 96),
        DeviceProfile.of("b200", "NVIDIA B200", (10, 0), 148, 180),
        DeviceProfile.of("rtx5090", "NVIDIA GeForce RTX 5090", (12, 0), 170, 32),
    )
}

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
