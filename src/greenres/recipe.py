"""The one value between a plan and the runtime: what to split, how, and into what.

A :class:`SplitRecipe` says everything ``Layout.create`` builds for one plan (one split of
the device's SMs): the split call and its arguments, and per partition which outputs of
that one split its descriptor takes, the SM count the driver must report for its green
context, its streams and their priority. The runtime reads nothing else of a plan, so what
the planner decided and what the runtime creates cannot drift apart. :class:`Granularity`
is the part of a device's facts a recipe depends on: ``Layout.create`` compares it with the
device before it makes anything.

Plain data: this module never imports the driver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from greenres.facts import SmFacts

__all__ = [
    "GROUP_BACKFILL",
    "GROUP_LOCALITY_DOMAIN_ID",
    "LOCALITY_DOMAIN_ANY",
    "SPLIT_IGNORE_SM_COSCHEDULING",
    "WORKQUEUE_SCOPE_VALUES",
    "Granularity",
    "PartitionRecipe",
    "SplitRecipe",
]

#: ``CU_DEV_SM_RESOURCE_SPLIT_IGNORE_SM_COSCHEDULING`` (12.4), a flag of the split call.
SPLIT_IGNORE_SM_COSCHEDULING = 0x1
#: ``CU_DEV_SM_RESOURCE_GROUP_BACKFILL`` (13.1), a flag of one structured group.
GROUP_BACKFILL = 0x1
#: ``CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID`` (13.4), a flag of one structured group.
GROUP_LOCALITY_DOMAIN_ID = 0x2
#: ``CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID_ANY``: a group's SMs from any domain.
LOCALITY_DOMAIN_ANY = 0xFFFFFFFF
#: ``CUdevWorkqueueConfigScope`` (13.1) of each scope name of a spec.
WORKQUEUE_SCOPE_VALUES = {"device_ctx": 0, "balanced": 1}


@frozen
class Granularity:
    """The facts of a device that decide the SM counts of a split.

    Attributes:
        compute_capability: ``(major, minor)``.
        sm_count: the SMs of the device.
        min_partition_size: the smallest co-scheduled group.
        alignment: co-scheduled group sizes are multiples of this.
        uncoscheduled: ``(min_partition_size, alignment)`` with the
            ``IGNORE_SM_COSCHEDULING`` flag, for recipes that split without co-scheduling;
            None when the recipe does not depend on it (measuring it takes two split
            queries).
        workqueue_max_concurrency: the device's workqueue maximum concurrency, for
            recipes with workqueue configurations (their limits were checked against it);
            None when the recipe has none.
        locality: ``(locality_domain_count, locality_domain_sm_count)`` for recipes that
            place groups in locality domains; None otherwise.
    """

    compute_capability: tuple[int, int]
    sm_count: int
    min_partition_size: int
    alignment: int
    uncoscheduled: tuple[int, int] | None = None
    workqueue_max_concurrency: int | None = None
    locality: tuple[int, int] | None = None

    @classmethod
    def from_facts(
        cls,
        facts: SmFacts,
        *,
        coscheduling: bool = True,
        workqueues: bool = False,
        locality: bool = False,
    ) -> Granularity:
        """The granularity part of :class:`~greenres.facts.SmFacts`: with the
        un-co-scheduled pair only when ``coscheduling`` is False (what a recipe of a spec
        with ``coscheduling=False`` depends on), and the workqueue maximum only with
        ``workqueues``."""
        return cls(
            compute_capability=facts.compute_capability,
            sm_count=facts.sm_count,
            min_partition_size=facts.min_partition_size,
            alignment=facts.alignment,
            uncoscheduled=None
            if coscheduling
            else (facts.uncoscheduled_min_partition_size, facts.uncoscheduled_alignment),
            workqueue_max_concurrency=facts.workqueue_max_concurrency if workqueues else None,
            locality=(facts.locality_domain_count, facts.locality_domain_sm_count)
            if locality
            else None,
        )

    def differences(self, device: Granularity) -> list[str]:
        """Each fact on which ``device`` differs from this one, as
        ``"name: plan X, device Y"`` (empty when a recipe made for this fits ``device``).
        The un-co-scheduled pair is compared only when this one has it.

        Raises:
            TypeError: when ``device`` is not a Granularity.
        """
        if not isinstance(device, Granularity):
            raise TypeError(
                "'device' must be a Granularity, e.g. Granularity.from_facts(device.sm_facts()) "
                f"(got {type(device).__name__})"
            )
        pairs = [
            ("compute_capability", self.compute_capability, device.compute_capability),
            ("sm_count", self.sm_count, device.sm_count),
            ("min_partition_size", self.min_partition_size, device.min_partition_size),
            ("alignment", self.alignment, device.alignment),
        ]
        if self.uncoscheduled is not None:
            theirs = device.uncoscheduled or (None, None)
            pairs += [
                ("uncoscheduled_min_partition_size", self.uncoscheduled[0], theirs[0]),
                ("uncoscheduled_alignment", self.uncoscheduled[1], theirs[1]),
            ]
        if self.workqueue_max_concurrency is not None:
            pairs.append(
                (
                    "workqueue_max_concurrency",
                    self.workqueue_max_concurrency,
                    device.workqueue_max_concurrency,
                )
            )
        if self.locality is not None:
            theirs = device.locality or (None, None)
            pairs += [
                ("locality_domain_count", self.locality[0], theirs[0]),
                ("locality_domain_sm_count", self.locality[1], theirs[1]),
            ]
        out = []
        for name, planned, actual in pairs:
            if planned != actual:
                if name == "compute_capability":
                    planned, actual = _cc_text(planned), _cc_text(actual)
                out.append(f"{name}: plan {planned}, device {actual}")
        return out


def _cc_text(value: object) -> str:
    if isinstance(value, tuple):
        return ".".join(map(str, value))
    return str(value)


@frozen
class PartitionRecipe:
    """One green context of a split.

    Attributes:
        name: the partition's name.
        first_result: the index of its first output in the split's result array.
        result_count: how many consecutive outputs it takes (0 for a partition made of the
            split's remainder only).
        takes_split_remainder: its descriptor also takes the split's remainder output.
        sm_count: the SMs the driver must report for its green context.
        streams: streams created in it (the default stream included).
        priority: the priority of those streams.
        workqueue_scope: the ``CUdevWorkqueueConfigScope`` of the workqueue-config
            resource its descriptor takes (:data:`WORKQUEUE_SCOPE_VALUES`); -1 for none.
        workqueue_limit: that resource's ``wqConcurrencyLimit`` (0 for none).
    """

    name: str
    first_result: int
    result_count: int
    takes_split_remainder: bool
    sm_count: int
    streams: int
    priority: int
    workqueue_scope: int = -1
    workqueue_limit: int = 0

    @property
    def results(self) -> range:
        """Indices into the split's result array."""
        return range(self.first_result, self.first_result + self.result_count)


@frozen
class SplitRecipe:
    """One split of a device's SMs and the green contexts made from it.

    Attributes:
        mechanism: ``"groups"``: one ``cuDevSmResourceSplitByCount`` into ``result_count``
            groups of ``min_count`` SMs; ``"structured"``: one CUDA 13.1
            ``cuDevSmResourceSplit`` with one group per entry of ``group_sm_counts``.
        result_count: outputs of the split's result array.
        min_count: ``"groups"``: the split's ``minCount``; 0 for ``"structured"``.
        split_flags: flags of the split call (:data:`SPLIT_IGNORE_SM_COSCHEDULING`).
        group_sm_counts: ``"structured"``: ``smCount`` of each group; empty for
            ``"groups"``.
        coscheduled_sm_count: ``"structured"``: every group's ``coscheduledSmCount``
            (0: the device's default).
        group_flags: ``"structured"``: every group's flags (:data:`GROUP_BACKFILL`).
        group_localities: ``"structured"``: each group's ``localityDomainId`` (its flags
            then also have :data:`GROUP_LOCALITY_DOMAIN_ID`; :data:`LOCALITY_DOMAIN_ANY`
            for ``"spread"``), -1 for a group without; empty when no group has one.
        partitions: the green contexts, in plan order.
        granularity: the device facts the recipe was made for.
    """

    mechanism: str
    result_count: int
    min_count: int
    split_flags: int
    group_sm_counts: tuple[int, ...]
    coscheduled_sm_count: int
    group_flags: int
    partitions: tuple[PartitionRecipe, ...]
    granularity: Granularity
    group_localities: tuple[int, ...] = ()
