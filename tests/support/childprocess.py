"""Run Python in a fresh process that imports the same greenres as the test process.

A fresh process is another machine to the simulated driver (it is configured once per
process), so other profiles and driver versions are tested in children. Children run in
an empty temporary folder (nothing of the working directory is imported by accident), see
the greenres this process uses (an installed wheel, or an in-place build on PYTHONPATH) and
can import the ``support`` helpers (``tests/`` is put on their PYTHONPATH).
"""

import os
import site
import subprocess
import sys
import tempfile

import greenres

__all__ = ["child_env", "run_child", "run_python"]


#: The folder holding the ``support`` package (``tests/``).
TESTS_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _greenres_import_root():
    """The folder this process imports greenres from, when it is not site-packages."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(greenres.__file__)))
    installed = {os.path.realpath(p) for p in site.getsitepackages()}
    installed.add(os.path.realpath(site.getusersitepackages()))
    return None if os.path.realpath(root) in installed else root


def child_env(**overrides):
    """This process's environment with ``overrides`` applied (a value of None removes the
    variable, e.g. ``GREENRES_SIM=None``), and PYTHONPATH reaching this greenres and the
    ``support`` helpers."""
    env = dict(os.environ)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    for root in (_greenres_import_root(), TESTS_ROOT):
        if root is not None and not any(
            os.path.realpath(p) == os.path.realpath(root) for p in paths
        ):
            paths.insert(0, root)
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def run_child(args, timeout=120, **overrides):
    """Run ``python *args`` in an empty temporary folder; returns the CompletedProcess."""
    with tempfile.TemporaryDirectory(prefix="greenres-test-") as cwd:
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            env=child_env(**overrides),
            cwd=cwd,
            timeout=timeout,
        )


def run_python(code, timeout=120, **overrides):
    """Run ``python -c code`` like :func:`run_child`; assert it succeeded, return stdout."""
    done = run_child(["-c", code], timeout=timeout, **overrides)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout
