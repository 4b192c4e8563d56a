"""Plans made elsewhere: a plan file creates exactly its partitions, and a plan made for
other SMs or another granularity is refused before any driver object exists."""

from __future__ import annotations

import attrs
import pytest

from greenres import Layout, PlanError
from greenres.serialize import dump_plan, load_plan
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.rthelpers import SIM, facts, layout_of, live

pytestmark = pytest.mark.gpu

SPEC = PartitionSpec([Partition("decode", share=0.5), Partition("prefill")], remainder="own")


@pytest.mark.parametrize("format", ["json", "toml"])
def test_a_plan_file_creates_what_it_shows(tmp_path, format):
    plan = SPEC.plan(facts())
    path = tmp_path / f"plan.{format}"
    dump_plan(plan, path)
    loaded = load_plan(path)
    with layout_of(loaded) as layout:
        assert [(p.name, p.sm_count) for p in layout] == [
            (p.name, p.sm_count) for p in plan.partitions
        ]
        assert layout.plan == plan


@pytest.mark.sim_only
def test_a_plan_made_with_no_gpu_from_a_profile_fits_the_same_device():
    from greenres.facts import SmFacts

    offline = SPEC.plan(SmFacts.for_known_device("h100", driver_version=12080))
    with layout_of(offline) as layout:
        assert [p.sm_count for p in layout] == [p.sm_count for p in offline.partitions]


@pytest.mark.parametrize(
    "name, other",
    [
        ("sm_count", lambda n: n + 8),
        ("min_partition_size", lambda n: n + 1),
        ("alignment", lambda n: n + 1),
        ("compute_capability", lambda cc: (cc[0] + 1, cc[1])),
    ],
)
def test_a_plan_for_other_sms_is_refused_before_anything_is_made(name, other):
    here = facts()
    elsewhere = attrs.evolve(here, device_name="Another GPU", **{name: other(getattr(here, name))})
    plan = PartitionSpec([Partition("a")]).plan(elsewhere)
    before = _live()
    with pytest.raises(PlanError, match=f"made for Another GPU, not for device 0 .*{name}: plan"):
        Layout.create(plan)
    assert _live() == before


def test_coscheduling_off_also_compares_the_finer_granularity():
    here = facts()
    loose = attrs.evolve(
        here, uncoscheduled_min_partition_size=here.uncoscheduled_min_partition_size + 2
    )
    tight_spec = PartitionSpec([Partition("a", sms=loose.min_partition_size * 2)])
    with layout_of(tight_spec.plan(loose)):
        pass  # co-scheduled: the finer granularity does not matter
    loose_spec = attrs.evolve(tight_spec, coscheduling=False)
    with pytest.raises(PlanError, match="uncoscheduled_min_partition_size: plan"):
        Layout.create(loose_spec.plan(loose))


def test_a_modal_plan_names_the_mode():
    elsewhere = attrs.evolve(facts(), sm_count=facts().sm_count + 16)
    modal = ModalSpec({"x": PartitionSpec([Partition("a")])}).plan(elsewhere)
    with pytest.raises(PlanError, match="mode 'x' of the plan was made for"):
        Layout.create(modal)


def _live():
    if not SIM:
        return None
    import greenres.sim as sim

    return live(sim)
