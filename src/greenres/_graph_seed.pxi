# Included by _driver.pyx (one extension module; one file per concept).
# The MTIA seed's graph API as written (torch.mtia's MTIAGraph and its `graph` context
# manager) on greenres' Graph: the argument forms of capture_begin, the thread's current
# capture stream, the per-device default capture stream, and `greenres.graph`.

import threading

# The capture streams `greenres.graph` blocks entered on this thread, innermost last: the
# seed's "current stream" for capture_begin() with no stream.
cdef object _capture_streams = threading.local()


cdef object _capture_arguments(object first, object pool):
    """``(stream, pool)`` of ``capture_begin(first, ..., pool=pool)``: a GraphPool first is
    the MTIA seed's pool argument, anything else greenres' stream (a GraphPool is never a
    stream: it has no ``__cuda_stream__`` and is not an int, so no call is ambiguous)."""
    if pool is not None and not isinstance(pool, GraphPool):
        raise TypeError(f"'pool' must be a greenres.GraphPool (another graph's pool()) or "
                        f"None (got {pool!r})")
    if isinstance(first, GraphPool):
        if pool is not None:
            raise TypeError("capture_begin() got a pool twice (positionally and as pool=)")
        return _current_capture_stream(), first
    if first is None:
        return _current_capture_stream(), pool
    return first, pool


cdef int _check_graph_pool(Graph graph, object pool) except -1:
    """capture_begin's pool: the graph's own, or adopted when it has none yet."""
    if pool is None or pool is graph._pool:
        return 0
    (<GraphPool>pool)._check_open()
    if graph._pool is not None:
        raise UsageError(
            "the graph uses another pool already (from Graph(pool=...), pool() or an "
            "earlier capture_begin(pool)): a graph has one pool for its lifetime")
    return 0


def _current_capture_stream():
    """What capture_begin() with no stream captures: the stream of the innermost
    ``greenres.graph`` block of this thread, else the current partition's stream, else
    ``graph``'s default capture stream."""
    entered = getattr(_capture_streams, "stack", None)
    if entered:
        return entered[-1]
    part = current_partition()
    if part is not None:
        return part.stream
    return graph._class_default_stream()


@cython.final
cdef class _DeviceStream:
    """A non-blocking stream of a device's primary context: ``graph``'s default capture
    stream when none is set (the seed makes one, once). Made once per device, on first use,
    and kept for the process (the module's cache holds it; it is never destroyed, as the
    seed's class attribute is not), so nothing can use a destroyed handle."""

    cdef cydriver.CUstream _handle
    cdef cydriver.CUcontext _primary   # retained for the process, with the stream
    cdef readonly int device

    def __init__(self, *args, **kwargs):
        raise TypeError("made by greenres.graph for its default capture stream")

    def __cuda_stream__(self):
        return (0, <uintptr_t>self._handle)

    def __int__(self):
        return <uintptr_t>self._handle

    @property
    def handle(self):
        return <uintptr_t>self._handle

    def __repr__(self):
        return f"<greenres default capture stream of device {self.device}>"


cdef dict _device_streams = {}
cdef object _device_streams_lock = threading.Lock()


cdef _DeviceStream _make_device_stream(Device device):
    """Retain the primary context, make the stream in it; a failure leaves nothing."""
    cdef cydriver.CUcontext primary = NULL
    cdef cydriver.CUstream handle = NULL
    cdef cydriver.CUdevice dev = device._device
    cdef cydriver.CUresult err
    cdef _DeviceStream made
    with nogil:
        check(cydriver.cuDevicePrimaryCtxRetain(&primary, dev), "cuDevicePrimaryCtxRetain")
    try:
        _push_primary(primary)
        try:
            with nogil:
                err = cydriver.cuStreamCreate(&handle, cydriver.CU_STREAM_NON_BLOCKING)
            check(err, "cuStreamCreate")
            _pop_context()
        except BaseException:
            _pop_if_current(primary)
            if handle != NULL:
                with nogil:
                    cydriver.cuStreamDestroy(handle)  # best effort: the pop failed
            raise
    except BaseException:
        with nogil:
            cydriver.cuDevicePrimaryCtxRelease(dev)  # best effort: the error is the create's
        raise
    made = _DeviceStream.__new__(_DeviceStream)
    made._handle = handle
    made._primary = primary
    made.device = device.ordinal
    return made


def _device_default_stream(int ordinal):
    with _device_streams_lock:
        stream = _device_streams.get(ordinal)
        if stream is None:
            stream = _make_device_stream(Device(ordinal))
            _device_streams[ordinal] = stream
        return stream


def _synchronize_device_of(stream):
    """What ``graph`` waits for before a capture, as the seed's device synchronize: all work
    of the capture stream's device's primary context (``cuCtxSynchronize`` with it current;
    the layout or default stream holding the stream retains it) and the capture stream
    (``cuStreamSynchronize``: its green context's work). A stream that is neither a greenres
    stream nor the default: the current context, if any, and the stream."""
    cdef cydriver.CUcontext primary = NULL
    cdef cydriver.CUstream handle
    cdef Admissions a
    _admissions_init(&a)
    try:
        handle = _use_stream(stream, "stream", &a)
        if isinstance(stream, Stream):
            primary = (<Stream>stream)._core.primary
        elif isinstance(stream, _DeviceStream):
            primary = (<_DeviceStream>stream)._primary
        if primary != NULL:
            _push_primary(primary)
            try:
                with nogil:
                    check(cydriver.cuCtxSynchronize(), "cuCtxSynchronize")
                _pop_context()
            except BaseException:
                _pop_if_current(primary)
                raise
        else:
            _synchronize_current_context()
        with nogil:
            check(cydriver.cuStreamSynchronize(handle), "cuStreamSynchronize")
    finally:
        _admissions_end(&a)


cdef int _synchronize_current_context() except -1:
    cdef cydriver.CUcontext current = NULL
    with nogil:
        check(cydriver.cuCtxGetCurrent(&current), "cuCtxGetCurrent")
        if current != NULL:
            check(cydriver.cuCtxSynchronize(), "cuCtxSynchronize")
    return 0


class graph:
    """The MTIA (and CUDA) seed's capture context manager:
    ``with greenres.graph(g, pool=None, stream=None):`` captures the block into ``g``.

    The capture stream is ``stream``, else the current partition's stream (inside
    ``with part:``), else :attr:`default_capture_stream` (set it to any stream form; by
    default a non-blocking stream of the current device's primary context, made once per
    device on first use). On enter it waits for outstanding work as the seed does
    (``torch.mtia.synchronize()``): ``cuCtxSynchronize`` of the capture stream's device's
    primary context and ``cuStreamSynchronize`` of the capture stream; then it enters the
    capture stream (this thread's current capture stream: what ``capture_begin()`` with no
    stream captures) and begins the capture with ``pool``. On exit it ends the capture;
    when the block raised, the capture is ended and discarded and the graph reset (never
    left half-captured), and the block's exception is the one raised.

    Attributes:
        default_capture_stream: (class attribute) the capture stream when neither
            ``stream`` nor a current partition gives one; None: greenres' per-device
            default stream.
    """

    #: The capture stream when neither ``stream`` nor a current partition gives one
    #: (class-level, as the seed's): None means greenres' per-device default.
    default_capture_stream = None

    def __init__(self, mtia_graph, pool=None, stream=None, *, mode="thread_local"):
        if not isinstance(mtia_graph, Graph):
            raise TypeError(f"'mtia_graph' must be a greenres.Graph (got {mtia_graph!r})")
        if pool is not None and not isinstance(pool, GraphPool):
            raise TypeError(f"'pool' must be a greenres.GraphPool (another graph's pool()) "
                            f"or None (got {pool!r})")
        _capture_mode(mode)
        self.mtia_graph = mtia_graph
        self.pool = pool
        self.mode = mode
        if stream is None:
            part = current_partition()
            stream = part.stream if part is not None else type(self)._class_default_stream()
        elif not isinstance(stream, Stream):
            _raw_stream(stream, "stream")  # a bad form fails here, not at the block's start
        self.capture_stream = stream

    @classmethod
    def _class_default_stream(cls):
        if cls.default_capture_stream is not None:
            return cls.default_capture_stream
        return _device_default_stream(_current_ordinal())

    def __enter__(self):
        stack = getattr(_capture_streams, "stack", None)
        if stack:
            # the seed's synchronize would be refused inside a capture, and a graph cannot
            # be captured inside another's capture on one thread
            raise UsageError(
                "greenres.graph blocks do not nest: this thread is already capturing in a "
                "greenres.graph block; end it first (or capture on another thread)"
            )
        _synchronize_device_of(self.capture_stream)
        if stack is None:
            stack = _capture_streams.stack = []
        stack.append(self.capture_stream)
        try:
            self.mtia_graph.capture_begin(self.capture_stream, self.mode, pool=self.pool)
        except BaseException:
            stack.pop()
            raise
        return self.mtia_graph

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                try:
                    self.mtia_graph.capture_end()
                except BaseException:
                    self.mtia_graph._abort_capture()  # not left capturing
                    raise
            else:
                self.mtia_graph._abort_capture()
                try:
                    self.mtia_graph.reset()
                except BaseException as error:  # never replace the block's exception
                    warnings.warn(f"greenres.graph could not reset the graph after an "
                                  f"exception: {error}", RuntimeWarning, stacklevel=2)
        finally:
            _capture_streams.stack.pop()
        return False
