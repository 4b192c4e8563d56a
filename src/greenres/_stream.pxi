# Included by _driver.pyx (one extension module; one file per concept).
# Streams made in a partition.


cdef class Stream:
    """A stream of a partition. Implements ``__cuda_stream__`` so cuda.core, PyTorch
    (``torch.cuda.ExternalStream(s.handle)``) and CuPy can use it.

    Made by :attr:`GreenContext.stream` and :meth:`GreenContext.create_stream`.
    """

    cdef cydriver.CUstream _handle
    cdef _LayoutCore _core
    cdef readonly GreenContext partition
    cdef readonly int priority
    cdef bint _owned          # created by create_stream (else the partition's default)
    cdef bint _closed
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "greenres.Stream objects are made by GreenContext.stream and "
            "GreenContext.create_stream()"
        )

    cdef _init(self, _LayoutCore core, GreenContext partition, cydriver.CUstream handle,
               int priority, bint owned):
        self._core = core
        self.partition = partition
        self._handle = handle
        self.priority = priority
        self._owned = owned
        self._closed = False

    cdef inline cydriver.CUstream _checked_handle(self) except? NULL:
        if self._closed or self._core.closed:
            raise ClosedError("the stream is closed")
        return self._handle

    @property
    def handle(self):
        """The ``CUstream`` as an int."""
        return <uintptr_t>self._checked_handle()

    @property
    def closed(self):
        """True after :meth:`close` or once its layout was closed."""
        return self._closed or self._core.closed

    def __cuda_stream__(self):
        """The CUDA stream protocol: ``(version, handle)``."""
        return (0, <uintptr_t>self._checked_handle())

    def __int__(self):
        return <uintptr_t>self._checked_handle()

    def synchronize(self):
        """Wait (GIL released) until all work queued on the stream is done."""
        cdef cydriver.CUstream h = self._checked_handle()
        with nogil:
            check(cydriver.cuStreamSynchronize(h), "cuStreamSynchronize")

    def query(self):
        """True when all work queued on the stream is done."""
        cdef cydriver.CUstream h = self._checked_handle()
        cdef cydriver.CUresult err
        with nogil:
            err = cydriver.cuStreamQuery(h)
        if err == cydriver.CUDA_ERROR_NOT_READY:
            return False
        check(err, "cuStreamQuery")
        return True

    def wait(self, other):
        """This stream waits for the work queued on ``other`` so far (see :func:`handoff`)."""
        cdef cydriver.CUstream src = _stream_handle(other, "other")
        cdef cydriver.CUstream dst = self._checked_handle()
        pooled_or_temporary_handoff(self._core, src, dst)

    def close(self):
        """Destroy a stream made by :meth:`GreenContext.create_stream`. Idempotent. The
        partition's default stream is destroyed with its layout. When ``cuStreamDestroy``
        fails the stream stays open (and its layout still destroys it).

        Raises:
            ValueError: for the partition's default stream.
        """
        if not self._owned:
            raise ValueError(
                f"the default stream of partition {self.partition.name!r} is closed with its "
                "layout"
            )
        if self._closed or self._core.closed:
            self._closed = True
            return
        cdef cydriver.CUstream h = self._handle
        # Destroy first: after a failure the stream stays open and tracked by its layout
        # (which destroys it on close), so nothing leaks.
        with nogil:
            check(cydriver.cuStreamDestroy(h), "cuStreamDestroy")
        self._closed = True
        self._core.extra_streams[self.partition._index].discard(<uintptr_t>h)
        try:
            self.partition._extra_streams.remove(self)
        except ValueError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._owned:
            self.close()
        return False

    def __dealloc__(self):
        # A Stream holds its core, so the green context is alive here: destroying the
        # stream now keeps the streams-first order.
        if self._owned and not self._closed and self._core is not None \
                and not self._core.closed:
            try:
                self._core.extra_streams[self.partition._index].discard(
                    <uintptr_t>self._handle)
                warnings.warn("unclosed greenres.Stream", ResourceWarning, source=None)
            except BaseException:
                pass
            cydriver.cuStreamDestroy(self._handle)

    def __repr__(self):
        where = self.partition.name if self.partition is not None else "?"
        state = " closed" if self.closed else ""
        return f"<greenres.Stream of {where!r} priority={self.priority}{state}>"
