"""Locality domains (CUDA 13.4) in the simulator: the device attributes, the structured
split's LOCALITY_DOMAIN_ID / SUPPLEMENTAL_SMS / ID_ANY, and the descriptor rule (one
localityDomainId). Each test is its own simulated machine (a B200 of two domains, a guess
in docs/devices.md)."""

import json

import pytest

from support.simhelpers import requires_bindings, run_python

pytestmark = [pytest.mark.sim_only, requires_bindings("CUdevSmResourceGroup_flags")]

PRELUDE = """
import json
import greenres.sim as sim
sim.install("b200", driver_version={version})
from cuda.bindings import driver as d
E = d.CUresult
d.cuInit(0)
A = d.CUdevice_attribute
F = d.CUdevSmResourceGroup_flags
ANY = 0xFFFFFFFF
def ok(r):
    assert r[0] == E.CUDA_SUCCESS, r[0]
    return r[1:] if len(r) > 2 else r[1]
dev = ok(d.cuDeviceGetDevResource(0, d.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM))
def split(*groups):
    params = []
    for count, flags, domain in groups:
        p = d.CU_DEV_SM_RESOURCE_GROUP_PARAMS()
        p.smCount, p.flags, p.localityDomainId = count, flags, domain
        params.append(p)
    return d.cuDevSmResourceSplit(len(params), dev, 0, params)
"""


def run(body, version=13040):
    return json.loads(run_python(PRELUDE.format(version=version) + body).strip().splitlines()[-1])


def test_attributes_report_the_domains():
    out = run(
        """
count = A.CU_DEVICE_ATTRIBUTE_LOCALITY_DOMAIN_COUNT
sms = A.CU_DEVICE_ATTRIBUTE_LOCALITY_DOMAIN_MULTIPROCESSOR_COUNT
print(json.dumps([ok(d.cuDeviceGetAttribute(count, 0)), ok(d.cuDeviceGetAttribute(sms, 0))]))
"""
    )
    assert out == [2, 74]


def test_attributes_are_unknown_before_13_4():
    out = run(
        """
r = d.cuDeviceGetAttribute(A.CU_DEVICE_ATTRIBUTE_LOCALITY_DOMAIN_COUNT, 0)
print(json.dumps(r[0].name))
""",
        version=13010,
    )
    assert out == "CUDA_ERROR_INVALID_VALUE"


def test_groups_take_the_sms_of_their_domain():
    out = run(
        """
import greenres.sim as s
err, groups, rem = split((16, F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID, 1),
                         (16, F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID, 0),
                         (16, F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID, ANY))
assert err == E.CUDA_SUCCESS, err
flag = int(F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID)
ids = []
for g in groups:
    desc = ok(d.cuDevResourceGenerateDesc([g], 1))
    green = ok(d.cuGreenCtxCreate(desc, 0, d.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM))
    ids.append(list(s.green_context_sms(green)))
    d.cuGreenCtxDestroy(green)
print(json.dumps([[g.sm.localityDomainId for g in groups],
                  [bool(g.sm.flags & flag) for g in groups], ids, rem.sm.smCount]))
"""
    )
    domains, flagged, ids, remainder = out
    assert domains == [1, 0, 0] and flagged == [True, True, True]
    assert ids[0] == list(range(74, 90))  # domain 1 is SMs 74..147
    assert ids[1] == list(range(0, 16))
    assert ids[2] == list(range(16, 32))  # ANY: the lowest free SMs
    assert remainder == 148 - 48


def test_a_domain_gives_at_most_its_sms():
    out = run(
        """
flag = F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID
print(json.dumps([split((80, flag, 0))[0].name, split((72, flag, 0))[0].name,
                  split((64, flag, 0), (16, flag, 0))[0].name, split((8, flag, 2))[0].name,
                  split((8, F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_SUPPLEMENTAL_SMS, 0))[0]
                  .name]))
"""
    )
    assert out == [
        "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION",  # 80 > 74
        "CUDA_SUCCESS",
        "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION",  # 80 in one domain, in two groups
        "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION",  # no domain 2
        "CUDA_ERROR_INVALID_VALUE",  # SUPPLEMENTAL_SMS modifies LOCALITY_DOMAIN_ID only
    ]


def test_a_descriptor_needs_one_domain():
    out = run(
        """
flag = F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID
err, groups, rem = split((16, flag, 0), (16, flag, 1), (16, flag, 0))
same = d.cuDevResourceGenerateDesc([groups[0], groups[2]], 2)[0].name
other = d.cuDevResourceGenerateDesc([groups[0], groups[1]], 2)[0].name
with_rem = d.cuDevResourceGenerateDesc([groups[1], rem], 2)[0].name
print(json.dumps([same, other, with_rem]))
"""
    )
    assert out == [
        "CUDA_SUCCESS",
        "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION",
        "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION",
    ]


def test_locality_flags_are_unknown_before_13_4():
    out = run(
        """
print(json.dumps(split((16, F.CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID, 0))[0].name))
""",
        version=13010,
    )
    assert out == "CUDA_ERROR_INVALID_VALUE"
