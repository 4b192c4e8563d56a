"""Instructions per cycle of greenres' hot paths and of their floors, counted by callgrind
(repeatable on a shared machine, where timings are not): each path runs in its own process
twice, with 0 and with N cycles, and the difference of the two totals divided by N is what
one cycle executes, in every thread (the simulator's stream workers included).

    .venv/bin/python bench/instructions.py                 # needs valgrind; simulated H100
    .venv/bin/python bench/instructions.py --cycles 50000 enter with

Prints a Markdown table with each path's ratio to its floor (the C loop of the same driver
calls) and to Python's own cost of the loop and calls (no-op builtins).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

# path -> (what it runs, its floor)
PATHS = {
    "enter": ("greenres part.enter(int) + part.exit()", "floor_enter"),
    "with": ("greenres `with part: pass`", "floor_with"),
    "handoff": ("greenres.handoff(Stream, Stream)", "floor_handoff"),
    "capi": ("C-level entry: api->enter + api->exit in a C loop", "floor_enter"),
    "python_enter": ("Python's own cost: loop + abs(c) + gc.isenabled()", None),
    "python_handoff": ("Python's own cost: loop + operator.is_(s, t)", None),
    "python_with": ("Python's own cost: loop + `with` on a threading.Lock", None),
    "floor_enter": ("C floor: the 7 enter+exit calls", None),
    "floor_with": ("C floor: the 7 calls, legacy stream", None),
    "floor_handoff": ("C floor: record + wait", None),
}

_RUN = r"""
import sys
import greenres.sim as sim; sim.install("h100")
import greenres as gr
from greenres._bindings import call, primary_context_current
from greenres.benchmark import _loops as L
from greenres.benchmark._floor import Floor
from cuda.bindings import driver as cu
what, n = sys.argv[1], int(sys.argv[2])
gr.Device(0)
with primary_context_current(0):
    layout = gr.Layout.create({"a": 8, "b": 8})
    a, b = layout["a"], layout["b"]
    caller = int(b.stream.handle)
    floor = Floor(gr.driver_version())
    e1, e2 = call(cu.cuEventCreate, 2), call(cu.cuEventCreate, 2)
    if what == "enter":
        L.greenres_enter_exit(n, a, caller)
    elif what == "with":
        L.greenres_with(n, a)
    elif what == "handoff":
        L.greenres_handoff(n, a.stream, b.stream)
    elif what == "capi":
        table = floor.capi_table()
        floor.lib.floor_capi_enter_exit(table, floor.capi_partition(table, a), caller, n)
    elif what == "python_enter":
        L.python_floor_enter_exit(n, caller)
    elif what == "python_with":
        L.python_floor_with(n)
    elif what == "python_handoff":
        L.python_floor_handoff(n, a.stream, b.stream)
    elif what in ("floor_enter", "floor_with"):
        resolve = what == "floor_with"
        floor.lib.floor_enter_exit(caller, a.context_handle, a.stream.handle, int(e1), int(e2),
                                   n, resolve)
    elif what == "floor_handoff":
        floor.lib.floor_handoff(a.stream.handle, b.stream.handle, int(e1), n)
    for s in (a.stream, b.stream):
        s.synchronize()
    call(cu.cuStreamSynchronize, cu.CUstream(0))
    call(cu.cuEventDestroy, e1); call(cu.cuEventDestroy, e2)
    layout.close()
"""


def instructions(path: str, cycles: int, script: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                script,
                path,
                str(cycles),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if not found:
        raise RuntimeError(f"no callgrind total for {path}: {done.stderr[-500:]}")
    return int(found.group(1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", metavar="PATH", help=f"of: {', '.join(PATHS)}")
    parser.add_argument("--cycles", type=int, default=20000)
    args = parser.parse_args(argv)
    args.paths = args.paths or list(PATHS)
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown:
        parser.error(f"unknown path {unknown[0]!r} (paths: {', '.join(PATHS)})")
    wanted = list(dict.fromkeys(args.paths + [PATHS[p][1] for p in args.paths if PATHS[p][1]]))
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(_RUN)
    try:
        per_cycle = {
            p: (instructions(p, args.cycles, f.name) - instructions(p, 0, f.name)) / args.cycles
            for p in wanted
        }
    finally:
        os.unlink(f.name)
    print(f"### instructions per cycle (callgrind, {args.cycles} cycles, simulated H100)\n")
    print("| path | instructions per cycle | vs its floor |")
    print("|---|---:|---:|")
    for p in wanted:
        label, floor = PATHS[p]
        ratio = f"{per_cycle[p] / per_cycle[floor]:.2f}x" if floor else "-"
        print(f"| {label} | {per_cycle[p]:.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
