# Included by _driver.pyx (one extension module; one file per concept).
# Memory pools shared by graphs (the opaque token of Graph.pool()) and their buffers.


cdef class DeviceBuffer:
    """Device memory from a :class:`GraphPool`. ``free()`` gives it back to the pool (whose
    later allocations, in any graph of the pool, may reuse it); the memory itself is freed
    when the pool is.

    Attributes:
        ptr: the device address (``int(buffer)`` too).
        nbytes: the size asked for (the pool rounds it up to 512-byte granules).
        pool: the :class:`GraphPool` the memory belongs to.
    """

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
        """True once :meth:`free` gave the buffer back to its pool."""
        return self._freed

    def free(self):
        """Return the memory to the pool. Idempotent."""
        if not self._freed:
            self._freed = True
            self.pool._give_back(self.ptr, self.nbytes)

    def __repr__(self):
        return f"<greenres.DeviceBuffer 0x{self.ptr:x} nbytes={self.nbytes}>"


cdef size_t _POOL_GRANULE = 512
# Larger requests cannot be rounded up to the granule in a size_t.
_MAX_ALLOCATION = 2**63


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


@cython.no_gc_clear
cdef class GraphPool(_Resource):
    """A memory pool shared by graphs: the opaque token of :meth:`Graph.pool`.

    Device memory allocated through the pool (``pool.allocate`` or ``graph.allocate``, also
    during capture) belongs to the pool. A buffer given back with ``free()`` may be handed
    to a later allocation of any graph of the pool, as in PyTorch's private pools: replay
    graphs that share memory in the order they were captured. ``close()`` refuses further
    allocations; the pool's memory is freed then, or once no open graph uses it any more
    (or when the last reference goes).

    Attributes:
        device: the ordinal of the device whose memory the pool holds.
    """

    cdef cydriver.CUdevice _device
    cdef bint _retained
    cdef bint _initialized
    cdef cydriver.CUcontext _primary
    cdef dict _blocks          # ptr -> nbytes (every allocation the pool owns)
    cdef dict _free_lists      # nbytes -> [ptr, ...]
    cdef int _users            # open graphs using the pool
    cdef bint _freed           # the memory (and the primary context) went back
    cdef readonly int device

    def __cinit__(self):
        self._blocks = {}
        self._free_lists = {}
        self._users = 0
        self._retained = False
        self._initialized = False
        self._freed = True
        self._gate = GREENRES_CLOSED  # open once __init__ retained the primary context

    def __init__(self, device=0):
        if self._initialized:
            raise UsageError("greenres.GraphPool.__init__ was called on a pool made already")
        cdef Device dev = _device_of("device", device)
        self._initialized = True
        self.device = dev.ordinal
        self._device = dev._device
        with nogil:
            check(cydriver.cuDevicePrimaryCtxRetain(&self._primary, self._device),
                  "cuDevicePrimaryCtxRetain")
        self._retained = True
        self._freed = False
        greenres_gate_set(&self._gate, GREENRES_OPEN)

    cdef str _describe(self):
        return "greenres.GraphPool"

    cdef object _closed_error(self):
        return ClosedError("the graph pool is closed")

    @property
    def bytes_reserved(self):
        """Device memory the pool holds, in bytes."""
        return sum(self._blocks.values())

    def allocate(self, nbytes):
        """A :class:`DeviceBuffer` of at least ``nbytes`` bytes (rounded up to 512), reusing
        a freed block of the same size when there is one. Safe while capturing: the
        allocation switches this thread to the relaxed capture mode around ``cuMemAlloc``.

        Raises:
            ValueError: unless 0 < ``nbytes`` <= 2**63.
            ClosedError: after :meth:`close`.
        """
        cdef cydriver.CUdeviceptr ptr = 0
        cdef size_t size
        nbytes = _require_int("nbytes", nbytes)
        if nbytes <= 0:
            raise ValueError(f"'nbytes' must be > 0 (got {nbytes!r})")
        if nbytes > _MAX_ALLOCATION:
            raise ValueError(f"'nbytes' must be <= 2**63 (got {nbytes!r})")
        self._begin()
        try:
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
        finally:
            self._end()
        buf = DeviceBuffer.__new__(DeviceBuffer)
        (<DeviceBuffer>buf).ptr = address
        (<DeviceBuffer>buf).nbytes = size
        (<DeviceBuffer>buf).pool = self
        (<DeviceBuffer>buf)._freed = False
        return buf

    cdef _give_back(self, uintptr_t ptr, size_t nbytes):
        if not self._freed and ptr in self._blocks:
            self._free_lists.setdefault(nbytes, []).append(ptr)

    cdef int _add_user(self) except -1:
        self._check_open()
        self._users += 1
        return 0

    cdef list _drop_user(self):
        """A graph stops using the pool; the last one frees a closed pool's memory (the
        failed calls are returned, for the graph's close to report)."""
        self._users -= 1
        if self._users <= 0 and self._is_closed() and not self._freed:
            failures = self._destroy()
            self._leaking = bool(failures)
            return failures
        return []

    cdef list _destroy(self):
        """Free the memory and release the primary context, unless an open graph still
        uses the pool (then the last one to go frees it)."""
        cdef cydriver.CUdeviceptr ptr
        cdef cydriver.CUstreamCaptureMode mode = cydriver.CU_STREAM_CAPTURE_MODE_RELAXED
        cdef cydriver.CUresult err
        cdef list failures = []
        if self._users > 0 or self._freed:
            return failures
        if self._blocks:
            # In the relaxed capture mode, as allocate: a capture going on on this thread
            # (of another graph) would refuse cuMemFree and be invalidated by it. Without
            # the relaxed mode nothing is freed (a retry frees it).
            with nogil:
                err = cydriver.cuThreadExchangeStreamCaptureMode(&mode)
            if err != cydriver.CUDA_SUCCESS:
                return [_failure_of(err, "cuThreadExchangeStreamCaptureMode")]
            for address in list(self._blocks):
                ptr = <cydriver.CUdeviceptr><uintptr_t>address
                with nogil:
                    err = cydriver.cuMemFree(ptr)
                if err == cydriver.CUDA_SUCCESS:
                    del self._blocks[address]
                else:
                    failures.append(_failure_of(err, "cuMemFree"))
            with nogil:
                err = cydriver.cuThreadExchangeStreamCaptureMode(&mode)
                if err != cydriver.CUDA_SUCCESS:  # once more: the thread's mode is at stake
                    err = cydriver.cuThreadExchangeStreamCaptureMode(&mode)
            if err != cydriver.CUDA_SUCCESS:
                failures.append(_failure_of(err, "cuThreadExchangeStreamCaptureMode"))
            self._free_lists.clear()
        if not self._blocks and self._retained:
            with nogil:
                err = cydriver.cuDevicePrimaryCtxRelease(self._device)
            if err == cydriver.CUDA_SUCCESS:
                self._retained = False
            else:
                failures.append(_failure_of(err, "cuDevicePrimaryCtxRelease"))
        self._freed = not self._blocks and not self._retained
        return failures

    cdef bint _warn_unclosed(self):
        return self._initialized

    @property
    def closed(self):
        """True once the pool's memory went back: after :meth:`close` and once no open
        graph uses the pool any more (allocations are refused from close() on)."""
        return self._freed and self._initialized

    def __repr__(self):
        return (f"<greenres.GraphPool device={self.device} bytes={self.bytes_reserved} "
                f"graphs={self._users}{' closed' if self._is_closed() else ''}>")
