"""The declarative classes are values: frozen, comparable, hashable, and import no driver."""

from __future__ import annotations

import copy
import importlib
import pickle
from pathlib import Path

import attrs
import pytest
from hypothesis import assume, given

from greenres.devices import DEVICE_PROFILES
from greenres.errors import DriverTooOldError, PlanError
from greenres.facts import SmFacts
from greenres.spec import ModalSpec, Partition, PartitionSpec

from support.childprocess import run_child, run_python
from support.strategies import facts, isolation_schemas, modal_specs, partition_specs

values = partition_specs(backfill=None) | modal_specs() | isolation_schemas | facts()


@given(value=values)
def test_equal_copies_hash_equal(value):
    twin = copy.deepcopy(value)
    assert twin == value and hash(twin) == hash(value)
    assert pickle.loads(pickle.dumps(value)) == value
    assert {value: 1}[twin] == 1


@given(value=values)
def test_frozen(value):
    field = attrs.fields(type(value))[0]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(value, field.name, None)


@given(spec=partition_specs(small=True), facts=facts())
def test_plans_are_values(spec, facts):
    try:
        plan = spec.plan(facts)
    except (PlanError, DriverTooOldError):
        assume(False)
    assert hash(plan) == hash(copy.deepcopy(plan))
    assert pickle.loads(pickle.dumps(plan)) == plan
    for p in plan:
        assert hash(p) == hash(copy.deepcopy(p))


def test_changing_any_field_breaks_equality():
    base = Partition("a", share=0.5, min_sms=8, streams=2, priority=-1)
    for change in (
        {"name": "b"},
        {"share": 0.25},
        {"min_sms": 16},
        {"streams": 3},
        {"priority": 0},
    ):
        assert attrs.evolve(base, **change) != base
    spec = PartitionSpec([base])
    assert attrs.evolve(spec, coscheduling=False) != spec
    assert attrs.evolve(spec, remainder="own") != spec
    assert PartitionSpec([base, Partition("c", sms=8)]) != PartitionSpec(
        [Partition("c", sms=8), base]
    )  # declaration order matters


def test_partition_spec_accepts_any_iterable_and_keeps_a_tuple():
    spec = PartitionSpec(Partition(n, sms=8) for n in "ab")
    assert spec.partitions == (Partition("a", sms=8), Partition("b", sms=8))
    assert spec.names == ("a", "b")
    assert list(spec) == list(spec.partitions) and len(spec) == 2
    assert spec["b"].name == "b"
    with pytest.raises(KeyError):
        spec["c"]


def test_modal_spec_is_an_immutable_ordered_mapping():
    a = PartitionSpec([Partition("x", sms=8)])
    b = PartitionSpec([Partition("x", sms=16)])
    modes = {"one": a, "two": b}
    modal = ModalSpec(modes)
    modes["three"] = a  # the caller's dict is copied
    assert modal.mode_names == ("one", "two")
    assert modal["two"] is b and len(modal) == 2 and list(modal) == ["one", "two"]
    with pytest.raises(TypeError):
        modal.modes["three"] = a  # type: ignore[index]
    # The order is part of the value: the first mode is the default one, and the order
    # enters the fingerprint and the files.
    assert ModalSpec({"two": b, "one": a}) != modal
    assert ModalSpec({"two": b, "one": a}).default_mode == "two"
    assert ModalSpec({"one": a, "two": b}) == modal
    assert hash(ModalSpec({"one": a, "two": b})) == hash(modal)
    assert modal.modes == {"two": b, "one": a}  # against a plain dict: like a dict
    assert ModalSpec(modes={"one": a}, default="one") != ModalSpec(modes={"one": a})


def test_request_words():
    assert Partition("a", sms=1).request == "1 SM"
    assert Partition("a", sms=96).request == "96 SMs"
    assert Partition("a", share=0.25).request == "25% share"
    assert Partition("a", share=1 / 3).request == "33.3333% share"
    assert Partition("a").request == "the rest"
    assert Partition("a", min_sms=8).request == "the rest, at least 8 SMs"


def test_facts_helpers():
    h100 = SmFacts.for_known_device("h100")
    assert h100.sm_facts() is h100
    assert h100.driver_version_text == "13.1"
    assert h100.structured_split
    assert h100.granularity() == (8, 8) and h100.granularity(False) == (2, 2)
    assert h100.group_size() == 8 and h100.group_size(False) == 2
    assert SmFacts.for_known_device("a100").group_size() == 4
    assert not SmFacts.for_known_device("h100", driver_version=13000).structured_split
    odd = SmFacts(**{**attrs.asdict(h100, recurse=False), "min_partition_size": 3, "alignment": 2})
    assert odd.group_size() == 4  # the minimum rounded up to the alignment


def test_device_profiles_match_devices_md():
    text = Path(__file__).resolve().parents[2] / "docs" / "devices.md"
    rows = {}
    for line in text.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[3].isdigit():
            major, minor = cells[2].split(".")
            rows[cells[0]] = (cells[1], (int(major), int(minor)), int(cells[3]))
    assert rows == {
        name: (p.product, p.compute_capability, p.sm_count) for name, p in DEVICE_PROFILES.items()
    }


def _imported_by(statement: str) -> set[str]:
    """The modules ``python -X importtime -c statement`` imports in a fresh process without
    GREENRES_SIM, less those the interpreter imports for ``pass`` (site, .pth files)."""

    def imported(code: str) -> set[str]:
        done = run_child(["-X", "importtime", "-c", code], GREENRES_SIM=None)
        assert done.returncode == 0, done.stderr[-2000:]
        return {
            line.rpartition("|")[2].strip()
            for line in done.stderr.splitlines()
            if line.startswith("import time:") and "cumulative" not in line
        }

    return imported(statement) - imported("pass")


DECLARATIVE_MODULES = (
    "greenres.errors",
    "greenres.devices",
    "greenres.facts",
    "greenres.spec",
    "greenres.recipe",
    "greenres.plan",
    "greenres.isolation",
    "greenres.serialize",
    "greenres.cli",
)


@pytest.mark.parametrize("module", DECLARATIVE_MODULES)
def test_the_declarative_modules_import_no_driver(module):
    loaded = _imported_by(f"import {module}")
    assert module in loaded  # the measurement sees the module itself
    driver = sorted(m for m in loaded if m.startswith(("cuda", "greenres._driver", "greenres.sim")))
    assert driver == []


def test_importing_the_spec_module_loads_only_what_it_needs():
    loaded = _imported_by("import greenres.spec")
    assert {m for m in loaded if m.startswith("greenres")} == {
        "greenres",
        "greenres.errors",
        "greenres._validators",
        "greenres.spec",
    }
    # what planning, keys and files need is loaded with them, not with the spec classes
    assert not loaded & {"cattrs", "tomli_w", "tomllib", "importlib.metadata", "json", "hashlib"}


PUBLIC_MODULES = (
    "greenres.cli",
    "greenres.cuda_versions",
    "greenres.devices",
    "greenres.errors",
    "greenres.facts",
    "greenres.isolation",
    "greenres.plan",
    "greenres.recipe",
    "greenres.serialize",
    "greenres.spec",
)
# Names a public module exports though another module defines them: its private helpers.
RE_EXPORTS = {
    "greenres.serialize": {"make_converter"},
    "greenres.isolation": {"UserForm", "register_form", "registered_forms", "unregister_form"},
}


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_module_exports_only_its_own_documented_names(name):
    module = importlib.import_module(name)
    assert module.__doc__
    for exported in module.__all__:
        assert not exported.startswith("_"), f"{name}.{exported} is private"
        obj = getattr(module, exported)
        if callable(obj):
            assert obj.__doc__, f"{name}.{exported} has no docstring"
            home = obj.__module__
            assert home == name or exported in RE_EXPORTS.get(name, ()), (
                f"{name}.__all__ re-exports {exported} from {home}"
            )


def test_every_public_name_of_the_package_works_and_the_declarative_ones_need_no_driver():
    script = (
        # cuda-bindings 12.9's .pth file imports the bare `cuda` namespace at start-up
        "import sys\n"
        "startup = set(sys.modules)\n"
        "import greenres\n"
        "declarative = [n for n in greenres.__all__ if n not in greenres._RUNTIME_NAMES]\n"
        "values = [getattr(greenres, n) for n in declarative]\n"
        "missing = set(greenres.__all__) - set(dir(greenres))\n"
        "assert not missing, missing\n"
        "assert greenres.load_spec is __import__('greenres.serialize').serialize.load_spec\n"
        "new = set(sys.modules) - startup\n"
        "print(sorted(m for m in new if m.startswith(('cuda', 'greenres._driver'))))\n"
    )
    assert run_python(script, GREENRES_SIM=None).strip() == "[]"
    import greenres

    for name in greenres.__all__:  # the runtime names too, in this process (simulated)
        assert getattr(greenres, name) is not None


def test_public_submodules_are_attributes_of_the_package_on_first_use():
    """``greenres.nvtx.range_push`` after ``import greenres``, as ``torch.cuda.nvtx`` after
    ``import torch``; a declarative submodule reached so loads no driver either."""
    script = (
        "import sys\n"
        "startup = set(sys.modules)\n"
        "import greenres\n"
        "assert greenres.spec.Partition is greenres.Partition\n"
        "assert greenres.plan.make_plan and greenres.isolation.isolation_key\n"
        "new = set(sys.modules) - startup\n"
        "print(sorted(m for m in new if m.startswith(('cuda', 'greenres._driver'))))\n"
        "assert callable(greenres.nvtx.range_push) and greenres.sim.is_installed\n"
        "try:\n"
        "    greenres.no_such_module\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    out = run_python(script, GREENRES_SIM=None).splitlines()
    assert out == ["[]", "module 'greenres' has no attribute 'no_such_module'"]
