"""greenres.distributed without torch: the ranks of a job are threads here, exchanging
through an all-gather made of a barrier (the ``exchange=`` hook), on the simulated
2xh100 (two ranks, one device each) or on device facts alone. The real thing,
torchrun over gloo, is tests/distributed/test_torchrun.py."""

from __future__ import annotations

import pickle
import re
import threading

import pytest

import greenres as gr
import greenres.distributed as grd
from greenres.errors import LayoutMismatchError, PlanError, UsageError
from greenres.facts import SmFacts
from greenres.spec import Partition, PartitionSpec

from support.rthelpers import live

H100 = SmFacts.for_known_device("h100")
A100 = SmFacts.for_known_device("a100")
SERVING = PartitionSpec(
    (Partition("decode", sms=64), Partition("prefill", sms=32), Partition("rest")),
    remainder="rest",
)
OTHER = PartitionSpec(
    (Partition("decode", sms=48), Partition("prefill", sms=32), Partition("rest")),
    remainder="rest",
)


class Job:
    """``size`` ranks in threads; ``exchanges[r]`` is rank r's all-gather."""

    def __init__(self, size: int):
        self.size = size
        self._slots: list = [None] * size
        self._barrier = threading.Barrier(size, timeout=30)
        self.exchanges = [self._exchange_of(rank) for rank in range(size)]

    def _exchange_of(self, rank: int):
        def exchange(value):
            self._slots[rank] = pickle.loads(pickle.dumps(value))  # as a wire would
            self._barrier.wait()
            gathered = list(self._slots)
            self._barrier.wait()  # nobody writes the next round before all have read
            return gathered

        return exchange

    def run(self, work):
        """``work(rank, exchange)`` on every rank at once; each rank's result or error."""
        outcomes: list = [None] * self.size

        def main(rank):
            try:
                outcomes[rank] = ("ok", work(rank, self.exchanges[rank]))
            except BaseException as error:  # the test looks at every rank's
                outcomes[rank] = ("raised", error)

        threads = [threading.Thread(target=main, args=(r,)) for r in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), "a rank hung"
        return outcomes


def errors_of(outcomes):
    assert all(state == "raised" for state, _ in outcomes), outcomes
    return [error for _, error in outcomes]


def test_every_rank_plans_the_same_and_creates_on_its_device(sim):
    before = live(sim)
    job = Job(2)

    def work(rank, exchange):
        layout = grd.create_layout(SERVING, exchange=exchange, device=gr.Device(rank))
        return layout

    outcomes = job.run(work)
    layouts = [value for state, value in outcomes if state == "ok"]
    assert len(layouts) == 2, outcomes
    try:
        assert [layout.device.ordinal for layout in layouts] == [0, 1]
        assert layouts[0].plan == layouts[1].plan
        assert [p.sm_count for p in layouts[1]] == [64, 32, 36]
    finally:
        for layout in layouts:
            layout.close()
    assert live(sim) == before


def test_a_rank_with_another_spec_fails_every_rank_and_names_it(sim):
    before = live(sim)
    job = Job(2)
    outcomes = job.run(
        lambda rank, ex: grd.create_layout(
            OTHER if rank == 1 else SERVING, exchange=ex, device=gr.Device(rank)
        )
    )
    errors = errors_of(outcomes)
    assert all(type(e) is LayoutMismatchError for e in errors), errors
    message = str(errors[0])
    assert str(errors[1]) == message  # every rank says the same
    plan0, plan1 = SERVING.plan(H100), OTHER.plan(H100)
    assert f"rank 0 planned {plan0.fingerprint}; rank 1 planned {plan1.fingerprint}" in message
    assert "partition 'decode': 48 SMs on rank 1, 64 SMs on rank 0" in message
    assert "partition 'rest': 52 SMs on rank 1, 36 SMs on rank 0" in message
    assert errors[0].fingerprints == [plan0.fingerprint, plan1.fingerprint]
    assert errors[0].ranks == [[0], [1]]
    assert live(sim) == before  # checked before anything was created


def test_ranks_are_grouped_by_plan_in_the_message():
    job = Job(4)
    outcomes = job.run(
        lambda rank, ex: grd.plan_for_rank(OTHER if rank == 2 else SERVING, H100, exchange=ex)
    )
    message = str(errors_of(outcomes)[3])
    assert "ranks 0, 1, 3 planned" in message and "rank 2 planned" in message
    assert "partition 'decode': 48 SMs on rank 2, 64 SMs on ranks 0, 1, 3" in message


def test_another_device_is_named():
    job = Job(2)
    outcomes = job.run(
        lambda rank, ex: grd.plan_for_rank(SERVING, A100 if rank else H100, exchange=ex)
    )
    message = str(errors_of(outcomes)[0])
    assert f"device: {A100.device_name} (108 SMs) on rank 1, " in message
    assert f"{H100.device_name} (132 SMs) on rank 0" in message


def test_a_rank_whose_spec_does_not_fit_fails_alone_and_the_others_name_it():
    job = Job(3)
    too_big = PartitionSpec((Partition("x", sms=1000),))
    outcomes = job.run(
        lambda rank, ex: grd.plan_for_rank(too_big if rank == 1 else SERVING, H100, exchange=ex)
    )
    errors = errors_of(outcomes)
    assert type(errors[1]) is PlanError
    for other in (errors[0], errors[2]):
        assert type(other) is UsageError
        assert str(other).startswith("rank 1 could not plan the layout (rank 1: PlanError:")


def test_broadcast_gives_every_rank_rank_zeros_plan(sim):
    before = live(sim)
    job = Job(2)
    outcomes = job.run(
        lambda rank, ex: grd.create_layout(
            SERVING if rank == 0 else None, broadcast=True, exchange=ex, device=gr.Device(rank)
        )
    )
    layouts = [value for state, value in outcomes if state == "ok"]
    assert len(layouts) == 2, outcomes
    try:
        assert layouts[1].plan == layouts[0].plan == SERVING.plan(gr.Device(0))
    finally:
        for layout in layouts:
            layout.close()
    assert live(sim) == before


def test_broadcast_from_another_rank_of_a_plan_file(tmp_path):
    from greenres.serialize import dump_plan, load_plan

    path = tmp_path / "job.plan.json"
    dump_plan(OTHER.plan(H100), path)
    job = Job(3)
    outcomes = job.run(
        lambda rank, ex: grd.plan_for_rank(
            load_plan(path) if rank == 2 else SERVING, H100, broadcast=True, src=2, exchange=ex
        )
    )
    plans = [value for state, value in outcomes if state == "ok"]
    assert plans == [OTHER.plan(H100)] * 3, outcomes


def test_broadcast_of_a_plan_that_cannot_be_made():
    job = Job(2)
    too_big = PartitionSpec((Partition("x", sms=1000),))
    outcomes = job.run(
        lambda rank, ex: grd.plan_for_rank(too_big, H100, broadcast=True, exchange=ex)
    )
    errors = errors_of(outcomes)
    assert type(errors[0]) is PlanError
    assert type(errors[1]) is UsageError
    assert "rank 0 could not make the plan rank 0 broadcasts" in str(errors[1])


def test_broadcast_from_a_rank_the_job_does_not_have():
    job = Job(2)
    errors = errors_of(
        job.run(
            lambda rank, ex: grd.plan_for_rank(SERVING, H100, broadcast=True, src=2, exchange=ex)
        )
    )
    assert all("'src' must be a rank of the job, 0..1 (got 2)" in str(e) for e in errors)


def test_a_failed_create_on_one_rank_closes_every_ranks_layout(sim):
    """Fault injection: the second cuGreenCtxCreate of the job fails (on whichever rank
    makes it); that rank raises the DriverError, the other closes its layout and names it."""
    before = live(sim)
    sim.inject_fault("cuGreenCtxCreate", "CUDA_ERROR_OUT_OF_MEMORY", nth=2)
    job = Job(2)
    outcomes = job.run(
        lambda rank, ex: grd.create_layout(SERVING, exchange=ex, device=gr.Device(rank))
    )
    errors = errors_of(outcomes)
    failed = [r for r, e in enumerate(errors) if isinstance(e, gr.DriverError)]
    assert len(failed) == 1, errors
    other = errors[1 - failed[0]]
    assert type(other) is UsageError
    assert f"rank {failed[0]} could not create the layout" in str(other)
    assert "CUDA_ERROR_OUT_OF_MEMORY" in str(other)
    assert live(sim) == before


def test_check_same_plan_returns_the_fingerprint_and_checks_its_argument():
    job = Job(2)
    plan = SERVING.plan(H100)
    outcomes = job.run(lambda rank, ex: grd.check_same_plan(plan, exchange=ex))
    assert outcomes == [("ok", plan.fingerprint)] * 2
    with pytest.raises(TypeError, match="'plan' must be a greenres Plan or ModalPlan"):
        grd.check_same_plan(SERVING, exchange=lambda x: [x])


def test_modes_are_compared_mode_by_mode():
    modal_a = gr.ModalSpec({"x": SERVING, "y": OTHER}).plan(H100)
    modal_b = gr.ModalSpec({"x": SERVING, "y": SERVING}).plan(H100)
    job = Job(2)
    outcomes = job.run(
        lambda rank, ex: grd.check_same_plan(modal_b if rank else modal_a, exchange=ex)
    )
    message = str(errors_of(outcomes)[0])
    assert "mode 'y': partition 'decode': 64 SMs on rank 1, 48 SMs on rank 0" in message
    assert "mode 'x'" not in message


def test_the_error_survives_pickling():
    error = LayoutMismatchError("m", fingerprints=["a", "b"], ranks=[[0], [1]])
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.fingerprints, again.ranks) == ("m", ["a", "b"], [[0], [1]])
    assert isinstance(again, PlanError) and isinstance(again, ValueError)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 0),
        ({"LOCAL_RANK": "3"}, 3),
        ({"SLURM_LOCALID": "2"}, 2),
        ({"OMPI_COMM_WORLD_LOCAL_RANK": "1"}, 1),
        ({"LOCAL_RANK": "1", "SLURM_LOCALID": "5"}, 1),
    ],
)
def test_local_rank(environ, expected):
    assert grd.local_rank(environ) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOCAL_RANK": "x"}, "LOCAL_RANK must be an int (got 'x')"),
        ({"LOCAL_RANK": "-1"}, "LOCAL_RANK must be >= 0 (got -1)"),
    ],
)
def test_local_rank_refuses(environ, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        grd.local_rank(environ)


def test_local_device():
    assert grd.local_device({"LOCAL_RANK": "1"}).ordinal == 1
    with pytest.raises(UsageError, match=r"local rank 2 needs device 2, but the driver reports 2"):
        grd.local_device({"LOCAL_RANK": "2"})


def test_without_an_exchange_torch_distributed_is_needed():
    try:
        import torch.distributed  # noqa: F401
    except ImportError:
        message = "needs torch.distributed"
    else:
        message = "torch.distributed is not initialized"
    with pytest.raises(UsageError, match=message):
        grd.check_same_plan(SERVING.plan(H100))
