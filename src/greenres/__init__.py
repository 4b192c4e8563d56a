"""greenres: partition NVIDIA GPUs with CUDA green contexts.

Importing greenres (or any of its declarative modules: ``greenres.spec``, ``greenres.plan``,
``greenres.serialize``, ...) loads neither the compiled runtime nor cuda.bindings: the
runtime names (``Device``, ``Layout``, ``Graph``, ...) load it on first use. The declarative
names (``Partition``, ``Plan``, ``load_spec``, ...) load their module on first use too, so
``import greenres.spec`` loads the spec classes and what they need, nothing more.

``GREENRES_SIM`` (for example ``h100``, ``8xh100`` or ``h100@13000``) takes effect when
greenres is first imported: the simulated driver is loaded then, before anything can touch
the real one. A program that loads the driver before it imports greenres (cuda.core first,
say) runs on the simulator with ``python -m greenres.sim h100 program.py args...`` instead.
"""

import os as _os
from typing import TYPE_CHECKING

if _os.environ.get("GREENRES_SIM"):
    from greenres import sim as _sim

    _sim.install_from_env()

from greenres.errors import (
    ClosedError,
    ContextStackWarning,
    DestroyError,
    DriverError,
    DriverTooOldError,
    FormError,
    GreenresError,
    LayoutMismatchError,
    PlanError,
    SpecError,
    ThreadOwnershipError,
    UsageError,
)

if TYPE_CHECKING:
    from greenres._config import configure
    from greenres.facts import SmFacts
    from greenres.isolation import (
        IsolationSchema,
        SelectedCompileContext,
        SelectedRuntimeContext,
        isolation_context,
        isolation_key,
    )
    from greenres.plan import ModalPlan, Plan, PlannedPartition
    from greenres.serialize import load_plan, load_schema, load_spec
    from greenres.spec import ModalSpec, Partition, PartitionSpec

if TYPE_CHECKING:
    from greenres._driver import (
        ContextGuard,
        Device,
        DeviceBuffer,
        Event,
        Graph,
        GraphPool,
        GreenContext,
        Layout,
        SmResource,
        StackReport,
        Stream,
        current_partition,
        device_count,
        driver_version,
        graph,
        handoff,
    )

__version__ = "0.1.0"


def get_include() -> str:
    """The folder of ``greenres_api.h``, the C-level entry for C, C++ and Cython callers
    (``include_dirs=[greenres.get_include()]``; Cython: ``cimport greenres.api``)."""
    return _os.path.join(_os.path.dirname(__file__), "include")


#: Names of the compiled runtime (greenres._driver), loaded on first use.
_RUNTIME_NAMES = frozenset(
    {
        "ContextGuard",
        "Device",
        "DeviceBuffer",
        "Event",
        "Graph",
        "GraphPool",
        "GreenContext",
        "Layout",
        "SmResource",
        "StackReport",
        "Stream",
        "current_partition",
        "device_count",
        "driver_version",
        "graph",
        "handoff",
    }
)


#: Names of the declarative layer and the module of each, also loaded on first use: what
#: a program imports (``import greenres.spec``) is all it pays for.
_DECLARATIVE_NAMES = {
    "configure": "greenres._config",
    "SmFacts": "greenres.facts",
    "IsolationSchema": "greenres.isolation",
    "SelectedCompileContext": "greenres.isolation",
    "SelectedRuntimeContext": "greenres.isolation",
    "isolation_context": "greenres.isolation",
    "isolation_key": "greenres.isolation",
    "ModalPlan": "greenres.plan",
    "Plan": "greenres.plan",
    "PlannedPartition": "greenres.plan",
    "load_plan": "greenres.serialize",
    "load_schema": "greenres.serialize",
    "load_spec": "greenres.serialize",
    "ModalSpec": "greenres.spec",
    "Partition": "greenres.spec",
    "PartitionSpec": "greenres.spec",
}


# Public submodules, imported on first attribute access: ``greenres.nvtx.range_push(...)``
# after ``import greenres`` works as ``torch.cuda.nvtx`` does after ``import torch``.
_SUBMODULES = frozenset(
    {
        "benchmark", "cli", "comm", "cuda_versions", "devices", "distributed", "errors",
        "facts", "graph_cache", "isolation", "nvtx", "plan", "recipe", "serialize", "sim",
        "spec", "svg", "verify",
    }
)  # fmt: skip


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"greenres.{name}")  # which sets the attribute
    if name in _RUNTIME_NAMES:
        from greenres import _driver

        value = getattr(_driver, name)
        globals()[name] = value  # later lookups do not come here
        return value
    if name in _DECLARATIVE_NAMES:
        import importlib

        value = getattr(importlib.import_module(_DECLARATIVE_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'greenres' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _RUNTIME_NAMES | set(_DECLARATIVE_NAMES))


__all__ = [
    "ClosedError",
    "ContextGuard",
    "ContextStackWarning",
    "DestroyError",
    "Device",
    "DeviceBuffer",
    "DriverError",
    "DriverTooOldError",
    "Event",
    "FormError",
    "Graph",
    "GraphPool",
    "GreenContext",
    "GreenresError",
    "IsolationSchema",
    "Layout",
    "LayoutMismatchError",
    "ModalPlan",
    "ModalSpec",
    "Partition",
    "PartitionSpec",
    "Plan",
    "PlanError",
    "PlannedPartition",
    "SelectedCompileContext",
    "SelectedRuntimeContext",
    "SmFacts",
    "SmResource",
    "SpecError",
    "StackReport",
    "Stream",
    "ThreadOwnershipError",
    "UsageError",
    "__version__",
    "configure",
    "current_partition",
    "device_count",
    "driver_version",
    "get_include",
    "graph",
    "handoff",
    "isolation_context",
    "isolation_key",
    "load_plan",
    "load_schema",
    "load_spec",
]
