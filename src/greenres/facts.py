"""The SM facts of a device, as plain data.

Planning needs only a handful of numbers about a device: how many SMs it has, the smallest
partition the driver makes and the alignment of partition sizes (with and without SM
co-scheduling), the driver version and whether the structured split of CUDA 13.1 is
available. :class:`SmFacts` holds them. The runtime measures them on a real device
(``greenres.Device.sm_facts()``); :meth:`SmFacts.for_device_profile` builds them from the
documented granularity table so plans can be made, explained and tested with no GPU.

This module never imports the driver.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from greenres._validators import C_INT_MAX, as_int, check_bool, int_at_least, is_int, value_text
from greenres.cuda_versions import LOCALITY_DOMAINS, STRUCTURED_SPLIT, WORKQUEUES
from greenres.devices import DEVICE_PROFILES, documented_granularity
from greenres.errors import SpecError

__all__ = ["SmFacts", "resolve_facts", "version_text"]


def version_text(version: int) -> str:
    """A CUDA version int as text: ``13010`` -> ``"13.1"``."""
    return f"{version // 1000}.{version % 1000 // 10}"


# Device attributes and the driver version are C ints to the driver; memory is a size_t.
_positive_int = int_at_least(1, maximum=C_INT_MAX)
_non_negative_int = int_at_least(0, maximum=C_INT_MAX)
_memory_size = int_at_least(0, maximum=2**64 - 1)


def _to_cc(value: Any) -> Any:
    # JSON and TOML have no tuples: accept a list of two items, and integer-likes in it;
    # keep anything else as given so the validator can report it.
    if isinstance(value, (list, tuple)):
        return tuple(as_int(part) for part in value)
    return value


def _checked_cc(value: Any, name: str = "compute_capability") -> tuple[int, int]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise SpecError(f"'{name}' must be a (major, minor) pair of ints (got {value_text(value)})")
    for part in value:
        if not is_int(part) or not 0 <= part <= C_INT_MAX:
            raise SpecError(
                f"'{name}' must be a (major, minor) pair of ints from 0 to {C_INT_MAX} "
                f"(got {value_text(value)})"
            )
    return value


def _check_cc(_instance: Any, attribute: Any, value: Any) -> None:
    _checked_cc(value, attribute.name)


def _check_name(_instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"'{attribute.name}' must be a non-empty string (got {value_text(value)})")


@frozen
class SmFacts:
    """What planning needs to know about a device's streaming multiprocessors.

    Attributes:
        device_name: the name the driver reports, e.g. ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: ``(major, minor)``.
        sm_count: SMs of the whole device.
        min_partition_size: the smallest SM group the driver makes with SM co-scheduling
            (``CUdevSmResource.minSmPartitionSize``).
        alignment: group sizes are multiples of this with co-scheduling
            (``CUdevSmResource.smCoscheduledAlignment``).
        uncoscheduled_min_partition_size: the smallest group with the
            ``IGNORE_SM_COSCHEDULING`` split flag (undocumented: measured by the runtime on
            a real device, a guess of 2 elsewhere).
        uncoscheduled_alignment: the alignment with that flag (same caveat).
        driver_version: the CUDA driver version as an int, e.g. ``13010`` for 13.1.
        structured_split: True when the driver is 13.1 or newer and the bindings expose
            ``cuDevSmResourceSplit``.
        total_memory: device memory in bytes (0 when unknown).
        workqueue_max_concurrency: the ``wqConcurrencyLimit`` of the device's CUDA 13.1
            workqueue-config resource, the most concurrent stream-ordered workloads its
            workqueues take (``CUDA_DEVICE_MAX_CONNECTIONS``, 8 unless set); 0 when the
            device has no such resource (a driver older than 13.1).
        locality_domain_count: the device's locality domains
            (``CU_DEVICE_ATTRIBUTE_LOCALITY_DOMAIN_COUNT``, CUDA 13.4); 0 when the driver
            does not report them (older than 13.4).
        locality_domain_sm_count: SMs of each locality domain
            (``CU_DEVICE_ATTRIBUTE_LOCALITY_DOMAIN_MULTIPROCESSOR_COUNT``); 0 likewise.

    The counts and the driver version are C ints to the driver (1 or 0 to 2147483647),
    the memory a 64-bit size; integer-likes (``numpy.int64``) are stored as ints.
    """

    device_name: str = field(validator=_check_name)
    compute_capability: tuple[int, int] = field(converter=_to_cc, validator=_check_cc)
    sm_count: int = field(converter=as_int, validator=_positive_int)
    min_partition_size: int = field(converter=as_int, validator=_positive_int)
    alignment: int = field(converter=as_int, validator=_positive_int)
    uncoscheduled_min_partition_size: int = field(converter=as_int, validator=_positive_int)
    uncoscheduled_alignment: int = field(converter=as_int, validator=_positive_int)
    driver_version: int = field(converter=as_int, validator=_non_negative_int)
    structured_split: bool = field(validator=check_bool)
    total_memory: int = field(default=0, converter=as_int, validator=_memory_size)
    workqueue_max_concurrency: int = field(default=0, converter=as_int, validator=_non_negative_int)
    locality_domain_count: int = field(default=0, converter=as_int, validator=_non_negative_int)
    locality_domain_sm_count: int = field(default=0, converter=as_int, validator=_non_negative_int)

    @classmethod
    def for_device_profile(
        cls,
        name: str,
        compute_capability: tuple[int, int],
        sm_count: int,
        driver_version: int = STRUCTURED_SPLIT,
        *,
        structured_split: bool | None = None,
        total_memory: int = 0,
        uncoscheduled_min_partition_size: int = 2,
        uncoscheduled_alignment: int = 2,
        workqueue_max_concurrency: int | None = None,
        locality_domains: int = 1,
    ) -> SmFacts:
        """Facts for a device described by name, compute capability and SM count.

        The co-scheduled granularity comes from :func:`documented_granularity`; the
        un-co-scheduled one is the guess of 2 and 2 the simulated driver also uses.
        ``structured_split`` defaults to ``driver_version >= 13010``;
        ``workqueue_max_concurrency`` to 8 (the default ``CUDA_DEVICE_MAX_CONNECTIONS``)
        from 13.1 on, 0 before. From 13.4 on the device has ``locality_domains`` domains of
        ``sm_count // locality_domains`` SMs each (none reported before).
        """
        minimum, alignment = documented_granularity(_checked_cc(_to_cc(compute_capability)))
        if structured_split is None:
            version = as_int(driver_version)
            structured_split = is_int(version) and version >= STRUCTURED_SPLIT
        if workqueue_max_concurrency is None:
            version = as_int(driver_version)
            workqueue_max_concurrency = 8 if is_int(version) and version >= WORKQUEUES else 0
        version = as_int(driver_version)
        domains = locality_domains if is_int(version) and version >= LOCALITY_DOMAINS else 0
        domain_sms = as_int(sm_count) // domains if domains and is_int(as_int(sm_count)) else 0
        return cls(
            device_name=name,
            compute_capability=compute_capability,
            sm_count=sm_count,
            min_partition_size=minimum,
            alignment=alignment,
            uncoscheduled_min_partition_size=uncoscheduled_min_partition_size,
            uncoscheduled_alignment=uncoscheduled_alignment,
            driver_version=driver_version,
            structured_split=structured_split,
            total_memory=total_memory,
            workqueue_max_concurrency=workqueue_max_concurrency,
            locality_domain_count=domains,
            locality_domain_sm_count=domain_sms,
        )

    @classmethod
    def for_known_device(
        cls, profile: str, driver_version: int = STRUCTURED_SPLIT, **kwargs: Any
    ) -> SmFacts:
        """Facts for one of :data:`greenres.devices.DEVICE_PROFILES` by its profile name, e.g.
        ``"h100"``: the name the driver reports, the documented granularity, the memory size.

        Keyword arguments are passed on to :meth:`for_device_profile`.

        Raises:
            SpecError: for an unknown profile name (the message lists the known ones).
        """
        try:
            known = DEVICE_PROFILES[profile]
        except (KeyError, TypeError):
            raise SpecError(
                f"unknown device profile {value_text(profile)}; known: {', '.join(DEVICE_PROFILES)}"
            ) from None
        kwargs.setdefault("total_memory", known.total_memory)
        kwargs.setdefault("locality_domains", known.locality_domains)
        return cls.for_device_profile(
            known.name, known.compute_capability, known.sm_count, driver_version, **kwargs
        )

    def sm_facts(self) -> SmFacts:
        """Return self, so facts can be passed wherever a device is accepted."""
        return self

    @property
    def driver_version_text(self) -> str:
        """The driver version as ``"13.1"``."""
        return version_text(self.driver_version)

    def granularity(self, coscheduling: bool = True) -> tuple[int, int]:
        """``(min_partition_size, alignment)`` with or without SM co-scheduling."""
        if coscheduling:
            return (self.min_partition_size, self.alignment)
        return (self.uncoscheduled_min_partition_size, self.uncoscheduled_alignment)

    def group_size(self, coscheduling: bool = True) -> int:
        """SMs in one minimum-size group of ``cuDevSmResourceSplitByCount``: the minimum
        partition size rounded up to the alignment."""
        minimum, alignment = self.granularity(coscheduling)
        return -(-minimum // alignment) * alignment


def resolve_facts(device_or_facts: Any) -> SmFacts:
    """The :class:`SmFacts` of an ``SmFacts`` or of any object with a ``sm_facts()`` method
    (``greenres.Device`` has one).

    Raises:
        TypeError: for anything else (strings such as ``"sim:h100"`` are resolved by the
            CLI, not here).
    """
    if isinstance(device_or_facts, SmFacts):
        return device_or_facts
    method = getattr(device_or_facts, "sm_facts", None)
    if callable(method):
        facts = method()
        if not isinstance(facts, SmFacts):
            raise TypeError(
                f"{type(device_or_facts).__name__}.sm_facts() must return SmFacts "
                f"(got {type(facts).__name__})"
            )
        return facts
    raise TypeError(
        "plan() needs an SmFacts or an object with a sm_facts() method such as "
        f"greenres.Device (got {value_text(device_or_facts)})"
    )
