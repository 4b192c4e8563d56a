"""cuda.core 1.2's kernel-free public API on the simulator, used the way its users do
(written from cuda.core's documented API), and greenres partitions used through cuda.core.

Each test runs in its own interpreter: cuda.core keeps a context current and the primary
context retained for the life of the process. What the simulator does not model is named
in docs/simulator.md ("What it does not cover"); the last test pins that it fails loudly.
"""

import pytest

from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

pytest.importorskip("cuda.core")


def _ok(code):
    assert run_python(code).strip().splitlines()[-1] == "ok"


def test_device_properties_streams_and_events():
    _ok(
        """
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device, EventOptions, StreamOptions

        d = Device(0)
        d.set_current()
        assert d.name.startswith("NVIDIA H100") and tuple(d.compute_capability) == (9, 0)
        p = d.properties
        assert p.multiprocessor_count == 132 and p.memory_pools_supported
        assert not p.managed_memory and not p.cooperative_launch  # not modelled: not advertised
        assert d.uuid  # (pci_bus_id goes through the CUDA runtime: not covered)
        s = d.create_stream(options=StreamOptions(nonblocking=True, priority=-1))
        assert s.priority == -1 and s.device.device_id == 0 and s.context == d.context
        t0 = s.record(options=EventOptions(timing_enabled=True))
        t1 = s.record(options=EventOptions(timing_enabled=True, blocking_sync=True))
        t1.sync()
        assert t1.is_done and (t1 - t0) >= 0
        other = d.create_stream()
        other.wait(t1)               # an event
        other.wait(s)                # a stream: cuda.core records an event on it
        other.sync()
        e = d.create_event()
        s.record(e)
        e.sync()
        for x in (e, t0, t1):
            x.close()
        s.close()
        other.close()
        print("ok")
        """
    )


def test_allocate_buffers_copies_and_memory_resources():
    _ok(
        """
        import ctypes
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device, DeviceMemoryResource, DeviceMemoryResourceOptions

        d = Device(0)
        d.set_current()
        s = d.create_stream()
        a = d.allocate(4096, stream=s)
        assert a.size == 4096 and a.is_device_accessible and a.device_id == 0
        a.fill(7, stream=s)
        b = a.copy_to(stream=s)
        c = d.allocate(4096, stream=s)
        c.copy_from(b, stream=s)
        s.sync()
        host = (ctypes.c_ubyte * 4096)()
        from cuda.bindings import driver
        assert driver.cuMemcpyDtoH(host, int(c.handle), 4096)[0] == 0
        assert bytes(host) == b"\\x07" * 4096
        mr = d.memory_resource
        assert isinstance(mr, DeviceMemoryResource)
        assert mr.attributes.used_mem_current >= 3 * 4096
        assert mr.attributes.reuse_follow_event_dependencies
        for x in (a, b, c):
            x.close(s)
        s.sync()
        assert mr.attributes.used_mem_current == 0
        own = DeviceMemoryResource(d, options=DeviceMemoryResourceOptions(max_size=1 << 20))
        buf = own.allocate(1000, stream=s)
        assert own.attributes.used_mem_current == 1024
        buf.close(s)
        s.sync()
        own.close()
        s.close()
        print("ok")
        """
    )


def test_graph_builder_capture_complete_launch_callbacks_split_and_join():
    _ok(
        """
        import ctypes
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device
        from cuda.core.graph import GraphCompleteOptions

        d = Device(0)
        d.set_current()
        s = d.create_stream()
        buf = d.allocate(64, stream=s)
        hits = []
        gb = s.create_graph_builder().begin_building()
        buf.fill(1, stream=gb)
        gb.callback(lambda: hits.append(ctypes.string_at(int(buf.handle), 1)))
        left, right = gb.split(2)
        right.callback(lambda: hits.append("right"))
        gb = gb.join(left, right)
        buf.fill(2, stream=gb)
        gb.end_building()
        graph = gb.complete(options=GraphCompleteOptions(upload_stream=s))
        buf.fill(0, stream=s)
        graph.upload(s)
        graph.launch(s)
        graph.launch(s)
        s.sync()
        assert hits == [b"\\x01", "right"] * 2, hits
        assert ctypes.string_at(int(buf.handle), 1) == b"\\x02"
        graph.close()
        gb.close()
        sim.wait_user_object_destructors()  # cuda.core's callback data goes with the graph
        assert sim.live_objects()["user_object"] == 0
        buf.close(s)
        s.close()
        print("ok")
        """
    )


def test_green_context_resources_through_cuda_core():
    _ok(
        """
        import greenres.sim as sim
        sim.install("h100")
        from cuda.bindings import driver
        from cuda.core import ContextOptions, Device, SMResourceOptions

        d = Device(0)
        d.set_current()
        groups, rest = d.resources.sm.split(SMResourceOptions(count=[16, 8]))
        ctx = d.create_context(ContextOptions(resources=[groups[0]]))
        s = ctx.create_stream()
        err, res = driver.cuStreamGetDevResource(
            int(s.handle), driver.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM)
        assert err == 0 and res.sm.smCount == 16
        buf = d.allocate(256, stream=s)      # memory is the device's, any stream orders it
        buf.fill(3, stream=s)
        buf.close(s)
        s.sync()
        s.close()
        ctx.close()
        print("ok")
        """
    )


def test_greenres_partitions_through_cuda_core():
    _ok(
        """
        import ctypes
        import greenres as gr
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device

        d = Device(0)
        d.set_current()
        with gr.Layout.create({"decode": 16, "prefill": 32}) as layout:
            decode = layout["decode"]
            cs = d.create_stream(decode.stream)       # __cuda_stream__
            assert int(cs.handle) == decode.stream.handle
            assert d.create_stream(decode.stream).context.handle is not None
            buf = d.allocate(128, stream=cs)
            gb = cs.create_graph_builder().begin_building()
            buf.fill(5, stream=gb)
            gb.end_building()
            graph = gb.complete()
            graph.launch(cs)
            cs.sync()
            assert ctypes.string_at(int(buf.handle), 4) == b"\\x05" * 4
            # The captured node carries the partition (it runs in decode's green context).
            nodes = sim.graph_node_green_contexts(gb.graph_definition.handle)
            assert set(nodes) == {decode.id}, (nodes, decode.id)
            graph.close()
            gb.close()
            buf.close(cs)
            cs.sync()
            cs.close()
        print("ok")
        """
    )


def test_graph_definitions_built_node_by_node():
    _ok(
        """
        import ctypes
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device
        from cuda.core.graph import GraphDefinition

        d = Device(0)
        d.set_current()
        s = d.create_stream()
        buf = d.allocate(256, stream=s)
        s.sync()
        base = int(buf.handle)
        g = GraphDefinition()
        a = g.memset(buf, 1, 64)
        hits = []
        b = a.callback(lambda: hits.append(ctypes.string_at(base, 1)))
        c = b.memset(base + 64, 2, 64)
        e = d.create_event()
        w = c.record(e).wait(e)
        j = g.join(a, w)
        assert len(g.nodes()) == 6 and len(g.edges()) == 6
        assert {type(n).__name__ for n in g.nodes()} == {
            "MemsetNode", "HostCallbackNode", "EventRecordNode", "EventWaitNode", "EmptyNode"}
        assert b in a.succ and a in b.pred and (a.value, a.width) == (1, 64)
        child = GraphDefinition()
        child.memset(base + 128, 3, 16)
        emb = j.embed(child)
        assert len(emb.child_graph.nodes()) == 1
        alloc = g.allocate(1024)
        assert alloc.bytesize == 1024 and alloc.dptr != 0
        alloc.deallocate(alloc.dptr)
        cp = emb.memcpy(base + 200, buf, 8)
        assert (cp.dst, cp.src, cp.size) == (base + 200, base, 8)
        g.debug_dot_print("graph.dot")
        assert open("graph.dot").read().startswith("digraph")
        x = g.instantiate()
        for _ in range(2):
            x.launch(s)
        s.sync()
        assert hits == [b"\\x01", b"\\x01"], hits
        assert ctypes.string_at(base + 60, 8) == b"\\x01" * 4 + b"\\x02" * 4
        assert ctypes.string_at(base + 128, 2) == b"\\x03" * 2
        assert ctypes.string_at(base + 200, 8) == b"\\x01" * 8
        cond = g.create_condition(default_value=1)
        g.if_then(cond).then.memset(base + 240, 9, 4)
        w = GraphDefinition()
        c0 = w.create_condition(0)
        kinds = (w.while_loop(c0), w.switch(c0, 3), w.if_else(c0))
        assert [type(k).__name__ for k in kinds] == ["WhileNode", "SwitchNode", "IfElseNode"]
        for graph in (g.instantiate(), w.instantiate()):
            graph.launch(s)
        s.sync()
        assert ctypes.string_at(base + 240, 4) == b"\\x09" * 4
        m = g.memset(base, 4, 1)
        m.update(value=8)
        assert m.value == 8
        m.destroy()
        x.close()
        buf.close(s)
        s.sync()
        print("ok")
        """
    )


def test_graph_builder_conditionals_embedding_and_exec_updates():
    _ok(
        """
        import ctypes
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device
        from cuda.core.graph import GraphDefinition

        d = Device(0)
        d.set_current()
        s, s2 = d.create_stream(), d.create_stream()
        buf = d.allocate(256, stream=s)
        s.sync()
        base = int(buf.handle)
        gb = s.create_graph_builder().begin_building()
        buf.fill(1, stream=gb)
        body = gb.if_then(gb.create_condition(1)).begin_building()
        buf.fill(7, stream=body)
        body.end_building()
        child = s2.create_graph_builder().begin_building()
        child.callback(lambda: None)
        child.end_building()
        gb.embed(child)
        gb.end_building()
        gb.debug_dot_print("builder.dot")
        graph = gb.complete()
        graph.launch(s)
        s.sync()
        assert ctypes.string_at(base, 2) == b"\\x07" * 2
        g = GraphDefinition()
        m = g.memset(buf, 4, 16)
        x = g.instantiate()
        x.launch(s)
        s.sync()
        assert ctypes.string_at(base, 2) == b"\\x04" * 2
        node = x[m]
        node.update(dst=buf, value=5, width=16)
        x.launch(s)
        s.sync()
        assert ctypes.string_at(base, 2) == b"\\x05" * 2
        node.disable()
        assert not node.is_enabled
        node.enable()
        g2 = GraphDefinition()
        g2.memset(buf, 6, 16)
        x.update(g2)
        x.launch(s)
        s.sync()
        assert ctypes.string_at(base, 2) == b"\\x06" * 2
        for obj in (x, graph, body, gb, child):
            obj.close()
        buf.close(s)
        s.sync()
        del node, m, g, g2, x  # cuda.core's objects hold their graphs until they go
        import gc
        gc.collect()
        sim.wait_user_object_destructors()
        assert sim.live_objects()["user_object"] == 0
        print("ok")
        """
    )


def test_what_is_not_modelled_fails_loudly():
    _ok(
        """
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device

        d = Device(0)
        d.set_current()
        try:
            d.sync()                  # the CUDA runtime: no export tables
        except Exception as e:
            assert "cudaErrorSymbolNotFound" in str(e)
        else:
            raise AssertionError("Device.sync() should fail on the simulator")
        print("ok")
        """
    )


def test_nvrtc_programs_launch_through_host_models_in_a_partition():
    pytest.importorskip("cuda.bindings.nvrtc")
    _ok(
        """
        import ctypes
        import greenres as gr
        import greenres.sim as sim
        sim.install("h100")
        from cuda.core import Device, LaunchConfig, Program, ProgramOptions, launch

        d = Device(0)
        d.set_current()
        code = (
            'extern "C" __global__ void greenres_fill_u32(unsigned* d, unsigned v, size_t n)'
            ' { if (threadIdx.x < n) d[threadIdx.x] = v; }'
            'extern "C" __global__ void greenres_smid_probe(unsigned* out) {'
            ' unsigned id; asm("mov.u32 %0, %%smid;" : "=r"(id)); out[blockIdx.x] = id; }'
        )
        options = ProgramOptions(arch="sm_90")
        cubin = Program(code, code_type="c++", options=options).compile("cubin")
        ptx = Program(code, code_type="c++", options=options).compile("ptx")
        with gr.Layout.create({"a": 16, "b": 16}) as layout:
            s = d.create_stream(layout["a"].stream)
            buf = d.allocate(64 * 4, stream=s)
            for value, image in ((6, cubin), (8, ptx)):
                kernel = image.get_kernel("greenres_fill_u32")
                assert kernel.attributes.max_threads_per_block == 1024
                launch(s, LaunchConfig(grid=1, block=16), kernel, buf,
                       ctypes.c_uint(value), ctypes.c_size_t(16))
                s.sync()
                got = (ctypes.c_uint * 16).from_address(int(buf.handle))
                assert list(got) == [value] * 16
            probe = cubin.get_kernel("greenres_smid_probe")
            launch(s, LaunchConfig(grid=64, block=32), probe, buf)
            s.sync()
            seen = set((ctypes.c_uint * 64).from_address(int(buf.handle)))
            assert seen == set(sim.green_context_sms(layout["a"].handle)), seen
            buf.close(s)
            s.sync()
            s.close()
        print("ok")
        """
    )
