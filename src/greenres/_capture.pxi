# Included by _driver.pyx (one extension module; one file per concept).
# Capture modes and the context manager of Graph.capture().


_CAPTURE_MODES = {
    "global": cydriver.CU_STREAM_CAPTURE_MODE_GLOBAL,
    "thread_local": cydriver.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
    "relaxed": cydriver.CU_STREAM_CAPTURE_MODE_RELAXED,
}


cdef cydriver.CUstreamCaptureMode _capture_mode(object mode) except *:
    try:
        return _CAPTURE_MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(
            f"'mode' must be one of {', '.join(map(repr, _CAPTURE_MODES))} (got {mode!r})"
        ) from None


class _Capture:
    """The context manager of :meth:`Graph.capture`."""

    __slots__ = ("graph", "stream", "mode")

    def __init__(self, graph, stream, mode):
        self.graph = graph
        self.stream = stream
        self.mode = mode

    def __enter__(self):
        self.graph.capture_begin(self.stream, mode=self.mode)
        return self.graph

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.graph.capture_end()
            except BaseException:
                # The block is over: a capture that could not be ended is discarded, not
                # left going on (the error of capture_end is the one raised).
                self.graph._abort_capture()
                raise
        else:
            self.graph._abort_capture()
        return False
