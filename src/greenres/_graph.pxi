# Included by _driver.pyx (one extension module; one file per concept).
# Graphs captured in a partition (their capture modes and context manager: _capture.pxi).
# One class over 450 lines: its capture, instantiate/replay and destroy paths share one small
# state (capturing, held graph and executable, the layout it belongs to), which is easier to
# check in one place, and Cython keeps a cdef class's methods in one class body (the MTIA
# API's context manager is in _graph_seed.pxi).


@cython.no_gc_clear
cdef class Graph(_Resource):
    """A CUDA graph captured from a stream, instantiated and replayed.

    ``Graph(keep_graph=False, pool=None)``: with ``keep_graph=False`` the captured
    ``CUgraph`` is destroyed once instantiated (only the executable is kept). ``pool``: a
    :class:`GraphPool` (``other_graph.pool()``) to share memory with other graphs; by default
    the graph makes its own on first use.

    Capturing on a partition's stream keeps the partition: the nodes run in that green
    context when replayed, whatever stream the replay is launched on. Closing that
    partition's layout destroys the graph's captured work (``reset()`` to capture again).

    Attributes:
        keep_graph: the ``keep_graph`` the graph was made with.
        name: the graph's name (``Graph(name=...)``, default ``graph<N>``), in NVTX marks and
            its repr.
    """

    cdef cydriver.CUgraph _graph
    cdef cydriver.CUgraphExec _exec
    cdef cydriver.CUgraph _discarded  # a discarded capture whose destroy failed: retried
    cdef cydriver.CUstream _stream
    cdef object _stream_obj    # the capture stream as given (kept alive, and replay's default)
    cdef _LayoutCore _core     # the layout of the capture stream (None: a foreign stream)
    cdef PartState* _s         # the partition of the capture stream
    cdef GraphPool _pool
    cdef bint _capturing
    cdef bint _orphaned        # its layout was closed under it
    cdef bint _owns_pool       # the pool was made by pool(): closed with the graph
    cdef bint _left_pool       # close() stopped using the pool (retries only free it)
    cdef bint _initialized
    cdef readonly bint keep_graph
    cdef readonly str name
    cdef nvtxRangeId_t _nvtx_capture  # the NVTX range of a capture of an annotated layout
    cdef object _replay_mark         # its replay mark's NVTX message, made at the first replay
    cdef object __weakref__

    def __cinit__(self):
        self._graph = NULL
        self._exec = NULL
        self._capturing = False
        self._orphaned = False
        self._owns_pool = False
        self._initialized = False

    def __init__(self, keep_graph=False, pool=None, *, name=None):
        if self._initialized:
            raise UsageError("greenres.Graph.__init__ was called on a graph made already")
        keep_graph = _require_bool("keep_graph", keep_graph)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"'name' must be a str or None (got {name!r})")
        if pool is not None and not isinstance(pool, GraphPool):
            raise TypeError(
                f"'pool' must be a greenres.GraphPool (another graph's pool()) or None "
                f"(got {pool!r})"
            )
        if pool is not None:
            (<GraphPool>pool)._add_user()
            self._pool = pool
        self.keep_graph = keep_graph
        self.name = name if name is not None else f"graph{next(_graph_numbers)}"
        self._initialized = True

    cdef str _describe(self):
        return "greenres.Graph"

    cdef object _closed_error(self):
        return ClosedError("the graph is closed")

    cdef int _admit_ops(self, Admissions* a) except -1:
        """Admit an operation on the graph: its own gate, then the layout it was captured
        in (so that the layout's close does not destroy its work meanwhile). Raises
        ClosedError when the graph is closed or orphaned by its layout."""
        _admit_into(a, &self._gate, &self._inflight, self)
        if self._core is not None and not _try_admit_into(a, self._s.gate, &self._s.inflight):
            self._orphaned = True
        if self._orphaned:
            raise ClosedError(
                "the layout the graph was captured in was closed (reset() to capture again)")
        return 0

    def pool(self):
        """The graph's :class:`GraphPool` (made on first call): pass it as ``pool=`` to
        other graphs to share memory with this one. A pool made here is closed with this
        graph (its memory lives until the last graph using it is closed)."""
        self._check_open()
        if self._pool is None:
            device = self._core.ordinal if self._core is not None else 0
            p = GraphPool(device)
            p._add_user()
            self._pool = p
            self._owns_pool = True
        return self._pool

    cdef list _leave_pool(self):
        """Stop using the pool (closing it if this graph made it). Its memory is freed by
        the last graph to go; failed frees are returned, and the pool is kept until a retry
        of this graph's close() frees it."""
        cdef GraphPool pool = self._pool
        if pool is None:
            return []
        failures = []
        if not self._left_pool:
            self._left_pool = True
            failures += pool._drop_user()
        if self._owns_pool or (pool._is_closed() and pool._leaking and not failures):
            try:
                pool._close(False)
            except DestroyError as error:
                failures += error.failures
        if not failures:
            self._pool = None
        return failures

    def allocate(self, nbytes):
        """Device memory from this graph's pool (see :meth:`GraphPool.allocate`); usable
        during capture."""
        return self.pool().allocate(nbytes)

    @property
    def handle(self):
        """The captured ``CUgraph`` as an int (0 when none is held)."""
        return <uintptr_t>self._graph

    @property
    def exec_handle(self):
        """The ``CUgraphExec`` as an int (0 before :meth:`instantiate`)."""
        return <uintptr_t>self._exec

    @property
    def capturing(self):
        """True between :meth:`capture_begin` and the end of the capture."""
        return self._capturing

    @property
    def captured(self):
        """True between a successful capture and :meth:`reset`."""
        return self._graph != NULL or self._exec != NULL

    def capture(self, stream, mode="thread_local"):
        """Context manager: capture the work queued on ``stream`` inside the block. When the
        block raises, the capture is ended and discarded.

        ``mode``: the capture mode, ``"thread_local"`` (default), ``"global"`` or
        ``"relaxed"``."""
        cdef Admissions a
        _capture_mode(mode)
        _admissions_init(&a)
        try:
            _use_stream(stream, "stream", &a)
        finally:
            _admissions_end(&a)
        return _Capture(self, stream, mode)

    def capture_begin(self, stream=None, mode="thread_local", *, pool=None):
        """Begin capturing a stream (``cuStreamBeginCapture``).

        Two spellings (docs/seeds.md): greenres' ``capture_begin(stream, mode)`` and the
        MTIA seed's ``capture_begin(pool=None)``, where a :class:`GraphPool` given first is
        the pool and the stream is the current capture stream (the one ``greenres.graph``
        entered, else the current partition's, else ``graph``'s default capture stream).
        ``pool``: share another graph's memory pool from this capture on.

        Raises:
            UsageError: when the graph is capturing or holds a capture (``reset()`` first),
                or already uses another pool.
        """
        cdef cydriver.CUstream s
        cdef cydriver.CUstreamCaptureMode cmode = _capture_mode(mode)
        cdef cydriver.CUresult err
        cdef Admissions a
        stream, pool = _capture_arguments(stream, pool)
        _admissions_init(&a)
        try:
            self._admit_ops(&a)
            s = _use_stream(stream, "stream", &a)  # the argument is checked first
            if self._capturing:
                raise UsageError("the graph is already capturing: call capture_end() first")
            if self._graph != NULL or self._exec != NULL:
                raise UsageError(
                    "the graph holds a capture: call reset() before capturing again")
            _check_graph_pool(self, pool)
            with nogil:
                err = cydriver.cuStreamBeginCapture(s, cmode)
            check(err, "cuStreamBeginCapture")
            if pool is not None and self._pool is None:
                (<GraphPool>pool)._add_user()  # checked open above: cannot fail
                self._pool = pool
            self._stream = s
            self._stream_obj = stream
            self._capturing = True
            if isinstance(stream, Stream):
                self._core = (<Stream>stream)._core
                self._s = (<Stream>stream)._s
                self._core._track_graph(self)
                if self._s.nvtx:
                    where = (<Stream>stream).partition.name
                    self._nvtx_capture = _nvtx_start_text(
                        f"capture {self.name} on {where}", where)
        finally:
            _admissions_end(&a)

    def capture_end(self):
        """End the capture (``cuStreamEndCapture``) and keep the graph."""
        cdef Admissions a
        _admissions_init(&a)
        try:
            self._admit_ops(&a)
            if not self._capturing:
                raise UsageError("the graph is not capturing: call capture_begin() first")
            self._end_capture(False)
        finally:
            _admissions_end(&a)

    cdef int _end_capture(self, bint discard) except -1:
        """cuStreamEndCapture; keep the graph unless ``discard``. Some failures end the
        capture (an invalidated or unjoined capture), others leave the stream capturing:
        the stream is asked, so that a retry (reset(), close()) still ends a capture that is
        going on. The caller admitted the operation."""
        cdef cydriver.CUgraph graph = NULL
        cdef cydriver.CUstream s = self._stream
        cdef cydriver.CUresult err, destroyed = cydriver.CUDA_SUCCESS
        cdef cydriver.CUstreamCaptureStatus status = cydriver.CU_STREAM_CAPTURE_STATUS_ACTIVE
        with nogil:
            err = cydriver.cuStreamEndCapture(s, &graph)
            if graph != NULL and (discard or err != cydriver.CUDA_SUCCESS):
                destroyed = cydriver.cuGraphDestroy(graph)
                if destroyed != cydriver.CUDA_SUCCESS:
                    self._discarded = graph  # every release retries it, never replayed
                graph = NULL
        if discard and err == cydriver.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED:
            err = cydriver.CUDA_SUCCESS  # discarding a capture the driver ended: as asked
        if err != cydriver.CUDA_SUCCESS:
            with nogil:
                if cydriver.cuStreamIsCapturing(s, &status) != cydriver.CUDA_SUCCESS:
                    status = cydriver.CU_STREAM_CAPTURE_STATUS_ACTIVE
            if status == cydriver.CU_STREAM_CAPTURE_STATUS_NONE:
                # the capture is over all the same: so is its NVTX range; a capture still
                # going on keeps its range until a retry ends it
                self._capturing = False
                self._end_nvtx_capture()
            check(err, "cuStreamEndCapture")
        self._capturing = False
        self._graph = graph
        self._end_nvtx_capture()
        if destroyed != cydriver.CUDA_SUCCESS:
            raise DestroyError("the discarded capture of a greenres.Graph",
                               [_failure_of(destroyed, "cuGraphDestroy")])
        return 0

    cdef void _end_nvtx_capture(self) noexcept:
        if self._nvtx_capture:
            nvtxDomainRangeEnd(greenres_nvtx_domain, self._nvtx_capture)
            self._nvtx_capture = 0

    def _abort_capture(self):
        """End and discard the capture after an exception inside ``with g.capture(s):``.
        Never raises (the exception in flight stays the one the user sees): a failure is
        warned about and the state kept, so reset() or close() ends the capture later."""
        cdef Admissions a
        if not self._capturing:
            return
        _admissions_init(&a)
        try:
            self._admit_ops(&a)
            self._end_capture(True)
        except BaseException as error:
            warnings.warn(
                f"the capture of a greenres.Graph could not be ended after an exception "
                f"({error}); reset() or close() the graph to end it", RuntimeWarning,
                stacklevel=3)
        finally:
            _admissions_end(&a)

    cdef int _end_capture_for_close(self) except -1:
        """close(abort_captures=True) of the layout: end and discard this graph's capture
        (the layout's close admits nothing: it runs alone)."""
        self._end_capture(True)
        return 0

    def instantiate(self):
        """Instantiate the captured graph (``cuGraphInstantiate``). Without ``keep_graph``
        the ``CUgraph`` is destroyed afterwards."""
        cdef Admissions a
        _admissions_init(&a)
        try:
            self._admit_ops(&a)
            if self._exec == NULL:
                self._instantiate()
                self._drop_graph_unless_kept()
        finally:
            _admissions_end(&a)
        return self

    cdef int _instantiate(self) except -1:
        cdef cydriver.CUgraphExec exec_ = NULL
        cdef cydriver.CUgraph graph = self._graph
        if self._capturing:
            raise UsageError("the graph is still capturing: call capture_end() first")
        if graph == NULL:
            raise UsageError("nothing captured: use capture() first")
        with nogil:
            # cuda.h defines cuGraphInstantiate as cuGraphInstantiateWithFlags (12.0+)
            check(cydriver.cuGraphInstantiate(&exec_, graph, 0), "cuGraphInstantiateWithFlags")
        self._exec = exec_
        return 0

    cdef int _drop_graph_unless_kept(self) except -1:
        """After a successful instantiate: destroy the CUgraph unless ``keep_graph``. When
        that fails, the instantiation is undone (so a failed instantiate changes nothing);
        if the executable cannot be destroyed either, it is kept too."""
        cdef cydriver.CUgraph graph = self._graph
        cdef cydriver.CUgraphExec exec_ = self._exec
        cdef cydriver.CUresult err
        if self.keep_graph or graph == NULL:
            return 0
        with nogil:
            err = cydriver.cuGraphDestroy(graph)
        if err != cydriver.CUDA_SUCCESS:
            with nogil:
                if cydriver.cuGraphExecDestroy(exec_) == cydriver.CUDA_SUCCESS:
                    exec_ = NULL
            self._exec = exec_
            check(err, "cuGraphDestroy")
        self._graph = NULL
        return 0

    def replay(self, stream=None):
        """Launch the graph on ``stream`` (default: the stream it was captured on);
        instantiates first when needed. Nodes keep the context they were captured in. A
        failed replay changes nothing (an instantiation it made is undone).

        Raises:
            ClosedError: when the default stream (the capture stream) was closed.
        """
        cdef Admissions a
        cdef cydriver.CUstream s
        cdef cydriver.CUgraphExec exec_
        cdef cydriver.CUresult err
        cdef bint made_here = False
        _admissions_init(&a)
        try:
            self._admit_ops(&a)
            if stream is None:
                if self._stream_obj is None:
                    raise UsageError("nothing captured: use capture() first")
                s = _use_stream(self._stream_obj, "stream", &a)
            else:
                s = _use_stream(stream, "stream", &a)
            if self._exec == NULL:
                self._instantiate()
                made_here = True
            exec_ = self._exec
            if _hot_path_releases_gil:
                with nogil:
                    err = cydriver.cuGraphLaunch(exec_, s)
            else:
                err = cydriver.cuGraphLaunch(exec_, s)
            if err == cydriver.CUDA_SUCCESS and self._core is not None and self._s.nvtx:
                if self._replay_mark is None:  # not rebuilt at every replay
                    self._replay_mark = _nvtx_mark_message(
                        f"replay {self.name} ({self._s_name()})")
                _nvtx_mark_cached(self._replay_mark)
            if err != cydriver.CUDA_SUCCESS:
                if made_here:
                    with nogil:
                        if cydriver.cuGraphExecDestroy(exec_) == cydriver.CUDA_SUCCESS:
                            exec_ = NULL
                    self._exec = exec_
                check(err, "cuGraphLaunch")
            if made_here:
                self._drop_graph_unless_kept()
        finally:
            _admissions_end(&a)

    def reset(self):
        """End a capture going on, destroy the captured graph and its executable, so the
        graph can capture again. The pool stays.

        Raises:
            DriverError: when the capture cannot be ended (the graph keeps capturing; reset
                again to retry).
            DestroyError: when a destroy call failed (the graph is reset; close() of the
                graph retries the destroy).
        """
        cdef Admissions a
        cdef bint layout_open = True
        self._check_open()
        _admissions_init(&a)
        try:
            _admit_into(&a, &self._gate, &self._inflight, self)
            if self._core is not None:
                layout_open = _try_admit_into(&a, self._s.gate, &self._s.inflight)
            if self._capturing and layout_open:
                try:
                    self._end_capture(True)
                except DestroyError:
                    pass  # the discarded capture is kept: _release_native retries it now
            failures = self._release_native() if layout_open else []
            self._capturing = False
            self._orphaned = False
            self._stream_obj = None
            self._replay_mark = None  # the next capture may be in another partition
            if self._core is not None:
                self._core._forget_graph(self)
                self._core = None
                self._s = NULL
        finally:
            _admissions_end(&a)
        if failures:
            self._leaking = True
            raise DestroyError(self._describe(), failures)

    cdef list _release_native(self):
        """Destroy the executable and the graph; a handle whose destroy fails is kept (the
        failures are returned)."""
        cdef cydriver.CUgraphExec exec_ = self._exec
        cdef cydriver.CUgraph graph = self._graph
        cdef cydriver.CUgraph discarded = self._discarded
        cdef cydriver.CUresult err
        failures = []
        if discarded != NULL:
            with nogil:
                err = cydriver.cuGraphDestroy(discarded)
            if err == cydriver.CUDA_SUCCESS:
                self._discarded = NULL
            else:
                failures.append(_failure_of(err, "cuGraphDestroy"))
        if exec_ != NULL:
            with nogil:
                err = cydriver.cuGraphExecDestroy(exec_)
            if err == cydriver.CUDA_SUCCESS:
                self._exec = NULL
            else:
                failures.append(_failure_of(err, "cuGraphExecDestroy"))
        if graph != NULL:
            with nogil:
                err = cydriver.cuGraphDestroy(graph)
            if err == cydriver.CUDA_SUCCESS:
                self._graph = NULL
            else:
                failures.append(_failure_of(err, "cuGraphDestroy"))
        return failures

    cdef list _orphan(self):
        """Its layout is being closed (nothing is in flight on it): destroy the captured
        work, whose nodes run in the layout's green contexts."""
        failures = self._release_native()
        if not failures:
            self._core._forget_graph(self)
        self._orphaned = True
        return failures

    cdef list _destroy(self):
        """close(): end a capture going on, destroy the native graph, stop using the pool.
        Admitted on the layout the graph was captured in, if it is still open (else the
        layout destroyed the captured work already)."""
        cdef Admissions a
        _admissions_init(&a)
        try:
            layout_open = self._core is None \
                or _try_admit_into(&a, self._s.gate, &self._s.inflight)
            return self._destroy_admitted(layout_open)
        finally:
            _admissions_end(&a)

    cdef list _destroy_admitted(self, bint layout_open):
        failures = []
        if layout_open:
            if self._capturing:
                try:
                    self._end_capture(True)
                except DestroyError:
                    pass  # the discarded capture is kept: _release_native retries it now
                except DriverError as error:
                    failures.append(error)
            failures += self._release_native()
        if not self._capturing:
            if self._core is not None and not failures:
                self._core._forget_graph(self)
            failures += self._leave_pool()
        return failures

    cdef void _finalize(self) noexcept:
        # A finalizer never waits for a close of the layout: it may run (by the garbage
        # collector) inside a call that holds that layout, which the close waits for. While
        # the layout is closing, its close destroys the captured work (it is in its list).
        cdef int admitted
        if self._core is None or greenres_gate_state(&self._gate) == GREENRES_CLOSED:
            _Resource._finalize(self)
            return
        try:
            admitted = greenres_begin(self._s.gate, &self._s.inflight)
            if admitted == -1:
                self._core.dying_graphs.append(self._take_native())
                if self._discarded != NULL:
                    self._core.dying_graphs.append((0, <uintptr_t>self._discarded))
                    self._discarded = NULL
                self._leave_pool()
                greenres_gate_set(&self._gate, GREENRES_CLOSED)
                return
            try:
                if self._warn_unclosed():
                    _warn_resource(f"unclosed {self._describe()}: call close() or use 'with'")
                failures = self._destroy_admitted(admitted == 1)
                greenres_gate_set(&self._gate, GREENRES_CLOSED)
                if failures:
                    _warn_resource(str(DestroyError(self._describe(), failures)))
            finally:
                if admitted == 1:
                    greenres_end(&self._s.inflight)
        except BaseException:
            pass

    cdef tuple _take_native(self):
        """The executable and graph handles as ints, this object forgetting them."""
        handles = (<uintptr_t>self._exec, <uintptr_t>self._graph)
        self._exec = NULL
        self._graph = NULL
        return handles

    cdef bint _warn_unclosed(self):
        return (self._capturing or self._graph != NULL or self._exec != NULL
                or self._discarded != NULL)

    cdef str _s_name(self):
        """The name of the partition the graph was captured in."""
        cdef int i
        for i in range(self._core.count):
            if self._core.states[i] == self._s:
                return self._core.names[i]
        return "?"

    def __repr__(self):
        state = ("closed" if self._is_closed() else "capturing" if self._capturing
                 else "instantiated" if self._exec != NULL
                 else "captured" if self._graph != NULL else "empty")
        return f"<greenres.Graph {state}>"


cdef object _graph_numbers = iter(range(2**63))
