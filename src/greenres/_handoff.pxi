# Included by _driver.pyx (one extension module; one file per concept).
# Handoff between streams (pooled or temporary events), and the partition a thread is in.


cdef inline int _handoff_admitted(_LayoutCore core, cydriver.CUstream src,
                                  cydriver.CUstream dst,
                                  const nvtxEventAttributes_t* mark=NULL) except -1:
    """``dst`` waits for ``src``'s work so far, through ``core``'s event pool when there is
    one (the caller admitted the operation on ``core`` and on the streams), else through a
    temporary event of the current context. ``mark``: the NVTX mark of an annotated layout.
    Inline, the pooled case being the hot one; the rest is _handoff_unpooled."""
    cdef int code = POOL_EXHAUSTED
    cdef Failure failure
    if core is not None:
        if _hot_path_releases_gil:
            with nogil:
                code = pooled_handoff(core.pool, src, dst, mark, &failure)
        else:
            code = pooled_handoff(core.pool, src, dst, mark, &failure)
        if code == 0:
            return 0
        if code == DRIVER_FAILED:
            return _raise_failure(&failure)
    return _handoff_unpooled(src, dst)


cdef int _handoff_unpooled(cydriver.CUstream src, cydriver.CUstream dst) except -1:
    """No pool (foreign streams only) or all slots busy: the handoff through a temporary
    event of the current context. Slow, but correct."""
    cdef Failure failure
    cdef cydriver.CUevent event = NULL
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUresult err, destroyed
    _destroy_left_events()
    with nogil:
        check(cydriver.cuCtxGetCurrent(&current), "cuCtxGetCurrent")
    if current == NULL:
        raise UsageError(
            "handoff between streams that are not greenres streams needs a current context "
            "(no context is current on this thread)"
        )
    with nogil:
        check(cydriver.cuEventCreate(&event, cydriver.CU_EVENT_DISABLE_TIMING), "cuEventCreate")
        err = cydriver.cuEventRecord(event, src)
        if err == cydriver.CUDA_SUCCESS:
            err = cydriver.cuStreamWaitEvent(dst, event, 0)
            if err != cydriver.CUDA_SUCCESS:
                failure.function = "cuStreamWaitEvent"
        else:
            failure.function = "cuEventRecord"
        destroyed = cydriver.cuEventDestroy(event)
    if destroyed != cydriver.CUDA_SUCCESS:
        _left_events.append(<uintptr_t>event)  # the next foreign handoff retries
    if err != cydriver.CUDA_SUCCESS:
        failure.error = err
        if destroyed != cydriver.CUDA_SUCCESS:
            _warn_resource(str(DestroyError("a temporary handoff event",
                                            [_failure_of(destroyed, "cuEventDestroy")])))
        return _raise_failure(&failure)
    if destroyed != cydriver.CUDA_SUCCESS:
        raise DestroyError("a temporary handoff event",
                           [_failure_of(destroyed, "cuEventDestroy")])
    return 0


# Temporary handoff events whose cuEventDestroy failed: the next handoff that needs a
# temporary event destroys them first (and reports what still fails).
cdef list _left_events = []


cdef int _destroy_left_events() except -1:
    """Each left event is taken off the list (list.pop, one atomic step) before it is
    destroyed, so two threads retrying at once never destroy the same event twice; what
    fails again goes back for the next retry."""
    cdef cydriver.CUevent event
    cdef cydriver.CUresult err
    failures = []
    still_left = []
    while _left_events:
        try:
            handle = _left_events.pop()
        except IndexError:  # another thread took the last one
            break
        event = <cydriver.CUevent><uintptr_t>handle
        with nogil:
            err = cydriver.cuEventDestroy(event)
        if err != cydriver.CUDA_SUCCESS:
            still_left.append(handle)
            failures.append(_failure_of(err, "cuEventDestroy"))
    _left_events.extend(still_left)
    if failures:
        raise DestroyError("temporary handoff events left by earlier failures", failures)
    return 0


def current_partition():
    """The innermost partition entered on this thread (a :class:`GreenContext`), or None.

    An entered partition stays alive while it is entered, even when nothing else refers to
    it or its layout any more: this is how such a partition is found again to exit it."""
    cdef PartState* top = <PartState*>greenres_stack_top()
    if top == NULL or top.entered_by == NULL:
        return None
    return <object>top.entered_by


cdef int _handoff_streams(Stream src, Stream dst) except -1:
    """handoff() of two greenres Streams, the hot case: the admissions _use_streams makes,
    without its tests of argument forms; the pool of ``src``'s layout."""
    cdef Admissions a
    _admissions_init(&a)
    try:
        _admit_stream_pair(src, dst, &a)
        _handoff_admitted(src._core, src._handle, dst._handle, _handoff_mark(src, dst))
    finally:
        _admissions_end(&a)
    return 0


def handoff(src, dst):
    """Make ``dst`` wait for all work queued on ``src`` so far (an event record and a wait,
    both stream-level calls, so capture-safe; the event comes from a lock-free pool).

    ``src`` and ``dst`` are greenres Streams, objects with ``__cuda_stream__`` or raw int
    handles. Foreign streams only (no greenres Stream on either side) use a temporary event
    of the current context.

    Raises:
        DestroyError: when the temporary event of a foreign-stream handoff could not be
            destroyed (the handoff itself was made).
    """
    cdef Admissions a
    cdef cydriver.CUstream s, d
    cdef _LayoutCore core = None
    if type(src) is Stream and type(dst) is Stream:
        _handoff_streams(<Stream>src, <Stream>dst)
        return None
    _admissions_init(&a)
    try:
        _use_streams(src, "src", dst, "dst", &a, &s, &d)
        if isinstance(src, Stream):
            core = (<Stream>src)._core
        elif isinstance(dst, Stream):
            core = (<Stream>dst)._core
        _handoff_admitted(core, s, d, _handoff_mark(src, dst))
    finally:
        _admissions_end(&a)
