"""Any value at all, given to any declarative constructor or reader, is accepted or refused
with one of the documented exceptions (docs/errors.md): SpecError, PlanError, TypeError or
DriverTooOldError. Never AttributeError, KeyError, IndexError, OverflowError,
RecursionError or a raw ValueError from inside."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greenres.errors import DriverTooOldError, PlanError, SpecError
from greenres.facts import SmFacts
from greenres.isolation import (
    IsolationSchema,
    SelectedCompileContext,
    SelectedRuntimeContext,
    isolation_context,
    isolation_key,
)
from greenres.plan import make_modal_plan, make_plan, plan_counts
from greenres.serialize import (
    dumps_plan,
    dumps_spec,
    facts_from_dict,
    load_plan,
    load_schema,
    load_spec,
    loads_plan,
    loads_schema,
    loads_spec,
    plan_from_dict,
    plan_to_dict,
    schema_from_dict,
    spec_from_dict,
    spec_to_dict,
)
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.strategies import facts, modal_specs, partition_specs

DOCUMENTED = (SpecError, PlanError, TypeError, DriverTooOldError)
H100 = SmFacts.for_known_device("h100")


class _DeepList(list):
    """A list nested ``depth`` deep, shown briefly: hypothesis prints the values of a
    failing example, and its printer recurses."""

    def __repr__(self) -> str:
        return f"<list nested {self.depth} deep>"


class _DeepDict(dict):
    def __repr__(self) -> str:
        return f"<dict nested {self.depth} deep>"


def _nested(depth: int, kind: str):
    value: object = 1
    for _ in range(depth - 1):
        value = [value] if kind == "list" else {"partitions": value}
    outer = _DeepList([value]) if kind == "list" else _DeepDict(partitions=value)
    outer.depth = depth
    return outer


def _numpy_values():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is optional
        return st.nothing()
    return st.sampled_from(
        [
            numpy.int64(8),
            numpy.int8(-1),
            numpy.uint64(2**64 - 1),
            numpy.float64(0.5),
            numpy.float32(0.25),
            numpy.True_,
            numpy.array([1, 2]),
            numpy.float64("nan"),
        ]
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**31 - 2, max_value=2**31 + 2),
    # built by map: hypothesis shows a strategy's values, and str() refuses 5000 digits
    st.sampled_from([400, -400, 5000, -5000]).map(lambda d: 10 ** abs(d) * (1 if d > 0 else -1)),
    st.just(2**64),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-320, 1.0, 0.5]),
    st.text(),
    st.text(st.characters(codec="utf-8"), max_size=3),
    st.sampled_from(["", " ", "drop", "own", "auto", "groups", "structured", "a", "\xa0"]),
    st.binary(max_size=4),
    st.decimals(),
    st.fractions(),
    st.complex_numbers(),
    _numpy_values(),
    st.sampled_from([int, object(), object, Ellipsis, NotImplemented, range(3)]),
)
hashable = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=4), st.floats())

#: Any value: scalars, containers of them, very deep lists and dicts.
anything = st.one_of(
    st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.tuples(children, children),
            st.dictionaries(st.text(max_size=4) | hashable, children, max_size=3),
            st.frozensets(hashable, max_size=3),
        ),
        max_leaves=12,
    ),
    st.builds(_nested, st.integers(1, 3000), st.sampled_from(["list", "dict"])),
)


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def refused_only_as_documented(call, *args, lookups=False, **kwargs):
    try:
        call(*args, **kwargs)
    except DOCUMENTED:
        pass
    except KeyError:
        if not lookups:
            raise


def maybe(strategy):
    """A value for an optional keyword: left out, plausible or anything."""
    return st.one_of(st.just(_OMIT), strategy, anything)


_OMIT = object()


def _kwargs(**fields):
    return {k: v for k, v in fields.items() if v is not _OMIT}


# ---------------------------------------------------------------- constructors


@given(
    name=st.one_of(st.text(max_size=6), anything),
    sms=maybe(st.integers(1, 200)),
    share=maybe(st.floats(0, 1)),
    min_sms=maybe(st.integers(1, 64)),
    streams=maybe(st.integers(1, 4)),
    priority=maybe(st.integers(-5, 0)),
)
def test_partition(name, sms, share, min_sms, streams, priority):
    kwargs = _kwargs(sms=sms, share=share, min_sms=min_sms, streams=streams, priority=priority)
    refused_only_as_documented(Partition, name, **kwargs)


_parts = st.lists(st.builds(Partition, st.sampled_from("abc"), sms=st.integers(1, 64)), max_size=3)


@given(
    partitions=st.one_of(_parts, anything, st.lists(st.one_of(anything, _parts), max_size=3)),
    remainder=maybe(st.sampled_from(["drop", "own", "a"])),
    coscheduling=maybe(st.booleans()),
    backfill=maybe(st.booleans()),
)
def test_partition_spec(partitions, remainder, coscheduling, backfill):
    kwargs = _kwargs(remainder=remainder, coscheduling=coscheduling, backfill=backfill)
    refused_only_as_documented(PartitionSpec, partitions, **kwargs)


@given(
    modes=st.one_of(
        st.dictionaries(st.text(max_size=3) | anything.filter(_hashable), partition_specs()),
        anything,
    ),
    default=maybe(st.text(max_size=3)),
)
def test_modal_spec(modes, default):
    refused_only_as_documented(ModalSpec, modes, **_kwargs(default=default))


_FACT_FIELDS = {
    "device_name": st.text(max_size=6),
    "compute_capability": st.tuples(st.integers(6, 12), st.integers(0, 9)),
    "sm_count": st.integers(1, 200),
    "min_partition_size": st.integers(1, 16),
    "alignment": st.integers(1, 8),
    "uncoscheduled_min_partition_size": st.integers(1, 4),
    "uncoscheduled_alignment": st.integers(1, 2),
    "driver_version": st.integers(0, 13010),
    "structured_split": st.booleans(),
    "total_memory": st.integers(0, 2**40),
}


@given(st.fixed_dictionaries({k: st.one_of(v, anything) for k, v in _FACT_FIELDS.items()}))
def test_sm_facts(fields):
    refused_only_as_documented(SmFacts, **fields)


@given(
    name=anything,
    cc=st.one_of(st.tuples(st.integers(), st.integers()), anything),
    sms=anything,
    driver=anything,
    profile=st.one_of(st.text(max_size=6), anything),
)
def test_facts_from_profiles(name, cc, sms, driver, profile):
    refused_only_as_documented(SmFacts.for_device_profile, name, cc, sms, driver)
    refused_only_as_documented(SmFacts.for_known_device, profile)
    refused_only_as_documented(SmFacts.for_known_device, "h100", driver_version=driver)


@given(runtime=anything, compile_=anything, flags=st.lists(anything, max_size=4))
def test_isolation_schemas(runtime, compile_, flags):
    refused_only_as_documented(IsolationSchema, runtime, compile_)
    refused_only_as_documented(SelectedRuntimeContext, *flags[:3])
    refused_only_as_documented(SelectedCompileContext, *flags)


# ---------------------------------------------------------------- planning and keys


@given(
    spec=st.one_of(partition_specs(backfill=None), anything),
    device=st.one_of(facts(), anything),
    mechanism=st.one_of(st.sampled_from(["auto", "groups", "structured"]), anything),
)
def test_planning(spec, device, mechanism):
    refused_only_as_documented(make_plan, spec, device, mechanism=mechanism)
    refused_only_as_documented(make_modal_plan, spec, device, mechanism=mechanism)
    refused_only_as_documented(plan_counts, spec, device, mechanism=mechanism)
    if isinstance(spec, PartitionSpec):
        refused_only_as_documented(spec.plan, device, mechanism=mechanism)


@given(
    counts=st.one_of(st.dictionaries(st.text(max_size=3), st.integers(-2, 300)), anything),
    device=facts(),
)
def test_counts(counts, device):
    refused_only_as_documented(plan_counts, counts, device)


_PLAN = PartitionSpec([Partition("decode", sms=64), Partition("batch")]).plan(H100)


@given(
    schema=st.one_of(st.just(IsolationSchema()), anything),
    partition=st.one_of(
        st.just(_PLAN.ref("decode")), st.tuples(st.just(_PLAN), anything), anything
    ),
    device=maybe(st.just(H100)),
    environ=maybe(st.dictionaries(st.text(max_size=3), st.text(max_size=3))),
    versions=maybe(st.just({"greenres_version": "0.1.0"})),
)
def test_isolation_keys(schema, partition, device, environ, versions):
    kwargs = _kwargs(facts=device, environ=environ, versions=versions)
    # KeyError is documented for a (plan, name) pair or plan.ref(name) of an unknown name
    refused_only_as_documented(isolation_key, schema, partition, **kwargs, lookups=True)
    refused_only_as_documented(isolation_context, schema, partition, **kwargs, lookups=True)
    refused_only_as_documented(_PLAN.ref, partition, lookups=True)


# ---------------------------------------------------------------- files and dicts


@st.composite
def mutated(draw, base):
    """``base`` (a plain dict from a real spec or plan) with one value anywhere replaced by
    anything, or one key added or removed."""
    data = json.loads(json.dumps(base))
    containers = []
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict) and value:
            containers.append(value)
            stack.extend(value.values())
        elif isinstance(value, list) and value:
            containers.append(value)
            stack.extend(value)
    target = draw(st.sampled_from(containers))
    keys = list(target) if isinstance(target, dict) else list(range(len(target)))
    key = draw(st.sampled_from(keys))
    action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "replace":
        target[key] = draw(anything)
    elif action == "delete":
        del target[key]
    elif isinstance(target, dict):
        target[draw(st.text(max_size=4))] = draw(anything)
    else:
        target.append(draw(anything))
    return data


_spec_dicts = partition_specs(backfill=None).map(spec_to_dict) | modal_specs().map(spec_to_dict)
_PLAN_DICTS = [
    plan_to_dict(_PLAN),
    plan_to_dict(ModalSpec({"a": _PLAN.spec, "b": _PLAN.spec}).plan(H100)),
]
dicts = st.one_of(
    anything,
    _spec_dicts.flatmap(mutated),
    st.sampled_from(_PLAN_DICTS).flatmap(mutated),
    st.just({"runtime_context": True}).flatmap(mutated),
)


@given(data=dicts, source=st.one_of(st.none(), st.text(max_size=5)))
def test_from_dicts(data, source):
    for from_dict in (spec_from_dict, plan_from_dict, schema_from_dict, facts_from_dict):
        refused_only_as_documented(from_dict, data, source=source)


def _texts(data):
    """``data`` as JSON and TOML text, where those writers can write it."""
    import tomli_w

    texts = []
    for write in (lambda d: json.dumps(d, default=repr), tomli_w.dumps):
        try:
            texts.append(st.just(write(data)))
        except (AttributeError, TypeError, ValueError, RecursionError):
            pass  # not a table (TOML), or not writable
    return st.one_of(texts) if texts else st.just("")


texts = st.one_of(
    st.text(),
    dicts.flatmap(_texts),
    st.sampled_from(["{", "[1,", '{"a": 1, "a": 2}', "a = 1\na = 2", "[[partitions]]\n"]),
)


@given(text=texts, format=st.one_of(st.sampled_from(["json", "toml"]), anything))
def test_loads(text, format):
    for loads in (loads_spec, loads_plan, loads_schema):
        refused_only_as_documented(loads, text, format)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, suffix=st.sampled_from([".json", ".toml", ".yaml", ""]))
def test_load_files(tmp_path, text, suffix):
    path = tmp_path / f"file{suffix}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for load in (load_spec, load_plan, load_schema):
        refused_only_as_documented(load, path)


@given(value=anything, format=st.one_of(st.sampled_from(["json", "toml"]), anything))
def test_dumps(value, format):
    refused_only_as_documented(dumps_spec, value, format)
    refused_only_as_documented(dumps_plan, value, format)


@pytest.mark.parametrize(
    "value", [Decimal("0.5"), Fraction(1, 2), 0.5 + 0j], ids=["decimal", "fraction", "complex"]
)
def test_numbers_that_are_not_floats_are_refused_as_shares(value):
    with pytest.raises(SpecError, match="'share' must be a number or None"):
        Partition("a", share=value)
