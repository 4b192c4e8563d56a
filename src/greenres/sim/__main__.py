"""``python -m greenres.sim PROFILE program.py args...``: run any program on the simulated driver.

In the style of ``coverage run``: the simulator is installed first, before the program can
load a driver, then the program runs unmodified as ``__main__`` (with :mod:`runpy`), with
``sys.argv`` as it would have it. That is what a program needs that touches cuda.core or
cuda.bindings before it imports greenres (``GREENRES_SIM`` only takes effect when greenres is
imported, which may be too late).
"""

from __future__ import annotations

import os
import runpy
import sys

from . import PROFILES, _describe, install, parse_profile

USAGE = """\
usage: python -m greenres.sim [--driver-version VERSION] PROFILE program.py [ARGS...]
       python -m greenres.sim [--driver-version VERSION] PROFILE -m MODULE [ARGS...]

Run a Python program (or module) on greenres' simulated CUDA driver: the simulator is
installed as libcuda.so.1 before the program runs, so cuda.core, cuda.bindings and greenres
all take it as the driver, whatever the program imports first. Everything after the program
or module name goes to the program unchanged (sys.argv as it expects).

PROFILE    a device profile, NxPROFILE for N devices, optionally @VERSION for the
           driver version: h100, 8xh100, h100@13000, 2xl4@12080
           (profiles: {profiles})

options:
  -h, --help                 show this help and exit
  --driver-version VERSION   the driver version to report (default {default}; same as @VERSION)

GREENRES_SIM is set to the same value for the program, so greenres in the program and in
its child processes uses the same simulated machine."""


class UsageError(Exception):
    """A bad command line: the message is printed with a pointer to --help, exit status 2."""


def _usage() -> str:
    from . import DEFAULT_DRIVER_VERSION

    return USAGE.format(profiles=", ".join(sorted(PROFILES)), default=DEFAULT_DRIVER_VERSION)


def _parse(argv: list[str]) -> tuple[str, int | None, str | None, str | None, list[str]]:
    """(profile, driver version or None, program path or None, module or None, program args)."""
    version = None
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        opt = argv[i]
        if opt in ("-h", "--help"):
            print(_usage())
            raise SystemExit(0)
        if opt == "--driver-version" or opt.startswith("--driver-version="):
            if "=" in opt:
                value = opt.split("=", 1)[1]
            else:
                i += 1
                if i == len(argv):
                    raise UsageError("--driver-version needs a value")
                value = argv[i]
            try:
                version = int(value)
            except ValueError:
                raise UsageError(f"--driver-version must be an integer, not {value!r}") from None
            i += 1
            continue
        raise UsageError(f"unknown option {opt!r}")
    if i == len(argv):
        raise UsageError("missing PROFILE and program")
    profile = argv[i]
    rest = argv[i + 1 :]
    if not rest:
        raise UsageError("missing the program to run (program.py or -m MODULE)")
    if rest[0] == "-m":
        if len(rest) < 2:
            raise UsageError("-m needs a module name")
        return profile, version, None, rest[1], rest[2:]
    return profile, version, rest[0], None, rest[1:]


def _configure(profile: str, version: int | None) -> str:
    """Validate the profile, install the simulator; returns the GREENRES_SIM spelling."""
    from . import _parse_machine

    try:
        spec, at_version = _parse_machine(profile)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if version is not None and "@" in profile and at_version != version:
        raise UsageError(
            f"two driver versions: {profile!r} and --driver-version {version}; give one"
        )
    version = version if version is not None else at_version
    try:
        prof, count = parse_profile(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    value = f"{count}x{prof.key}@{version}"
    try:
        install(prof.key, count=count, driver_version=version)
    except RuntimeError as exc:
        env = os.environ.get("GREENRES_SIM")
        if env:
            raise UsageError(
                f"GREENRES_SIM={env} installed the simulator when greenres was imported; "
                f"it cannot also be {_describe((prof.key, count, version))}: unset GREENRES_SIM "
                f"or give the same profile ({exc})"
            ) from None
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return value


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m greenres.sim``."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        profile, version, path, module, args = _parse(argv)
        os.environ["GREENRES_SIM"] = _configure(profile, version)
        if path is not None and not os.path.exists(path):
            raise UsageError(f"can't open file {path!r}: no such file or directory")
    except UsageError as exc:
        print(f"python -m greenres.sim: error: {exc}", file=sys.stderr)
        print("try 'python -m greenres.sim --help'", file=sys.stderr)
        raise SystemExit(2) from None
    if module is not None:
        # As `python -m MODULE`: sys.path[0] stays the working directory; run_module sets
        # sys.argv[0] to the module's file.
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        # As `python program.py`: the program's folder comes first on sys.path.
        sys.argv = [path, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(path))
        runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
