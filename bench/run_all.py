"""Every greenres benchmark in one process, with the scale series: prints Markdown (the
table of docs/benchmarks.md) and draws the scale series as SVG figures.

    .venv/bin/python bench/run_all.py                       # simulated H100, docs/figures/
    .venv/bin/python bench/run_all.py --rounds 15 --cycles 20000 --json results.json
    GREENRES_SIM=off .venv/bin/python bench/run_all.py      # the real driver

The benchmarks are the installed package's (``greenres.benchmark``, the code ``greenres
bench`` runs); run ``.venv/bin/pip install .`` after changing it. Exit status 0 whatever
the PASS/MISS results; 1 when a simulated driver object was left alive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--cycles", type=int, default=20000)
    parser.add_argument("--suite", action="append", help="only this suite (repeatable)")
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale series")
    args = parser.parse_args(argv)

    profile = os.environ.setdefault("GREENRES_SIM", "h100")
    import greenres.sim

    if profile.strip().lower() not in ("", "0", "false", "off"):
        greenres.sim.install_from_env()
    import greenres as gr
    from greenres import benchmark
    from greenres.benchmark._plot import line_chart

    settings = benchmark.Settings(cycles=args.cycles, rounds=args.rounds, scale=not args.no_scale)
    report = benchmark.run(gr.Device(0), settings, args.suite)
    print("## greenres benchmarks\n")
    print(f"    {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    print(report.markdown())
    if report.scale:
        args.figures.mkdir(parents=True, exist_ok=True)
        print()
        for name, data in report.scale.items():
            path = args.figures / f"{name}.svg"
            path.write_text(
                line_chart(name.replace("_", " "), data["x"], data["y"], data["series"])
            )
            print(f"![{name}]({os.path.relpath(path, ROOT / 'docs')})")
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2))
    return 1 if report.live_after_close else 0


if __name__ == "__main__":
    sys.exit(main())
