"""Hypothesis strategies for greenres' declarative layer (specs, facts, schemas)."""

from __future__ import annotations

import math
import unicodedata

from hypothesis import assume
from hypothesis import strategies as st

from greenres.devices import DEVICE_PROFILES
from greenres.errors import SpecError
from greenres.facts import SmFacts
from greenres.isolation import IsolationSchema, SelectedCompileContext, SelectedRuntimeContext
from greenres.spec import ModalSpec, Partition, PartitionSpec

__all__ = [
    "facts",
    "isolation_schemas",
    "modal_specs",
    "names",
    "partition_specs",
    "profile_facts",
]

_SIMPLE = "abcdefghijklmnopqrstuvwxyz0123456789-_"

#: Partition and mode names: mostly simple, sometimes any printable text (quoted in TOML,
#: escaped in canonical JSON), never with surrounding whitespace; in NFC, as the classes
#: store them (tests that respell names decompose them themselves).
names = st.one_of(
    st.text(_SIMPLE, min_size=1, max_size=10),
    st.text(
        st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
        min_size=1,
        max_size=8,
    )
    .map(lambda s: unicodedata.normalize("NFC", s))
    .filter(lambda s: s == s.strip() and s.isprintable()),
)


@st.composite
def profile_facts(draw, structured: bool | None = None) -> SmFacts:
    """Facts of a docs/devices.md profile, with a driver before or after 13.1."""
    profile = draw(st.sampled_from(sorted(DEVICE_PROFILES)))
    if structured is None:
        structured = draw(st.booleans())
    driver = 13010 if structured else draw(st.sampled_from([12040, 12080, 13000, 13010]))
    return SmFacts.for_known_device(profile, driver_version=driver, structured_split=structured)


@st.composite
def _any_facts(draw, structured: bool | None = None) -> SmFacts:
    minimum = draw(st.integers(1, 16))
    alignment = draw(st.sampled_from([1, 2, 4, 8]))
    if structured is None:
        structured = draw(st.booleans())
    return SmFacts(
        device_name=draw(st.sampled_from(["Test GPU", "Made-up X1"])),
        compute_capability=(draw(st.integers(6, 12)), draw(st.integers(0, 9))),
        sm_count=draw(st.integers(1, 200)),
        min_partition_size=minimum,
        alignment=alignment,
        uncoscheduled_min_partition_size=draw(st.integers(1, 4)),
        uncoscheduled_alignment=draw(st.sampled_from([1, 2])),
        driver_version=13010 if structured else 12080,
        structured_split=structured,
        total_memory=draw(st.integers(0, 2**40)),
    )


def facts(structured: bool | None = None) -> st.SearchStrategy[SmFacts]:
    """Facts of a real profile (mostly) or of a made-up device."""
    return st.one_of(profile_facts(structured), _any_facts(structured))


@st.composite
def partition_specs(
    draw,
    max_partitions: int = 5,
    small: bool = False,
    backfill: bool | None = False,
) -> PartitionSpec:
    """A valid PartitionSpec. ``small`` keeps fixed counts and floors small so most specs
    fit a device; ``backfill=None`` draws it."""
    count = draw(st.integers(1, max_partitions))
    chosen = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    kinds = draw(
        st.lists(st.sampled_from(["sms", "share", "share", "rest"]), min_size=count, max_size=count)
    )
    first_rest = kinds.index("rest") if "rest" in kinds else None
    kinds = ["share" if k == "rest" and i != first_rest else k for i, k in enumerate(kinds)]
    # Shares: weights scaled to a total <= 1, kept as short decimals where possible.
    total = draw(st.integers(1, 100)) / 100
    weights = [draw(st.integers(1, 10)) for _ in kinds]
    weight_sum = sum(w for w, k in zip(weights, kinds, strict=True) if k == "share") or 1
    made = []
    for name, kind, weight in zip(chosen, kinds, weights, strict=True):
        extra = {"streams": draw(st.integers(1, 3)), "priority": draw(st.integers(-3, 0))}
        if kind == "sms":
            sms = draw(st.integers(1, 24 if small else 160))
            made.append(Partition(name, sms=sms, **extra))
            continue
        min_sms = draw(st.none() | st.integers(1, 8 if small else 64))
        if kind == "share":
            share = math.floor(total * weight / weight_sum * 10000) / 10000
            share = max(share, 0.0001)
            made.append(Partition(name, share=share, min_sms=min_sms, **extra))
        else:
            made.append(Partition(name, min_sms=min_sms, **extra))
    options = ["drop", "own", *chosen]
    remainder = draw(st.sampled_from(options))
    if backfill is None:
        backfill = draw(st.booleans())
    try:
        return PartitionSpec(
            made,
            remainder=remainder,
            coscheduling=draw(st.booleans()),
            backfill=backfill,
        )
    except SpecError:  # e.g. a partition called "remainder" with remainder="own"
        assume(False)
        raise


@st.composite
def modal_specs(draw, max_modes: int = 3, **spec_options) -> ModalSpec:
    """A valid ModalSpec of 1..max_modes modes."""
    mode_names = draw(st.lists(names, min_size=1, max_size=max_modes, unique=True))
    modes = {m: draw(partition_specs(**spec_options)) for m in mode_names}
    default = draw(st.none() | st.sampled_from(mode_names))
    return ModalSpec(modes, default=default)


isolation_schemas = st.builds(
    IsolationSchema,
    runtime_context=st.booleans()
    | st.builds(SelectedRuntimeContext, st.booleans(), st.booleans(), st.booleans()),
    compile_context=st.booleans()
    | st.builds(SelectedCompileContext, st.booleans(), st.booleans(), st.booleans(), st.booleans()),
)
