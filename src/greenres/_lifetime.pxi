# Included by _driver.pyx (one extension module; one file per concept).
# The lifecycle every object that owns driver handles shares: one closed state, one open
# check that names the object, one close() protocol that is safe against other threads,
# one report of handles that could not be destroyed, one ResourceWarning path.
#
# The protocol (greenres_runtime.h, "lifetimes"): every operation that passes a handle to
# the driver is admitted through the owner's gate and counted in flight until it is done;
# close() moves the gate to CLOSING, waits until nothing is in flight, then refuses (the
# gate opens again) or destroys and closes the gate. Operations that meet a closing gate
# wait for the outcome; after close they raise ClosedError. So no greenres call passes a
# destroyed handle to the driver, whatever the interleaving of threads.

from cpython.ref cimport Py_DECREF, Py_INCREF


cdef class GreenContext  # _partition.pxi


cdef int _admit(const int* gate, long* inflight, object owner) except -1:
    """Admit one operation on ``owner`` (count it in ``inflight``); call ``greenres_end``
    when it is done. Raises ClosedError (naming ``owner``) when it is closed;
    while a close() is deciding, waits for it with the GIL released."""
    cdef int admitted = greenres_begin(gate, inflight)
    if admitted == -1:  # a close() is deciding: wait for it without the GIL
        with nogil:
            admitted = greenres_admit(gate, inflight)
    if admitted == 0:
        raise _closed_error_of(owner)
    return 0


cdef object _closed_error_of(object owner):
    if isinstance(owner, _Resource):
        return (<_Resource>owner)._closed_error()
    if isinstance(owner, GreenContext):
        return (<GreenContext>owner)._closed_error()
    return ClosedError("the object is closed")


# Admissions of one call: the counters to end when the call is done (an operation may be
# admitted on several objects: an event and a stream, two streams, a stream and its
# partition).
cdef enum:
    MAX_ADMISSIONS = 6

cdef struct Admissions:
    long* counters[MAX_ADMISSIONS]
    const int* gates[MAX_ADMISSIONS]
    int count


cdef inline void _admissions_init(Admissions* a) noexcept nogil:
    a.count = 0


cdef inline bint _holds(Admissions* a, const int* gate) noexcept nogil:
    cdef int i
    for i in range(a.count):
        if a.gates[i] == gate:
            return True
    return False


cdef inline void _record(Admissions* a, const int* gate, long* inflight) noexcept nogil:
    a.counters[a.count] = inflight
    a.gates[a.count] = gate
    a.count += 1


cdef inline int _admit_into(Admissions* a, const int* gate, long* inflight,
                            object owner) except -1:
    """Admit into ``a`` (ended together by _admissions_end). A call that holds an admission
    on ``gate`` already is admitted again at once: the gate's close cannot finish while it
    holds one, so waiting for that close would wait for itself."""
    if a.count >= MAX_ADMISSIONS:
        raise UsageError("internal error: too many admissions for one call")
    if _holds(a, gate):
        greenres_readmit(inflight)
    else:
        _admit(gate, inflight, owner)
    _record(a, gate, inflight)
    return 0


cdef bint _try_admit_into(Admissions* a, const int* gate, long* inflight) except -1:
    """Admit like _admit_into, but answer False (admitting nothing) when closed."""
    cdef int admitted
    if a.count >= MAX_ADMISSIONS:
        raise UsageError("internal error: too many admissions for one call")
    if _holds(a, gate):
        greenres_readmit(inflight)
        _record(a, gate, inflight)
        return True
    admitted = greenres_begin(gate, inflight)
    if admitted == -1:
        with nogil:
            admitted = greenres_admit(gate, inflight)
    if admitted == 0:
        return False
    _record(a, gate, inflight)
    return True


cdef void _admissions_end(Admissions* a) noexcept nogil:
    cdef int i
    for i in range(a.count):
        greenres_end(a.counters[i])
    a.count = 0


cdef void _warn_resource(str message) noexcept:
    """A ResourceWarning from a finalizer, where nothing may be raised (not even when the
    warnings filter turns it into an error, or at interpreter shutdown)."""
    try:
        warnings.warn(message, ResourceWarning, source=None)
    except BaseException:
        pass


cdef object _failure_of(cydriver.CUresult err, const char* function):
    """The DriverError of a failed destroy call (not raised: collected for the report)."""
    return DriverError(function.decode(), <int>err, _error_name(err), _error_string(err))


@cython.no_gc_clear
cdef class _Resource:
    """Base of every object that owns driver handles (never used directly).

    Subclasses implement ``_describe`` (the object's name in messages), ``_refuse_close``
    (raise to refuse a close, e.g. while a partition is entered), ``_destroy`` (destroy the
    handles; return the DriverErrors of calls that failed, keeping those handles so that
    another ``close()`` retries them) and, where in-flight operations are counted elsewhere
    than in ``_inflight``, ``_wait_idle``.

    ``no_gc_clear``: the garbage collector must not clear the references ``_destroy`` needs
    before the finalizer ran it.
    """

    cdef int _gate           # GREENRES_OPEN / CLOSING / CLOSED (atomic accesses only)
    cdef long _inflight      # operations in flight on the object's own handles
    cdef bint _leaking       # a destroy call failed: close() again retries it

    cdef str _describe(self):
        return "greenres object"

    cdef object _closed_error(self):
        return ClosedError(f"the {self._describe()} is closed")

    cdef int _refuse_close(self, bint force) except -1:
        return 0

    cdef list _destroy(self):
        return []

    cdef int _wait_idle(self) except -1:
        with nogil:
            greenres_wait_idle(&self._inflight)
        return 0

    cdef inline int _begin(self) except -1:
        return _admit(&self._gate, &self._inflight, self)

    cdef inline void _end(self) noexcept nogil:
        greenres_end(&self._inflight)

    cdef inline bint _is_closed(self) noexcept:
        return greenres_gate_state(&self._gate) == GREENRES_CLOSED

    cdef int _check_open(self) except -1:
        if greenres_gate_state(&self._gate) == GREENRES_CLOSED:
            raise self._closed_error()
        return 0

    cdef int _close(self, bint force) except -1:
        """The close protocol. ``force`` is passed to ``_refuse_close``."""
        cdef int state
        while True:
            if greenres_gate_close(&self._gate):
                break
            with nogil:
                state = greenres_gate_wait(&self._gate)
            if state == GREENRES_CLOSED:
                # Closed already (here or by another thread): retry what failed before.
                if self._leaking:
                    self._report(self._destroy())
                return 0
            # Another close() refused and opened the gate again: decide ourselves.
        try:
            self._wait_idle()
            self._refuse_close(force)
        except BaseException:
            greenres_gate_set(&self._gate, GREENRES_OPEN)
            raise
        failures = self._destroy()
        greenres_gate_set(&self._gate, GREENRES_CLOSED)
        self._report(failures)
        return 0

    cdef int _report(self, list failures) except -1:
        self._leaking = bool(failures)
        if failures:
            raise DestroyError(self._describe(), failures)
        return 0

    cdef void _finalize(self) noexcept:
        """What the finalizer does: an open object is destroyed (with a ResourceWarning,
        unless ``_warn_unclosed`` says otherwise); failed destroy calls are reported as a
        ResourceWarning, since there is nobody to raise them to."""
        cdef list failures
        try:
            if greenres_gate_state(&self._gate) != GREENRES_CLOSED:
                if self._warn_unclosed():
                    _warn_resource(f"unclosed {self._describe()}: call close() or use 'with'")
                # Nothing can be in flight: every operation holds a reference to us.
                failures = self._destroy()
                greenres_gate_set(&self._gate, GREENRES_CLOSED)
            elif self._leaking:
                failures = self._destroy()
            else:
                return
            if failures:
                _warn_resource(str(DestroyError(self._describe(), failures)))
        except BaseException:
            pass

    cdef bint _warn_unclosed(self):
        return True

    def __del__(self):
        self._finalize()

    @property
    def closed(self):
        """True once :meth:`close` ran (or the object that owns it was closed)."""
        return self._is_closed()

    def close(self):
        """Destroy the object's driver handles. Idempotent; safe against other threads
        using the object (they finish first; later calls raise ClosedError).

        Raises:
            DestroyError: when some destroy calls failed (everything else was destroyed;
                calling close() again retries them).
        """
        self._close(False)

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return False
        # Never replace the exception in flight: report a failed close as a warning.
        try:
            self._close(True)
        except BaseException as error:
            _warn_resource(f"{self._describe()} not closed after an exception: {error}")
        return False


cdef inline void _pin(PartState* s, object partition) noexcept:
    """An entered partition is referenced from its state for as long as it is entered: the
    GreenContext (and through it the core that owns the state) lives while the entering
    thread's nesting stack points at the state."""
    Py_INCREF(partition)
    s.entered_by = <void*>partition


cdef inline void _unpin(void* pinned) noexcept:
    """Drop the reference _pin took (the outermost exit took it off the state)."""
    Py_DECREF(<object>pinned)
