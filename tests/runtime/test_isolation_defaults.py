"""isolation_key() with no arguments, as the Inductor seed calls it: the default schema on
the current device (the current context's, else device 0), and null device forms where
there is no driver."""

from __future__ import annotations

import json

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import _driver
from greenres.isolation import IsolationSchema, isolation_context, isolation_key

from support.childprocess import run_python
from support.rthelpers import ok


def _facts_of(ordinal):
    return greenres.Device(ordinal).sm_facts()


@pytest.mark.gpu
def test_no_arguments_is_the_default_schema_on_device_0():
    facts = _facts_of(0)
    context = isolation_context()
    assert context == isolation_context(IsolationSchema(), facts=facts)
    assert context["compile"]["device"] == {
        "name": facts.device_name,
        "compute_capability": list(facts.compute_capability),
        "sm_count": facts.sm_count,
    }
    assert context["compile"]["driver_version"] == greenres.driver_version()
    assert context["runtime"]["partition"] is None
    assert isolation_key() == isolation_key(IsolationSchema(), facts=facts)
    assert len(isolation_key()) == 32


@pytest.mark.gpu
def test_the_current_contexts_device_is_the_default(primary):
    # primary: device 0's primary context is current
    assert _driver._current_ordinal() == 0
    if greenres.device_count() < 2:
        pytest.skip("needs two devices")
    device = ok(cu.cuDeviceGet(1))
    ctx = ok(cu.cuDevicePrimaryCtxRetain(device))
    ok(cu.cuCtxPushCurrent(ctx))
    try:
        assert _driver._current_ordinal() == 1
        assert isolation_context() == isolation_context(IsolationSchema(), facts=_facts_of(1))
    finally:
        ok(cu.cuCtxPopCurrent())
        ok(cu.cuDevicePrimaryCtxRelease(device))


@pytest.mark.gpu
def test_a_partition_uses_its_plans_facts_and_the_default_schema():
    with greenres.Layout.create({"a": 16}) as layout:
        part = layout["a"]
        assert part.isolation_key() == isolation_key(IsolationSchema(), part)
        assert isolation_context(partition=part)["runtime"]["partition"]["sm_count"] == 16


_NO_DRIVER = """
import json
import greenres.sim as sim
sim.install("h100")
sim.inject_fault("cuInit", "CUDA_ERROR_NO_DEVICE")   # as a machine without a GPU answers
from greenres.isolation import isolation_context, isolation_key
context = isolation_context()
print(json.dumps([context["compile"]["device"], context["compile"]["driver_version"],
                  isolation_key()]))
"""


@pytest.mark.sim_only
def test_without_a_driver_the_device_forms_are_null():
    device, driver_version, key = json.loads(run_python(_NO_DRIVER, GREENRES_SIM=None))
    assert device is None and driver_version is None
    assert len(key) == 32 and int(key, 16) >= 0
