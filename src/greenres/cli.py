"""The ``greenres`` command: ``info``, ``plan``, ``key``, ``demo``, ``verify`` and ``bench``.

Exit codes: 0 success, 2 bad input (the message says what), 1 driver error (also: no
driver could be loaded, a check of ``demo`` failed, ``verify`` found partitions that are
not disjoint or not within their counts, or ``bench`` left a simulated driver object
alive).
``--device 0`` uses the loaded driver; ``--device sim:h100`` (or ``sim:8xh100``) installs
the simulated driver first. With no ``--device`` and no driver on the machine, the CLI
uses the simulated H100 and says so on stderr (the library itself never falls back).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]

EXIT_OK, EXIT_DRIVER_ERROR, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_SIM_PROFILE = "h100"
# greenres.benchmark's defaults (not imported here: that would load the driver before
# --device chose it)
BENCH_CYCLES, BENCH_ROUNDS = 20000, 7


class BadInput(Exception):
    """A user error the CLI reports with exit code 2."""


def _real_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _select_driver(device: str | None) -> int:
    """Load the driver the ``--device`` option asks for; return the device ordinal."""
    from greenres import sim

    if device is None:
        if not sim.is_installed() and not _real_driver_present():
            sim.install(DEFAULT_SIM_PROFILE)
            print(
                f"greenres: no CUDA driver found; using the simulated {DEFAULT_SIM_PROFILE} "
                "(choose with --device sim:PROFILE)",
                file=sys.stderr,
            )
        return 0
    if device.startswith("sim:"):
        # the GREENRES_SIM forms: PROFILE, NxPROFILE, with @DRIVER_VERSION (sim:b200@13040)
        try:
            profile, version = sim._parse_machine(device[len("sim:") :])
            sim.install(profile, driver_version=version)
        except (ValueError, RuntimeError) as error:  # RuntimeError: another machine is in
            raise BadInput(str(error)) from None
        return 0
    try:
        ordinal = int(device)
    except ValueError:
        raise BadInput(
            f"--device must be an ordinal like 0 or a simulated profile like sim:h100 "
            f"(got {device!r})"
        ) from None
    if ordinal < 0:
        raise BadInput(f"--device must be >= 0 (got {ordinal})")
    return ordinal


def _device(args: argparse.Namespace):
    ordinal = _select_driver(args.device)
    import greenres

    count = greenres.device_count()
    if ordinal >= count:
        raise BadInput(f"--device {ordinal}: the driver reports {count} device(s)")
    return greenres.Device(ordinal)


def _load_spec(path: str):
    from greenres.serialize import load_spec

    return load_spec(path)


def _plan_for(spec, facts, mode: str | None):
    """The plan of ``spec`` on ``facts``: of one mode (``--mode``, else the default) for a
    spec with modes. Every mode is planned, so an infeasible mode is reported too."""
    from greenres.spec import PartitionSpec

    if isinstance(spec, PartitionSpec):
        if mode is not None:
            raise BadInput(f"--mode {mode!r}: the spec has no modes")
        return spec.plan(facts)
    if mode is None:
        mode = spec.default_mode
    if mode not in spec.modes:
        raise BadInput(f"--mode {mode!r}: the spec's modes are {', '.join(spec.modes)}")
    return spec.plan(facts).plans[mode]


def cmd_info(args: argparse.Namespace) -> int:
    import greenres

    _select_driver(args.device)
    all_facts = [greenres.Device(o).sm_facts() for o in range(greenres.device_count())]
    if args.json:
        rows = [
            {
                "ordinal": ordinal,
                "name": facts.device_name,
                "compute_capability": list(facts.compute_capability),
                "sm_count": facts.sm_count,
                "min_partition_size": facts.min_partition_size,
                "alignment": facts.alignment,
                "driver_version": facts.driver_version,
                "structured_split": facts.structured_split,
                "workqueue_max_concurrency": facts.workqueue_max_concurrency,
                "locality_domain_count": facts.locality_domain_count,
                "locality_domain_sm_count": facts.locality_domain_sm_count,
            }
            for ordinal, facts in enumerate(all_facts)
        ]
        print(json.dumps({"devices": rows}, indent=2))
        return EXIT_OK
    for ordinal, facts in enumerate(all_facts):
        major, minor = facts.compute_capability
        print(
            f"device {ordinal}: {facts.device_name} (compute capability {major}.{minor})\n"
            f"  {facts.sm_count} SMs; partitions of at least {facts.min_partition_size} SMs "
            f"in multiples of {facts.alignment}\n"
            f"  driver {facts.driver_version_text}; "
            f"structured split (CUDA 13.1): {'yes' if facts.structured_split else 'no'}\n"
            f"  workqueues (CUDA 13.1): "
            + (
                f"at most {facts.workqueue_max_concurrency} concurrent stream-ordered workloads"
                if facts.workqueue_max_concurrency
                else "none"
            )
            + "\n  locality domains (CUDA 13.4): "
            + (
                f"{facts.locality_domain_count} of {facts.locality_domain_sm_count} SMs each"
                if facts.locality_domain_count
                else "not reported"
            )
        )
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    spec = _load_spec(args.spec)
    device = _device(args)
    facts = device.sm_facts()
    plan = _plan_for(spec, facts, args.mode)
    if args.svg:
        # a spec with modes and no --mode: every mode side by side
        from greenres.spec import ModalSpec

        pictured = spec.plan(facts) if isinstance(spec, ModalSpec) and args.mode is None else plan
        with open(args.svg, "w", encoding="utf-8") as out:
            out.write(pictured.to_svg())
    if args.json:
        from greenres.serialize import dumps_plan

        sys.stdout.write(dumps_plan(plan, "json"))  # greenres.load_plan reads it back
    else:
        print(plan.explain())
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    from greenres.isolation import IsolationSchema, isolation_context, key_of_context
    from greenres.serialize import load_schema

    spec = _load_spec(args.spec)
    schema = load_schema(args.schema) if args.schema else None
    device = _device(args)
    plan = _plan_for(spec, device.sm_facts(), args.mode)
    try:
        ref = plan.ref(args.partition)
    except KeyError:
        names = ", ".join(p.name for p in plan.partitions)
        raise BadInput(f"partition {args.partition!r} is not in the plan ({names})") from None
    context = isolation_context(schema or IsolationSchema(), ref)
    key = key_of_context(context)
    if args.json:
        print(json.dumps({"key": key, "context": context}, indent=2, sort_keys=True))
    else:
        print(key)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from greenres.demo import run_demo

    report = run_demo(_device(args), spec_path=args.spec)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.text())
    return EXIT_OK if report.ok else EXIT_DRIVER_ERROR


def cmd_bench(args: argparse.Namespace) -> int:
    if args.cycles < 1:
        raise BadInput(f"--cycles must be >= 1 (got {args.cycles})")
    if args.rounds < 1:
        raise BadInput(f"--rounds must be >= 1 (got {args.rounds})")
    from greenres import benchmark

    unknown = [name for name in args.suite or [] if name not in benchmark.SUITES]
    if unknown:
        raise BadInput(
            f"--suite {unknown[0]!r}: no such suite (suites: {', '.join(benchmark.SUITES)})"
        )
    settings = benchmark.Settings(cycles=args.cycles, rounds=args.rounds, scale=args.scale)
    report = benchmark.run(_device(args), settings, args.suite)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.markdown())
    return EXIT_DRIVER_ERROR if report.live_after_close else EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    import greenres

    spec = _load_spec(args.spec)
    device = _device(args)
    plan = _plan_for(spec, device.sm_facts(), args.mode)
    with greenres.Layout.create(plan, device=device) as layout:
        report = layout.verify()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.text())
    return EXIT_OK if report.ok else EXIT_DRIVER_ERROR


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenres",
        description="Partition NVIDIA GPUs with CUDA green contexts: inspect devices, plan "
        "partition specs, compute isolation keys, and run a demo pipeline.",
        epilog="Exit codes: 0 success, 1 driver error or failed demo or verify check, 2 bad input.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--device",
            metavar="DEVICE",
            help="device ordinal (0, 1, ...) or a simulated profile (sim:h100, sim:8xh100); "
            "default: device 0, or the simulated H100 when no driver is installed",
        )
        sub.set_defaults(handler=handler)
        return sub

    info = add("info", cmd_info, "List the devices and their SM granularity.")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    plan = add("plan", cmd_plan, "Plan a partition spec (.toml or .json) on a device.")
    plan.add_argument("spec", help="path of the spec file")
    plan.add_argument("--mode", help="which mode of a spec with modes (default: its default)")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.add_argument(
        "--svg",
        metavar="FILE",
        help="also write a picture of the SM map to FILE (every mode side by side for a "
        "spec with modes, unless --mode picks one)",
    )

    key = add("key", cmd_key, "Print the isolation key of one partition of a spec.")
    key.add_argument("spec", help="path of the spec file")
    key.add_argument("partition", help="name of the partition")
    key.add_argument("--schema", help="isolation schema file (.toml or .json); default: all")
    key.add_argument("--mode", help="which mode of a spec with modes")
    key.add_argument("--json", action="store_true", help="also print the isolation context")

    demo = add(
        "demo",
        cmd_demo,
        "Plan an example serving spec, create it, run a short "
        "pipeline with handoffs and a captured graph, and report what happened.",
    )
    demo.add_argument("--spec", help="spec file to use instead of the built-in example")
    demo.add_argument("--json", action="store_true", help="machine-readable output")

    verify = add(
        "verify",
        cmd_verify,
        "Create a partition spec's layout and launch a probe kernel in every partition: "
        "report the SM ids each one ran on, the SM count the driver reports for it, and "
        "whether the partitions are disjoint (exit 1 when not).",
    )
    verify.add_argument("spec", help="path of the spec file")
    verify.add_argument("--mode", help="which mode of a spec with modes (default: its default)")
    verify.add_argument("--json", action="store_true", help="machine-readable output")

    bench = add(
        "bench",
        cmd_bench,
        "Measure every performance target (docs/benchmarks.md) side by side in one run: "
        "greenres against the C floor of the same driver calls, cuda.bindings and cuda.core; "
        "times include the driver's own cost.",
    )
    bench.add_argument(
        "--cycles",
        type=int,
        default=BENCH_CYCLES,
        help=f"hot-path cycles per batch; setup costs scale it down (default {BENCH_CYCLES})",
    )
    bench.add_argument(
        "--rounds",
        type=int,
        default=BENCH_ROUNDS,
        help=f"interleaved rounds (default {BENCH_ROUNDS})",
    )
    bench.add_argument(
        "--suite",
        action="append",
        metavar="NAME",
        help="run only this suite (repeatable): enter_exit, handoff, threads, alive, setup, graph",
    )
    bench.add_argument(
        "--scale", action="store_true", help="also measure how costs grow (the scale series)"
    )
    bench.add_argument(
        "--json", action="store_true", help="machine-readable output (schema greenres.bench/1)"
    )
    return parser


def _driver_not_found_errors() -> tuple[type[BaseException], ...]:
    """What cuda-bindings raises when it finds no libcuda.so.1 (cuda-pathfinder's error)."""
    try:
        from cuda.pathfinder import DynamicLibNotFoundError
    except ImportError:  # cuda-bindings without cuda-pathfinder: it raises plain errors
        return ()
    return (DynamicLibNotFoundError,)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 driver error, 2 bad input)."""
    args = _parser().parse_args(argv)
    from greenres.errors import DriverError, GreenresError

    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        # the reader went (``greenres info --json | head``): not an error of the input;
        # point stdout at /dev/null so the interpreter's final flush stays quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BadInput as error:
        print(f"greenres: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DriverError as error:
        print(f"greenres: driver error: {error}", file=sys.stderr)
        return EXIT_DRIVER_ERROR
    except _driver_not_found_errors() as error:
        print(
            f"greenres: no CUDA driver could be loaded ({error.__class__.__name__}); on a "
            "machine without a GPU use --device sim:h100",
            file=sys.stderr,
        )
        return EXIT_DRIVER_ERROR
    except (GreenresError, ValueError, OSError) as error:
        print(f"greenres: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
