# Included by _driver.pyx (one extension module; one file per concept).
# The core of a layout: owns every driver handle of the layout (all its modes) and the
# memory the nogil paths read, and destroys them in the order the driver requires.
#
# Ownership follows from structure: partitions (GreenContext), streams and graphs hold a
# reference to the core, and an entered partition holds one for as long as it is entered
# (its PartState is on the entering thread's nesting stack), so the core's memory lives
# while anything can reach it. Its handles are destroyed by close() (the lifetime protocol
# of _lifetime.pxi: never while an operation on them is in flight) or, when nothing refers
# to the core any more, by its finalizer.

cdef extern from "<stdlib.h>" nogil:
    void* aligned_alloc(size_t alignment, size_t size)


cdef class Stream  # _stream.pxi
cdef class Graph   # _graph.pxi


cdef inline size_t _cache_lines(size_t size) noexcept nogil:
    """``size`` rounded up to whole 64-byte cache lines."""
    return (size + 63) // 64 * 64


@cython.no_gc_clear
cdef class _LayoutCore(_Resource):
    """Owns every driver handle of one layout (all its modes). Never exposed."""

    cdef int ordinal
    cdef cydriver.CUdevice device
    cdef cydriver.CUcontext primary
    cdef bint primary_retained
    cdef int count
    cdef PartState** states
    cdef EventPool* pool
    cdef char* block             # the pool, the states and their addresses (allocate)
    cdef list names              # partition names by index (for messages)
    cdef list extra_streams      # per partition: {CUstream int: weakref to its Stream}
    cdef object graphs           # WeakSet of Graphs captured on its streams; None: none yet
    cdef list dying_graphs       # (exec, graph) handles of Graphs finalized while it closed
    cdef bint close_pending      # close once no partition is entered (Layout.__exit__)
    cdef str name                # the name given to Layout.create; see layout_name()
    cdef unsigned long long number  # for the name of a layout made without one
    cdef bint nvtx               # annotated for NVTX (see _nvtx.pxi)
    cdef object __weakref__

    def __cinit__(self):
        self.states = NULL
        self.pool = NULL
        self.block = NULL
        self.count = 0
        self.primary_retained = False
        self.close_pending = False
        self.names = []
        self.extra_streams = []
        self.graphs = None  # most layouts capture nothing: see _track_graph
        self.dying_graphs = []

    cdef int _track_graph(self, object graph) except -1:
        """Remember a Graph captured on one of the layout's streams (close orphans it). The
        WeakSet is made by the first: most layouts capture nothing, and making one and
        walking it twice at close is a tenth of a Layout.create + close."""
        if self.graphs is None:
            graphs = weakref.WeakSet()
            if self.graphs is None:  # WeakSet() ran Python code: another thread may have won
                self.graphs = graphs
        self.graphs.add(graph)
        return 0

    cdef int _forget_graph(self, object graph) except -1:
        if self.graphs is not None:
            self.graphs.discard(graph)
        return 0

    cdef list _captured_graphs(self):
        return list(self.graphs) if self.graphs is not None else []

    cdef int allocate(self, list names) except -1:
        """One 64-byte-aligned block (one allocation, not one per partition): the handoff
        pool, each partition's state on cache lines of its own, then the states'
        addresses."""
        cdef int i, count = len(names)
        cdef size_t pool_size = _cache_lines(sizeof(EventPool))
        cdef size_t state_size = _cache_lines(sizeof(PartState))
        cdef size_t size = pool_size + count * state_size + _cache_lines(
            count * sizeof(PartState*))
        cdef PartState* s
        self.block = <char*>aligned_alloc(64, size)
        if self.block == NULL:
            raise MemoryError()
        memset(self.block, 0, size)
        self.pool = <EventPool*>self.block
        self.states = <PartState**>(self.block + pool_size + count * state_size)
        for i in range(count):
            s = <PartState*>(self.block + pool_size + i * state_size)
            s.gate = &self._gate
            s.pool = self.pool
            self.states[i] = s
            self.names.append(names[i])
            self.extra_streams.append({})
        self.count = count
        return 0

    cdef str layout_name(self):
        """The layout's name (NVTX names, messages): the one given, else ``layout<N>``,
        formatted when first asked for (most layouts are never asked)."""
        if self.name is None:
            self.name = f"layout{self.number}"
        return self.name

    cdef str _describe(self):
        return "greenres.Layout"

    cdef object _closed_error(self):
        return ClosedError("the layout is closed")

    cdef bint _warn_unclosed(self):
        return False  # the Layout object warns; the core may outlive it legitimately

    cdef int _wait_idle(self) except -1:
        cdef int i
        for i in range(self.count):
            if not greenres_idle(&self.states[i].inflight):
                break
        else:
            return 0  # nothing in flight: no GIL hand-over
        with nogil:  # what is in flight may need the GIL to finish
            for i in range(self.count):
                greenres_wait_idle(&self.states[i].inflight)
        return 0

    cdef int entered_partition(self) except -2:
        """The index of a partition entered on some thread, else -1."""
        cdef int i
        for i in range(self.count):
            if greenres_owner(&self.states[i].owner) != 0:
                return i
        return -1

    cdef list capturing_streams(self):
        """(partition index, CUstream int) of every stream of the layout that captures."""
        cdef int i
        cdef PartState* s
        out = []
        for i in range(self.count):
            s = self.states[i]
            if s.stream != NULL and _is_capturing(s.stream):
                out.append((i, <uintptr_t>s.stream))
            if not self.extra_streams[i]:
                continue
            for handle in tuple(self.extra_streams[i]):
                if _is_capturing(<cydriver.CUstream><uintptr_t>handle):
                    out.append((i, handle))
        return out

    cdef int _refuse_close(self, bint force) except -1:
        cdef int busy = self.entered_partition()
        cdef unsigned long ident
        if busy >= 0:
            ident = self.states[busy].owner_ident
            raise ThreadOwnershipError(
                f"partition {self.names[busy]!r} is entered on thread {_thread_name(ident)}; "
                "exit it on that thread before closing the layout"
            )
        capturing = self.capturing_streams()
        if capturing and not force:
            raise UsageError(
                f"a stream of partition {self.names[capturing[0][0]]!r} is capturing; end "
                "the capture (capture_end(), or reset() the graph), or close with "
                "close(abort_captures=True) (destroying its green context would invalidate "
                "the capture)"
            )
        for index, handle in capturing:
            self._abort_capture_on(<cydriver.CUstream><uintptr_t>handle)
        return 0

    cdef int _abort_capture_on(self, cydriver.CUstream stream) except -1:
        """End the capture going on on ``stream`` (close(abort_captures=True)): through the
        Graph that began it, so that it knows, or directly for a foreign capture."""
        cdef cydriver.CUgraph graph = NULL
        for g in self._captured_graphs():
            if (<Graph>g)._capturing and (<Graph>g)._stream == stream:
                (<Graph>g)._end_capture_for_close()
                return 0
        with nogil:
            check(cydriver.cuStreamEndCapture(stream, &graph), "cuStreamEndCapture")
            if graph != NULL:
                check(cydriver.cuGraphDestroy(graph), "cuGraphDestroy")
        return 0

    cdef list _destroy(self):
        """Destroy every handle in the order the driver requires: streams, events, graphs,
        green contexts, then the primary context. A handle whose destroy call fails is kept
        (and reported), and what depends on it stays too: a green context whose stream
        could not be destroyed is not destroyed (that would detach the stream), the primary
        context is not released while one of its green contexts or events lives. Another
        call retries exactly what is left."""
        cdef list failures = []
        cdef int i, j
        cdef PartState* s
        cdef cydriver.CUresult err
        cdef cydriver.CUstream stream
        cdef cydriver.CUevent event
        cdef cydriver.CUgreenCtx green
        cdef bint left = False
        if self.states == NULL:
            return failures
        if self.nvtx:
            _nvtx_mark_text(f"close {self.layout_name()}")
        # 1. streams (cuStreamDestroy does not wait for their work: the GIL is kept)
        for i in range(self.count):
            s = self.states[i]
            for handle in list(self.extra_streams[i]):
                stream = <cydriver.CUstream><uintptr_t>handle
                err = cydriver.cuStreamDestroy(stream)
                if err == cydriver.CUDA_SUCCESS:
                    del self.extra_streams[i][handle]
                else:
                    failures.append(_failure_of(err, "cuStreamDestroy"))
            if s.stream != NULL:
                stream = s.stream
                err = cydriver.cuStreamDestroy(stream)
                if err == cydriver.CUDA_SUCCESS:
                    s.stream = NULL
                else:
                    failures.append(_failure_of(err, "cuStreamDestroy"))
        # 2. events (pooled ones and the partitions' own)
        failures += _destroy_pool(self.pool)
        for i in range(self.count):
            s = self.states[i]
            failures += _destroy_event(&s.enter_event)
            failures += _destroy_event(&s.exit_event)
            failures += _destroy_event(&s.fence_event)
        # 3. graphs captured on the layout's streams (their nodes run in its green contexts)
        for g in self._captured_graphs():
            failures += (<Graph>g)._orphan()
        failures += self._destroy_dying_graphs()
        # 4. green contexts whose streams are all gone
        for i in range(self.count):
            s = self.states[i]
            if s.green == NULL:
                continue
            if s.stream != NULL or self.extra_streams[i]:
                left = True
                continue
            green = s.green
            with nogil:
                err = cydriver.cuGreenCtxDestroy(green)
            if err == cydriver.CUDA_SUCCESS:
                s.green = NULL
                s.ctx = NULL
            else:
                left = True
                failures.append(_failure_of(err, "cuGreenCtxDestroy"))
        # 5. the primary context, retained before the first green context and the events
        if self.primary_retained and not left and not self._events_left():
            with nogil:
                err = cydriver.cuDevicePrimaryCtxRelease(self.device)
            if err == cydriver.CUDA_SUCCESS:
                self.primary_retained = False
            else:
                failures.append(_failure_of(err, "cuDevicePrimaryCtxRelease"))
        # Graphs finalized on other threads meanwhile (the caller closes the gate right
        # after this returns, without releasing the GIL: none is added after this check).
        failures += self._destroy_dying_graphs()
        return failures

    cdef list _destroy_dying_graphs(self):
        cdef cydriver.CUgraphExec exec_
        cdef cydriver.CUgraph graph
        cdef cydriver.CUresult err
        failures = []
        while self.dying_graphs:
            exec_handle, graph_handle = self.dying_graphs.pop()
            exec_ = <cydriver.CUgraphExec><uintptr_t>exec_handle
            graph = <cydriver.CUgraph><uintptr_t>graph_handle
            with nogil:
                err = cydriver.cuGraphExecDestroy(exec_) if exec_ != NULL \
                    else cydriver.CUDA_SUCCESS
            if err != cydriver.CUDA_SUCCESS:
                failures.append(_failure_of(err, "cuGraphExecDestroy"))
            with nogil:
                err = cydriver.cuGraphDestroy(graph) if graph != NULL else cydriver.CUDA_SUCCESS
            if err != cydriver.CUDA_SUCCESS:
                failures.append(_failure_of(err, "cuGraphDestroy"))
        return failures

    cdef bint _events_left(self):
        cdef int i, j
        cdef PartState* s
        for j in range(POOL_SIZE):
            if self.pool.events[j] != NULL:
                return True
        for i in range(self.count):
            s = self.states[i]
            if s.enter_event != NULL or s.exit_event != NULL or s.fence_event != NULL:
                return True
        return False

    cdef int _close_deferred(self) except -1:
        """Close now that no partition is entered any more, as a Layout.__exit__ that met
        an exception asked; failures are warned about (the exception is long gone)."""
        if not self.close_pending or self.entered_partition() >= 0:
            return 0
        self.close_pending = False
        try:
            self._close(True)
        except BaseException as error:
            _warn_resource(f"greenres.Layout not closed after an exception: {error}")
        return 0

    def __dealloc__(self):
        # The finalizer (_Resource.__del__) destroyed the handles; the memory goes last,
        # when nothing can point at it.
        cdef int i
        if self.states != NULL:
            for i in range(self.count):
                free(self.states[i].nvtx_handoff)
        self.states = NULL
        self.pool = NULL
        free(self.block)
        self.block = NULL


cdef list _destroy_pool(EventPool* pool):
    """Destroy the pool's events (those handoffs made); those whose destroy failed keep
    their handles (a later close retries them) and are reported. Keeps the GIL (see
    _push_primary)."""
    cdef cydriver.CUresult errors[POOL_SIZE]
    cdef int j
    for j in range(POOL_SIZE):
        errors[j] = cydriver.CUDA_SUCCESS
        if pool.events[j] != NULL:
            errors[j] = cydriver.cuEventDestroy(pool.events[j])
            if errors[j] == cydriver.CUDA_SUCCESS:
                pool.events[j] = NULL
    return [_failure_of(errors[j], "cuEventDestroy")
            for j in range(POOL_SIZE) if errors[j] != cydriver.CUDA_SUCCESS]


cdef list _destroy_event(cydriver.CUevent* slot):
    """Destroy ``*slot`` (NULL it on success); the failure, if any, as a one-item list."""
    cdef cydriver.CUevent event = slot[0]
    cdef cydriver.CUresult err
    if event == NULL:
        return []
    err = cydriver.cuEventDestroy(event)  # keeps the GIL (see _push_primary)
    if err != cydriver.CUDA_SUCCESS:
        return [_failure_of(err, "cuEventDestroy")]
    slot[0] = NULL
    return []
