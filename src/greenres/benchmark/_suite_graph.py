"""``Graph.replay`` against a ``cuGraphLaunch`` loop in C, on a graph of one memset captured
in a partition."""

from __future__ import annotations

from cuda.bindings import driver as cu

import greenres as gr
from greenres._bindings import call

from ._floor import checked
from ._report import Target, ratio_row
from ._timing import ns_per_cycle

GREENRES, FLOOR = "greenres Graph.replay()", "C floor, cuGraphLaunch"


def run(session, report) -> None:
    # A replay queues work, which the simulator runs: fewer cycles than the call-only paths.
    cycles = max(1, session.settings.cycles // 10)
    size = session.device.sm_facts().min_partition_size
    layout = session.layout({"a": size, "b": size})
    stream = layout["a"].stream
    buffer = call(cu.cuMemAlloc, 64)
    session.stack.callback(call, cu.cuMemFree, buffer)
    graph = gr.Graph(name="bench")
    session.stack.callback(graph.close)
    with graph.capture(stream):
        call(cu.cuMemsetD8Async, buffer, 0, 64, cu.CUstream(stream.handle))
    graph.instantiate()
    exec_h, stream_h = graph.exec_handle, stream.handle

    def replay(n):
        r = graph.replay
        for _ in range(n):
            r()

    def floor_loop(n):
        return session.floor.lib.floor_graph_launch(exec_h, stream_h, n)

    methods = {
        GREENRES: ns_per_cycle(replay, cycles),
        FLOOR: lambda: checked(floor_loop(cycles), FLOOR),
    }

    def drain():
        session.drain(stream_h)

    results, calls = session.measure({GREENRES: replay, FLOOR: floor_loop}, methods, drain)
    report.add_contenders(results, calls)
    report.rows.append(
        ratio_row(
            "graph_replay_vs_floor",
            "`Graph.replay` vs a `cuGraphLaunch` loop in C",
            results,
            GREENRES,
            FLOOR,
            Target("<=", 1.5, "x"),
        )
    )
