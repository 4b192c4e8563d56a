# Included by _driver.pyx (one extension module; one file per concept).
# Events.


cdef class Event:
    """A CUDA event of a device's primary context (usable with every stream of the device,
    including partition streams).

    ``Event(timing=False)``: timing-disabled events are cheaper; :meth:`elapsed_time` needs
    ``timing=True`` on both events.
    """

    cdef cydriver.CUevent _handle
    cdef cydriver.CUdevice _device
    cdef bint _retained
    cdef bint _closed
    cdef readonly bint timing

    def __cinit__(self):
        self._handle = NULL
        self._retained = False
        self._closed = True

    def __init__(self, timing=False, device=0):
        timing = _require_bool("timing", timing)
        cdef Device dev = _device_of("device", device)
        cdef cydriver.CUcontext primary = NULL
        cdef unsigned int flags = 0 if timing else cydriver.CU_EVENT_DISABLE_TIMING
        self._device = dev._device
        self.timing = timing
        with nogil:
            check(cydriver.cuDevicePrimaryCtxRetain(&primary, self._device),
                  "cuDevicePrimaryCtxRetain")
        self._retained = True
        try:
            _push_primary(primary)
            try:
                self._handle = _new_event(flags)
                _pop_context()
            except BaseException:
                _pop_if_current(primary)
                raise
        except BaseException:
            if self._handle != NULL:
                cydriver.cuEventDestroy(self._handle)
                self._handle = NULL
            self._release_primary()
            raise
        self._closed = False

    cdef void _release_primary(self) noexcept:
        if self._retained:
            self._retained = False
            try:
                cydriver.cuDevicePrimaryCtxRelease(self._device)
            except BaseException:
                pass

    cdef inline cydriver.CUevent _checked(self) except? NULL:
        if self._closed:
            raise ClosedError("the event is closed")
        return self._handle

    @property
    def handle(self):
        """The ``CUevent`` as an int."""
        return <uintptr_t>self._checked()

    @property
    def closed(self):
        return self._closed

    def record(self, stream):
        """Record the work queued on ``stream`` so far (stream-level: capture-safe)."""
        cdef cydriver.CUevent e = self._checked()
        cdef cydriver.CUstream s = _stream_handle(stream, "stream")
        with nogil:
            check(cydriver.cuEventRecord(e, s), "cuEventRecord")
        return self

    def wait(self, stream):
        """Make ``stream`` wait for the work this event recorded."""
        cdef cydriver.CUevent e = self._checked()
        cdef cydriver.CUstream s = _stream_handle(stream, "stream")
        with nogil:
            check(cydriver.cuStreamWaitEvent(s, e, 0), "cuStreamWaitEvent")

    def query(self):
        """True when the recorded work is done."""
        cdef cydriver.CUevent e = self._checked()
        cdef cydriver.CUresult err
        with nogil:
            err = cydriver.cuEventQuery(e)
        if err == cydriver.CUDA_ERROR_NOT_READY:
            return False
        check(err, "cuEventQuery")
        return True

    def synchronize(self):
        """Wait (GIL released) for the recorded work."""
        cdef cydriver.CUevent e = self._checked()
        with nogil:
            check(cydriver.cuEventSynchronize(e), "cuEventSynchronize")

    def elapsed_time(self, end):
        """Milliseconds between this event and ``end`` (both recorded, both ``timing``)."""
        if not isinstance(end, Event):
            raise TypeError(f"'end' must be a greenres.Event (got {end!r})")
        cdef cydriver.CUevent start = self._checked()
        cdef cydriver.CUevent stop = (<Event>end)._checked()
        cdef float ms = 0
        if not (self.timing and (<Event>end).timing):
            raise ValueError("elapsed_time needs two events created with timing=True")
        with nogil:
            check(cydriver.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime")
        return ms

    def close(self):
        """Destroy the event and release the primary context. Idempotent. When
        ``cuEventDestroy`` fails the event stays open."""
        if self._closed:
            return
        cdef cydriver.CUevent e = self._handle
        with nogil:
            check(cydriver.cuEventDestroy(e), "cuEventDestroy")
        self._closed = True
        self._handle = NULL
        self._release_primary()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        if not self._closed:
            try:
                warnings.warn("unclosed greenres.Event", ResourceWarning, source=None)
            except BaseException:
                pass
            try:
                cydriver.cuEventDestroy(self._handle)
            except BaseException:
                pass
        self._release_primary()
