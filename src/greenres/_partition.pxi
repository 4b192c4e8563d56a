# Included by _driver.pyx (one extension module; one file per concept).
# Partitions (GreenContext): streams, enter/exit, isolation keys; handoff.


cdef class GreenContext:
    """One partition: a green context on a disjoint set of SMs, with its streams.

    Made by :meth:`Layout.create`. ``with part:`` makes it current on this thread (see
    :meth:`enter`).
    """

    cdef _LayoutCore _core
    cdef int _index
    cdef readonly str name
    cdef readonly int sm_count
    cdef readonly Device device
    cdef readonly object planned_partition
    cdef readonly object plan
    cdef Stream _stream
    cdef list _extra_streams
    cdef object _layout_ref
    cdef object _scope         # the reusable object enter() returns
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "greenres.GreenContext objects are made by greenres.Layout.create(plan); "
            "get one with layout['name']"
        )

    cdef _init(self, _LayoutCore core, int index, Device device, _Request r, object plan,
               int sm_count):
        self._core = core
        self._index = index
        self.name = r.name
        self.sm_count = sm_count
        self.device = device
        self.planned_partition = r.planned
        self.plan = plan
        self._extra_streams = []
        self._layout_ref = None
        s = Stream.__new__(Stream)
        (<Stream>s)._init(core, self, core.states[index].stream, r.priority, False)
        self._stream = s

    cdef inline PartState* _state(self):
        return self._core.states[self._index]

    cdef inline int _enter(self, cydriver.CUstream caller, bint resolve) except -1:
        """enter_partition without the GIL; the caller checked that the layout is open."""
        cdef int code
        cdef PartState* s = self._state()
        with nogil:
            code = enter_partition(s, caller, resolve)
        if code:
            raise _thread_rule_error(self.name, code)
        return 0

    cdef inline int _exit(self) except -1:
        cdef int code
        cdef PartState* s
        self._check_open()
        s = self._state()
        with nogil:
            code = exit_partition(s)
        if code:
            raise _thread_rule_error(self.name, code)
        return 0

    cdef inline int _check_open(self) except -1:
        if self._core.closed:
            raise ClosedError(f"partition {self.name!r} is closed (its layout was closed)")
        return 0

    cdef Stream _make_stream(self, int priority):
        cdef cydriver.CUstream handle = NULL
        cdef cydriver.CUgreenCtx green = self._state().green
        cdef int actual = priority
        with nogil:
            check(cydriver.cuGreenCtxStreamCreate(&handle, green,
                                                  cydriver.CU_STREAM_NON_BLOCKING, priority),
                  "cuGreenCtxStreamCreate")
        self._core.extra_streams[self._index].add(<uintptr_t>handle)
        try:
            with nogil:
                check(cydriver.cuStreamGetPriority(handle, &actual), "cuStreamGetPriority")
        except BaseException:
            self._core.extra_streams[self._index].discard(<uintptr_t>handle)
            with nogil:
                cydriver.cuStreamDestroy(handle)
            raise
        s = Stream.__new__(Stream)
        (<Stream>s)._init(self._core, self, handle, actual, True)
        return s

    @property
    def layout(self):
        """The Layout this partition belongs to (None once the layout object is gone)."""
        return self._layout_ref() if self._layout_ref is not None else None

    @property
    def closed(self):
        """True once the layout was closed."""
        return self._core.closed

    @property
    def handle(self):
        """The ``CUgreenCtx`` as an int."""
        self._check_open()
        return <uintptr_t>self._state().green

    @property
    def context_handle(self):
        """The ``CUcontext`` of the green context (``cuCtxFromGreenCtx``) as an int."""
        self._check_open()
        return <uintptr_t>self._state().ctx

    @property
    def id(self):
        """The driver's unique id of the green context (``cuGreenCtxGetId``, CUDA 13.0+)."""
        cdef unsigned long long value = 0
        cdef cydriver.CUgreenCtx green
        self._check_open()
        _resolve_newer_functions()
        if _green_ctx_get_id == NULL:
            raise _too_old("GreenContext.id (cuGreenCtxGetId)", GREEN_CONTEXT_ID)
        green = self._state().green
        with nogil:
            check(_green_ctx_get_id(green, &value), "cuGreenCtxGetId")
        return value

    @property
    def sm_resource(self):
        """The :class:`SmResource` this partition holds (``cuGreenCtxGetDevResource``);
        minimum and alignment are the device's."""
        cdef cydriver.CUdevResource held
        cdef cydriver.CUgreenCtx green
        self._check_open()
        green = self._state().green
        memset(&held, 0, sizeof(held))
        with nogil:
            check(cydriver.cuGreenCtxGetDevResource(green, &held,
                                                    cydriver.CU_DEV_RESOURCE_TYPE_SM),
                  "cuGreenCtxGetDevResource")
        device = self.device.sm_resource
        return SmResource(greenres_sm_prefix_of(&held).smCount, device.min_partition_size,
                          device.alignment)

    @property
    def stream(self):
        """The partition's default stream (non-blocking, made with cuGreenCtxStreamCreate):
        work on it runs on this partition's SMs with no push at all."""
        self._check_open()
        return self._stream

    @property
    def streams(self):
        """The streams the plan asked for: the default stream first."""
        self._check_open()
        return (self._stream, *self._extra_streams)

    def create_stream(self, priority=0):
        """A new non-blocking stream of this partition. Lower numbers are higher priority
        (the driver clamps to its range; :attr:`Stream.priority` tells the result). Closed
        with the layout at the latest.

        Raises:
            TypeError: when ``priority`` is not an int.
        """
        priority = _require_int("priority", priority)
        if not -2**31 <= priority < 2**31:
            raise ValueError(f"'priority' must fit in a C int (got {priority!r})")
        self._check_open()
        return self._make_stream(priority)

    @property
    def entered(self):
        """True while the partition is entered on some thread."""
        return not self.closed and greenres_owner(&self._state().owner) != 0

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def enter(self, from_stream=None):
        """Make this partition current on this thread: the caller's stream records an event,
        the green context is pushed, the partition's stream waits for the event. Nesting
        works (also of the same partition); exit in reverse order on the same thread.

        ``from_stream``: the caller's stream (any stream form); by default the stream of
        the partition this thread is in, else the legacy stream of the device's primary
        context when that is current, else none (nothing to order after).

        Raises:
            ThreadOwnershipError: when the partition is current on another thread.
        """
        cdef cydriver.CUstream caller = NULL
        cdef bint resolve = from_stream is None
        self._check_open()
        if not resolve:
            caller = _stream_handle(from_stream, "from_stream")
        self._enter(caller, resolve)
        if self._scope is None:
            self._scope = _Entered(self)
        return self._scope

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def exit(self):
        """Undo the innermost :meth:`enter`: the caller's stream waits for the partition's
        stream, the green context is popped.

        Raises:
            ThreadOwnershipError: on a thread that did not enter the partition.
        """
        self._exit()

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def __enter__(self):
        self._check_open()
        self._enter(NULL, True)
        return self

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def __exit__(self, exc_type, exc, tb):
        self._exit()
        return False

    cdef tuple _live_extra_streams(self):
        """Every live stream of the partition but the default one: those the plan asked
        for and those made by :meth:`create_stream` (the core tracks both)."""
        return tuple(self._core.extra_streams[self._index])

    cdef int _fence_record(self) except -1:
        cdef PartState* s = self._state()
        # Every other live stream joins the default stream first, so one fence event
        # covers all the partition's work.
        for handle in self._live_extra_streams():
            pooled_or_temporary_handoff(self._core, <cydriver.CUstream><uintptr_t>handle,
                                        s.stream)
        with nogil:
            check(cydriver.cuEventRecord(s.fence_event, s.stream), "cuEventRecord")
        return 0

    cdef int _fence_wait(self, GreenContext old) except -1:
        cdef PartState* s = self._state()
        cdef cydriver.CUevent event = old._state().fence_event
        cdef cydriver.CUstream extra
        with nogil:
            check(cydriver.cuStreamWaitEvent(s.stream, event, 0), "cuStreamWaitEvent")
        for handle in self._live_extra_streams():
            extra = <cydriver.CUstream><uintptr_t>handle
            with nogil:
                check(cydriver.cuStreamWaitEvent(extra, event, 0), "cuStreamWaitEvent")
        return 0

    def isolation_key(self, schema, **kwargs):
        """This partition's isolation key (see :func:`greenres.isolation.isolation_key`)."""
        from greenres.isolation import isolation_key

        return isolation_key(schema, partition=self, **kwargs)

    def __repr__(self):
        state = " closed" if self.closed else ""
        return f"<greenres.GreenContext {self.name!r} sm_count={self.sm_count}{state}>"


class _Entered:
    """What :meth:`GreenContext.enter` returns: ``with part.enter(from_stream=s):`` exits
    the partition at the end of the block (it does not enter again)."""

    __slots__ = ("partition",)

    def __init__(self, partition):
        self.partition = partition

    def __enter__(self):
        return self.partition

    def __exit__(self, exc_type, exc, tb):
        self.partition.exit()
        return False


cdef int pooled_or_temporary_handoff(_LayoutCore core, cydriver.CUstream src,
                                     cydriver.CUstream dst) except -1:
    cdef int code = POOL_EXHAUSTED
    cdef EventPool* pool = NULL
    if core is not None and not core.closed:
        pool = core.pool
        with nogil:
            code = pooled_handoff(pool, src, dst)
    if code == 0:
        return 0
    # No pool (foreign streams only) or all slots busy: a temporary event in the current
    # context. Slow, but correct.
    cdef cydriver.CUevent event = NULL
    cdef cydriver.CUcontext current = NULL
    check(cydriver.cuCtxGetCurrent(&current), "cuCtxGetCurrent")
    if current == NULL:
        raise UsageError(
            "handoff between streams that are not greenres streams needs a current context "
            "(no context is current on this thread)"
        )
    with nogil:
        check(cydriver.cuEventCreate(&event, cydriver.CU_EVENT_DISABLE_TIMING), "cuEventCreate")
    try:
        with nogil:
            check(cydriver.cuEventRecord(event, src), "cuEventRecord")
            check(cydriver.cuStreamWaitEvent(dst, event, 0), "cuStreamWaitEvent")
    finally:
        with nogil:
            cydriver.cuEventDestroy(event)
    return 0


def handoff(src, dst):
    """Make ``dst`` wait for all work queued on ``src`` so far (an event record and a wait,
    both stream-level calls, so capture-safe; the event comes from a lock-free pool).

    ``src`` and ``dst`` are greenres Streams, objects with ``__cuda_stream__`` or raw int
    handles. Foreign streams only (no greenres Stream on either side) use a temporary event
    of the current context.
    """
    cdef cydriver.CUstream s = _stream_handle(src, "src")
    cdef cydriver.CUstream d = _stream_handle(dst, "dst")
    cdef _LayoutCore core = None
    if isinstance(src, Stream):
        core = (<Stream>src)._core
    elif isinstance(dst, Stream):
        core = (<Stream>dst)._core
    pooled_or_temporary_handoff(core, s, d)
