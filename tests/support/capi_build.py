"""Building the tests' C and Cython extensions against greenres' C-level entry
(``greenres.get_include()``), once per session, in a temporary folder."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

import greenres

__all__ = ["build_c_extension", "build_cython_extension"]

HERE = Path(__file__).resolve().parent


def _compiler() -> str:
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the C API test extension")
    return compiler


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _out(name: str, *sources: Path) -> Path:
    digest = hashlib.sha256(b"".join(s.read_bytes() for s in sources))
    digest.update(sys.version.encode())
    digest.update(Path(greenres.get_include(), "greenres_api.h").read_bytes())
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    folder = Path(tempfile.gettempdir()) / f"greenres-capi-{digest.hexdigest()[:16]}"
    folder.mkdir(exist_ok=True)
    return folder / f"{name}{suffix}"


def _compile(compiler: str, source: Path, out: Path, cplus: bool = False) -> None:
    flags = [
        "-O2",
        "-shared",
        "-fPIC",
        f"-I{sysconfig.get_paths()['include']}",
        f"-I{greenres.get_include()}",
    ]
    if cplus:
        flags.append("-std=c++17")
    partial = out.with_name(out.name + f".{os.getpid()}.tmp")
    done = subprocess.run(
        [compiler, *flags, str(source), "-o", str(partial)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-4000:]
    partial.replace(out)


@functools.cache
def build_c_extension():
    """The ``capi_loop`` module (support/capi_loop.c), imported."""
    source = HERE / "capi_loop.c"
    out = _out("capi_loop", source)
    if not out.exists():
        _compile(_compiler(), source, out)
    return _load("capi_loop", out)


@functools.cache
def build_cython_extension():
    """The ``capi_cython`` module (support/capi_cython.pyx, which cimports greenres.api),
    imported; skips without Cython."""
    cython = pytest.importorskip("Cython.Compiler.Main", reason="Cython is not installed")
    del cython
    source = HERE / "capi_cython.pyx"
    out = _out("capi_cython", source)
    if not out.exists():
        generated = out.with_suffix(".c")
        package_root = Path(greenres.__file__).resolve().parents[1]  # to find greenres/api.pxd
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cython",
                "-3",
                "-I",
                str(package_root),
                str(source),
                "-o",
                str(generated),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        _compile(_compiler(), generated, out)
    return _load("capi_cython", out)
