"""Real NVIDIA devices greenres knows by name, and the documented SM granularity.

One table serves the simulated driver's profiles (``greenres.sim``, ``sim:h100``) and
planning with no GPU (``SmFacts.for_known_device("h100")``), so both describe a device the
same way. Pure data: no driver, no other greenres module but the errors.
"""

from __future__ import annotations

from dataclasses import dataclass

from greenres._validators import value_text
from greenres.errors import SpecError

__all__ = ["DEVICE_PROFILES", "DeviceProfile", "documented_granularity"]

_GIB = 1 << 30


def documented_granularity(compute_capability: tuple[int, int]) -> tuple[int, int]:
    """The documented ``(minimum SMs per group, alignment)`` for a compute capability.

    From the guideline table of CUDA's green-context documentation (6.x and 7.x: 2 and 2;
    8.x: 4 and 2; 9.0 and newer: 8 and 8). A real device's ``CUdevSmResource`` fields
    (CUDA 13.0 and newer) are authoritative.

    Raises:
        SpecError: for compute capabilities older than 6.0, which have no green contexts.
    """
    major = compute_capability[0]
    if major >= 9:
        return (8, 8)
    if major == 8:
        return (4, 2)
    if major in (6, 7):
        return (2, 2)
    raise SpecError(
        "'compute_capability' must be >= (6, 0) for green contexts "
        f"(got {value_text(compute_capability)})"
    )


@dataclass(frozen=True)
class DeviceProfile:
    """A real product: its published facts and the name its driver reports.

    Attributes:
        key: the profile name, e.g. ``"h100"`` (``sim:h100``, ``GREENRES_SIM=8xh100``).
        product: the product as NVIDIA sells it, e.g. ``"H100 SXM5"``.
        name: what ``cuDeviceGetName`` reports, e.g. ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: ``(major, minor)``.
        sm_count: streaming multiprocessors.
        total_memory: the nominal memory size in bytes (a real driver reports a little less).
        locality_domains: the locality domains (CUDA 13.4) the simulator gives the device;
            1 unless published otherwise (2 for the two-die B200 is a guess, docs/devices.md).
    """

    key: str
    product: str
    name: str
    compute_capability: tuple[int, int]
    sm_count: int
    total_memory: int
    locality_domains: int = 1

    @property
    def min_partition_size(self) -> int:
        """The documented minimum SMs of one split group for this compute capability."""
        return documented_granularity(self.compute_capability)[0]

    @property
    def alignment(self) -> int:
        """The documented multiple that split group sizes are made of."""
        return documented_granularity(self.compute_capability)[1]


def _profile(key, product, name, cc, sms, gib, domains=1) -> DeviceProfile:
    return DeviceProfile(key, product, name, cc, sms, gib * _GIB, domains)


#: The devices greenres knows by profile name, in the order of their compute capability.
DEVICE_PROFILES: dict[str, DeviceProfile] = {
    p.key: p
    for p in (
        _profile("v100", "Tesla V100 SXM2", "Tesla V100-SXM2-32GB", (7, 0), 80, 32),
        _profile("t4", "Tesla T4", "Tesla T4", (7, 5), 40, 16),
        _profile("a100", "A100 SXM4", "NVIDIA A100-SXM4-80GB", (8, 0), 108, 80),
        _profile("a30", "A30", "NVIDIA A30", (8, 0), 56, 24),
        _profile("a10", "A10", "NVIDIA A10", (8, 6), 72, 24),
        _profile("l4", "L4", "NVIDIA L4", (8, 9), 58, 24),
        _profile("l40s", "L40S", "NVIDIA L40S", (8, 9), 142, 48),
        _profile("rtx4090", "GeForce RTX 4090", "NVIDIA GeForce RTX 4090", (8, 9), 128, 24),
        _profile("h100", "H100 SXM5", "NVIDIA H100 80GB HBM3", (9, 0), 132, 80),
        _profile("h100-pcie", "H100 PCIe", "NVIDIA H100 PCIe", (9, 0), 114, 80),
        _profile("h200", "H200", "NVIDIA H200", (9, 0), 132, 141),
        _profile("h20", "H20", "NVIDIA H20", (9, 0), 78, 96),
        _profile("b200", "B200", "NVIDIA B200", (10, 0), 148, 180, domains=2),
        _profile("rtx5090", "GeForce RTX 5090", "NVIDIA GeForce RTX 5090", (12, 0), 170, 32),
    )
}
