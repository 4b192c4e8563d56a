"""What NVTX annotation costs: enter+exit of a partition of a layout with annotation off,
on with no tool attached, and on with a tool recording every event; and
``greenres.nvtx.range_push``/``range_pop`` against the ``nvtx`` package's
``push_range``/``pop_range`` (the Python calls ``torch.cuda.nvtx`` users make), when that
package is installed.

    .venv/bin/python bench/bench_nvtx.py            # simulated H100; Markdown on stdout

NVTX loads a tool at the first NVTX call of a process (``NVTX_INJECTION64_PATH``), so the
"tool attached" rows come from a second process, run with the recording injection library
of the tests (tests/support/nvtx_recorder.c, compiled here with ``cc``); each process runs
greenres bench's ``nvtx`` suite (its contenders side by side, in interleaved rounds), and
every ratio is taken inside one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDER = ROOT / "tests" / "support" / "nvtx_recorder.c"


def measure(rounds: int, cycles: int) -> dict:
    """greenres bench's ``nvtx`` suite in this process: ns per round of every contender."""
    os.environ.setdefault("GREENRES_SIM", "h100")
    import greenres.sim

    greenres.sim.install_from_env()
    import greenres as gr
    from greenres import benchmark

    report = benchmark.run(
        gr.Device(0), benchmark.Settings(cycles=cycles, rounds=rounds), suites=["nvtx"]
    )
    return {name: entry["ns_per_round"] for name, entry in report.contenders.items()}


def recorder_library() -> Path | None:
    """The tests' recording injection library, compiled into a temporary file (None when
    there is no compiler or no NVTX headers)."""
    spec = importlib.util.find_spec("nvidia")
    include = next(
        (
            Path(root) / "cu13" / "include"
            for root in (spec.submodule_search_locations if spec else [])
            if (Path(root) / "cu13" / "include" / "nvtx3" / "nvToolsExt.h").is_file()
        ),
        None,
    )
    if include is None:
        return None
    out = Path(tempfile.mkdtemp(prefix="greenres-nvtx-bench-")) / "recorder.so"
    compiled = subprocess.run(
        [
            os.environ.get("CC", "cc"),
            "-O2",
            "-shared",
            "-fPIC",
            "-fvisibility=hidden",
            f"-I{include}",
            str(RECORDER),
            "-o",
            str(out),
            "-lpthread",
        ],
        capture_output=True,
    )
    return out if compiled.returncode == 0 else None


def table(title: str, results: dict, base: str) -> list[str]:
    lines = [f"#### {title}", "", "| contender | median ns per cycle | vs " + base + " |"]
    lines.append("|---|---:|---:|")
    for name, values in results.items():
        ratio = statistics.median(a / b for a, b in zip(values, results[base], strict=True))
        lines.append(f"| {name} | {statistics.median(values):.0f} | {ratio:.2f}x |")
    return [*lines, ""]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cycles", type=int, default=20000)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(measure(args.rounds, args.cycles)))
        return 0
    base = "enter+exit, annotation off"
    lines = table("no tool attached", measure(args.rounds, args.cycles), base)
    library = recorder_library()
    if library is None:
        lines.append("(no tool-attached rows: no C compiler or no NVTX headers)")
    else:
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--json",
                "--rounds",
                str(args.rounds),
                "--cycles",
                str(args.cycles),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "NVTX_INJECTION64_PATH": str(library)},
        )
        lines += table("a tool attached (the tests' recorder)", json.loads(child.stdout), base)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
