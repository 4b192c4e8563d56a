"""Per-rank layouts for multi-GPU jobs launched by torchrun (or any launcher that sets
``LOCAL_RANK``): every rank creates the same layout on its own device, and knows it.

::

    import torch.distributed as dist
    import greenres.distributed as grd

    dist.init_process_group("nccl")          # or "gloo"
    layout = grd.create_layout("serving.toml")   # on device LOCAL_RANK, checked job-wide

Each rank plans the spec on its local device; the ranks then all-gather their plans'
fingerprints (and what the plans are made of) over the job's process group, and every rank
raises :class:`~greenres.errors.LayoutMismatchError` naming the ranks and the difference if
any rank planned another layout (another spec, another device, a device with other
granularity). With ``broadcast=True`` rank 0's plan (of a spec, a Plan or a plan file) is
sent to every rank and each creates exactly it. Creation is checked job-wide too: if any
rank fails to create its layout, every rank closes its own and raises, so no rank goes on
into collectives with a layout its peers do not have.

torch is optional: the exchange is ``torch.distributed.all_gather_object`` over ``group``
(the default process group) unless ``exchange`` is given, a function taking this rank's
picklable object and returning every rank's, in rank order (MPI's ``allgather``, a test's
threads). This module imports neither torch nor the runtime until it is called.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from greenres.errors import LayoutMismatchError, UsageError

__all__ = [
    "Exchange",
    "check_same_plan",
    "create_layout",
    "local_device",
    "local_rank",
    "plan_for_rank",
]

#: ``exchange(obj) -> [obj of rank 0, obj of rank 1, ...]``: an all-gather over the job.
Exchange = Callable[[Any], Sequence[Any]]


def local_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank on its node: ``LOCAL_RANK`` (torchrun, torch.distributed.launch,
    Slurm via ``SLURM_LOCALID``, Open MPI's ``OMPI_COMM_WORLD_LOCAL_RANK``), 0 when the
    launcher set none of them.

    Raises:
        UsageError: when the variable is not a non-negative int.
    """
    env = os.environ if environ is None else environ
    for name in ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"):
        value = env.get(name)
        if value is None:
            continue
        try:
            rank = int(value)
        except ValueError:
            raise UsageError(f"{name} must be an int (got {value!r})") from None
        if rank < 0:
            raise UsageError(f"{name} must be >= 0 (got {rank})")
        return rank
    return 0


def local_device(environ: Mapping[str, str] | None = None):
    """The ``greenres.Device`` of this rank: device ``local_rank()`` of the driver.

    Raises:
        UsageError: when the node has fewer devices than the local rank needs (say, more
            processes per node than GPUs, or ``CUDA_VISIBLE_DEVICES`` narrowing them).
    """
    import greenres

    rank = local_rank(environ)
    count = greenres.device_count()
    if rank >= count:
        raise UsageError(
            f"local rank {rank} needs device {rank}, but the driver reports {count} "
            f"device(s) (one process per device: --nproc-per-node <= {count})"
        )
    return greenres.Device(rank)


def _torch_exchange(group: Any) -> Exchange:
    try:
        import torch.distributed as dist
    except ImportError:
        raise UsageError(
            "greenres.distributed needs torch.distributed (pip install torch) or an "
            "exchange= function (an all-gather over the job)"
        ) from None
    if not dist.is_available() or not dist.is_initialized():
        raise UsageError(
            "torch.distributed is not initialized: call "
            "torch.distributed.init_process_group() first, or pass exchange="
        )

    def exchange(value: Any) -> list[Any]:
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, value, group=group)
        return gathered

    return exchange


def _plans_by_mode(plan: Any) -> dict[str | None, Any]:
    from greenres.plan import ModalPlan, Plan

    if isinstance(plan, ModalPlan):
        return dict(plan.plans)
    if isinstance(plan, Plan):
        return {None: plan}
    raise TypeError(f"'plan' must be a greenres Plan or ModalPlan (got {type(plan).__name__})")


def _summary(plan: Any) -> dict[str, str]:
    """What a plan is made of, as flat ``what -> value`` text: what the mismatch message
    compares between ranks."""
    out: dict[str, str] = {}
    for mode, one in _plans_by_mode(plan).items():
        at = "" if mode is None else f"mode {mode!r}: "
        facts = one.facts
        out[f"{at}device"] = f"{facts.device_name} ({facts.sm_count} SMs)"
        out[f"{at}granularity"] = (
            f"{one.mechanism}, groups of {one.group_size}, minimum {one.min_partition_size}, "
            f"alignment {one.alignment}, coscheduling {one.spec.coscheduling}"
        )
        out[f"{at}partitions"] = ", ".join(one.names)
        for p in one.partitions:
            out[f"{at}partition {p.name!r}"] = f"{p.sm_count} SMs"
        out[f"{at}remainder"] = f"{one.spec.remainder} ({one.remainder_sm_count} SMs unused)"
    out["modes"] = ", ".join("-" if m is None else m for m in _plans_by_mode(plan))
    return out


def _describe_ranks(ranks: Sequence[int]) -> str:
    return f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))


def _mismatch(gathered: Sequence[tuple[str, dict[str, str]]]) -> LayoutMismatchError:
    by_fingerprint: dict[str, list[int]] = {}
    for rank, (fingerprint, _) in enumerate(gathered):
        by_fingerprint.setdefault(fingerprint, []).append(rank)
    groups = sorted(by_fingerprint.items(), key=lambda item: item[1][0])
    reference_ranks = groups[0][1]
    reference = gathered[reference_ranks[0]][1]
    lines = [
        "the ranks planned different layouts: "
        + "; ".join(f"{_describe_ranks(r)} planned {f}" for f, r in groups)
    ]
    for fingerprint, ranks in groups[1:]:
        theirs = gathered[ranks[0]][1]
        for what in [*reference, *(k for k in theirs if k not in reference)]:
            mine, other = reference.get(what, "absent"), theirs.get(what, "absent")
            if mine != other:
                lines.append(
                    f"  {what}: {other} on {_describe_ranks(ranks)}, "
                    f"{mine} on {_describe_ranks(reference_ranks)}"
                )
        if len(lines) == 1:  # the summary does not show it: say what differs at least
            lines.append(f"  the plans' fingerprints differ ({fingerprint})")
    return LayoutMismatchError(
        "\n".join(lines),
        fingerprints=[f for f, _ in gathered],
        ranks=[r for _, r in groups],
    )


def _collective(exchange: Exchange, doing: str, make: Callable[[], tuple[Any, Any]]):
    """Run ``make()`` (giving this rank's value and what to send) on every rank and
    exchange the outcomes, so a rank that fails cannot leave the others waiting in a later
    round: the failing ranks raise their own error, the others :class:`UsageError` naming
    them. Returns this rank's value and every rank's payload, in rank order."""
    try:
        local, payload = make()
        failure = None
    except Exception as error:  # reported to every rank below, then raised here
        failure, local, payload = error, None, None
    sent = (
        ("ok", payload) if failure is None else ("failed", f"{type(failure).__name__}: {failure}")
    )
    gathered = [tuple(item) for item in exchange(sent)]
    if failure is not None:
        raise failure
    failed = [rank for rank, (state, _) in enumerate(gathered) if state != "ok"]
    if failed:
        details = "; ".join(f"rank {rank}: {gathered[rank][1]}" for rank in failed)
        raise UsageError(f"{_describe_ranks(failed)} could not {doing} ({details})")
    return local, [payload for _, payload in gathered]


def _check_gathered(gathered: Sequence[Any]) -> None:
    gathered = [tuple(item) for item in gathered]
    if len({fingerprint for fingerprint, _ in gathered}) != 1:
        raise _mismatch(gathered)


def check_same_plan(plan: Any, *, group: Any = None, exchange: Exchange | None = None) -> str:
    """Check that every rank of the job planned this layout; return its fingerprint.

    Collective: every rank of ``group`` must call it. ``exchange``: see the module.

    Raises:
        LayoutMismatchError: on every rank, when any two ranks' plans differ; the message
            names the ranks of each plan and what differs (device, granularity, the
            partitions and their SMs, per mode).
        UsageError: when torch.distributed is needed and not initialized.
    """
    _plans_by_mode(plan)  # the type first: a TypeError before any rank waits on this one
    exchange = exchange if exchange is not None else _torch_exchange(group)
    _check_gathered(exchange((plan.fingerprint, _summary(plan))))
    return plan.fingerprint


def _plan_on(what: Any, device: Any):
    from greenres.plan import ModalPlan, Plan
    from greenres.serialize import load_spec
    from greenres.spec import ModalSpec, PartitionSpec

    if isinstance(what, (str, Path)):
        what = load_spec(what)
    if isinstance(what, (Plan, ModalPlan)):
        return what
    if isinstance(what, (PartitionSpec, ModalSpec)):
        return what.plan(device)  # a Device or SmFacts
    raise TypeError(
        "'spec' must be a PartitionSpec, a ModalSpec, a spec file's path, a Plan or a "
        f"ModalPlan (got {type(what).__name__})"
    )


def _rank_of(exchange: Exchange, src: int) -> int:
    """This process's rank as the exchange orders ranks (one extra round: an exchange
    function need not know ranks); checks that ``src`` is one of them."""
    token = os.urandom(16).hex()
    tokens = list(exchange(token))
    if not 0 <= src < len(tokens):
        raise UsageError(f"'src' must be a rank of the job, 0..{len(tokens) - 1} (got {src})")
    return tokens.index(token)


def plan_for_rank(
    spec: Any,
    device: Any = None,
    *,
    broadcast: bool = False,
    src: int = 0,
    group: Any = None,
    exchange: Exchange | None = None,
):
    """This rank's plan, checked job-wide (as :func:`check_same_plan`). Collective.

    ``spec``: a PartitionSpec or ModalSpec (planned on ``device``), the path of a spec
    file, or a Plan/ModalPlan (say from :func:`greenres.load_plan`). ``device``: a
    ``greenres.Device`` or ``SmFacts`` (default: :func:`local_device`).

    ``broadcast=True``: rank ``src``'s plan is sent to every rank as a plan file's text and
    read back with :func:`greenres.serialize.loads_plan` (which re-plans and compares it);
    the other ranks' ``spec`` is not used and may be None. Every rank must pass the same
    ``broadcast`` and ``src``: they decide how many exchanges the call makes.

    Raises:
        LayoutMismatchError: on every rank, when the ranks' plans differ.
        PlanError, SpecError, OSError, ...: on a rank whose spec cannot be read or planned
            on its device; the other ranks raise UsageError naming that rank.
    """
    from greenres.serialize import dumps_plan, loads_plan

    exchange = exchange if exchange is not None else _torch_exchange(group)
    if device is None:
        device = local_device()
    if broadcast:
        is_src = _rank_of(exchange, src) == src

        def make_text():
            text = dumps_plan(_plan_on(spec, device)) if is_src else None
            return text, text

        _, texts = _collective(exchange, f"make the plan rank {src} broadcasts", make_text)

        def read_text():
            plan = loads_plan(texts[src], "json", source=f"<plan of rank {src}>")
            return plan, (plan.fingerprint, _summary(plan))

        plan, gathered = _collective(exchange, f"read rank {src}'s plan", read_text)
    else:

        def make_plan():
            plan = _plan_on(spec, device)
            return plan, (plan.fingerprint, _summary(plan))

        plan, gathered = _collective(exchange, "plan the layout", make_plan)
    _check_gathered(gathered)
    return plan


def create_layout(
    spec: Any,
    *,
    broadcast: bool = False,
    src: int = 0,
    group: Any = None,
    exchange: Exchange | None = None,
    device: Any = None,
    name: str | None = None,
    nvtx: bool | None = None,
):
    """Plan ``spec`` for this rank (:func:`plan_for_rank`), check that every rank planned
    the same layout, and create it on this rank's device (default :func:`local_device`).

    Collective. If any rank fails to create its layout (a driver error, a plan made for
    another device's granularity), every rank closes the layout it made and raises: the
    failing ranks their own error, the others :class:`~greenres.errors.UsageError` naming
    the failing ranks.
    """
    import greenres

    exchange = exchange if exchange is not None else _torch_exchange(group)
    if device is None:
        device = local_device()
    plan = plan_for_rank(spec, device, broadcast=broadcast, src=src, exchange=exchange)
    made = []

    def make_layout():
        made.append(greenres.Layout.create(plan, device=device, name=name, nvtx=nvtx))
        return made[0], None

    try:
        layout, _ = _collective(exchange, "create the layout", make_layout)
    except BaseException:
        for layout in made:  # another rank failed: no rank keeps a layout
            layout.close()
        raise
    return layout
