"""What NCCL needs to stay inside a communication partition (``role="comm"``).

A green context confines the kernels launched on its streams to its SMs, NCCL's included:
a communicator whose collectives are enqueued on a stream of the partition runs there. What
the partition cannot do is tell NCCL how many SMs it has. NCCL runs one CTA (thread block)
per channel, sized to take a whole SM, and by default uses up to 32 of them per kernel
(``ncclConfig_t.maxCTAs``, default 32; ``minCTAs``, default 1; "positive integer up to 32"
in the NCCL documentation of ``ncclConfig_t`` and nccl4py's ``NCCLConfig``). On a partition
of fewer SMs the CTAs beyond its SMs wait for a free SM, so the channels take turns and the
collective runs slower than with fewer channels; more concurrent communicators on the
partition divide its SMs further.

The rule (:func:`nccl_config`): each of ``communicators`` concurrently running
communicators gets ``sm_count // communicators`` SMs, at least 1 and at most 32 (NCCL's
limit); ``maxCTAs`` is that, and so is ``minCTAs``: the SMs of a communication partition
are reserved for NCCL, so a communicator should use all of its share rather than let NCCL's
tuning pick fewer channels for small messages. The same numbers as environment variables
(``NCCL_MIN_CTAS`` and ``NCCL_MAX_CTAS``, NCCL 2.17+) are for launchers that start
processes with one communicator each.

Plain data over a plan: this module never imports the driver, so a launcher can compute the
settings from a plan file with no GPU.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from greenres._validators import value_text
from greenres.errors import SpecError

__all__ = ["NCCL_MAX_CTAS", "NcclConfig", "nccl_config"]

#: The largest ``minCTAs`` and ``maxCTAs`` NCCL accepts ("positive integer up to 32").
NCCL_MAX_CTAS = 32


@frozen
class NcclConfig:
    """The ``ncclConfig_t`` CTA settings that keep one communicator inside its share of a
    communication partition (made by :func:`nccl_config`).

    Attributes:
        partition: the partition's name.
        sm_count: the partition's SMs.
        communicators: how many communicators share them at once.
        min_ctas: ``ncclConfig_t.minCTAs``.
        max_ctas: ``ncclConfig_t.maxCTAs``.
    """

    partition: str
    sm_count: int
    communicators: int
    min_ctas: int
    max_ctas: int

    def config_fields(self) -> dict[str, int]:
        """The fields of ``ncclConfig_t``, spelled as in ``nccl.h``:
        ``{"minCTAs": ..., "maxCTAs": ...}``."""
        return {"minCTAs": self.min_ctas, "maxCTAs": self.max_ctas}

    def keyword_arguments(self) -> dict[str, int]:
        """The same as Python keywords, as nccl4py's ``NCCLConfig(min_ctas=..., max_ctas=...)``
        and PyTorch's ``ProcessGroupNCCL.Options().config.min_ctas`` spell them."""
        return {"min_ctas": self.min_ctas, "max_ctas": self.max_ctas}

    def environment(self) -> dict[str, str]:
        """The equivalent environment variables for a launcher: ``NCCL_MIN_CTAS`` and
        ``NCCL_MAX_CTAS`` (they apply to every communicator of the process that reads them)."""
        return {"NCCL_MIN_CTAS": str(self.min_ctas), "NCCL_MAX_CTAS": str(self.max_ctas)}


def nccl_config(partition: Any, communicators: int = 1) -> NcclConfig:
    """The NCCL CTA settings of a communication partition (module docstring: the rule).

    Args:
        partition: a partition with ``.planned_partition``: the runtime's ``GreenContext``
            or ``plan.ref(name)``; its role must be ``"comm"``.
        communicators: how many communicators run collectives on it at once (1 to its SM
            count).

    Raises:
        SpecError: for a partition whose role is not ``"comm"``, or a bad ``communicators``.
        TypeError: for something that is not a planned partition.
    """
    from greenres.plan import PlannedPartition  # loaded with any plan the caller holds

    planned = getattr(partition, "planned_partition", None)
    if not isinstance(planned, PlannedPartition):
        raise TypeError(
            "nccl_config() needs a planned partition (the runtime's GreenContext or "
            f"plan.ref(name)) (got {value_text(partition)} of type {type(partition).__name__})"
        )
    if planned.role != "comm":
        raise SpecError(
            f"partition {planned.name!r} has role {planned.role!r}: nccl_config() is for "
            "communication partitions; declare it with role='comm'"
        )
    if type(communicators) is not int:
        raise SpecError(
            f"'communicators' must be an int (got {value_text(communicators)} of type "
            f"{type(communicators).__name__})"
        )
    if not 1 <= communicators <= planned.sm_count:
        raise SpecError(
            f"'communicators' must be from 1 to the partition's {planned.sm_count} SMs "
            f"(got {communicators})"
        )
    share = min(planned.sm_count // communicators, NCCL_MAX_CTAS)
    return NcclConfig(
        partition=planned.name,
        sm_count=planned.sm_count,
        communicators=communicators,
        min_ctas=share,
        max_ctas=share,
    )
