"""A cache of CUDA graphs per mode and partition: ``layout.graphs``.

A serving engine that switches modes (decode-heavy, prefill-heavy) captures each step once
per partition it runs on and replays it after every switch; capturing again after a switch
costs milliseconds and new graph memory each time. :class:`GraphCache` keeps one
:class:`greenres.Graph` per key

    (name, mode, partition name, isolation key of the partition)

captured on the partition's stream the first time the key is asked for, and replayed from
then on. The isolation key (:func:`greenres.isolation.isolation_key` under the given schema)
is what makes a graph valid: the partition's SMs, granularity, layout fingerprint and
workqueue budget, the environment, the stream priority, the device and the versions, as the
schema selects; a different plan or different forms is a different key, so a different
graph. The key of a (schema, mode, partition) is computed once per cache (the environment
is read then). Graphs live as long as the layout: :meth:`Layout.close` closes the cache
first (graphs before green contexts), and :meth:`GraphCache.clear` frees them earlier.

The cache is used from one thread at a time (graphs are captured on the partition's
stream); it is plain Python over the runtime's public objects.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from greenres.errors import ClosedError

__all__ = ["GraphCache"]


class GraphCache:
    """Graphs of a layout, captured once per (name, mode, partition, isolation key).

    Made by ``layout.graphs``; never by hand.

    Attributes:
        captures: how many graphs the cache has captured (one per key it was asked for).
        replays: how many replays it launched.
    """

    def __init__(self, layout: Any) -> None:
        # weakly: the layout holds the cache, and a dropped layout is finalised as before
        self._layout_ref = weakref.ref(layout)
        self._graphs: dict[tuple[str, Any, str, str], Any] = {}
        self._keys: dict[tuple[Any, Any, str], str] = {}
        self._closed = False
        self.captures = 0
        self.replays = 0

    @property
    def _layout(self) -> Any:
        layout = self._layout_ref()
        if layout is None:
            raise ClosedError("the graph cache's layout is gone")
        return layout

    def __len__(self) -> int:
        return len(self._graphs)

    def keys(self) -> list[tuple[str, Any, str, str]]:
        """The cached keys ``(name, mode, partition, isolation key)``, in capture order."""
        return list(self._graphs)

    def _isolation_key(self, schema: Any, partition: Any) -> str:
        from greenres.isolation import IsolationSchema, isolation_key

        if schema is None:
            schema = IsolationSchema()
        memo = (schema, self._layout.mode, partition.name)
        key = self._keys.get(memo)
        if key is None:
            key = isolation_key(schema, partition)
            self._keys[memo] = key
        return key

    def graph(
        self,
        name: str,
        step: Callable[[Any], Any],
        partition: str | Any,
        *,
        schema: Any = None,
    ) -> Any:
        """The graph of ``name`` for ``partition`` in the layout's current mode: captured
        now (``step(stream)`` queues its work on the partition's stream, inside the
        capture) when the cache does not have it yet, else the one captured before.

        Args:
            name: the step's name (one cache holds many steps).
            step: called once per key with the partition's stream while capturing.
            partition: a partition name of the current mode, or its ``GreenContext``.
            schema: the :class:`~greenres.isolation.IsolationSchema` of the key (default:
                every form).

        Raises:
            ClosedError: when the cache (or its layout) is closed.
            TypeError: for a ``name`` that is not a str, a ``step`` that is not callable, or
                a ``partition`` that is neither a name nor a GreenContext.
            KeyError: for a partition the current mode does not have.
        """
        if self.closed:
            raise ClosedError("the graph cache's layout is closed")
        if not isinstance(name, str):
            raise TypeError(f"'name' must be a str (got {name!r})")
        if not callable(step):
            raise TypeError(f"'step' must be callable (got {step!r})")
        from greenres import GreenContext  # the runtime is loaded: a layout made this

        if isinstance(partition, str):
            part = self._layout[partition]
        elif isinstance(partition, GreenContext):
            part = partition
        else:
            raise TypeError(
                f"'partition' must be a partition name or a GreenContext (got {partition!r})"
            )
        if part.name not in self._layout or self._layout[part.name] is not part:
            raise KeyError(
                f"partition {part.name!r} is not a partition of the layout's current mode "
                f"{self._layout.mode!r}"
            )
        key = (name, self._layout.mode, part.name, self._isolation_key(schema, part))
        graph = self._graphs.get(key)
        if graph is None:
            from greenres import Graph

            graph = Graph(name=f"{name}/{self._layout.mode}/{part.name}")
            try:
                with graph.capture(part.stream):
                    step(part.stream)
            except BaseException:
                graph.close()
                raise
            self._graphs[key] = graph
            self.captures += 1
        return graph

    def replay(
        self,
        name: str,
        step: Callable[[Any], Any],
        partition: str | Any,
        *,
        schema: Any = None,
    ) -> Any:
        """:meth:`graph`, then replay it on the partition's stream; returns the graph."""
        graph = self.graph(name, step, partition, schema=schema)
        graph.replay()
        self.replays += 1
        return graph

    def clear(self) -> None:
        """Close every cached graph (they are captured again when asked for)."""
        graphs, self._graphs = self._graphs, {}
        self._keys.clear()
        failures = []
        for graph in graphs.values():
            try:
                graph.close()
            except Exception as error:  # close every graph, then report the first failure
                failures.append(error)
        if failures:
            raise failures[0]

    def close(self) -> None:
        """Close every graph; the cache refuses further use. Idempotent; called by
        ``Layout.close()``."""
        self._closed = True
        self.clear()

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (or once the layout is closed or gone)."""
        layout = self._layout_ref()
        return self._closed or layout is None or layout.closed
