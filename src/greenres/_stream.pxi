# Included by _driver.pyx (one extension module; one file per concept).
# Streams made in a partition, and the stream arguments of every greenres call.
#
# Order of admissions (deadlock freedom of the lifetime protocol): a graph, then layouts
# (in address order when two are involved), then streams' own gates, then an event. A
# close() waits only for operations admitted on what it closes, and an operation waits
# only for a close that decides without waiting on anything admitted later in that order.


_STREAM_FORMS = (
    "a greenres.Stream, an object with __cuda_stream__, an object with an int cuda_stream "
    "or ptr attribute (torch.cuda.Stream, cupy.cuda.Stream), a cuda.bindings CUstream or an "
    "int handle"
)
# The attributes PyTorch (torch.cuda.Stream.cuda_stream) and CuPy (cupy.cuda.Stream.ptr)
# give a stream's CUstream as an int, in the order they are looked for.
_HANDLE_ATTRIBUTES = ("cuda_stream", "ptr")
cdef object _MISSING = object()
_HANDLE_LIMIT = 2**64


cdef inline bint _is_raw_handle(object value) except -1:
    """``value`` is an int handle in [0, 2**63), the common raw handle: tested by C
    comparisons with constants (no global lookup, no comparison of two ints as objects), as
    enter's path needs; larger handles up to 2**64 take _raw_stream's full checks."""
    return type(value) is int and 0 <= value <= 0x7FFFFFFFFFFFFFFF


cdef cydriver.CUstream _raw_stream(object stream, str name) except? NULL:
    """The CUstream of a stream argument that is not a greenres Stream: an object with
    ``__cuda_stream__``, a raw int handle, a cuda.bindings ``CUstream``, or an object with
    an int ``cuda_stream`` (PyTorch) or ``ptr`` (CuPy) attribute. Anything else
    (floats, bools, strings, malformed protocol answers) raises TypeError naming ``name``
    and the accepted forms; a handle outside [0, 2**64) raises ValueError."""
    cdef object value
    if _is_raw_handle(stream):  # the common case first: no other test, no lookup
        return <cydriver.CUstream><uintptr_t>stream
    if type(stream) is int:
        value = stream
    else:
        protocol = getattr(stream, "__cuda_stream__", None)
        if protocol is not None:
            answer = protocol() if callable(protocol) else protocol
            if not (isinstance(answer, tuple) and len(answer) == 2 and _is_index(answer[1])):
                raise TypeError(
                    f"{name!r}: __cuda_stream__ of {type(stream).__name__} must give a "
                    f"(version, handle) tuple of ints (got {answer!r})"
                )
            value = answer[1].__index__()
        elif _is_index(stream):
            value = stream.__index__()
        elif _module_of(stream).startswith("cuda.bindings"):
            value = int(stream)  # CUstream and friends convert to their pointer value
        else:
            value = _handle_attribute(stream, name)
    if value < 0:
        raise ValueError(f"{name!r} must be a stream handle >= 0 (got {value!r})")
    if value >= _HANDLE_LIMIT:
        raise ValueError(f"{name!r} must be a stream handle < 2**64 (got {value!r})")
    return <cydriver.CUstream><uintptr_t>value


cdef str _module_of(object stream):
    """The module of ``stream``'s class; "" for a class made where ``__name__`` was not
    defined (``type(...)`` in ``exec`` with bare globals has no ``__module__``)."""
    module = getattr(type(stream), "__module__", None)
    return module if isinstance(module, str) else ""


cdef object _handle_attribute(object stream, str name):
    """The int of the first of ``cuda_stream`` and ``ptr`` that ``stream`` has; TypeError
    naming ``name`` when it has neither, or when the attribute is not an int (a bool, a
    float, None: nothing is guessed)."""
    for attribute in _HANDLE_ATTRIBUTES:
        answer = getattr(stream, attribute, _MISSING)
        if answer is _MISSING:
            continue
        if not _is_index(answer):
            raise TypeError(
                f"{name!r}: {attribute} of {type(stream).__name__} must be an int stream "
                f"handle (got {answer!r})"
            )
        return answer.__index__()
    raise TypeError(f"{name!r} must be {_STREAM_FORMS} (got {stream!r})")


cdef cydriver.CUstream _use_stream(object stream, str name, Admissions* a,
                                   int device=-1) except? NULL:
    """The CUstream of any stream argument; a greenres Stream is admitted into ``a`` (it
    cannot be closed until the caller ends ``a``). ``device`` >= 0: a greenres Stream must
    be of that device (UsageError otherwise)."""
    cdef Stream s
    if type(stream) is not int and isinstance(stream, Stream):
        s = <Stream>stream
        if device >= 0 and s._core.ordinal != device:
            raise UsageError(
                f"{name!r} is a stream of device {s._core.ordinal}, not of device {device}"
            )
        s._admit_use(a)
        return s._handle
    return _raw_stream(stream, name)


cdef int _admit_stream_pair(Stream first, Stream second, Admissions* a) except -1:
    """Admit two greenres Streams into ``a``: their layouts by address (the protocol's
    order), each layout before its stream's own gate. Two streams of one layout (the
    common handoff) admit it once: one admission keeps its close waiting for the call."""
    if first._core is second._core:
        first._admit_use(a)
        if second._owned and second is not first:
            _admit_into(a, &second._gate, &second._inflight, second)
        return 0
    if <uintptr_t><void*>first._core > <uintptr_t><void*>second._core:
        second._admit_use(a)
        first._admit_use(a)
    else:
        first._admit_use(a)
        second._admit_use(a)
    return 0


cdef int _use_streams(object first, str first_name, object second, str second_name,
                      Admissions* a, cydriver.CUstream* first_out,
                      cydriver.CUstream* second_out) except -1:
    """Two stream arguments, admitted in the order that keeps the protocol deadlock-free
    (layouts by address)."""
    if isinstance(first, Stream) and isinstance(second, Stream):
        _admit_stream_pair(<Stream>first, <Stream>second, a)
        first_out[0] = (<Stream>first)._handle
        second_out[0] = (<Stream>second)._handle
        return 0
    first_out[0] = _use_stream(first, first_name, a)
    second_out[0] = _use_stream(second, second_name, a)
    return 0


cdef bint _is_capturing(cydriver.CUstream stream) except -1:
    cdef cydriver.CUstreamCaptureStatus status = cydriver.CU_STREAM_CAPTURE_STATUS_NONE
    if stream == NULL:
        return False
    # a query: keeps the GIL (see _push_primary)
    check(cydriver.cuStreamIsCapturing(stream, &status), "cuStreamIsCapturing")
    return status == cydriver.CU_STREAM_CAPTURE_STATUS_ACTIVE


@cython.no_gc_clear
cdef class Stream(_Resource):
    """A stream of a partition. Implements ``__cuda_stream__`` so cuda.core, PyTorch
    (``torch.cuda.ExternalStream(s.handle)``) and CuPy can use it.

    Made by :attr:`GreenContext.stream` and :meth:`GreenContext.create_stream`.

    Attributes:
        partition: the :class:`GreenContext` the stream was made in.
        priority: the stream's priority, as the driver clamped it.
    """

    cdef cydriver.CUstream _handle
    cdef _LayoutCore _core
    cdef PartState* _s
    cdef readonly GreenContext partition
    cdef readonly int priority
    cdef bint _owned          # created by create_stream (else the partition's default)
    cdef int _number          # its number in the partition (NVTX: <layout>/<part>/stream<n>)
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "greenres.Stream objects are made by GreenContext.stream and "
            "GreenContext.create_stream()"
        )

    cdef _init(self, _LayoutCore core, GreenContext partition, cydriver.CUstream handle,
               int priority, bint owned):
        self._core = core
        self._s = partition._s
        self.partition = partition
        self._handle = handle
        self.priority = priority
        self._owned = owned

    cdef str _describe(self):
        return f"greenres.Stream of partition {self.partition.name!r}"

    cdef object _closed_error(self):
        return ClosedError("the stream is closed")

    cdef int _admit_use(self, Admissions* a) except -1:
        """Admit an operation on the stream: its layout first, then its own gate."""
        _admit_into(a, self._s.gate, &self._s.inflight, self)
        if self._owned:
            try:
                _admit_into(a, &self._gate, &self._inflight, self)
            except BaseException:
                a.count -= 1  # all or nothing: the caller ends only what was admitted
                greenres_end(a.counters[a.count])
                raise
        return 0

    cdef bint _try_begin_own(self) except -1:
        """Admit on the stream's own gate only (the caller admitted its layout); False when
        the stream is closed."""
        cdef int admitted = greenres_begin(&self._gate, &self._inflight)
        if admitted == -1:
            with nogil:
                admitted = greenres_admit(&self._gate, &self._inflight)
        return admitted == 1

    cdef inline bint _stream_closed(self):
        return greenres_gate_state(self._s.gate) == GREENRES_CLOSED \
            or greenres_gate_state(&self._gate) == GREENRES_CLOSED

    cdef inline cydriver.CUstream _checked_handle(self) except? NULL:
        if self._stream_closed():
            raise self._closed_error()
        return self._handle

    @property
    def handle(self):
        """The ``CUstream`` as an int."""
        return <uintptr_t>self._checked_handle()

    @property
    def closed(self):
        """True after :meth:`close` or once its layout was closed."""
        return self._stream_closed()

    def __cuda_stream__(self):
        """The CUDA stream protocol: ``(version, handle)``."""
        return (0, <uintptr_t>self._checked_handle())

    def __int__(self):
        return <uintptr_t>self._checked_handle()

    def synchronize(self):
        """Wait (GIL released) until all work queued on the stream is done. A close() on
        another thread waits for it."""
        cdef Admissions a
        cdef cydriver.CUstream h
        cdef cydriver.CUresult err
        _admissions_init(&a)
        self._admit_use(&a)
        h = self._handle
        with nogil:
            err = cydriver.cuStreamSynchronize(h)
            _admissions_end(&a)
        check(err, "cuStreamSynchronize")

    def query(self):
        """True when all work queued on the stream is done."""
        cdef Admissions a
        cdef cydriver.CUstream h
        cdef cydriver.CUresult err
        _admissions_init(&a)
        self._admit_use(&a)
        h = self._handle
        if _hot_path_releases_gil:
            with nogil:
                err = cydriver.cuStreamQuery(h)
        else:
            err = cydriver.cuStreamQuery(h)
        _admissions_end(&a)
        if err == cydriver.CUDA_ERROR_NOT_READY:
            return False
        check(err, "cuStreamQuery")
        return True

    def wait(self, other):
        """This stream waits for the work queued on ``other`` so far (see :func:`handoff`)."""
        cdef Admissions a
        cdef cydriver.CUstream src, dst
        _admissions_init(&a)
        try:
            _use_streams(other, "other", self, "self", &a, &src, &dst)
            _handoff_admitted(self._core, src, dst, _handoff_mark(other, self))
        finally:
            _admissions_end(&a)

    def close(self):
        """Destroy a stream made by :meth:`GreenContext.create_stream`. Idempotent, and safe
        against other threads using the stream. The partition's default stream is destroyed
        with its layout.

        Raises:
            ValueError: for the partition's default stream.
            UsageError: while the stream is capturing.
            DestroyError: when ``cuStreamDestroy`` failed (the stream is closed for use; its
                layout, or close() again, retries).
        """
        cdef Admissions a
        if not self._owned:
            raise ValueError(
                f"the default stream of partition {self.partition.name!r} is closed with its "
                "layout"
            )
        _admissions_init(&a)
        try:
            _admit_into(&a, self._s.gate, &self._s.inflight, self)
        except ClosedError:
            greenres_gate_set(&self._gate, GREENRES_CLOSED)  # its layout destroyed it
            return
        try:
            self._close(False)
        finally:
            if self._is_closed():
                self._closed_for_use()
            _admissions_end(&a)

    def __enter__(self):
        self._checked_handle()
        return self

    def __exit__(self, exc_type, exc, tb):
        # The default stream is closed with its layout: leaving a 'with' on it closes nothing.
        if self._owned:
            return _Resource.__exit__(self, exc_type, exc, tb)
        return False

    cdef int _refuse_close(self, bint force) except -1:
        if _is_capturing(self._handle):
            raise UsageError(
                "the stream is capturing: end the capture (capture_end(), or reset() the "
                "graph) before closing it"
            )
        return 0

    cdef list _destroy(self):
        """Destroy the stream (the caller holds an admission on its layout, or the layout is
        closed and destroyed it already)."""
        cdef cydriver.CUstream h = self._handle
        cdef cydriver.CUresult err
        handles = self._core.extra_streams[self.partition._index]
        if not self._owned or <uintptr_t>h not in handles:
            return []
        with nogil:
            err = cydriver.cuStreamDestroy(h)
        if err != cydriver.CUDA_SUCCESS:
            return [_failure_of(err, "cuStreamDestroy")]
        del handles[<uintptr_t>h]
        return []

    cdef int _closed_for_use(self) except -1:
        """Closed (destroyed, or its destroy failed and is left to a retry): no longer one
        of the partition's streams."""
        try:
            self.partition._extra_streams.remove(self)
        except ValueError:
            pass
        return 0

    cdef void _finalize(self) noexcept:
        # The finalizer destroys an unclosed stream while admitted on its layout, so that a
        # close of the layout on another thread does not destroy it at the same time.
        cdef Admissions a
        cdef int admitted
        if not self._owned:
            return
        _admissions_init(&a)
        try:
            # Never wait for a close of the layout here: a finalizer may run (by the garbage
            # collector) inside a call that holds that layout, which the close waits for.
            # Closed or closing, the layout destroys the stream (it is in its list).
            admitted = greenres_begin(self._s.gate, &self._s.inflight)
            if admitted != 1:
                greenres_gate_set(&self._gate, GREENRES_CLOSED)
                return
            a.counters[0] = &self._s.inflight
            a.count = 1
            _Resource._finalize(self)
        except BaseException:
            pass
        finally:
            _admissions_end(&a)

    def __repr__(self):
        where = self.partition.name if self.partition is not None else "?"
        state = " closed" if self.closed else ""
        return f"<greenres.Stream of {where!r} priority={self.priority}{state}>"
