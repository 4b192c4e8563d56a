# Included by _driver.pyx (one extension module; one file per concept).
# Layouts: the core that owns every handle, creation from one split, modes.


cdef class _Request:
    """One partition to create, normalised from a PlannedPartition."""
    cdef public str name
    cdef public int sm_count, result_sm_count, groups, streams, priority
    cdef public bint includes_remainder
    cdef public object planned


cdef class _LayoutCore:
    """Owns every native handle of one layout (all its modes). Never exposed."""

    cdef int ordinal
    cdef cydriver.CUdevice device
    cdef cydriver.CUcontext primary
    cdef bint primary_retained
    cdef bint closed
    cdef int count
    cdef PartState** states
    cdef EventPool* pool
    cdef list extra_streams      # per partition: set of CUstream ints made by create_stream
    cdef object graphs           # WeakSet of Graphs captured on this layout's streams
    cdef object __weakref__

    def __cinit__(self):
        self.states = NULL
        self.pool = NULL
        self.count = 0
        self.closed = False
        self.primary_retained = False
        self.extra_streams = []
        self.graphs = weakref.WeakSet()

    cdef int allocate(self, int count) except -1:
        self.states = <PartState**>calloc(max(count, 1), sizeof(PartState*))
        self.pool = <EventPool*>calloc(1, sizeof(EventPool))
        if self.states == NULL or self.pool == NULL:
            raise MemoryError()
        for i in range(count):
            self.states[i] = <PartState*>calloc(1, sizeof(PartState))
            if self.states[i] == NULL:
                raise MemoryError()
            self.count += 1
            self.extra_streams.append(set())
        return 0

    cdef int busy_partition(self) except -2:
        cdef int i
        for i in range(self.count):
            if self.states[i] != NULL and greenres_owner(&self.states[i].owner) != 0:
                return i
        return -1

    cdef int capturing_partition(self) except -2:
        """The index of a partition one of whose streams is capturing, else -1."""
        cdef int i
        cdef PartState* s
        for i in range(self.count):
            s = self.states[i]
            if s == NULL:
                continue
            if _is_capturing(s.stream):
                return i
            for handle in tuple(self.extra_streams[i]):
                if _is_capturing(<cydriver.CUstream><uintptr_t>handle):
                    return i
        return -1

    cdef void release(self) noexcept:
        """Free everything, in the order the driver requires; never raises. Errors of the
        individual destroy calls are ignored: there is nobody left to report them to, and
        the next handle must be freed regardless."""
        cdef int i, j
        cdef PartState* s
        cdef cydriver.CUstream extra
        if self.closed:
            return
        self.closed = True
        # 1. streams
        for i in range(self.count):
            s = self.states[i]
            try:
                for handle in self.extra_streams[i]:
                    extra = <cydriver.CUstream><uintptr_t>handle
                    with nogil:
                        cydriver.cuStreamDestroy(extra)
                self.extra_streams[i].clear()
            except BaseException:
                pass
            if s != NULL and s.stream != NULL:
                try:
                    with nogil:
                        cydriver.cuStreamDestroy(s.stream)
                except BaseException:
                    pass
                s.stream = NULL
        # 2. events (pooled ones and the partitions' own)
        try:
            if self.pool != NULL:
                for j in range(POOL_SIZE):
                    if self.pool.events[j] != NULL:
                        with nogil:
                            cydriver.cuEventDestroy(self.pool.events[j])
                        self.pool.events[j] = NULL
            for i in range(self.count):
                s = self.states[i]
                if s == NULL:
                    continue
                if s.enter_event != NULL:
                    with nogil:
                        cydriver.cuEventDestroy(s.enter_event)
                if s.exit_event != NULL:
                    with nogil:
                        cydriver.cuEventDestroy(s.exit_event)
                if s.fence_event != NULL:
                    with nogil:
                        cydriver.cuEventDestroy(s.fence_event)
                s.enter_event = NULL
                s.exit_event = NULL
                s.fence_event = NULL
        except BaseException:
            pass
        # 3. graphs captured on the layout's streams
        try:
            for g in list(self.graphs):
                (<Graph>g)._release_native()
                (<Graph>g)._orphaned = True
        except BaseException:
            pass
        # 4. green contexts
        for i in range(self.count):
            s = self.states[i]
            if s != NULL and s.green != NULL:
                try:
                    with nogil:
                        cydriver.cuGreenCtxDestroy(s.green)
                except BaseException:
                    pass
                s.green = NULL
                s.ctx = NULL
        # 5. the primary context, retained before the first green context
        if self.primary_retained:
            try:
                with nogil:
                    cydriver.cuDevicePrimaryCtxRelease(self.device)
            except BaseException:
                pass
            self.primary_retained = False
        for i in range(self.count):
            free(self.states[i])
            self.states[i] = NULL
        free(self.states)
        self.states = NULL
        free(self.pool)
        self.pool = NULL

    def __dealloc__(self):
        self.release()


def _as_requests(plan):
    """The plan's partitions as a list of _Request, in plan order."""
    requests = []
    for pp in plan.partitions:
        r = _Request()
        r.name = pp.name
        r.sm_count = pp.sm_count
        r.result_sm_count = pp.result_sm_count
        r.groups = pp.groups
        r.streams = pp.streams
        r.priority = pp.priority
        r.includes_remainder = pp.includes_split_remainder
        r.planned = pp
        requests.append(r)
    return requests


cdef int _create_partitions(_LayoutCore core, Device device, object plan, int first,
                            list out) except -1:
    """Create every partition of ``plan`` from ONE split of the device's SMs into
    ``core.states[first:]``, appending GreenContext objects to ``out``."""
    cdef list requests = _as_requests(plan)
    cdef cydriver.CUdevResource device_resource
    cdef cydriver.CUdevResource remainder
    cdef cydriver.CUdevResource* results = NULL
    cdef cydriver.CUdevResource* pieces = NULL
    cdef greenres_group_params* params = NULL
    cdef cydriver.CUdevResourceDesc desc
    cdef cydriver.CUdevResource held
    cdef unsigned int planned_groups, groups_made = 0, flags, min_count, n_pieces
    cdef int i, k, index
    cdef PartState* s
    cdef _Request r
    cdef GreenContext part
    cdef int priority
    mechanism = plan.mechanism
    coscheduling = bool(plan.spec.coscheduling)
    backfill = bool(getattr(plan.spec, "backfill", False))
    planned_groups = plan.split_group_count
    if planned_groups == 0 and not any(r.includes_remainder for r in requests):
        raise PlanError("the plan has no partitions to create")
    device._sm_resource(&device_resource)
    memset(&remainder, 0, sizeof(remainder))
    try:
        results = <cydriver.CUdevResource*>calloc(max(planned_groups, 1),
                                                  sizeof(cydriver.CUdevResource))
        pieces = <cydriver.CUdevResource*>calloc(max(planned_groups, 1) + 1,
                                                 sizeof(cydriver.CUdevResource))
        if results == NULL or pieces == NULL:
            raise MemoryError()
        if mechanism == "groups":
            flags = 0 if coscheduling else _SPLIT_IGNORE_SM_COSCHEDULING
            min_count = plan.group_size
            groups_made = planned_groups
            if planned_groups:
                with nogil:
                    check(cydriver.cuDevSmResourceSplitByCount(
                        results, &groups_made, &device_resource, &remainder, flags, min_count),
                        "cuDevSmResourceSplitByCount")
            if groups_made < planned_groups:
                raise PlanError(
                    f"the driver made {groups_made} groups of {min_count} SMs where the plan "
                    f"needs {planned_groups}; plan against Device.sm_facts() of this device"
                )
        elif mechanism == "structured":
            if not structured_split_available():
                raise _too_old("the structured split (cuDevSmResourceSplit)", STRUCTURED_SPLIT)
            params = <greenres_group_params*>calloc(max(planned_groups, 1),
                                                    sizeof(greenres_group_params))
            if params == NULL:
                raise MemoryError()
            k = 0
            for r in requests:
                if r.groups == 0:
                    continue
                params[k].smCount = r.result_sm_count
                params[k].coscheduledSmCount = 0 if coscheduling else plan.alignment
                params[k].flags = _GROUP_BACKFILL if backfill else 0
                k += 1
            if k != planned_groups:
                raise PlanError(f"the plan has {k} split results but says {planned_groups}")
            with nogil:
                check(_structured_split(results, planned_groups, &device_resource,
                                        &remainder, 0, params),
                      "cuDevSmResourceSplit")
            groups_made = planned_groups
        else:
            raise PlanError(f"unknown mechanism {mechanism!r} (expected 'groups' or 'structured')")

        # One green context per partition, from consecutive results of that one split.
        index = 0
        for i, r in enumerate(requests):
            n_pieces = 0
            for k in range(r.groups):
                pieces[n_pieces] = results[index + k]
                n_pieces += 1
            index += r.groups
            if r.includes_remainder:
                pieces[n_pieces] = remainder
                n_pieces += 1
            if n_pieces == 0:
                raise PlanError(f"partition {r.name!r} has no SMs in the plan")
            s = core.states[first + i]
            s.primary = core.primary
            with nogil:
                check(cydriver.cuDevResourceGenerateDesc(&desc, pieces, n_pieces),
                      "cuDevResourceGenerateDesc")
                check(cydriver.cuGreenCtxCreate(&s.green, desc, device._device,
                                                cydriver.CU_GREEN_CTX_DEFAULT_STREAM),
                      "cuGreenCtxCreate")
                check(cydriver.cuCtxFromGreenCtx(&s.ctx, s.green), "cuCtxFromGreenCtx")
                memset(&held, 0, sizeof(held))
                check(cydriver.cuGreenCtxGetDevResource(s.green, &held,
                                                        cydriver.CU_DEV_RESOURCE_TYPE_SM),
                      "cuGreenCtxGetDevResource")
            got = greenres_sm_prefix_of(&held).smCount
            if got != r.sm_count:
                raise PlanError(
                    f"partition {r.name!r} was created with {got} SMs but the plan says "
                    f"{r.sm_count}; plan against Device.sm_facts() of this device"
                )
            priority = r.priority
            with nogil:
                check(cydriver.cuGreenCtxStreamCreate(&s.stream, s.green,
                                                      cydriver.CU_STREAM_NON_BLOCKING,
                                                      priority),
                      "cuGreenCtxStreamCreate")
            s.enter_event = _new_event(cydriver.CU_EVENT_DISABLE_TIMING)
            s.exit_event = _new_event(cydriver.CU_EVENT_DISABLE_TIMING)
            s.fence_event = _new_event(cydriver.CU_EVENT_DISABLE_TIMING)
            part = GreenContext.__new__(GreenContext)
            part._init(core, first + i, device, r, plan, got)
            for _ in range(max(r.streams, 1) - 1):
                part._extra_streams.append(part._make_stream(r.priority))
            out.append(part)
    finally:
        free(results)
        free(pieces)
        free(params)
    return 0


def _plan_of_mapping(mapping, device):
    """Plan a plain ``{"name": sm_count}`` mapping (remainder dropped)."""
    from greenres.spec import Partition, PartitionSpec

    spec = PartitionSpec(
        partitions=tuple(Partition(name, sms=count) for name, count in mapping.items()),
        remainder="drop",
    )
    return spec.plan(device)


def _check_plans_fit(plans, device):
    """Refuse, before any driver object exists, a plan made for other SMs or granularity:
    its counts would not be what the driver makes (a plan file from another machine)."""
    from greenres.plan import granularity_differences

    if all(plan.spec.coscheduling for plan in plans.values()):
        # What the device resource says is enough; sm_facts() would also measure the
        # un-co-scheduled granularity with two split queries no plan here depends on.
        resource = device.sm_resource
        device_facts = SimpleNamespace(
            compute_capability=device.compute_capability, sm_count=resource.count,
            min_partition_size=resource.min_partition_size, alignment=resource.alignment)
    else:
        device_facts = device.sm_facts()
    for mode, plan in plans.items():
        differences = granularity_differences(
            plan.facts, device_facts, coscheduling=bool(plan.spec.coscheduling))
        if differences:
            where = f"mode {mode!r} of the plan" if mode is not None else "the plan"
            raise PlanError(
                f"{where} was made for {plan.facts.device_name}, not for device "
                f"{device.ordinal} ({device.name}): "
                + "; ".join(differences)
                + f"; plan the spec again with spec.plan(greenres.Device({device.ordinal}))"
            )


def _is_modal(plan):
    return hasattr(plan, "plans") and hasattr(plan, "default")


cdef class Layout:
    """Partitions of one device created from one split, so no two share an SM.

    Made by :meth:`Layout.create`; use as a context manager or call :meth:`close`.
    ``layout["decode"]`` is a :class:`GreenContext`; iteration yields the partitions of the
    current mode in plan order.
    """

    cdef _LayoutCore _core
    cdef readonly Device device
    cdef object _plan          # Plan or ModalPlan
    cdef dict _modes           # mode name -> tuple of GreenContext
    cdef dict _by_name         # of the current mode
    cdef tuple _current
    cdef object _mode
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError("greenres.Layout objects are made by greenres.Layout.create(plan)")

    @staticmethod
    def create(plan_or_counts, device=0):
        """Create every partition of a plan on ``device`` (an ordinal or a Device).

        ``plan_or_counts``: a ``greenres.Plan``, a ``greenres.ModalPlan`` (every mode is
        created now; :meth:`switch` selects one), or a mapping ``{"decode": 96, ...}``
        planned with ``remainder="drop"``. Each mode is made from ONE split of the device:
        ``cuDevSmResourceSplitByCount`` into minimum-size groups handed out in declaration
        order (several per partition), or ``cuDevSmResourceSplit`` for structured plans.

        Raises:
            PlanError: when the driver does not give what the plan says.
            DriverError: when a driver call fails; nothing stays allocated.
            DriverTooOldError: for a structured plan on a driver older than 13.1.
        """
        cdef Device dev = _device_of("device", device)
        cdef _LayoutCore core
        cdef Layout layout
        cdef cydriver.CUdevice cu_device
        cdef int j
        planned_here = isinstance(plan_or_counts, dict) or (
            hasattr(plan_or_counts, "items") and not hasattr(plan_or_counts, "partitions")
            and not _is_modal(plan_or_counts))
        if planned_here:
            plan_or_counts = _plan_of_mapping(dict(plan_or_counts), dev)
        if _is_modal(plan_or_counts):
            plans = {name: plan_or_counts[name] for name in plan_or_counts}
            default = plan_or_counts.default
        elif hasattr(plan_or_counts, "partitions"):
            plans = {None: plan_or_counts}
            default = None
        else:
            raise TypeError(
                "Layout.create needs a greenres.Plan, a greenres.ModalPlan or a mapping of "
                f"partition names to SM counts (got {type(plan_or_counts).__name__})"
            )
        if not planned_here:  # a plan made from dev just now fits it
            _check_plans_fit(plans, dev)
        total = sum(len(p.partitions) for p in plans.values())
        core = _LayoutCore()
        core.ordinal = dev.ordinal
        core.device = dev._device
        core.allocate(total)
        modes = {}
        cu_device = dev._device
        try:
            with nogil:
                check(cydriver.cuDevicePrimaryCtxRetain(&core.primary, cu_device),
                      "cuDevicePrimaryCtxRetain")
            core.primary_retained = True
            _push_primary(core.primary)
            try:
                for j in range(POOL_SIZE):
                    core.pool.events[j] = _new_event(cydriver.CU_EVENT_DISABLE_TIMING)
                first = 0
                for name, plan in plans.items():
                    parts = []
                    _create_partitions(core, dev, plan, first, parts)
                    modes[name] = tuple(parts)
                    first += len(parts)
                _pop_context()
            except BaseException:
                _pop_if_current(core.primary)
                raise
        except BaseException:
            # Free what was made, streams before green contexts, then re-raise (the
            # partitions made so far see core.closed).
            core.release()
            raise
        layout = Layout.__new__(Layout)
        layout._core = core
        layout.device = dev
        layout._plan = plan_or_counts
        layout._modes = modes
        layout._select(default)
        for parts in modes.values():
            for p in parts:
                (<GreenContext>p)._layout_ref = weakref.ref(layout)
        return layout

    cdef _select(self, mode):
        self._mode = mode
        self._current = self._modes[mode]
        self._by_name = {(<GreenContext>p).name: p for p in self._current}

    cdef inline bint _is_closed(self):
        # The core is released only by close() or a failed create(), so its flag is the
        # layout's (and every partition's); None only for an object create() did not make.
        return self._core is None or self._core.closed

    cdef _check_open(self):
        if self._is_closed():
            raise ClosedError("the layout is closed")

    @property
    def plan(self):
        """The plan of the current mode (the Plan given to :meth:`create`, or the current
        mode's Plan of a ModalPlan)."""
        if self._mode is None:
            return self._plan
        return self._plan[self._mode]

    @property
    def modal_plan(self):
        """The ModalPlan given to :meth:`create`, or None."""
        return self._plan if self._mode is not None else None

    @property
    def mode(self):
        """The current mode's name (None for a layout of one Plan)."""
        return self._mode

    @property
    def modes(self):
        """Mode names in declaration order (``(None,)`` for a layout of one Plan)."""
        return tuple(self._modes)

    @property
    def partitions(self):
        """The partitions of the current mode, in plan order."""
        self._check_open()
        return self._current

    @property
    def names(self):
        """Partition names of the current mode."""
        self._check_open()
        return tuple(self._by_name)

    @property
    def closed(self):
        """True after :meth:`close`."""
        return self._is_closed()

    cdef _unknown_mode(self, mode):
        if self._mode is None:
            return KeyError(
                f"no mode {mode!r}: this layout has no modes (it was made from one Plan, "
                "not a ModalPlan)"
            )
        modes = ", ".join(map(repr, self._modes))
        return KeyError(f"no mode {mode!r}; modes: {modes}")

    def mode_partitions(self, mode):
        """The partitions of ``mode`` (without switching)."""
        self._check_open()
        try:
            return self._modes[mode]
        except (KeyError, TypeError):
            raise self._unknown_mode(mode) from None

    def switch(self, mode):
        """Make ``mode`` current and return its partitions. O(1) in the driver: every mode was
        created by :meth:`create`. Fences with events: every stream of the new mode waits for
        the work queued so far on every stream of the old mode.

        Raises:
            KeyError: for an unknown mode, and for any ``mode`` (``None`` too) of a layout
            made from one Plan, which has no modes.
            ThreadOwnershipError: when a partition of the old mode is entered on some
            thread.
        """
        cdef GreenContext p
        self._check_open()
        if self._mode is None:  # one Plan: no modes to switch between, not even None
            raise self._unknown_mode(mode)
        try:
            known = mode in self._modes
        except TypeError:  # unhashable
            known = False
        if not known:
            raise self._unknown_mode(mode)
        if mode == self._mode:
            return self._current
        for p in self._current:
            if greenres_owner(&p._state().owner) != 0:
                raise ThreadOwnershipError(
                    f"partition {p.name!r} of mode {self._mode!r} is entered; exit it before "
                    "switching modes"
                )
        old = self._current
        new = self._modes[mode]
        for p in old:
            p._fence_record()
        for p in new:
            for q in old:
                p._fence_wait(<GreenContext>q)
        self._select(mode)
        return self._current

    def __getitem__(self, name):
        self._check_open()
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"no partition {name!r}; partitions: {', '.join(map(repr, self._by_name))}"
            ) from None

    def __contains__(self, name):
        self._check_open()
        try:
            return name in self._by_name
        except TypeError:  # unhashable: not a partition name
            return False

    def __iter__(self):
        self._check_open()
        return iter(self._current)

    def __len__(self):
        self._check_open()
        return len(self._current)

    def close(self):
        """Destroy every partition (streams, events, graphs, green contexts, in that order)
        and release the primary context. Idempotent.

        Raises:
            ThreadOwnershipError: when a partition is entered on some thread (a thread that
                never exits pins its partition, and the layout cannot be closed).
            UsageError: when a stream of the layout is capturing (destroying its green
                context would invalidate the capture).
            Nothing is destroyed when either is raised.
        """
        cdef int busy
        cdef unsigned long ident
        if self._is_closed():
            return
        parts = [p for parts in self._modes.values() for p in parts]
        busy = self._core.busy_partition()
        if busy >= 0:
            ident = self._core.states[busy].owner_ident
            raise ThreadOwnershipError(
                f"partition {(<GreenContext>parts[busy]).name!r} is entered on thread "
                f"{_thread_name(ident)}; exit it on that thread before closing the layout"
            )
        capturing = self._core.capturing_partition()
        if capturing >= 0:
            raise UsageError(
                f"a stream of partition {(<GreenContext>parts[capturing]).name!r} is "
                "capturing; end the capture (or abort it) before closing the layout"
            )
        self._core.release()

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        if not self._is_closed():
            try:
                warnings.warn(
                    "unclosed greenres.Layout: call close() or use 'with'",
                    ResourceWarning, source=None)
            except BaseException:
                pass
            # The core (shared with partitions and streams still referenced) frees the
            # handles when the last of them goes.

    def __repr__(self):
        state = "closed" if self._is_closed() else ", ".join(
            f"{p.name}={p.sm_count}" for p in self._current)
        mode = f" mode={self._mode!r}" if self._mode is not None else ""
        return f"<greenres.Layout device={self.device.ordinal}{mode} [{state}]>"
