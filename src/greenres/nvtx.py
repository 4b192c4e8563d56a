"""NVTX ranges and marks for the profiler, with the names and calls of ``torch.cuda.nvtx``:
code written against it ports by changing the import.

    from greenres import nvtx

    nvtx.range_push("step")          # 0: the depth of the range started
    ...
    nvtx.range_pop()                 # 0: the depth of the range ended

    with nvtx.range("layer {}", 3):  # a context manager and a decorator
        ...

Beyond the seed: ``domain=`` (an NVTX domain name; None is the default domain),
``category=`` (an id or a name) and ``color=`` (an ARGB int or a colour name) on every call,
Unicode messages, clear errors for a pop with nothing pushed, a range ended twice and a
message that is not a str, and ranges ordered by a stream: :func:`device_range_start` /
:func:`device_range_end` start and end a range when a stream reaches that point (also
inside a captured graph, at every replay).

NVTX is header-only here (NVTX v3): with no tool attached every call is a call to an empty
function. The partitions of layouts made with ``nvtx=True`` are annotated by the runtime
itself (docs/nvtx.md). Importing this module loads the compiled runtime.
"""

from __future__ import annotations

import contextlib
from typing import Any

from greenres._driver import (
    DeviceRange,
    device_range_end,
    device_range_start,
    mark,
    range_end,
    range_pop,
    range_push,
    range_start,
    stable_color,
)

__all__ = [
    "DeviceRange",
    "device_range_end",
    "device_range_start",
    "mark",
    "range",
    "range_end",
    "range_pop",
    "range_push",
    "range_start",
    "stable_color",
]


class range(contextlib.ContextDecorator):  # the seed's name, shadowing the builtin here
    """``with nvtx.range(msg, *args, **kwargs):`` pushes a range for the block (popped on
    exceptions too); ``@nvtx.range(msg)`` does it around every call of a function. The
    message is always ``msg.format(*args, **kwargs)``, as the seed's is (so braces are
    doubled even with no arguments); extra arguments go to it, except ``domain``, ``category`` and
    ``color``, which are the range's (so a format field cannot be called that).

    Raises:
        TypeError: when ``msg`` is not a str.
    """

    def __init__(
        self,
        msg: str,
        *args: Any,
        domain: str | None = None,
        category: int | str | None = None,
        color: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(msg, str):
            raise TypeError(f"'msg' must be a str (got {msg!r})")
        # always formatted, as torch.cuda.nvtx.range does: "a{{b}}" is pushed as "a{b}"
        self.msg = msg.format(*args, **kwargs)
        self.domain = domain
        self.category = category
        self.color = color

    def __enter__(self) -> range:
        range_push(self.msg, domain=self.domain, category=self.category, color=self.color)
        return self

    def __exit__(self, *exc: object) -> bool:
        range_pop(domain=self.domain)
        return False

    def __repr__(self) -> str:
        return f"nvtx.range({self.msg!r})"
