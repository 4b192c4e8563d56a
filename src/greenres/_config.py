"""Process-wide settings of greenres: :func:`configure`.

Only the defaults of what is made later change: a layout keeps the settings it was created
with. ``GREENRES_NVTX=1`` in the environment turns NVTX annotation on for a process that
never calls :func:`configure`.
"""

from __future__ import annotations

import os

__all__ = ["configure", "nvtx_default"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_nvtx: bool | None = None  # None: as GREENRES_NVTX says


def nvtx_default() -> bool:
    """Whether layouts created now are annotated for NVTX (``Layout.create(nvtx=None)``)."""
    if _nvtx is not None:
        return _nvtx
    value = os.environ.get("GREENRES_NVTX", "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"GREENRES_NVTX must be 1 or 0 (got {value!r})")


def configure(*, nvtx: bool | None = None) -> dict[str, bool]:
    """Set process-wide defaults; returns the previous ones (a dict of what was given).

    ``nvtx``: annotate layouts created from now on for NVTX (partition ranges, handoff
    marks, named streams and green contexts; see docs/nvtx.md); None leaves it as it is.

    Raises:
        TypeError: for a setting of the wrong type.
    """
    global _nvtx
    previous = {}
    if nvtx is not None:
        if not isinstance(nvtx, bool):
            raise TypeError(f"'nvtx' must be a bool or None (got {nvtx!r})")
        previous["nvtx"] = nvtx_default()
        _nvtx = nvtx
    return previous
