"""Equal values behave the same: equal specs plan to equal plans with equal fingerprints
and serialise to the same text; equal facts, schemas and plans likewise.

Each property draws a value and a second one made from it in a way that may or may not
keep it equal (rebuilt, round-tripped, reordered, respelled), or two small independent
values that are often equal; whenever the two compare equal, everything the library does
with them must agree.
"""

from __future__ import annotations

import copy
import json
import pickle
import unicodedata

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import (
    IsolationSchema,
    SelectedCompileContext,
    SelectedRuntimeContext,
    isolation_context,
)
from greenres.plan import Plan
from greenres.serialize import (
    dumps_plan,
    dumps_spec,
    facts_to_dict,
    plan_to_dict,
    schema_to_dict,
    spec_from_dict,
    spec_to_dict,
)
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.strategies import facts, isolation_schemas, modal_specs, partition_specs

H100 = SmFacts.for_known_device("h100")
H100_OLD = SmFacts.for_known_device("h100", driver_version=12080)
VERSIONS = {"bindings_version": "13.5.0", "greenres_version": "0.1.0"}


def _outcome(value, device):
    try:
        return value.plan(device)
    except (PlanError, DriverTooOldError) as error:
        return type(error), str(error)


def _context(schema, partition):
    return isolation_context(schema, partition, environ={}, versions=VERSIONS)


def assert_same_spec_behaviour(a, b):
    assert hash(a) == hash(b)
    assert spec_to_dict(a) == spec_to_dict(b)
    for format in ("toml", "json"):
        assert dumps_spec(a, format) == dumps_spec(b, format)
    for device in (H100, H100_OLD):
        plan_a, plan_b = _outcome(a, device), _outcome(b, device)
        assert plan_a == plan_b
        if not isinstance(plan_a, tuple):
            assert_same_plan_behaviour(plan_a, plan_b)


def assert_same_plan_behaviour(a, b):
    assert hash(a) == hash(b)
    assert a.fingerprint == b.fingerprint
    assert a.explain() == b.explain()
    assert plan_to_dict(a) == plan_to_dict(b)
    assert dumps_plan(a) == dumps_plan(b)
    if isinstance(a, Plan):
        assert a.recipe == b.recipe
        for name in a.names:
            context = isolation_context(
                IsolationSchema(), a.ref(name), environ={}, versions=VERSIONS
            )
            assert context == isolation_context(
                IsolationSchema(), b.ref(name), environ={}, versions=VERSIONS
            )
    else:
        assert a.recipes == b.recipes
        assert a.default == b.default


# --------------------------------------------------------------- rewrites of one value


def _rebuilt_partition(p: Partition) -> Partition:
    return Partition(**attrs.asdict(p))


def _respelled_spec(spec: PartitionSpec, how: str) -> PartitionSpec:
    if how == "generator":
        return PartitionSpec(
            (_rebuilt_partition(p) for p in spec.partitions),
            remainder=spec.remainder,
            coscheduling=spec.coscheduling,
            backfill=spec.backfill,
        )
    if how == "json":
        return spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    if how == "reversed":
        return attrs.evolve(spec, partitions=tuple(reversed(spec.partitions)))
    if how == "decomposed names":
        return PartitionSpec(
            [attrs.evolve(p, name=unicodedata.normalize("NFD", p.name)) for p in spec],
            remainder=unicodedata.normalize("NFD", spec.remainder),
            coscheduling=spec.coscheduling,
            backfill=spec.backfill,
        )
    if how == "numpy integers":
        numpy = pytest.importorskip("numpy")
        return attrs.evolve(
            spec,
            partitions=[
                attrs.evolve(
                    p,
                    sms=None if p.sms is None else numpy.int64(p.sms),
                    min_sms=None if p.min_sms is None else numpy.int32(p.min_sms),
                    streams=numpy.uint16(p.streams),
                    priority=numpy.int8(p.priority),
                )
                for p in spec
            ],
        )
    if how == "integer shares":
        return attrs.evolve(
            spec,
            partitions=[
                attrs.evolve(p, share=int(p.share)) if p.share == 1.0 else p
                for p in spec.partitions
            ],
        )
    return copy.deepcopy(spec) if how == "deepcopy" else pickle.loads(pickle.dumps(spec))


SPEC_REWRITES = st.sampled_from(
    [
        "generator",
        "json",
        "reversed",
        "decomposed names",
        "numpy integers",
        "integer shares",
        "deepcopy",
        "pickle",
    ]
)


@given(spec=partition_specs(small=True, backfill=None), how=SPEC_REWRITES)
def test_equal_partition_specs_behave_the_same(spec, how):
    other = _respelled_spec(spec, how)
    if other == spec:
        assert_same_spec_behaviour(spec, other)


def _respelled_modal(spec: ModalSpec, how: str) -> ModalSpec:
    if how == "reversed":
        return ModalSpec(dict(reversed(list(spec.modes.items()))), default=spec.default)
    if how == "decomposed names":
        return ModalSpec(
            {unicodedata.normalize("NFD", m): s for m, s in spec.modes.items()},
            default=None if spec.default is None else unicodedata.normalize("NFD", spec.default),
        )
    if how == "explicit default":
        return ModalSpec(dict(spec.modes), default=spec.default_mode)
    if how == "json":
        return spec_from_dict(json.loads(json.dumps(spec_to_dict(spec))))
    rebuilt = {mode: _respelled_spec(s, "generator") for mode, s in spec.modes.items()}
    return ModalSpec(rebuilt, default=spec.default)


@given(
    spec=modal_specs(small=True),
    how=st.sampled_from(["reversed", "decomposed names", "explicit default", "json", "rebuilt"]),
)
def test_equal_modal_specs_behave_the_same(spec, how):
    other = _respelled_modal(spec, how)
    if other == spec:
        assert_same_spec_behaviour(spec, other)


# --------------------------------------------------------------- small independent values


@st.composite
def _valid(draw, make, *strategies):
    """``make(*drawn)``, drawn again until the values are valid (a name twice, shares over
    1, a default that names no mode are refused by the classes)."""
    while True:
        try:
            return make(*(draw(s) for s in strategies))
        except SpecError:
            continue


_small_partitions = st.builds(
    Partition,
    name=st.sampled_from(["a", "b"]),
    share=st.sampled_from([None, 0.5, 1, 1.0]),
    streams=st.sampled_from([1, 2]),
)
_small_specs = _valid(
    lambda parts, remainder: PartitionSpec(parts, remainder=remainder),
    st.lists(_small_partitions, min_size=1, max_size=2),
    st.sampled_from(["drop", "own"]),
)
_small_modal = _valid(
    lambda modes, default: ModalSpec(modes, default=default),
    st.dictionaries(st.sampled_from(["x", "y"]), _small_specs, min_size=1),
    st.sampled_from([None, "x"]),
)


@given(a=_small_specs, b=_small_specs)
def test_independent_equal_partition_specs_behave_the_same(a, b):
    if a == b:
        assert_same_spec_behaviour(a, b)


@given(a=_small_modal, b=_small_modal)
def test_independent_equal_modal_specs_behave_the_same(a, b):
    if a == b:
        assert_same_spec_behaviour(a, b)


@given(a=_small_partitions, b=_small_partitions)
def test_equal_partitions_behave_the_same(a, b):
    if a == b:
        assert hash(a) == hash(b) and a.request == b.request
        assert_same_spec_behaviour(PartitionSpec([a]), PartitionSpec([b]))


# --------------------------------------------------------------- facts, schemas, plans


@given(device=facts(), as_list=st.booleans(), spec=partition_specs(small=True))
def test_equal_facts_behave_the_same(device, as_list, spec):
    data = facts_to_dict(device)
    cc = data["compute_capability"]
    other = SmFacts(**{**data, "compute_capability": cc if as_list else tuple(cc)})
    assert other == device
    assert hash(other) == hash(device)
    assert facts_to_dict(other) == data
    assert _outcome(spec, other) == _outcome(spec, device)


_all_true_runtime = st.sampled_from([True, SelectedRuntimeContext()])
_all_true_compile = st.sampled_from([True, SelectedCompileContext()])


_schemas = isolation_schemas | st.builds(IsolationSchema, _all_true_runtime, _all_true_compile)


@given(a=_schemas, b=_schemas)
def test_equal_schemas_behave_the_same(a, b):
    if a == b:
        assert hash(a) == hash(b)
        assert schema_to_dict(a) == schema_to_dict(b)
        assert dumps_spec(a) == dumps_spec(b)
        plan = PartitionSpec([Partition("a", sms=8)]).plan(H100)
        assert _context(a, plan.ref("a")) == _context(b, plan.ref("a"))


@given(spec=partition_specs(small=True, backfill=None), how=SPEC_REWRITES, device=facts())
def test_equal_plans_behave_the_same(spec, how, device):
    a, b = _outcome(spec, device), _outcome(_respelled_spec(spec, how), device)
    if not isinstance(a, tuple) and a == b:
        assert_same_plan_behaviour(a, b)


@given(
    spec=modal_specs(small=True),
    how=st.sampled_from(["reversed", "decomposed names", "explicit default", "json", "rebuilt"]),
)
def test_equal_modal_plans_behave_the_same(spec, how):
    a, b = _outcome(spec, H100), _outcome(_respelled_modal(spec, how), H100)
    if not isinstance(a, tuple) and a == b:
        assert_same_plan_behaviour(a, b)
