"""Process-wide settings of greenres: :func:`configure`.

Only the defaults of what is made later change: a layout keeps the settings it was created
with. ``GREENRES_NVTX=1`` in the environment turns NVTX annotation on for a process that
never calls :func:`configure`; it is read once, by the first call that needs it (the first
``Layout.create`` with ``nvtx=None``), as CUDA reads its variables once: a lookup of a
variable that is not set costs ~3 µs (os.environ raises and catches a KeyError), a tenth of
a ``Layout.create``.
"""

from __future__ import annotations

import os

__all__ = ["configure", "hot_path_gil", "nvtx_default"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_nvtx: bool | None = None  # None: as GREENRES_NVTX says
_nvtx_from_environment: bool | None = None  # GREENRES_NVTX, once read
_hot_path_gil = "hold"


def nvtx_default() -> bool:
    """Whether layouts created now are annotated for NVTX (``Layout.create(nvtx=None)``)."""
    global _nvtx_from_environment
    if _nvtx is not None:
        return _nvtx
    if _nvtx_from_environment is None:
        _nvtx_from_environment = _read_nvtx_environment()
    return _nvtx_from_environment


def _read_nvtx_environment() -> bool:
    value = os.environ.get("GREENRES_NVTX", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"GREENRES_NVTX must be 1 or 0 (got {value!r})")


def hot_path_gil() -> str:
    """``"hold"`` or ``"release"``: what the hot paths do with the GIL (:func:`configure`)."""
    return _hot_path_gil


def configure(*, nvtx: bool | None = None, hot_path_gil: str | None = None) -> dict:
    """Set process-wide settings; returns the previous values of those given (a dict).

    ``nvtx``: annotate layouts created from now on for NVTX (partition ranges, handoff
    marks, named streams and green contexts; see docs/nvtx.md).

    ``hot_path_gil``: ``"hold"`` (the default) keeps the GIL across the driver calls of the
    hot paths (enter, exit, handoff, event record and wait, stream query, graph launch),
    which do not wait for the device; ``"release"`` releases it around them, which costs
    two GIL hand-overs per call but lets other Python threads run meanwhile
    (docs/benchmarks.md, "The GIL policy", has the numbers behind the default). Calls that
    can wait for the device always release it. Applies at once, to every layout.

    None leaves a setting as it is.

    Raises:
        TypeError: for a setting of the wrong type.
        ValueError: for an unknown ``hot_path_gil``.
    """
    global _nvtx, _hot_path_gil
    previous: dict = {}
    if nvtx is not None and not isinstance(nvtx, bool):
        raise TypeError(f"'nvtx' must be a bool or None (got {nvtx!r})")
    if hot_path_gil is not None and hot_path_gil not in ("hold", "release"):
        raise ValueError(f"'hot_path_gil' must be 'hold' or 'release' (got {hot_path_gil!r})")
    if nvtx is not None:
        previous["nvtx"] = nvtx_default()
        _nvtx = nvtx
    if hot_path_gil is not None:
        previous["hot_path_gil"] = _hot_path_gil
        _hot_path_gil = hot_path_gil
        import sys

        driver = sys.modules.get("greenres._driver")
        if driver is not None:  # loaded: tell it now (else it reads this when it loads)
            driver._set_hot_path_gil(hot_path_gil)
    return previous
