"""Graph calls beyond capture that cuda.core and others make: cuGraphInstantiateWithParams,
cuGraphAddEmptyNode, cuGraphGetId / cuGraphExecGetId (13.1), and cuStreamGetDevResource
(13.1): what a stream's work may run on."""

import pytest

from support.simhelpers import (
    NON_BLOCKING,
    SM,
    E,
    check,
    device_resource,
    driver,
    make_green,
    requires_bindings,
    split,
    stream,
    take_destroyed_handle_hazards,
)

pytestmark = pytest.mark.sim_only

SUCCESS = driver.CUgraphInstantiateResult.CUDA_GRAPH_INSTANTIATE_SUCCESS


def _params(flags=0, upload=None):
    p = driver.CUDA_GRAPH_INSTANTIATE_PARAMS()
    p.flags = flags
    if upload is not None:
        p.hUploadStream = upload
    return p


def test_instantiate_with_params_reports_success_and_checks_the_upload_stream(ctx):
    graph = check(driver.cuGraphCreate(0))
    s = stream()
    params = _params(driver.CUgraphInstantiate_flags.CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD, s)
    exe = check(driver.cuGraphInstantiateWithParams(graph, params))
    assert params.result_out == SUCCESS
    check(driver.cuGraphLaunch(exe, s))
    check(driver.cuStreamSynchronize(s))
    check(driver.cuGraphExecDestroy(exe))
    check(driver.cuStreamDestroy(s))
    # The upload stream is checked only with the upload flag.
    bad = _params(driver.CUgraphInstantiate_flags.CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD, s)
    assert driver.cuGraphInstantiateWithParams(graph, bad)[0] == E.CUDA_ERROR_INVALID_HANDLE
    assert bad.result_out != SUCCESS
    take_destroyed_handle_hazards()
    exe = check(driver.cuGraphInstantiateWithParams(graph, _params(0, s)))
    check(driver.cuGraphExecDestroy(exe))
    unknown = _params(1 << 20)
    assert driver.cuGraphInstantiateWithParams(graph, unknown)[0] == E.CUDA_ERROR_INVALID_VALUE
    check(driver.cuGraphDestroy(graph))
    assert driver.cuGraphInstantiateWithParams(graph, _params())[0] == E.CUDA_ERROR_INVALID_VALUE
    take_destroyed_handle_hazards()


def test_empty_nodes_join_dependencies(ctx):
    graph = check(driver.cuGraphCreate(0))
    a = check(driver.cuGraphAddEmptyNode(graph, None, 0))
    b = check(driver.cuGraphAddEmptyNode(graph, [a], 1))
    c = check(driver.cuGraphAddEmptyNode(graph, [a, b], 2))
    assert check(driver.cuGraphGetNodes(graph, 0))[1] == 3
    assert (
        driver.cuGraphAddEmptyNode(graph, [a, a], 2)[0] == E.CUDA_ERROR_INVALID_VALUE
    )  # duplicates
    other = check(driver.cuGraphCreate(0))
    assert (
        driver.cuGraphAddEmptyNode(other, [c], 1)[0] == E.CUDA_ERROR_INVALID_VALUE
    )  # not its node
    exe = check(driver.cuGraphInstantiate(graph, 0))
    s = stream()
    check(driver.cuGraphLaunch(exe, s))
    check(driver.cuStreamSynchronize(s))
    for x in (exe,):
        check(driver.cuGraphExecDestroy(x))
    for g in (graph, other):
        check(driver.cuGraphDestroy(g))
    check(driver.cuStreamDestroy(s))


@requires_bindings("cuGraphGetId", "cuGraphExecGetId")
def test_graph_and_exec_ids_are_distinct_and_stable(ctx):
    g1 = check(driver.cuGraphCreate(0))
    g2 = check(driver.cuGraphCreate(0))
    e1 = check(driver.cuGraphInstantiate(g1, 0))
    ids = [check(driver.cuGraphGetId(g)) for g in (g1, g2)] + [check(driver.cuGraphExecGetId(e1))]
    assert len(set(ids)) == 3
    assert check(driver.cuGraphGetId(g1)) == ids[0]
    check(driver.cuGraphExecDestroy(e1))
    assert driver.cuGraphExecGetId(e1)[0] == E.CUDA_ERROR_INVALID_VALUE
    for g in (g1, g2):
        check(driver.cuGraphDestroy(g))
    assert driver.cuGraphGetId(g1)[0] == E.CUDA_ERROR_INVALID_VALUE
    take_destroyed_handle_hazards()


@requires_bindings("cuStreamGetDevResource")
def test_stream_dev_resource_is_the_green_contexts_or_the_devices(ctx):
    (group,), _rest = split(device_resource(), 1, 16)
    g = make_green([group])
    gs = check(driver.cuGreenCtxStreamCreate(g, NON_BLOCKING, 0))
    res = check(driver.cuStreamGetDevResource(gs, SM))
    assert res.type == SM and res.sm.smCount == 16
    # The resource can be split further like any queried resource.
    groups, _ = split(res, 1, 8)
    assert groups[0].sm.smCount == 8
    plain = stream()
    assert check(driver.cuStreamGetDevResource(plain, SM)).sm.smCount == 132
    assert check(driver.cuStreamGetDevResource(0, SM)).sm.smCount == 132  # the legacy stream
    wq = driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG
    assert driver.cuStreamGetDevResource(plain, wq)[0] == E.CUDA_ERROR_INVALID_RESOURCE_TYPE
    assert driver.cuStreamGetDevResource(12345, SM)[0] == E.CUDA_ERROR_INVALID_HANDLE
    check(driver.cuStreamDestroy(plain))
    check(driver.cuStreamDestroy(gs))
    check(driver.cuGreenCtxDestroy(g))
