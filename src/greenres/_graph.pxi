# Included by _driver.pyx (one extension module; one file per concept).
# Graphs captured in a partition, and their memory pools.


cdef class DeviceBuffer:
    """Device memory from a :class:`GraphPool`. ``free()`` gives it back to the pool (whose
    later allocations, in any graph of the pool, may reuse it); the memory itself is freed
    when the pool is."""

    cdef readonly uintptr_t ptr
    cdef readonly size_t nbytes
    cdef readonly GraphPool pool
    cdef bint _freed

    def __init__(self, *args, **kwargs):
        raise TypeError("DeviceBuffer objects are made by GraphPool.allocate() / Graph.allocate()")

    def __int__(self):
        return self.ptr

    @property
    def freed(self):
        return self._freed

    def free(self):
        """Return the memory to the pool. Idempotent."""
        if not self._freed:
            self._freed = True
            self.pool._give_back(self.ptr, self.nbytes)

    def __repr__(self):
        return f"<greenres.DeviceBuffer 0x{self.ptr:x} nbytes={self.nbytes}>"


cdef size_t _POOL_GRANULE = 512


cdef int _relaxed_alloc(cydriver.CUdeviceptr* out, size_t size) except -1 nogil:
    """``cuMemAlloc`` in the relaxed capture mode (legal while this thread captures), with
    the pool's primary context pushed by the caller; pops it. Sets ``*out`` on success.

    On a failure nothing changed: the memory is freed in the relaxed mode (so a capture
    going on survives the free), the thread's capture mode is put back and the context
    popped (a failed exchange back or pop is tried once more), and the first error is
    raised."""
    cdef cydriver.CUstreamCaptureMode mode = cydriver.CU_STREAM_CAPTURE_MODE_RELAXED
    cdef cydriver.CUstreamCaptureMode saved
    cdef cydriver.CUdeviceptr ptr = 0
    cdef cydriver.CUcontext popped = NULL
    cdef cydriver.CUresult err
    cdef cydriver.CUresult first = cydriver.CUDA_SUCCESS
    cdef const char* failed = NULL
    err = cydriver.cuThreadExchangeStreamCaptureMode(&mode)
    if err != cydriver.CUDA_SUCCESS:
        cydriver.cuCtxPopCurrent(&popped)
        return check(err, "cuThreadExchangeStreamCaptureMode")
    saved = mode  # the thread's mode; relaxed until the exchange back
    err = cydriver.cuMemAlloc(&ptr, size)
    if err != cydriver.CUDA_SUCCESS:
        first = err
        failed = "cuMemAlloc"
        ptr = 0
    err = cydriver.cuThreadExchangeStreamCaptureMode(&mode)
    if err != cydriver.CUDA_SUCCESS:
        if failed == NULL:
            first = err
            failed = "cuThreadExchangeStreamCaptureMode"
        if ptr:
            cydriver.cuMemFree(ptr)  # still relaxed
            ptr = 0
        mode = saved
        cydriver.cuThreadExchangeStreamCaptureMode(&mode)
    err = cydriver.cuCtxPopCurrent(&popped)
    if err != cydriver.CUDA_SUCCESS:
        if failed == NULL:
            first = err
            failed = "cuCtxPopCurrent"
        if ptr:
            mode = cydriver.CU_STREAM_CAPTURE_MODE_RELAXED
            if cydriver.cuThreadExchangeStreamCaptureMode(&mode) == cydriver.CUDA_SUCCESS:
                cydriver.cuMemFree(ptr)
                cydriver.cuThreadExchangeStreamCaptureMode(&mode)
            else:
                cydriver.cuMemFree(ptr)
            ptr = 0
        cydriver.cuCtxPopCurrent(&popped)
    if failed != NULL:
        return check(first, failed)
    out[0] = ptr
    return 0


cdef class GraphPool:
    """A memory pool shared by graphs: the opaque token of :meth:`Graph.pool`.

    Device memory allocated through the pool (``pool.allocate`` or ``graph.allocate``, also
    during capture) belongs to the pool. A buffer given back with ``free()`` may be handed
    to a later allocation of any graph of the pool, as in PyTorch's private pools: replay
    graphs that share memory in the order they were captured. The pool's memory is freed
    when the pool is closed and no open graph uses it any more (or when the last reference
    goes).
    """

    cdef cydriver.CUdevice _device
    cdef bint _retained
    cdef cydriver.CUcontext _primary
    cdef dict _blocks          # ptr -> nbytes (every allocation the pool owns)
    cdef dict _free_lists      # nbytes -> [ptr, ...]
    cdef int _users            # open graphs using the pool
    cdef bint _close_requested
    cdef bint _freed
    cdef readonly int device

    def __cinit__(self):
        self._blocks = {}
        self._free_lists = {}
        self._users = 0
        self._retained = False
        self._freed = False
        self._close_requested = False

    def __init__(self, device=0):
        cdef Device dev = _device_of("device", device)
        self.device = dev.ordinal
        self._device = dev._device
        with nogil:
            check(cydriver.cuDevicePrimaryCtxRetain(&self._primary, self._device),
                  "cuDevicePrimaryCtxRetain")
        self._retained = True

    @property
    def bytes_reserved(self):
        """Device memory the pool holds, in bytes."""
        return sum(self._blocks.values())

    @property
    def closed(self):
        return self._freed

    def allocate(self, nbytes):
        """A :class:`DeviceBuffer` of at least ``nbytes`` bytes (rounded up to 512), reusing
        a freed block of the same size when there is one. Safe while capturing: the
        allocation switches this thread to the relaxed capture mode around ``cuMemAlloc``."""
        cdef cydriver.CUdeviceptr ptr = 0
        cdef size_t size
        nbytes = _require_int("nbytes", nbytes)
        if nbytes <= 0:
            raise ValueError(f"'nbytes' must be > 0 (got {nbytes!r})")
        if self._freed or self._close_requested:
            raise ClosedError("the graph pool is closed")
        size = (nbytes + _POOL_GRANULE - 1) // _POOL_GRANULE * _POOL_GRANULE
        free_list = self._free_lists.get(size)
        if free_list:
            address = free_list.pop()
        else:
            _push_primary(self._primary)
            with nogil:
                _relaxed_alloc(&ptr, size)
            address = <uintptr_t>ptr
            self._blocks[address] = size
        buf = DeviceBuffer.__new__(DeviceBuffer)
        (<DeviceBuffer>buf).ptr = address
        (<DeviceBuffer>buf).nbytes = size
        (<DeviceBuffer>buf).pool = self
        (<DeviceBuffer>buf)._freed = False
        return buf

    cdef _give_back(self, uintptr_t ptr, size_t nbytes):
        if not self._freed and ptr in self._blocks:
            self._free_lists.setdefault(nbytes, []).append(ptr)

    cdef _add_user(self):
        if self._freed or self._close_requested:
            raise ClosedError("the graph pool is closed")
        self._users += 1

    cdef _drop_user(self):
        self._users -= 1
        if self._users <= 0 and self._close_requested:
            self._free_memory()

    def close(self):
        """Free the pool's memory now, or when the last open graph using it is closed.
        Idempotent."""
        self._close_requested = True
        if self._users <= 0:
            self._free_memory()

    cdef void _free_memory(self) noexcept:
        cdef cydriver.CUdeviceptr ptr
        cdef cydriver.CUstreamCaptureMode mode = cydriver.CU_STREAM_CAPTURE_MODE_RELAXED
        cdef bint relaxed
        if self._freed:
            return
        self._freed = True
        try:
            # In the relaxed capture mode, as allocate: a capture going on on this thread
            # (of another graph) would refuse cuMemFree and be invalidated by it.
            relaxed = bool(self._blocks) and cydriver.cuThreadExchangeStreamCaptureMode(
                &mode) == cydriver.CUDA_SUCCESS
            for address in self._blocks:
                ptr = <cydriver.CUdeviceptr><uintptr_t>address
                cydriver.cuMemFree(ptr)
            if relaxed:
                cydriver.cuThreadExchangeStreamCaptureMode(&mode)
            self._blocks.clear()
            self._free_lists.clear()
        except BaseException:
            pass
        if self._retained:
            self._retained = False
            try:
                cydriver.cuDevicePrimaryCtxRelease(self._device)
            except BaseException:
                pass

    def __dealloc__(self):
        if not self._freed and not self._close_requested:
            try:
                warnings.warn("unclosed greenres.GraphPool: call close()", ResourceWarning,
                              source=None)
            except BaseException:
                pass
        self._free_memory()

    def __repr__(self):
        return (f"<greenres.GraphPool device={self.device} bytes={self.bytes_reserved} "
                f"graphs={self._users}{' closed' if self._freed else ''}>")


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
            self.graph.capture_end()
        else:
            self.graph._abort_capture()
        return False


cdef class Graph:
    """A CUDA graph captured from a stream, instantiated and replayed.

    ``Graph(keep_graph=False, pool=None)``: with ``keep_graph=False`` the captured
    ``CUgraph`` is destroyed once instantiated (only the executable is kept). ``pool``: a
    :class:`GraphPool` (``other_graph.pool()``) to share memory with other graphs; by default
    the graph makes its own on first use.

    Capturing on a partition's stream keeps the partition: the nodes run in that green
    context when replayed, whatever stream the replay is launched on.
    """

    cdef cydriver.CUgraph _graph
    cdef cydriver.CUgraphExec _exec
    cdef cydriver.CUstream _stream
    cdef object _stream_obj    # keeps a foreign stream object alive while it captures
    cdef _LayoutCore _core
    cdef GraphPool _pool
    cdef bint _capturing
    cdef bint _closed
    cdef bint _orphaned        # its layout was closed under it
    cdef bint _owns_pool       # the pool was made by pool(): closed with the graph
    cdef readonly bint keep_graph
    cdef object __weakref__

    def __cinit__(self):
        self._graph = NULL
        self._exec = NULL
        self._capturing = False
        self._closed = False
        self._orphaned = False
        self._owns_pool = False

    def __init__(self, keep_graph=False, pool=None):
        self.keep_graph = _require_bool("keep_graph", keep_graph)
        if pool is not None:
            if not isinstance(pool, GraphPool):
                raise TypeError(
                    f"'pool' must be a greenres.GraphPool (another graph's pool()) or None "
                    f"(got {pool!r})"
                )
            (<GraphPool>pool)._add_user()
            self._pool = pool

    cdef int _check_open(self) except -1:
        if self._closed:
            raise ClosedError("the graph is closed")
        if self._orphaned:
            raise ClosedError(
                "the layout the graph was captured in was closed (reset() to capture again)")
        return 0

    def pool(self):
        """The graph's :class:`GraphPool` (made on first call): pass it as ``pool=`` to
        other graphs to share memory with this one. A pool made here is closed with this
        graph (its memory lives until the last graph using it is closed)."""
        self._check_open()
        if self._pool is None:
            device = 0
            if self._core is not None:
                device = self._core.ordinal
            p = GraphPool(device)
            p._add_user()
            self._pool = p
            self._owns_pool = True
        return self._pool

    cdef void _leave_pool(self) noexcept:
        if self._pool is None:
            return
        try:
            if self._owns_pool:
                self._pool._close_requested = True
            self._pool._drop_user()
        except BaseException:
            pass

    def allocate(self, nbytes):
        """Device memory from this graph's pool (see :meth:`GraphPool.allocate`); usable
        during capture."""
        return self.pool().allocate(nbytes)

    @property
    def handle(self):
        """The captured ``CUgraph`` as an int (0 when none is held)."""
        return <uintptr_t>self._graph

    @property
    def exec_handle(self):
        """The ``CUgraphExec`` as an int (0 before :meth:`instantiate`)."""
        return <uintptr_t>self._exec

    @property
    def capturing(self):
        return self._capturing

    @property
    def closed(self):
        return self._closed

    @property
    def captured(self):
        """True between a successful capture and :meth:`reset`."""
        return self._graph != NULL or self._exec != NULL

    def capture(self, stream, mode="thread_local"):
        """Context manager: capture the work queued on ``stream`` inside the block.

        ``mode``: the capture mode, ``"thread_local"`` (default), ``"global"`` or
        ``"relaxed"``."""
        _capture_mode(mode)
        _stream_handle(stream, "stream")
        return _Capture(self, stream, mode)

    def capture_begin(self, stream, mode="thread_local"):
        """Begin capturing ``stream`` (``cuStreamBeginCapture``).

        Raises:
            UsageError: when the graph is capturing or holds a capture (``reset()`` first).
        """
        cdef cydriver.CUstream s
        cdef cydriver.CUstreamCaptureMode cmode
        self._check_open()
        cmode = _capture_mode(mode)
        s = _stream_handle(stream, "stream")
        if self._capturing:
            raise UsageError("the graph is already capturing: call capture_end() first")
        if self._graph != NULL or self._exec != NULL:
            raise UsageError("the graph holds a capture: call reset() before capturing again")
        with nogil:
            check(cydriver.cuStreamBeginCapture(s, cmode), "cuStreamBeginCapture")
        self._stream = s
        self._stream_obj = stream
        self._capturing = True
        if isinstance(stream, Stream):
            self._core = (<Stream>stream)._core
            self._core.graphs.add(self)

    def capture_end(self):
        """End the capture (``cuStreamEndCapture``) and keep the graph."""
        cdef cydriver.CUgraph graph = NULL
        cdef cydriver.CUstream s = self._stream
        cdef cydriver.CUresult err
        cdef cydriver.CUstreamCaptureStatus status = cydriver.CU_STREAM_CAPTURE_STATUS_ACTIVE
        self._check_open()
        if not self._capturing:
            raise UsageError("the graph is not capturing: call capture_begin() first")
        with nogil:
            err = cydriver.cuStreamEndCapture(s, &graph)
        if err != cydriver.CUDA_SUCCESS:
            # Some failures end the capture (an invalidated or unjoined capture), others
            # leave the stream capturing: ask the stream, so that reset() and close() still
            # end a capture that is going on. When even that fails, assume it is.
            if graph != NULL:
                cydriver.cuGraphDestroy(graph)
            if cydriver.cuStreamIsCapturing(s, &status) == cydriver.CUDA_SUCCESS \
                    and status == cydriver.CU_STREAM_CAPTURE_STATUS_NONE:
                self._capturing = False
            check(err, "cuStreamEndCapture")
        self._capturing = False
        self._graph = graph

    def _abort_capture(self):
        cdef cydriver.CUgraph graph = NULL
        cdef cydriver.CUstream s = self._stream
        if self._capturing:
            self._capturing = False
            cydriver.cuStreamEndCapture(s, &graph)
            if graph != NULL:
                cydriver.cuGraphDestroy(graph)

    def instantiate(self):
        """Instantiate the captured graph (``cuGraphInstantiate``). Without ``keep_graph``
        the ``CUgraph`` is destroyed afterwards."""
        cdef cydriver.CUgraphExec exec_ = NULL
        cdef cydriver.CUgraph graph = self._graph
        self._check_open()
        if self._exec != NULL:
            return self
        if self._capturing:
            raise UsageError("the graph is still capturing: call capture_end() first")
        if graph == NULL:
            raise UsageError("nothing captured: use capture() first")
        cdef cydriver.CUresult err
        with nogil:
            check(cydriver.cuGraphInstantiate(&exec_, graph, 0), "cuGraphInstantiate")
        if not self.keep_graph:
            with nogil:
                err = cydriver.cuGraphDestroy(graph)
            if err != cydriver.CUDA_SUCCESS:
                # Keep the CUgraph (reset/close destroy it) and undo the instantiation, so a
                # failed instantiate changes nothing; if the executable cannot be destroyed
                # either, keep it too.
                if cydriver.cuGraphExecDestroy(exec_) != cydriver.CUDA_SUCCESS:
                    self._exec = exec_
                check(err, "cuGraphDestroy")
            self._graph = NULL
        self._exec = exec_
        return self

    def replay(self, stream=None):
        """Launch the graph on ``stream`` (default: the stream it was captured on);
        instantiates first when needed. Nodes keep the context they were captured in."""
        cdef cydriver.CUstream s
        cdef cydriver.CUgraphExec exec_
        self._check_open()
        s = self._stream if stream is None else _stream_handle(stream, "stream")
        if self._exec == NULL:
            self.instantiate()
        exec_ = self._exec
        with nogil:
            check(cydriver.cuGraphLaunch(exec_, s), "cuGraphLaunch")

    def reset(self):
        """Destroy the captured graph and its executable so the graph can capture again.
        The pool stays."""
        if self._closed:
            raise ClosedError("the graph is closed")
        if self._capturing:
            self._abort_capture()
        self._release_native()
        self._orphaned = False
        if self._core is not None:
            self._core.graphs.discard(self)
            self._core = None

    cdef void _release_native(self) noexcept:
        cdef cydriver.CUgraphExec exec_ = self._exec
        cdef cydriver.CUgraph graph = self._graph
        self._exec = NULL
        self._graph = NULL
        try:
            if exec_ != NULL:
                cydriver.cuGraphExecDestroy(exec_)
            if graph != NULL:
                cydriver.cuGraphDestroy(graph)
        except BaseException:
            pass

    def close(self):
        """Destroy the graph and stop using its pool. Idempotent."""
        if self._closed:
            return
        if self._capturing:
            self._abort_capture()
        self._release_native()
        self._closed = True
        self._leave_pool()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        if not self._closed:
            if self._graph != NULL or self._exec != NULL:
                try:
                    warnings.warn("unclosed greenres.Graph", ResourceWarning, source=None)
                except BaseException:
                    pass
            self._release_native()
            self._leave_pool()

    def __repr__(self):
        state = ("closed" if self._closed else "capturing" if self._capturing
                 else "instantiated" if self._exec != NULL
                 else "captured" if self._graph != NULL else "empty")
        return f"<greenres.Graph {state}>"
