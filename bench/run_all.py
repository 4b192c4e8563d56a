"""Run every greenres benchmark side by side in one process and print Markdown.

    .venv/bin/python bench/run_all.py            # from the repo root; simulated H100
    BENCH_ROUNDS=25 BENCH_BATCH=20000 .venv/bin/python bench/run_all.py

The benchmarks import the installed greenres (run ``.venv/bin/pip install .`` after
changing the package). ``GREENRES_SIM`` selects the
simulated driver (default ``h100``; ``off`` for a real GPU). Exit status 0 whatever the
PASS/MISS results.
"""

from __future__ import annotations

import sys

import _common as C


def main():
    C.setup("h100")
    import bench_enter_exit
    import bench_handoff
    import bench_scaling
    import bench_threads

    print("## greenres benchmarks\n")
    for module in (bench_enter_exit, bench_scaling, bench_threads, bench_handoff):
        module.main()
        sys.stdout.flush()


if __name__ == "__main__":
    main()
