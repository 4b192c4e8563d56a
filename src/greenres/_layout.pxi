# Included by _driver.pyx (one extension module; one file per concept).
# Layout: the façade users hold. Creation from plans (one split per mode, by the recipes of
# _split.pxi), modes, closing; the handles live in the _LayoutCore (_core.pxi).
# Over 450 lines because Cython keeps a cdef class's methods in one class body: what is not a
# method of Layout lives elsewhere (the split: _split.pxi; the handles: _core.pxi).

from collections.abc import Mapping

from greenres.plan import ModalPlan, Plan, plan_counts
from greenres.spec import ModalSpec, PartitionSpec


cdef tuple _plans_of(object plan):
    """``{mode: Plan}`` and the default mode of a Plan or a ModalPlan, by type."""
    if isinstance(plan, ModalPlan):
        return dict(plan.plans), plan.default
    if isinstance(plan, Plan):
        return {None: plan}, None
    if isinstance(plan, (PartitionSpec, ModalSpec)):
        raise TypeError(
            f"Layout.create needs a plan, not a {type(plan).__name__}: plan it first with "
            "spec.plan(greenres.Device(i))"
        )
    raise TypeError(
        "Layout.create needs a greenres.Plan, a greenres.ModalPlan or a mapping of "
        f"partition names to SM counts (got {type(plan).__name__})"
    )


# The granularity plans are checked against, per device and measurement: what a device's
# SM resource and splits report does not change while a process runs (the driver fixes it
# when it loads), and measuring it is a device query and up to two trial splits per
# Layout.create. Device.sm_facts() measures afresh each time. Each entry is
# [the device's granularity, the plan granularity last found equal to it]: a plan's
# Granularity is frozen, so the same object fits again (a layout made again from the same
# plan skips the fact-by-fact comparison).
cdef dict _granularities = {}


cdef list _device_granularity(Device device, bint uncoscheduled, bint workqueues,
                              bint locality):
    key = (device.ordinal, uncoscheduled, workqueues, locality)
    entry = _granularities.get(key)
    if entry is None:
        entry = [device._granularity(uncoscheduled, workqueues, locality), None]
        _granularities[key] = entry
    return entry


def _forget_device_granularity():
    """Measure the devices again at the next Layout.create (the fault sweep's runs each
    make the calls of a process's first create)."""
    _granularities.clear()


cdef dict _check_plans_fit(dict plans, Device device):
    """Refuse, before any driver object exists, a plan made for other SMs or granularity:
    its counts would not be what the driver makes (a plan file from another machine)."""
    cdef bint need_uncoscheduled = False, need_workqueues = False, need_locality = False
    recipes = {}
    for mode, plan in plans.items():
        recipe = recipes[mode] = plan.recipe
        granularity = recipe.granularity
        need_uncoscheduled |= granularity.uncoscheduled is not None
        need_workqueues |= granularity.workqueue_max_concurrency is not None
        need_locality |= granularity.locality is not None
    if need_workqueues and driver_version() < WORKQUEUES:
        raise _too_old("a plan with workqueue budgets (CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG)",
                       WORKQUEUES)
    if need_locality and driver_version() < LOCALITY_DOMAINS:
        raise _too_old("a plan with locality domains", LOCALITY_DOMAINS)
    entry = _device_granularity(device, need_uncoscheduled, need_workqueues, need_locality)
    actual = entry[0]
    for mode, recipe in recipes.items():
        granularity = recipe.granularity
        if granularity is entry[1]:
            continue
        if granularity == actual:  # equal facts differ in nothing: the common case
            entry[1] = granularity
            continue
        differences = granularity.differences(actual)
        if differences:
            plan = plans[mode]
            where = f"mode {mode!r} of the plan" if mode is not None else "the plan"
            raise PlanError(
                f"{where} was made for {plan.facts.device_name}, not for device "
                f"{device.ordinal} ({device.name}): "
                + "; ".join(differences)
                + f"; plan the spec again with spec.plan(greenres.Device({device.ordinal}))"
            )
    return recipes


cdef class Layout:
    """Partitions of one device created from one split, so no two share an SM.

    Made by :meth:`Layout.create`; use as a context manager or call :meth:`close`.
    ``layout["decode"]`` is a :class:`GreenContext`; iteration yields the partitions of the
    current mode in plan order.

    Attributes:
        device: the :class:`Device` the layout's partitions are on.
    """

    cdef _LayoutCore _core
    cdef readonly Device device
    cdef object _plan          # Plan or ModalPlan
    cdef dict _modes           # mode name -> tuple of GreenContext
    cdef list _by_index        # core index -> GreenContext
    cdef dict _by_name         # of the current mode
    cdef tuple _current
    cdef object _mode
    cdef object _graphs        # the GraphCache of `graphs`, made on first use
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError("greenres.Layout objects are made by greenres.Layout.create(plan)")

    @property
    def graphs(self):
        """The layout's :class:`greenres.graph_cache.GraphCache`: graphs captured once per
        (name, mode, partition, isolation key) and replayed after :meth:`switch`; closed
        with the layout."""
        self._check_open()
        if self._graphs is None:
            from greenres.graph_cache import GraphCache

            self._graphs = GraphCache(self)
        return self._graphs

    cdef int _close_graphs(self) except -1:
        """After the core is closed (which destroyed the cached graphs' work): free the
        cache's Graph objects."""
        if self._graphs is not None:
            self._graphs.close()
        return 0

    @staticmethod
    def create(plan, device=0, *, name=None, nvtx=None):
        """Create every partition of a plan on ``device`` (an ordinal or a Device).

        ``plan``: a ``greenres.Plan``, a ``greenres.ModalPlan`` (every mode is created now;
        :meth:`switch` selects one), or a mapping ``{"decode": 96, ...}`` planned on the
        device with the remainder dropped (:func:`greenres.plan.plan_counts`). Each mode is
        made from ONE split of the device, as its recipe (``plan.recipe``) says:
        ``cuDevSmResourceSplitByCount`` into minimum-size groups handed out in declaration
        order (several per partition), or ``cuDevSmResourceSplit`` for structured plans.

        ``name``: the layout's name in NVTX names and messages (default ``layout<N>``).
        ``nvtx``: annotate it for NVTX (None: ``greenres.configure(nvtx=...)`` or
        ``GREENRES_NVTX``): its green contexts and streams are named
        ``<name>/<partition>/stream<i>``, and enter/exit, handoffs, mode switches, graph
        captures and replays, creation and close are ranges or marks of the ``greenres``
        domain (docs/nvtx.md).

        Raises:
            PlanError: when the plan was made for another device, or the driver does not
                give what the plan says.
            DriverError: when a driver call fails; nothing stays allocated.
            DriverTooOldError: for a structured plan on a driver older than 13.1.
            TypeError: for anything that is not a plan or a mapping (a spec: plan it first).
        """
        cdef Device dev = _device_of("device", device)
        cdef _LayoutCore core
        cdef Layout layout
        cdef cydriver.CUdevice cu_device = dev._device
        cdef nvtxRangeId_t creating = 0
        cdef bint annotate
        name = _layout_name(name)
        annotate = _nvtx_setting(nvtx)
        # Plans first: isinstance of an ABC (Mapping) is the slower test
        from_mapping = not isinstance(plan, (Plan, ModalPlan)) and isinstance(plan, Mapping)
        if from_mapping:
            plans, default = {None: plan_counts(plan, dev)}, None
            recipes = {None: plans[None].recipe}  # made from this device just now: it fits
        else:
            plans, default = _plans_of(plan)
            recipes = _check_plans_fit(plans, dev)
        names = [r.name for recipe in recipes.values() for r in recipe.partitions]
        core = _LayoutCore()
        core.ordinal = dev.ordinal
        core.device = cu_device
        core.name = name
        core.number = greenres_next_layout_number()
        core.nvtx = annotate
        core.allocate(names)
        modes = {}
        if annotate:
            creating = _nvtx_start_text(f"create {core.layout_name()} ({len(names)} partitions)",
                                        None)
        try:
            with nogil:
                check(cydriver.cuDevicePrimaryCtxRetain(&core.primary, cu_device),
                      "cuDevicePrimaryCtxRetain")
            core.primary_retained = True
            core.pool.primary = core.primary  # its events: made by first handoffs
            _push_primary(core.primary)
            try:
                first = 0
                for mode, recipe in recipes.items():
                    parts = []
                    _create_partitions(core, dev, recipe, plans[mode], first, parts,
                                       len(recipes) > 1)
                    modes[mode] = tuple(parts)
                    first += len(parts)
                if annotate:
                    _nvtx_annotate_partitions(core, [p for ps in modes.values() for p in ps])
                _pop_context()
            except BaseException:
                _pop_if_current(core.primary)
                raise
        except BaseException:
            # Free what was made (streams before green contexts), then re-raise; what could
            # not be destroyed is reported as a warning beside the original error.
            try:
                core._close(True)
            except BaseException as error:
                _warn_resource(f"greenres.Layout.create failed and left handles: {error}")
            raise
        finally:
            if annotate:
                nvtxDomainRangeEnd(greenres_nvtx_domain, creating)
        layout = Layout.__new__(Layout)
        layout._core = core
        layout.device = dev
        layout._plan = plans[None] if from_mapping else plan
        layout._modes = modes
        layout._by_index = [p for parts in modes.values() for p in parts]
        layout._select(default)
        layout_ref = PyWeakref_NewRef(layout, None)  # one for all: a ref has no state
        for p in layout._by_index:
            (<GreenContext>p)._layout_ref = layout_ref
        return layout

    cdef _select(self, mode):
        self._mode = mode
        self._current = self._modes[mode]
        self._by_name = {(<GreenContext>p).name: p for p in self._current}

    cdef inline bint _is_closed(self):
        # None only for an object create() did not make (Layout.__new__ by hand).
        return self._core is None or self._core._is_closed()

    cdef _check_open(self):
        if self._is_closed():
            raise ClosedError("the layout is closed")

    @property
    def name(self):
        """The layout's name (``Layout.create(name=...)``, default ``layout<N>``)."""
        return self._core.layout_name() if self._core is not None else None

    @property
    def nvtx(self):
        """True when the layout is annotated for NVTX."""
        return self._core is not None and self._core.nvtx

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

    def to_svg(self):
        """An SVG picture of the device's SMs per mode, side by side: one cell per SM,
        coloured by the partition whose green context owns it, at the SM ids the simulated
        driver reports (a real driver reports counts, not ids: there in split order).
        See :mod:`greenres.svg`."""
        self._check_open()
        from greenres.svg import layout_svg

        return layout_svg(self)

    def verify(self, *, blocks_per_sm=8):
        """Run the ``%smid`` probe in every partition: :func:`greenres.verify.verify`."""
        from greenres.verify import verify

        return verify(self, blocks_per_sm=blocks_per_sm)

    def switch(self, mode):
        """Make ``mode`` current and return its partitions. O(1) in the driver: every mode was
        created by :meth:`create`. Fences with events: every stream of the new mode waits for
        the work queued so far on every stream of the old mode.

        Raises:
            KeyError: for an unknown mode, and for any ``mode`` (``None`` too) of a layout
            made from one Plan, which has no modes.
            ThreadOwnershipError: when a partition of the old mode is entered on some
            thread.
            UsageError: when the fences would join a capture to streams outside it.
        """
        cdef GreenContext p, q
        cdef PartState* s
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
        old = self._current
        new = self._modes[mode]
        # One admission holds off close() for the whole layout (every handle used below is
        # the core's, but for the partitions' own extra streams, admitted one by one).
        p = <GreenContext>old[0]
        s = p._s
        _admit(s.gate, &s.inflight, p)
        try:
            for p in old:
                if greenres_owner(&p._s.owner) != 0:
                    raise ThreadOwnershipError(
                        f"partition {p.name!r} of mode {self._mode!r} is entered; exit it "
                        "before switching modes"
                    )
            try:
                for p in old:
                    p._fence_record()
                for q in new:
                    for p in old:
                        q._fence_wait(p)
            except DriverError as error:
                if error.name != "CUDA_ERROR_STREAM_CAPTURE_ISOLATION":
                    raise
                # A fence between a capturing stream and one outside the capture: the
                # driver refuses it and invalidates the capture (a switch whose fences all
                # stay inside one capture is legal, and becomes part of it).
                raise UsageError(
                    f"switch({mode!r}) during a capture: its fences would join a capturing "
                    "stream to streams outside the capture, which the driver refuses "
                    "(CUDA_ERROR_STREAM_CAPTURE_ISOLATION) and which invalidates the capture; "
                    "end the capture (reset() its graph) and switch outside it"
                ) from error
        finally:
            greenres_end(&s.inflight)
        if self._core.nvtx:
            _nvtx_mark_text(f"switch {self._core.layout_name()}: {self._mode} -> {mode}")
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

    def close(self, *, abort_captures=False):
        """Destroy every partition (streams, events, graphs, green contexts, in that order)
        and release the primary context. Idempotent, and safe against other threads: calls
        already running on the layout's handles finish first, later ones raise ClosedError.

        ``abort_captures``: end captures going on on the layout's streams (their graphs are
        discarded) instead of refusing.

        Raises:
            ThreadOwnershipError: when a partition is entered on some thread (a thread that
                never exits pins its partition, and the layout cannot be closed).
            UsageError: when a stream of the layout is capturing and ``abort_captures`` is
                false (destroying its green context would invalidate the capture).
            DestroyError: when some destroy calls failed; everything else was destroyed,
                and close() again retries them.
            Nothing is destroyed when ThreadOwnershipError or UsageError is raised.
        """
        if self._core is None:
            return
        try:
            self._core._close(_require_bool("abort_captures", abort_captures))
        finally:
            self._drop_cycles()  # closed, even when some destroy failed
        self._close_graphs()

    cdef int _drop_cycles(self) except -1:
        """Once the layout is closed, each partition lets go of its streams and of the
        object enter() returns: both refer back to it, and such cycles would wait for the
        cycle collector (a closed layout is freed as soon as it is dropped). What they
        served raises ClosedError now: ``part.stream``, ``part.streams``, ``part.enter()``."""
        if not self._is_closed():
            return 0
        for p in self._by_index:
            (<GreenContext>p)._stream = None
            (<GreenContext>p)._extra_streams = []
            (<GreenContext>p)._scope = None
        return 0

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
            return False
        # An exception is in flight: never replace it. Exit what this thread still has
        # entered of the layout, end captures, close; what cannot be closed now (a partition
        # entered on another thread) is closed when that partition is exited.
        if self._core is None or self._core._is_closed():
            return False
        try:
            self._exit_entered_here()
            if self._core.entered_partition() >= 0:
                self._core.close_pending = True
                busy = self._core.entered_partition()
                _warn_resource(
                    f"greenres.Layout not closed after an exception: partition "
                    f"{self._core.names[busy]!r} is entered on another thread; the layout "
                    "is closed when it is exited"
                )
            else:
                try:
                    self._core._close(True)
                finally:
                    self._drop_cycles()
                self._close_graphs()
        except BaseException as error:
            _warn_resource(f"greenres.Layout not closed after an exception: {error}")
        return False

    cdef int _exit_entered_here(self) except -1:
        """Exit the layout's partitions that are innermost on this thread's stack."""
        cdef void* top
        cdef int i
        while True:
            top = greenres_stack_top()
            for i in range(self._core.count):
                if <void*>self._core.states[i] == top:
                    break
            else:
                return 0
            (<GreenContext>self._by_index[i])._exit()

    def __del__(self):
        if not self._is_closed():
            _warn_resource("unclosed greenres.Layout: call close() or use 'with'")
        # The core (shared with partitions, streams, graphs and entered partitions still
        # referring to it) destroys the handles when the last of them goes.

    def __repr__(self):
        state = "closed" if self._is_closed() else ", ".join(
            f"{p.name}={p.sm_count}" for p in self._current)
        mode = f" mode={self._mode!r}" if self._mode is not None else ""
        return f"<greenres.Layout {self.name} device={self.device.ordinal}{mode} [{state}]>"


cdef str _layout_name(object name):
    """The checked name; None for a layout named by its number (_LayoutCore.layout_name)."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"'name' must be a str or None (got {name!r})")
    if not name.strip() or "/" in name:
        raise ValueError(f"'name' must be a non-empty str without '/' (got {name!r})")
    return name


cdef bint _nvtx_setting(object nvtx) except -1:
    if nvtx is None:
        return _settings.nvtx_default()  # greenres._config, imported at the module's end
    return _require_bool("nvtx", nvtx)
