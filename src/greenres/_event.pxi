# Included by _driver.pyx (one extension module; one file per concept).
# Events.


@cython.no_gc_clear
cdef class Event(_Resource):
    """A CUDA event of a device's primary context (usable with every stream of the device,
    including partition streams).

    ``Event(timing=False)``: timing-disabled events are cheaper; :meth:`elapsed_time` needs
    ``timing=True`` on both events.

    Attributes:
        timing: True when the event records time (``Event(timing=True)``).
    """

    cdef cydriver.CUevent _handle
    cdef cydriver.CUdevice _device
    cdef bint _retained
    cdef bint _initialized
    cdef readonly bint timing

    def __cinit__(self):
        self._handle = NULL
        self._retained = False
        self._initialized = False
        self._gate = GREENRES_CLOSED  # open once __init__ made the event

    def __init__(self, timing=False, device=0):
        if self._initialized:
            raise UsageError("greenres.Event.__init__ was called on an event made already")
        timing = _require_bool("timing", timing)
        cdef Device dev = _device_of("device", device)
        cdef cydriver.CUcontext primary = NULL
        cdef unsigned int flags = 0 if timing else cydriver.CU_EVENT_DISABLE_TIMING
        self._initialized = True
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
            failures = self._destroy()
            if failures:
                _warn_resource(str(DestroyError(self._describe(), failures)))
            raise
        greenres_gate_set(&self._gate, GREENRES_OPEN)

    cdef str _describe(self):
        return "greenres.Event"

    cdef object _closed_error(self):
        return ClosedError("the event is closed")

    cdef list _destroy(self):
        """Destroy the event, then release the primary context it was made in (kept while
        the event lives, so a failed destroy keeps both for a retry)."""
        cdef cydriver.CUresult err
        failures = _destroy_event(&self._handle)
        if not failures and self._retained:
            with nogil:
                err = cydriver.cuDevicePrimaryCtxRelease(self._device)
            if err == cydriver.CUDA_SUCCESS:
                self._retained = False
            else:
                failures.append(_failure_of(err, "cuDevicePrimaryCtxRelease"))
        return failures

    cdef cydriver.CUevent _admitted(self, Admissions* a) except? NULL:
        _admit_into(a, &self._gate, &self._inflight, self)
        return self._handle

    @property
    def handle(self):
        """The ``CUevent`` as an int."""
        self._check_open()
        return <uintptr_t>self._handle

    def record(self, stream):
        """Record the work queued on ``stream`` so far (stream-level: capture-safe)."""
        cdef Admissions a
        cdef cydriver.CUstream s
        cdef cydriver.CUevent e
        cdef cydriver.CUresult err
        _admissions_init(&a)
        try:
            s = _use_stream(stream, "stream", &a)
            e = self._admitted(&a)
            if _hot_path_releases_gil:
                with nogil:
                    err = cydriver.cuEventRecord(e, s)
            else:
                err = cydriver.cuEventRecord(e, s)
        finally:
            _admissions_end(&a)
        check(err, "cuEventRecord")
        return self

    def wait(self, stream):
        """Make ``stream`` wait for the work this event recorded."""
        cdef Admissions a
        cdef cydriver.CUstream s
        cdef cydriver.CUevent e
        cdef cydriver.CUresult err
        _admissions_init(&a)
        try:
            s = _use_stream(stream, "stream", &a)
            e = self._admitted(&a)
            if _hot_path_releases_gil:
                with nogil:
                    err = cydriver.cuStreamWaitEvent(s, e, 0)
            else:
                err = cydriver.cuStreamWaitEvent(s, e, 0)
        finally:
            _admissions_end(&a)
        check(err, "cuStreamWaitEvent")

    def query(self):
        """True when the recorded work is done."""
        cdef Admissions a
        cdef cydriver.CUevent e
        cdef cydriver.CUresult err
        _admissions_init(&a)
        e = self._admitted(&a)
        if _hot_path_releases_gil:
            with nogil:
                err = cydriver.cuEventQuery(e)
        else:
            err = cydriver.cuEventQuery(e)
        _admissions_end(&a)
        if err == cydriver.CUDA_ERROR_NOT_READY:
            return False
        check(err, "cuEventQuery")
        return True

    def synchronize(self):
        """Wait (GIL released) for the recorded work."""
        cdef Admissions a
        cdef cydriver.CUevent e
        cdef cydriver.CUresult err
        _admissions_init(&a)
        e = self._admitted(&a)
        with nogil:
            err = cydriver.cuEventSynchronize(e)
            _admissions_end(&a)
        check(err, "cuEventSynchronize")

    def elapsed_time(self, end):
        """Milliseconds between this event and ``end`` (both recorded, both ``timing``)."""
        cdef Admissions a
        cdef cydriver.CUevent start, stop
        cdef cydriver.CUresult err
        cdef float ms = 0
        if not isinstance(end, Event):
            raise TypeError(f"'end' must be a greenres.Event (got {end!r})")
        self._check_open()
        (<Event>end)._check_open()
        if not (self.timing and (<Event>end).timing):
            raise ValueError("elapsed_time needs two events created with timing=True")
        _admissions_init(&a)
        try:
            start = self._admitted(&a)
            stop = (<Event>end)._admitted(&a)
            with nogil:
                err = cydriver.cuEventElapsedTime(&ms, start, stop)
        finally:
            _admissions_end(&a)
        check(err, "cuEventElapsedTime")
        return ms

    def __repr__(self):
        state = " closed" if self._is_closed() else ""
        return f"<greenres.Event timing={self.timing}{state}>"
