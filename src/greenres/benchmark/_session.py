"""What every suite shares: the device, its primary context current on this thread, a
caller stream and events made in it, the simulator's call counters, and one place that
frees everything the run made (also when a suite raises)."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass

from cuda.bindings import driver as cu

import greenres as gr
from greenres import sim as _sim
from greenres._bindings import call, primary_context_current
from greenres._config import hot_path_gil

from ._floor import Floor
from ._timing import interleaved

__all__ = ["Session", "Settings"]


@dataclass(frozen=True)
class Settings:
    """``cycles``: calls per timed batch of the hot paths (setup-cost suites scale it down);
    ``rounds``: interleaved rounds; ``scale``: also measure the scale series."""

    cycles: int = 20000
    rounds: int = 7
    scale: bool = False


@dataclass
class Session:
    """``stack`` frees what the running suite made (:func:`greenres.benchmark.run` gives
    each suite a stack of its own, closed when the suite ends or raises)."""

    device: gr.Device
    settings: Settings
    stack: contextlib.ExitStack
    primary: object = None
    floor: Floor | None = None
    sim: object = None  # greenres.sim when the simulated driver is installed

    @classmethod
    def open(cls, device: gr.Device, settings: Settings, stack: contextlib.ExitStack):
        session = cls(device, settings, stack)
        session.primary = stack.enter_context(primary_context_current(device.ordinal))
        session.floor = Floor(gr.driver_version())
        session.sim = _sim if _sim.is_installed() else None
        return session

    # ------------------------------------------------------------------- objects it frees

    def stream(self) -> cu.CUstream:
        """A non-blocking stream of the primary context (a caller's stream)."""
        stream = call(cu.cuStreamCreate, cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value)
        self.stack.callback(call, cu.cuStreamDestroy, stream)
        return stream

    def event(self) -> cu.CUevent:
        event = call(cu.cuEventCreate, cu.CUevent_flags.CU_EVENT_DISABLE_TIMING.value)
        self.stack.callback(call, cu.cuEventDestroy, event)
        return event

    def layout(self, spec, **options) -> gr.Layout:
        layout = gr.Layout.create(spec, device=self.device, **options)
        self.stack.callback(layout.close)
        return layout

    # ------------------------------------------------------------------------ measuring

    def calls_per_cycle(self, loop, cycles: int = 200):
        """(calls per cycle, {function: per cycle}) of ``loop(cycles)`` on the simulator;
        (None, None) on a real driver. One cycle runs first, uncounted: the steady state is
        counted, not what a first use makes (a handoff pool slot's event, say), as the
        timed rounds measure it."""
        if self.sim is None:
            return None, None
        loop(1)
        self.sim.reset_call_counts()
        loop(cycles)
        counts = {k: v / cycles for k, v in self.sim.call_counts().items()}
        self.sim.reset_call_counts()
        return sum(counts.values()), counts

    def measure(self, loops: dict, methods: dict, drain) -> dict[str, list[float]]:
        """Count each loop's driver calls (simulator only), then time ``methods`` in
        interleaved rounds, draining after each batch; returns the per-round results and
        the call counts."""
        calls = {}
        for name, loop in loops.items():
            calls[name] = self.calls_per_cycle(loop)
            drain()
        return interleaved(methods, self.settings.rounds, between=drain), calls

    @staticmethod
    def drain(*streams) -> None:
        """Wait for the given streams (CUstream or int handles)."""
        for s in streams:
            call(cu.cuStreamSynchronize, s if isinstance(s, cu.CUstream) else cu.CUstream(int(s)))

    def meta(self) -> dict:
        facts = self.device.sm_facts()
        return {
            "greenres": gr.__version__,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "device": self.device.name,
            "sm_count": facts.sm_count,
            "driver": "simulated driver"
            if self.sim is not None
            else f"driver {facts.driver_version_text}",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "hot_path_gil": hot_path_gil(),
            "cycles": self.settings.cycles,
            "rounds": self.settings.rounds,
        }
