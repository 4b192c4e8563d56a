"""``greenres demo``: plan a serving spec, create it, run a short pipeline, report.

The pipeline is what a serving engine does per step, with device memory operations
standing in for kernels (the simulated driver runs no kernels):

  prefill writes a step's tokens  --handoff-->  decode copies them into its cache
  --handoff-->  comm copies the cache out to the host

then the decode step is captured once as a CUDA graph on the decode partition's stream and
replayed. Every step's data is checked, so an ordering bug shows up as a wrong number.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from cuda.bindings import driver as cu

import greenres as gr
from greenres._bindings import call, primary_context_current

__all__ = ["DemoReport", "run_demo"]

_WORDS = 1024  # 32-bit words per buffer
_NBYTES = _WORDS * 4
_STEPS = 8
_REPLAYS = 8


@dataclass
class DemoReport:
    """What the demo did and saw; ``ok`` when every check passed."""

    device: str
    sm_count: int
    plan: str
    stages: list[str]
    partitions: list[dict] = field(default_factory=list)
    steps: int = 0
    handoffs: int = 0
    wrong_steps: list[int] = field(default_factory=list)
    graph_partition: str = ""
    graph_nodes: int = 0
    replays: int = 0
    wrong_replays: list[int] = field(default_factory=list)
    #: driver objects the demo made and left alive (simulated driver only; None on a GPU)
    live_after_close: dict[str, int] | None = None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.wrong_steps and not self.wrong_replays and not self.live_after_close

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def text(self) -> str:
        """The report for a person."""

        def verdict(wrong):
            return "all data correct" if not wrong else f"WRONG DATA at {wrong}"

        lines = [f"device: {self.device}, {self.sm_count} SMs", "", self.plan, ""]
        lines.append(f"pipeline: {' -> '.join(self.stages)} -> host")
        lines.append("created partitions (one split, disjoint):")
        for part in self.partitions:
            sms = part.get("sm_ids")
            where = f"  SMs {sms[0]}..{sms[-1]}" if sms else ""
            lines.append(
                f"  {part['name']:<10} {part['sm_count']:>4} SMs  green context id "
                f"{part['id']}{where}"
            )
        lines.append(
            f"ran {self.steps} pipeline steps with {self.handoffs} handoffs: "
            f"{verdict(self.wrong_steps)}"
        )
        lines.append(
            f"captured the {self.graph_partition} step as a graph of {self.graph_nodes} node(s) on "
            f"its partition's stream and replayed it {self.replays} times: "
            f"{verdict(self.wrong_replays)}"
        )
        lines.append(f"closed the layout ({self.elapsed_ms:.1f} ms in all)")
        if self.live_after_close is not None:
            lines.append(
                f"simulated driver: live objects after close: {self.live_after_close or 'none'}"
            )
        return "\n".join(lines)


def example_spec() -> gr.PartitionSpec:
    """The built-in example: the same serving layout as examples/serving.toml."""
    return gr.PartitionSpec(
        partitions=(
            gr.Partition("decode", sms=64, streams=2, priority=-1),
            gr.Partition("prefill", share=0.25, min_sms=16),
            gr.Partition("comm", sms=8),
            gr.Partition("batch"),
        ),
        remainder="batch",
    )


def _stages(plan) -> list[str]:
    names = [p.name for p in plan.partitions]
    stages = [n for n in ("prefill", "decode", "comm") if n in names]
    return stages if len(stages) >= 2 else names[:3]


def run_demo(device: gr.Device, spec_path: str | None = None) -> DemoReport:
    """Run the demo on ``device`` with the spec at ``spec_path`` (default: the built-in
    example); returns what happened. Raises PlanError when the spec does not fit, and
    ValueError when it has fewer than two partitions (no pipeline to run)."""
    spec = gr.load_spec(spec_path) if spec_path else example_spec()
    if isinstance(spec, gr.ModalSpec):
        spec = spec.modes[spec.default_mode]
    plan = spec.plan(device.sm_facts())
    stages = _stages(plan)
    if len(stages) < 2:
        raise ValueError(f"the demo needs a spec with at least 2 partitions (got {stages})")
    report = DemoReport(device.name, device.sm_count, plan.explain(), stages)
    from greenres import sim

    # what the process held before: the demo answers only for what it made itself
    before = sim.live_objects() if sim.is_installed() else None
    started = time.perf_counter()
    # Device memory is allocated the way any CUDA program does: in the primary context.
    with primary_context_current(device.ordinal), gr.Layout.create(plan, device=device) as layout:
        _describe_partitions(layout, report)
        buffers = [call(cu.cuMemAlloc, _NBYTES) for _ in stages]
        try:
            parts = [layout[name] for name in stages]
            _run_steps(parts, buffers, report)
            _run_graph(parts, buffers, report)
        finally:
            for buffer in buffers:
                call(cu.cuMemFree, buffer)
    report.elapsed_ms = (time.perf_counter() - started) * 1e3
    if before is not None:
        report.live_after_close = sim.live_objects_since(before)
    return report


def _describe_partitions(layout, report: DemoReport) -> None:
    from greenres import sim

    for part in layout:
        entry = {"name": part.name, "sm_count": part.sm_count, "id": part.id}
        if sim.is_installed():
            entry["sm_ids"] = list(sim.green_context_sms(part.handle))
        report.partitions.append(entry)


def _words_equal(host: bytearray, value: int) -> bool:
    expected = value.to_bytes(4, "little") * _WORDS
    return bytes(host) == expected


def _run_steps(parts, buffers, report: DemoReport) -> None:
    """Each step: the first stage writes, each next stage copies after a handoff, the last
    copies to the host."""
    host = bytearray(_NBYTES)
    first, *rest = parts
    for step in range(1, _STEPS + 1):
        call(cu.cuMemsetD32Async, buffers[0], step, _WORDS, first.stream.handle)
        previous = first
        for index, part in enumerate(rest, start=1):
            gr.handoff(previous.stream, part.stream)
            report.handoffs += 1
            call(
                cu.cuMemcpyDtoDAsync,
                buffers[index],
                buffers[index - 1],
                _NBYTES,
                part.stream.handle,
            )
            previous = part
        call(cu.cuMemcpyDtoHAsync, host, buffers[-1], _NBYTES, previous.stream.handle)
        previous.stream.synchronize()
        report.steps += 1
        if not _words_equal(host, step):
            report.wrong_steps.append(step)


def _run_graph(parts, buffers, report: DemoReport) -> None:
    """Capture the second stage's copy on its partition's stream; replay it after fresh
    input, handing off from the first stage each time."""
    host = bytearray(_NBYTES)
    first, second = parts[0], parts[1]
    report.graph_partition = second.name
    with gr.Graph() as graph:
        with graph.capture(second.stream):
            call(cu.cuMemcpyDtoDAsync, buffers[1], buffers[0], _NBYTES, second.stream.handle)
        # count before instantiate: without keep_graph the graph itself is freed then
        _, report.graph_nodes = call(cu.cuGraphGetNodes, cu.CUgraph(graph.handle), 0)
        graph.instantiate()
        for replay in range(1, _REPLAYS + 1):
            call(cu.cuMemsetD32Async, buffers[0], 1000 + replay, _WORDS, first.stream.handle)
            gr.handoff(first.stream, second.stream)
            graph.replay(second.stream)
            call(cu.cuMemcpyDtoHAsync, host, buffers[1], _NBYTES, second.stream.handle)
            second.stream.synchronize()
            report.replays += 1
            if not _words_equal(host, 1000 + replay):
                report.wrong_replays.append(replay)
