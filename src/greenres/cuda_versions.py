"""The CUDA driver versions that gate greenres features, named once.

Versions are ints as ``cuDriverGetVersion`` reports them (``13010`` is 13.1). Where each
feature arrived is listed in ``docs/driver-facts.md`` ("Versions"); every check of a version
in greenres (planner, runtime, simulator defaults) uses these names.
"""

from __future__ import annotations

__all__ = [
    "GREEN_CONTEXTS",
    "GREEN_CONTEXT_ID",
    "GREEN_CONTEXT_STREAMS",
    "LOCALITY_DOMAINS",
    "SM_GRANULARITY_FIELDS",
    "STRUCTURED_SPLIT",
    "TORCH_GREEN_CONTEXTS",
    "WORKQUEUES",
]

#: Resources, split by count, descriptors, green contexts (``cuGreenCtxCreate``).
GREEN_CONTEXTS = 12040
#: ``cuGreenCtxStreamCreate``.
GREEN_CONTEXT_STREAMS = 12050
#: ``cuGreenCtxGetId`` as greenres resolves it (the 13.0 ABI).
GREEN_CONTEXT_ID = 13000
#: ``minSmPartitionSize`` and ``smCoscheduledAlignment`` in ``CUdevSmResource``.
SM_GRANULARITY_FIELDS = 13000
#: What PyTorch's green contexts require (``CUDAGreenContext.cpp``), and so
#: ``greenres.GreenContext.create``, their port.
TORCH_GREEN_CONTEXTS = 12080
#: The structured ``cuDevSmResourceSplit`` with group parameters and backfill.
STRUCTURED_SPLIT = 13010
#: Workqueue resources (``CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG``) and
#: ``cuStreamGetDevResource``.
WORKQUEUES = 13010
#: Locality domains (device attributes, group flags, the descriptor rule).
LOCALITY_DOMAINS = 13040
