"""greenres: partition NVIDIA GPUs with CUDA green contexts.

Setting ``GREENRES_SIM`` (for example ``h100`` or ``8xh100``) loads greenres' simulated
driver before anything touches the driver; without it the real ``libcuda.so.1`` is used.
"""

import os as _os

if _os.environ.get("GREENRES_SIM"):
    from greenres import sim as _sim

    _sim.install_from_env()

from greenres._driver import (
    Device,
    DeviceBuffer,
    Event,
    Graph,
    GraphPool,
    GreenContext,
    Layout,
    SmResource,
    Stream,
    device_count,
    driver_version,
    handoff,
)
from greenres.errors import (
    ClosedError,
    DriverError,
    DriverTooOldError,
    GreenresError,
    PlanError,
    SpecError,
    ThreadOwnershipError,
    UsageError,
)
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

__version__ = "0.1.0"

__all__ = [
    "ClosedError",
    "Device",
    "DeviceBuffer",
    "DriverError",
    "DriverTooOldError",
    "Event",
    "Graph",
    "GraphPool",
    "GreenContext",
    "GreenresError",
    "IsolationSchema",
    "Layout",
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
    "Stream",
    "ThreadOwnershipError",
    "UsageError",
    "__version__",
    "device_count",
    "driver_version",
    "handoff",
    "isolation_context",
    "isolation_key",
    "load_plan",
    "load_schema",
    "load_spec",
]
