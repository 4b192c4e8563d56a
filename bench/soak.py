"""Soak: many layout create/close cycles and many enter/exit cycles in one process, then
check that nothing accumulated: the simulator's live objects are back where they started
and resident memory grew less than a bound (the simulator reuses handle slots, greenres
frees everything it made).

    .venv/bin/python bench/soak.py                       # 10,000 layouts, 1,000,000 enter/exit
    .venv/bin/python bench/soak.py --layouts 300 --enters 30000     # the CI smoke run

Prints one JSON line; exit status 1 when a check failed. Resident memory is measured after
a warm-up (caches of Python, cuda-bindings and the simulator fill first) and is not checked
under AddressSanitizer (GREENRES_SANITIZED=1), whose quarantine holds freed memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _layout_cycles(gr, n: int, modal) -> None:
    for i in range(n):
        plan = modal if i % 4 == 3 else {"a": 16, "b": 24, "c": 8}
        with gr.Layout.create(plan) as layout:
            part = layout.partitions[0]
            stream = part.create_stream()
            with part:
                gr.handoff(stream, layout.partitions[-1].stream)
            stream.close()


def _enter_cycles(gr, n: int) -> None:
    with gr.Layout.create({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        caller = b.stream
        for _ in range(n // 2):
            a.enter(caller)
            a.exit()
            with b:
                pass


def _simulator(profile: str):
    """Install the simulated driver unless GREENRES_SIM says otherwise (``off``: the real
    driver); greenres.sim, or None on a real driver."""
    env = os.environ.setdefault("GREENRES_SIM", profile)
    import greenres.sim as sim

    if env.strip().lower() in ("", "0", "false", "off"):
        return None
    sim.install_from_env()
    return sim


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", type=int, default=10_000)
    parser.add_argument("--enters", type=int, default=1_000_000)
    parser.add_argument("--max-rss-growth-mb", type=float, default=5.0)
    args = parser.parse_args(argv)
    sim = _simulator("h100")
    import greenres as gr
    from greenres.spec import ModalSpec, Partition, PartitionSpec

    device = gr.Device(0)
    modal = ModalSpec(
        modes={
            "x": PartitionSpec(partitions=(Partition("a", sms=32), Partition("b"))),
            "y": PartitionSpec(partitions=(Partition("c", share=0.5), Partition("d"))),
        },
        default="x",
    ).plan(device)
    before = sim.live_objects() if sim else None
    warm = max(args.layouts // 10, 50)
    _layout_cycles(gr, warm, modal)
    _enter_cycles(gr, min(args.enters, 20_000))
    gc.collect()
    rss_start = _rss_bytes()
    t0 = time.perf_counter()
    _layout_cycles(gr, args.layouts, modal)
    t1 = time.perf_counter()
    _enter_cycles(gr, args.enters)
    t2 = time.perf_counter()
    gc.collect()
    rss_end = _rss_bytes()
    growth_mb = (rss_end - rss_start) / 2**20
    sanitized = os.environ.get("GREENRES_SANITIZED") == "1"
    left = sim.live_objects_since(before) if sim else {}
    report = {
        "layouts": args.layouts,
        "enter_exit_cycles": args.enters,
        "layout_cycle_us": round((t1 - t0) / max(args.layouts, 1) * 1e6, 1),
        "enter_exit_ns": round((t2 - t1) / max(args.enters, 1) * 1e9, 1),
        "rss_growth_mb": round(growth_mb, 3),
        "rss_checked": not sanitized,
        "live_objects_left": left,
        "hazards": sim.hazards() if sim else [],
    }
    ok = not left and not report["hazards"]
    if not sanitized:
        ok = ok and growth_mb < args.max_rss_growth_mb
    report["ok"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
