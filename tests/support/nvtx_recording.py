"""Seeing NVTX for real in tests: build the recording injection library (nvtx_recorder.c)
and run Python in a child process with NVTX loading it (``NVTX_INJECTION64_PATH`` is read at
the first NVTX call of a process, so every recorded run is a fresh process).

In the child, :func:`events` gives what was recorded so far: dicts with ``kind`` (push,
pop, start, end, mark, domain, category, name_stream, name_context), ``domain``,
``category``, ``color``, ``message``, ``thread`` (the OS thread id), ``range``, ``handle``
(of a named stream or context) and ``depth``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest

from support import childprocess

__all__ = ["clear", "events", "recorder_library", "run_recorded"]

SOURCE = Path(__file__).with_name("nvtx_recorder.c")


def _nvtx_include() -> Path | None:
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations if spec else []:
        candidate = Path(root) / "cu13" / "include"
        if (candidate / "nvtx3" / "nvToolsExt.h").is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=1)
def recorder_library() -> Path:
    """The compiled recorder (built once per source, cached in the temporary folder);
    skips the calling test when there is no compiler or no NVTX headers."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the NVTX recording library")
    include = _nvtx_include()
    if include is None:
        pytest.skip("the NVTX headers (the nvidia-nvtx wheel) are not installed")
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"greenres-nvtx-recorder-{digest}.so"
    if not out.exists():
        partial = out.with_suffix(f".{os.getpid()}.tmp")
        subprocess.run(
            [
                compiler,
                "-O2",
                "-shared",
                "-fPIC",
                "-fvisibility=hidden",
                f"-I{include}",
                str(SOURCE),
                "-o",
                str(partial),
                "-lpthread",
            ],
            check=True,
            capture_output=True,
        )
        partial.replace(out)
    return out


def run_recorded(code: str, timeout: float = 120, **env) -> list[dict]:
    """Run ``code`` in a fresh process with NVTX recording; the code's last line of output
    must be ``print(json.dumps(events()))`` (or any JSON); returns that parsed."""
    library = recorder_library()
    script = "from support.nvtx_recording import events, clear\nimport json\n" + textwrap.dedent(
        code
    )
    done = childprocess.run_child(
        ["-c", script], timeout=timeout, NVTX_INJECTION64_PATH=str(library), **env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _library() -> ctypes.CDLL:
    path = os.environ["NVTX_INJECTION64_PATH"]
    lib = ctypes.CDLL(path)  # loaded already by NVTX: the same library
    lib.greenres_recorder_json.restype = ctypes.c_void_p
    lib.greenres_recorder_free.argtypes = [ctypes.c_void_p]
    return lib


def events() -> list[dict]:
    """In the child: every event recorded so far."""
    lib = _library()
    raw = lib.greenres_recorder_json()
    try:
        return json.loads(ctypes.string_at(raw).decode("utf-8"))
    finally:
        lib.greenres_recorder_free(raw)


def clear() -> None:
    """In the child: forget the events recorded so far."""
    _library().greenres_recorder_clear()
