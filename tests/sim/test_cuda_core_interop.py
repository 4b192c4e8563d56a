"""cuda.core and greenres on the simulator, both ways.

* A partition's stream used as a cuda.core ``Stream`` (``Stream.from_handle`` and
  ``Device.create_stream(obj)``, which reads ``__cuda_stream__``): buffers filled and
  copied, events recorded and waited, and cuda.core's work captured into a greenres graph
  on that stream stays in the partition.
* A cuda.core stream as a handoff source and destination, and as ``from_stream``.
* A cuda.core green context's stream handed to greenres.

Each test runs in its own interpreter: cuda.core keeps a context current and the primary
context retained for the life of the process. (cuda.core's own ``GraphBuilder.complete()``
and ``Device.allocate`` need ``cuGraphInstantiateWithParams`` and memory pools, which the
simulator does not model yet; buffers here are ``Buffer.from_handle`` over ``cuMemAlloc``.)
"""

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

pytest.importorskip("cuda.core")

PRELUDE = """
import greenres.sim as sim
sim.install("h100")
import greenres as gr
from cuda.bindings import driver as cu
from cuda.core import Buffer, ContextOptions, Device, SMResourceOptions, Stream

device = Device(0)
device.set_current()
N = 4096
allocations = []

def buffer():
    err, ptr = cu.cuMemAlloc(N)
    assert err == cu.CUresult.CUDA_SUCCESS
    allocations.append(ptr)
    return Buffer.from_handle(int(ptr), N)

def read(buf):
    host = bytearray(N)
    (err,) = cu.cuMemcpyDtoH(host, buf.handle, N)
    assert err == cu.CUresult.CUDA_SUCCESS
    return bytes(host)
"""


def run(code):
    return run_python(PRELUDE + code).strip()


def test_a_partitions_stream_as_a_cuda_core_stream():
    out = run(
        """
with gr.Layout.create({"a": 16, "b": 16}) as layout:
    a, b = layout["a"], layout["b"]
    core_a = Stream.from_handle(a.stream.handle)
    core_b = device.create_stream(b.stream)  # read through __cuda_stream__
    assert int(core_b.handle) == b.stream.handle
    x, y = buffer(), buffer()
    sim.set_op_delay_us(300)  # widen the race a missing wait would lose
    x.fill(3, stream=core_a)
    core_b.wait(core_a.record())  # a cuda.core event over greenres streams
    x.copy_to(y, stream=core_b)
    core_b.sync()
    sim.set_op_delay_us(0)
    assert read(y) == bytes([3]) * N
    # cuda.core's work captured on the partition's stream stays in the partition
    with gr.Graph(keep_graph=True) as graph:
        with graph.capture(a.stream):
            x.fill(9, stream=core_a)
            x.copy_to(y, stream=core_a)
        nodes = sim.graph_node_green_contexts(graph.handle)
        assert nodes == (a.id, a.id), (nodes, a.id)
        graph.replay(core_b)  # replayed from a cuda.core stream: still on a's SMs
        core_b.sync()
    assert read(y) == bytes([9]) * N
    core_a.close(); core_b.close()  # borrowed handles: cuda.core does not destroy them
    for ptr in allocations:
        cu.cuMemFree(ptr)
print("ok")
"""
    )
    assert out == "ok"


def test_a_cuda_core_stream_as_handoff_source_destination_and_caller():
    out = run(
        """
core = device.create_stream()
x, y, z = buffer(), buffer(), buffer()
with gr.Layout.create({"a": 16}) as layout:
    a = layout["a"]
    sim.set_op_delay_us(300)
    x.fill(4, stream=core)
    gr.handoff(src=core, dst=a.stream)           # cuda.core -> partition
    x.copy_to(y, stream=Stream.from_handle(a.stream.handle))
    gr.handoff(src=a.stream, dst=core)           # partition -> cuda.core
    y.copy_to(z, stream=core)
    core.sync()
    assert read(z) == bytes([4]) * N
    x.fill(6, stream=core)
    with a.enter(from_stream=core):              # the caller's stream is cuda.core's
        x.copy_to(y, stream=Stream.from_handle(a.stream.handle))
    y.copy_to(z, stream=core)                    # exit made core wait for the partition
    core.sync()
    sim.set_op_delay_us(0)
    assert read(z) == bytes([6]) * N
for ptr in allocations:
    cu.cuMemFree(ptr)
core.close()
print("ok")
"""
    )
    assert out == "ok"


def test_a_cuda_core_green_contexts_stream_handed_to_greenres():
    out = run(
        """
groups, _ = device.resources.sm.split(SMResourceOptions(count=[8]))
ctx = device.create_context(ContextOptions(resources=[groups[0]]))
assert ctx.is_green
green = ctx.create_stream()
x, y = buffer(), buffer()
with gr.Event() as event:
    sim.set_op_delay_us(300)
    x.fill(8, stream=green)
    event.record(green)                          # greenres event on cuda.core's stream
    other = device.create_stream()
    event.wait(other)
    x.copy_to(y, stream=other)
    other.sync()
    sim.set_op_delay_us(0)
assert read(y) == bytes([8]) * N
# a cuda.core green stream is a graph capture stream for greenres too
with gr.Graph(keep_graph=True) as graph:
    with graph.capture(green):
        x.fill(1, stream=green)
    assert len(sim.graph_node_green_contexts(graph.handle)) == 1
    graph.replay(green)
    green.sync()
assert read(x) == bytes([1]) * N
green.close(); other.close(); ctx.close()
for ptr in allocations:
    cu.cuMemFree(ptr)
print("ok")
"""
    )
    assert out == "ok"
