"""Workqueue resources (CUDA 13.1): the workqueue-config resource of devices, contexts and
green contexts, the pre-existing workqueue of a context, descriptors that carry them, and
the documented refusals (cuStreamGetDevResource). docs/simulator.md lists the guesses."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.simhelpers import (
    SM,
    E,
    check,
    device_resource,
    error_of,
    green_stream,
    requires_bindings,
    run_python,
    split,
)

pytestmark = [
    pytest.mark.sim_only,
    requires_bindings(
        "CUdevResourceType.CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG", "cuStreamGetDevResource"
    ),
]

from support.simhelpers import _has, driver  # noqa: E402

# The constants below are read at import: skip the module itself on bindings without them.
if not _has("CUdevResourceType.CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG"):
    pytest.skip("cuda-bindings lacks the CUDA 13.1 workqueue types", allow_module_level=True)

T = driver.CUdevResourceType
WQ_CONFIG = T.CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG
WQ = T.CU_DEV_RESOURCE_TYPE_WORKQUEUE
SCOPE = driver.CUdevWorkqueueConfigScope
DEVICE_CTX = SCOPE.CU_WORKQUEUE_SCOPE_DEVICE_CTX
BALANCED = SCOPE.CU_WORKQUEUE_SCOPE_GREEN_CTX_BALANCED
DEFAULT_STREAM = driver.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM


def config(limit=None, scope=None, dev=0):
    """The device's workqueue-config resource, changed in place as cuda.h says."""
    res = check(driver.cuDeviceGetDevResource(dev, WQ_CONFIG))
    if limit is not None:
        res.wqConfig.wqConcurrencyLimit = limit
    if scope is not None:
        res.wqConfig.sharingScope = scope
    return res


def green_of(resources, dev=0):
    desc = check(driver.cuDevResourceGenerateDesc(list(resources), len(resources)))
    return check(driver.cuGreenCtxCreate(desc, dev, DEFAULT_STREAM))


def desc_error(resources):
    return error_of(driver.cuDevResourceGenerateDesc(list(resources), len(resources)))


def one_group(size=16):
    groups, _ = split(device_resource(), 1, size)
    return groups[0]


def reported(green):
    res = check(driver.cuGreenCtxGetDevResource(green, WQ_CONFIG))
    return res.wqConfig.wqConcurrencyLimit, res.wqConfig.sharingScope


def test_device_config_is_the_default_scope_and_the_maximum_concurrency():
    res = config()
    assert res.type == WQ_CONFIG
    assert int(res.wqConfig.device) == 0
    # CUDA_DEVICE_MAX_CONNECTIONS is unset in the test process: its default, 8
    assert res.wqConfig.wqConcurrencyLimit == 8
    assert res.wqConfig.sharingScope == DEVICE_CTX
    assert int(check(driver.cuDeviceGetDevResource(1, WQ_CONFIG)).wqConfig.device) == 1


def test_primary_context_reports_the_maximum(ctx):
    # cuda.h: "The maximum concurrency limit ... can be queried from the primary context
    # via cuCtxGetDevResource."
    res = check(driver.cuCtxGetDevResource(ctx, WQ_CONFIG))
    assert (res.wqConfig.wqConcurrencyLimit, res.wqConfig.sharingScope) == (8, DEVICE_CTX)


def test_a_devices_pre_existing_workqueue_is_its_shared_one(ctx):
    """A guess (docs/simulator.md): what cuda.core's Device.resources.workqueue asks for."""
    shared = check(driver.cuDeviceGetDevResource(0, WQ))
    assert shared.type == WQ
    green = green_of([one_group(), shared])
    try:
        assert reported(green) == (8, DEVICE_CTX)  # the default: CUDA_DEVICE_MAX_CONNECTIONS
    finally:
        check(driver.cuGreenCtxDestroy(green))


def test_green_context_reports_the_configuration_of_its_descriptor(ctx):
    green = green_of([one_group(), config(3, BALANCED)])
    try:
        assert reported(green) == (3, BALANCED)
        assert check(driver.cuGreenCtxGetDevResource(green, SM)).sm.smCount == 16
        as_ctx = check(driver.cuCtxFromGreenCtx(green))
        res = check(driver.cuCtxGetDevResource(as_ctx, WQ_CONFIG))
        assert res.wqConfig.wqConcurrencyLimit == 3
    finally:
        check(driver.cuGreenCtxDestroy(green))


def test_green_context_without_configuration_reports_the_default(ctx):
    green = green_of([one_group()])
    try:
        assert reported(green) == (8, DEVICE_CTX)
    finally:
        check(driver.cuGreenCtxDestroy(green))


def test_equal_sms_with_other_workqueues_are_other_descriptors(ctx):
    group = one_group()
    a = green_of([group, config(2, BALANCED)])
    b = green_of([group, config(5, DEVICE_CTX)])
    try:
        assert reported(a) == (2, BALANCED) and reported(b) == (5, DEVICE_CTX)
    finally:
        check(driver.cuGreenCtxDestroy(a))
        check(driver.cuGreenCtxDestroy(b))


def test_a_workqueue_of_a_green_context_is_reused_by_another(ctx):
    groups, _ = split(device_resource(), 2, 16)
    first = green_of([groups[0], config(4, BALANCED)])
    try:
        queue = check(driver.cuGreenCtxGetDevResource(first, WQ))
        assert queue.type == WQ
        second = green_of([groups[1], queue])
        try:
            assert reported(second) == (4, BALANCED)
        finally:
            check(driver.cuGreenCtxDestroy(second))
    finally:
        check(driver.cuGreenCtxDestroy(first))


def test_stream_resources_refuse_the_workqueue_types(ctx):
    # cuda.h: cuStreamGetDevResource "will return CUDA_ERROR_INVALID_RESOURCE_TYPE if type
    # is CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG or CU_DEV_RESOURCE_TYPE_WORKQUEUE".
    green = green_of([one_group(24), config(2, BALANCED)])
    try:
        s = green_stream(green)
        assert check(driver.cuStreamGetDevResource(s, SM)).sm.smCount == 24
        for kind in (WQ_CONFIG, WQ):
            assert error_of(driver.cuStreamGetDevResource(s, kind)) == (
                E.CUDA_ERROR_INVALID_RESOURCE_TYPE
            )
        check(driver.cuStreamDestroy(s))
    finally:
        check(driver.cuGreenCtxDestroy(green))
    plain = check(driver.cuStreamCreate(driver.CUstream_flags.CU_STREAM_NON_BLOCKING))
    assert check(driver.cuStreamGetDevResource(plain, SM)).sm.smCount == 132
    check(driver.cuStreamDestroy(plain))


def test_a_limit_above_the_maximum_is_accepted(ctx):
    # cuda.h: "Configurations may exceed this concurrency limit, but the driver will not
    # guarantee that work submission remains non-overlapping."
    green = green_of([one_group(), config(40, BALANCED)])
    try:
        assert reported(green) == (40, BALANCED)
    finally:
        check(driver.cuGreenCtxDestroy(green))


def test_descriptor_refusals():
    group = one_group()
    bad_scope = config(2)
    bad_scope.wqConfig.sharingScope = 7
    bad_device = config(2)
    bad_device.wqConfig.device = driver.CUdevice(9)
    cases = [
        ([group, config(2), config(3)], E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION),
        ([group, config(0)], E.CUDA_ERROR_INVALID_VALUE),
        ([group, bad_scope], E.CUDA_ERROR_INVALID_VALUE),
        ([group, bad_device], E.CUDA_ERROR_INVALID_VALUE),
        # cuda.h: resources of one descriptor come from one device
        ([group, config(2, dev=1)], E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION),
        ([config(2)], E.CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION),
    ]
    for resources, error in cases:
        assert desc_error(resources) == error, resources


def test_a_made_up_workqueue_handle_is_refused():
    made_up = driver.CUdevResource()
    made_up.type = WQ
    assert desc_error([one_group(), made_up]) == E.CUDA_ERROR_INVALID_VALUE


@given(limit=st.integers(1, 64), balanced=st.booleans())
def test_any_configuration_is_what_the_green_context_reports(limit, balanced):
    scope = BALANCED if balanced else DEVICE_CTX
    green = green_of([one_group(), config(limit, scope)])
    try:
        assert reported(green) == (limit, scope)
    finally:
        check(driver.cuGreenCtxDestroy(green))


def test_drivers_before_13_1_know_no_workqueue_types():
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("h100", driver_version=12080)
        from cuda.bindings import driver as d
        T = d.CUdevResourceType
        d.cuInit(0)
        ctx = d.cuDevicePrimaryCtxRetain(0)[1]
        for kind in (T.CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG, T.CU_DEV_RESOURCE_TYPE_WORKQUEUE):
            print(d.cuDeviceGetDevResource(0, kind)[0].name,
                  d.cuCtxGetDevResource(ctx, kind)[0].name)
        """
    )
    assert out.split() == ["CUDA_ERROR_INVALID_RESOURCE_TYPE"] * 4


@pytest.mark.parametrize(("value", "limit"), [("4", 4), ("32", 32), ("100", 32), ("x", 8)])
def test_max_connections_set_the_maximum_concurrency(value, limit):
    out = run_python(
        """
        import greenres.sim as sim
        sim.install("h100")
        from cuda.bindings import driver as d
        d.cuInit(0)
        res = d.cuDeviceGetDevResource(0, d.CUdevResourceType.CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG)
        print(res[1].wqConfig.wqConcurrencyLimit)
        """,
        {"CUDA_DEVICE_MAX_CONNECTIONS": value},
    )
    assert int(out) == limit
