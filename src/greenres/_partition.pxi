# Included by _driver.pyx (one extension module; one file per concept).
# Partitions (GreenContext): streams, enter/exit, isolation keys.
# Over 450 lines because Cython keeps a cdef class's methods in one class body; what is not
# a method lives elsewhere (the nogil paths: _hotpath.pxi; the torch-style API's helpers:
# _green_seed.pxi; the stack guard: _guard.pxi).


_SCOPE_NAMES = {value: name for name, value in WORKQUEUE_SCOPE_VALUES.items()}


cdef class GreenContext:
    """One partition: a green context on a disjoint set of SMs, with its streams.

    Made by :meth:`Layout.create`. ``with part:`` makes it current on this thread (see
    :meth:`enter`).

    Attributes:
        name: the partition's name in the plan.
        sm_count: the SMs of its green context, as the driver reports them.
        device: the :class:`Device` it is on.
        plan: the :class:`~greenres.plan.Plan` it was created from (of its mode).
        planned_partition: its :class:`~greenres.plan.PlannedPartition` in that plan.
    """

    cdef _LayoutCore _core
    cdef PartState* _s         # the core's state of this partition (lives with the core)
    cdef int _index
    cdef readonly str name
    cdef readonly int sm_count
    cdef readonly Device device
    cdef readonly object planned_partition
    cdef readonly object plan
    cdef Stream _stream
    cdef list _extra_streams   # the streams the plan asked for beyond the default one
    cdef object _layout_ref
    cdef object _scope         # the reusable object enter() returns
    cdef int _next_stream_number   # for the NVTX names of streams made later
    cdef object _owned_layout  # GreenContext.create(): the layout it owns (close, with)
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "greenres.GreenContext objects are made by greenres.Layout.create(plan); "
            "get one with layout['name']"
        )

    cdef _init(self, _LayoutCore core, int index, Device device, object recipe, object plan,
               object planned, int sm_count):
        self._core = core
        self._index = index
        self._s = core.states[index]
        self.name = recipe.name
        self.sm_count = sm_count
        self.device = device
        self.plan = plan
        self.planned_partition = planned
        self._extra_streams = []
        self._layout_ref = None
        s = Stream.__new__(Stream)
        (<Stream>s)._init(core, self, self._s.stream, recipe.priority, False)
        self._stream = s

    cdef object _closed_error(self):
        return ClosedError(f"partition {self.name!r} is closed (its layout was closed)")

    cdef inline int _admit(self, Admissions* a) except -1:
        """Admit an operation on the partition: the layout cannot be closed until it ends."""
        return _admit_into(a, self._s.gate, &self._s.inflight, self)

    cdef inline int _check_open(self) except -1:
        if greenres_gate_state(self._s.gate) == GREENRES_CLOSED:
            raise self._closed_error()
        return 0

    cdef int _enter(self, cydriver.CUstream caller, bint resolve,
                    bint on_default=False) except -1:
        """enter_partition, with the GIL held or released as the hot-path policy says
        (greenres.configure(hot_path_gil=...)). The outermost enter pins the partition: the
        entering thread's nesting stack points at its state until it is exited.
        ``on_default``: set_context()'s enter (the default stream is the partition's side)."""
        cdef PartState* s = self._s
        cdef Failure failure
        cdef int code
        if _hot_path_releases_gil:
            with nogil:
                code = enter_partition(s, caller, resolve, on_default, &failure)
        else:
            code = enter_partition(s, caller, resolve, on_default, &failure)
        if code:
            return self._enter_failed(code, caller, resolve, on_default, &failure)
        if s.depth == 1:
            _pin(s, self)
        return 0

    cdef int _enter_failed(self, int code, cydriver.CUstream caller, bint resolve,
                           bint on_default, Failure* failure) except -1:
        if code == ADMIT_WAIT:  # a close() is deciding: wait for it without the GIL, retry
            with nogil:
                greenres_gate_wait(self._s.gate)
            return self._enter(caller, resolve, on_default)
        if code == ADMIT_CLOSED:
            raise self._closed_error()
        if code == DRIVER_FAILED:
            return _raise_failure(failure)
        raise _thread_rule_error(self.name, code)

    cdef int _exit(self) except -1:
        cdef PartState* s = self._s
        cdef Failure failure
        cdef StackRepair repair
        cdef int code
        cdef void* unpinned = NULL
        repair.kind = REPAIR_NONE
        if _hot_path_releases_gil:
            with nogil:
                code = exit_partition(s, &failure, &repair, &unpinned)
        else:
            code = exit_partition(s, &failure, &repair, &unpinned)
        if code == ADMIT_CLOSED:
            raise self._closed_error()
        if unpinned != NULL:
            self._exited_outermost(unpinned)
        if repair.kind != REPAIR_NONE:
            warnings.warn(_repair_warning(self.name, repair.kind, repair.popped,
                                          <uintptr_t>repair.found), stacklevel=3)
        if code == DRIVER_FAILED:
            return _raise_failure(&failure)
        if code:
            raise _thread_rule_error(self.name, code)
        return 0

    cdef int _exited_outermost(self, void* pinned) except -1:
        """The outermost exit: close the layout if a Layout.__exit__ that met an exception
        asked for it, and drop the reference held while entered (which may free the layout
        if nothing else refers to it)."""
        try:
            if self._core.close_pending:
                self._core._close_deferred()
        finally:
            _unpin(pinned)
        return 0

    cdef Stream _make_stream(self, int priority):
        """A new stream of the partition (admitted by the caller, or during create)."""
        cdef cydriver.CUstream handle = NULL
        cdef cydriver.CUgreenCtx green = self._s.green
        cdef int actual = priority
        cdef cydriver.CUresult err
        cdef bint destroyed
        with nogil:
            check(cydriver.cuGreenCtxStreamCreate(&handle, green,
                                                  cydriver.CU_STREAM_NON_BLOCKING, priority),
                  "cuGreenCtxStreamCreate")
            err = cydriver.cuStreamGetPriority(handle, &actual)
        if err != cydriver.CUDA_SUCCESS:
            # Nothing is left of a failed create_stream (a stream that cannot be destroyed
            # either is kept by the layout, which retries at close).
            with nogil:
                destroyed = cydriver.cuStreamDestroy(handle) == cydriver.CUDA_SUCCESS
            if not destroyed:
                self._core.extra_streams[self._index][<uintptr_t>handle] = None
            check(err, "cuStreamGetPriority")
        s = Stream.__new__(Stream)
        (<Stream>s)._init(self._core, self, handle, actual, True)
        self._core.extra_streams[self._index][<uintptr_t>handle] = weakref.ref(s)
        if self._s.nvtx:
            (<Stream>s)._number = self._next_stream_number
            self._next_stream_number += 1
            layout_name = self._core.layout_name()
            _nvtx_name_stream(handle, f"{layout_name}/{self.name}/stream{(<Stream>s)._number}")
        return s

    @property
    def layout(self):
        """The Layout this partition belongs to (None once the layout object is gone)."""
        return self._layout_ref() if self._layout_ref is not None else None

    @property
    def closed(self):
        """True once the layout was closed."""
        return greenres_gate_state(self._s.gate) == GREENRES_CLOSED

    @property
    def handle(self):
        """The ``CUgreenCtx`` as an int."""
        self._check_open()
        return <uintptr_t>self._s.green

    @property
    def context_handle(self):
        """The ``CUcontext`` of the green context (``cuCtxFromGreenCtx``) as an int."""
        self._check_open()
        return <uintptr_t>self._s.ctx

    @property
    def id(self):
        """The driver's unique id of the green context (``cuGreenCtxGetId``, CUDA 13.0+)."""
        cdef unsigned long long value = 0
        cdef cydriver.CUgreenCtx green
        cdef Admissions a
        cdef cydriver.CUresult err
        _admissions_init(&a)
        self._check_open()
        _resolve_newer_functions()
        if _green_ctx_get_id == NULL:
            raise _too_old("GreenContext.id (cuGreenCtxGetId)", GREEN_CONTEXT_ID)
        self._admit(&a)
        green = self._s.green
        with nogil:
            err = _green_ctx_get_id(green, &value)
            _admissions_end(&a)
        check(err, "cuGreenCtxGetId")
        return value

    @property
    def sm_resource(self):
        """The :class:`SmResource` this partition holds (``cuGreenCtxGetDevResource``);
        minimum and alignment are the device's."""
        cdef cydriver.CUdevResource held
        cdef cydriver.CUgreenCtx green
        cdef cydriver.CUresult err
        cdef Admissions a
        _admissions_init(&a)
        self._admit(&a)
        green = self._s.green
        memset(&held, 0, sizeof(held))
        with nogil:
            err = cydriver.cuGreenCtxGetDevResource(green, &held,
                                                    cydriver.CU_DEV_RESOURCE_TYPE_SM)
            _admissions_end(&a)
        check(err, "cuGreenCtxGetDevResource")
        device = self.device.sm_resource
        return SmResource(greenres_sm_prefix_of(&held).smCount, device.min_partition_size,
                          device.alignment)

    @property
    def workqueue(self):
        """``(scope, limit)`` of the workqueue configuration the driver reports for this
        green context (CUDA 13.1; scope ``"device_ctx"`` or ``"balanced"``), or None on an
        older driver."""
        cdef cydriver.CUdevResource held
        cdef cydriver.CUgreenCtx green
        cdef cydriver.CUresult err
        cdef greenres_wq_config* config
        cdef Admissions a
        if driver_version() < WORKQUEUES:
            return None
        _admissions_init(&a)
        self._admit(&a)
        green = self._s.green
        memset(&held, 0, sizeof(held))
        with nogil:
            err = cydriver.cuGreenCtxGetDevResource(green, &held,
                                                    GREENRES_RESOURCE_TYPE_WORKQUEUE_CONFIG)
            _admissions_end(&a)
        check(err, "cuGreenCtxGetDevResource")
        config = greenres_wq_config_of(&held)
        return (_SCOPE_NAMES.get(config.sharingScope, str(config.sharingScope)),
                config.wqConcurrencyLimit)

    @property
    def stream(self):
        """The partition's default stream (non-blocking, made with cuGreenCtxStreamCreate):
        work on it runs on this partition's SMs with no push at all."""
        stream = self._stream  # read first: a close (which drops it) is then seen by the check
        self._check_open()
        return stream

    @property
    def streams(self):
        """The streams the plan asked for: the default stream first."""
        streams = (self._stream, *self._extra_streams)  # read first, as in `stream`
        self._check_open()
        return streams

    def create_stream(self, priority=0):
        """A new non-blocking stream of this partition. Lower numbers are higher priority
        (the driver clamps to its range; :attr:`Stream.priority` tells the result). Closed
        with the layout at the latest.

        Raises:
            TypeError: when ``priority`` is not an int.
            ValueError: when it does not fit in a C int.
        """
        cdef Admissions a
        priority = _require_int("priority", priority)
        if not -2**31 <= priority < 2**31:
            raise ValueError(f"'priority' must fit in a C int (got {priority!r})")
        _admissions_init(&a)
        self._admit(&a)
        try:
            return self._make_stream(priority)
        finally:
            _admissions_end(&a)

    @property
    def entered(self):
        """True while the partition is entered on some thread."""
        return greenres_owner(&self._s.owner) != 0

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def enter(self, from_stream=None):
        """Make this partition current on this thread: the caller's stream records an event,
        the green context is pushed, the partition's stream waits for the event. Nesting
        works (also of the same partition); exit in reverse order on the same thread.

        ``from_stream``: the caller's stream (any stream form); by default the stream of
        the partition this thread is in, else the legacy stream of the device's primary
        context when that is current, else none (nothing to order after).

        While it is entered, the partition keeps its layout's handles alive (the layout
        cannot be closed, and is freed only after the exit).

        Raises:
            ThreadOwnershipError: when the partition is current on another thread.
            UsageError: for a ``from_stream`` of another device.
        """
        self._enter_from(from_stream, False, "from_stream")
        if self._scope is None:
            self._scope = _Entered(self)
        return self._scope

    cdef int _enter_from(self, from_stream, bint on_default, str parameter) except -1:
        cdef Admissions a
        cdef cydriver.CUstream caller
        if from_stream is None:
            return self._enter(NULL, True, on_default)
        if _is_raw_handle(from_stream):
            # the common raw handle: nothing to admit, nothing else to check
            return self._enter(<cydriver.CUstream><uintptr_t>from_stream, False, on_default)
        _admissions_init(&a)
        try:
            caller = _use_stream(from_stream, parameter, &a, self.device.ordinal)
            self._enter(caller, False, on_default)
        finally:
            _admissions_end(&a)
        return 0

    @staticmethod
    def create(num_sms, device_id=None):
        """PyTorch's ``GreenContext.create``: a green context of ``num_sms`` SMs (rounded up
        as the planner rounds; :attr:`sm_count` is what was granted) owning a layout of its
        own; ``device_id=None`` is the current context's device, else device 0. ``close()``
        or the end of a ``with`` block frees everything.

        Each call makes its own split, so two green contexts made by two calls can share
        SMs (docs/driver-facts.md): the second call warns once. Disjoint partitions come from
        one :meth:`Layout.create`.

        Raises:
            DriverTooOldError: for a driver older than 12.8 (both versions named).
            PlanError: when ``num_sms`` does not fit the device.
        """
        return _create_green_context(num_sms, device_id)

    def set_context(self, stream=None):
        """PyTorch's ``set_context``: the caller's ``stream`` (any stream form; by default as
        :meth:`enter` finds it) records an event, the green context is pushed (made current
        when no context is), and its **default stream** (the NULL stream while it is current,
        ``CU_GREEN_CTX_DEFAULT_STREAM``) waits for the event, so work ported from the seed
        that goes on the default stream is ordered as there. Same path as :meth:`enter`."""
        self._enter_from(stream, True, "stream")

    def pop_context(self):
        """PyTorch's ``pop_context``: the default stream records an event, the green context
        is popped and the caller's stream of :meth:`set_context` waits for it.

        Raises:
            UsageError: when this green context is not the current context (code after
                set_context changed the stack; nothing changed), or another partition was
                entered after it.
            ThreadOwnershipError: (a UsageError) when it was not set on this thread.
        """
        self._exit()

    def Stream(self):
        """PyTorch 2.15's ``GreenContext.Stream()``: a new stream of this green context
        (:meth:`create_stream`)."""
        return self.create_stream()

    def close(self):
        """Free a green context made by :meth:`create` (its layout, every handle).
        Idempotent. A partition of a :class:`Layout` is closed with its layout.

        Raises:
            UsageError: for a partition of a Layout (close the layout).
        """
        if self._owned_layout is None:
            raise UsageError(
                f"partition {self.name!r} belongs to a Layout: close the layout (only green "
                "contexts made by GreenContext.create are closed on their own)"
            )
        self._owned_layout.close()

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def exit(self):
        """Undo the innermost :meth:`enter`: the caller's stream waits for the partition's
        stream, the green context is popped.

        If code inside changed this thread's context stack (pushed a context and did not
        pop it, replaced the partition's context with ``cuCtxSetCurrent``, popped it), the
        stack is put back as it was at enter and a ContextStackWarning says what was undone.

        Raises:
            ThreadOwnershipError: on a thread that did not enter the partition.
            UsageError: when another partition was entered after it and is not exited yet.
        """
        self._exit()

    def guard(self, from_stream=None, warn=True):
        """A :class:`ContextGuard` for code of a foreign library that pushes contexts and
        does not pop them: ``with part.guard() as g:`` enters the partition, and at the end
        gives this thread its whole context stack back before exiting; ``g.report`` says
        what was undone (a ContextStackWarning too, unless ``warn=False``)."""
        self._check_open()
        return ContextGuard(self, from_stream, warn)

    def nccl_config(self, communicators=1):
        """The NCCL CTA settings that keep ``communicators`` concurrent communicators
        inside this communication partition (``role="comm"``): a
        :class:`greenres.comm.NcclConfig` (docs/runtime.md, "Communication partitions")."""
        from greenres.comm import nccl_config

        return nccl_config(self, communicators)

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def __enter__(self):
        if self._owned_layout is not None:  # GreenContext.create's: a resource, as a file
            return _check_owned_open(self)
        self._enter(NULL, True)
        return self

    @cython.binding(False)  # a plain method descriptor: no CyFunction/PyMethod layer
    def __exit__(self, exc_type, exc, tb):
        if self._owned_layout is not None:
            return self._owned_layout.__exit__(exc_type, exc, tb)
        if exc_type is None:
            self._exit()
            return False
        try:  # never replace the exception in flight
            self._exit()
        except BaseException as error:
            warnings.warn(f"exit of partition {self.name!r} failed after an exception: "
                          f"{error}", RuntimeWarning, stacklevel=2)
        return False

    cdef list _live_extra_streams(self):
        """Every open Stream of the partition but the default one: those the plan asked
        for and those made by :meth:`create_stream`."""
        out = []
        for ref in tuple(self._core.extra_streams[self._index].values()):
            stream = ref() if ref is not None else None
            if stream is not None:
                out.append(stream)
        return out

    cdef int _fence_record(self) except -1:
        """Record the fence event after all the partition's work (the caller admitted the
        layout)."""
        cdef PartState* s = self._s
        cdef cydriver.CUstream handle
        # Every other live stream joins the default stream first, so one fence event
        # covers all the partition's work.
        for stream in self._live_extra_streams():
            if (<Stream>stream)._try_begin_own():
                try:
                    handle = (<Stream>stream)._handle
                    _handoff_admitted(self._core, handle, s.stream)
                finally:
                    (<Stream>stream)._end()
        with nogil:
            check(cydriver.cuEventRecord(s.fence_event, s.stream), "cuEventRecord")
        return 0

    cdef int _fence_wait(self, GreenContext old) except -1:
        cdef PartState* s = self._s
        cdef cydriver.CUevent event = old._s.fence_event
        cdef cydriver.CUstream extra
        with nogil:
            check(cydriver.cuStreamWaitEvent(s.stream, event, 0), "cuStreamWaitEvent")
        for stream in self._live_extra_streams():
            if (<Stream>stream)._try_begin_own():
                try:
                    extra = (<Stream>stream)._handle
                    with nogil:
                        check(cydriver.cuStreamWaitEvent(extra, event, 0), "cuStreamWaitEvent")
                finally:
                    (<Stream>stream)._end()
        return 0

    def isolation_key(self, schema=None, **kwargs):
        """This partition's isolation key (see :func:`greenres.isolation.isolation_key`;
        ``schema`` defaults to every form)."""
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
        return self.partition.__exit__(exc_type, exc, tb)
