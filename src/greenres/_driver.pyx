# cython: language_level=3
"""The only module of greenres that calls the CUDA driver.

Every driver call goes through :func:`check` (or, in nogil paths, returns a code with a
``Failure`` that the wrapper raises), which turns a failing ``CUresult`` into
:class:`greenres.DriverError` naming the function, the CUDA error and its text.

Ownership: a :class:`Layout` and its :class:`GreenContext` partitions share one private
``_LayoutCore`` that owns every native handle of the layout (green contexts, their
streams, pooled events, the primary-context retain). Whatever refers to the core keeps its
memory alive: partitions, streams, graphs captured on its streams, and an entered partition
(for as long as it is entered). Its handles are destroyed by ``close()`` under the lifetime
protocol of ``_lifetime.pxi`` (never while a call on them is in flight on any thread), or
by its finalizer once nothing refers to it; the order is always streams, events, graphs,
green contexts, then the primary context.

Hot paths (``enter_partition``, ``exit_partition``, ``pooled_handoff``) are nogil C
functions over a plain ``PartState`` struct: no Python object is touched between their
driver calls and no lock is taken; a partition's owner thread is one atomic word.
"""

import os
import warnings
import weakref

cimport cython
from cpython.weakref cimport PyWeakref_NewRef
from cuda.bindings cimport cydriver
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from greenres.cuda_versions import (
    GREEN_CONTEXT_ID,
    LOCALITY_DOMAINS,
    STRUCTURED_SPLIT,
    TORCH_GREEN_CONTEXTS,
    WORKQUEUES,
)
from greenres.devices import documented_granularity
from greenres.errors import (
    ClosedError,
    ContextStackWarning,
    DestroyError,
    DriverError,
    DriverTooOldError,
    PlanError,
    ThreadOwnershipError,
    UsageError,
)
from greenres.facts import version_text
from greenres.recipe import (
    GROUP_LOCALITY_DOMAIN_ID,
    SPLIT_IGNORE_SM_COSCHEDULING,
    WORKQUEUE_SCOPE_VALUES,
)

# One extension module, one file per concept. The files share module-level C state (the
# driver functions resolved at run time, the hot-path structs) and call each other's cdef
# functions directly, which separate extension modules could only do through capsules.
include "_checks.pxi"
include "_device.pxi"
include "_lifetime.pxi"
include "_hotpath.pxi"
include "_core.pxi"
include "_split.pxi"
include "_layout.pxi"
include "_partition.pxi"
include "_guard.pxi"
include "_green_seed.pxi"
include "_handoff.pxi"
include "_stream.pxi"
include "_event.pxi"
include "_graph_pool.pxi"
include "_capture.pxi"
include "_graph.pxi"
include "_graph_seed.pxi"
include "_nvtx.pxi"
include "_nvtx_device.pxi"
include "_capi.pxi"

# Settings made with greenres.configure() before the runtime was loaded.
from greenres import _config as _settings  # noqa: E402

_set_hot_path_gil(_settings.hot_path_gil())
