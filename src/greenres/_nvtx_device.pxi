# Included by _driver.pyx (one extension module; one file per concept).
# NVTX device ranges: ranges that start and end when a stream reaches them (host functions
# queued in stream order; during capture, host nodes of the graph, kept alive by a user
# object), for greenres.nvtx.device_range_start / device_range_end.


cdef class DeviceRange:
    """A range that starts when a stream reaches :func:`device_range_start` and ends when a
    stream reaches :func:`device_range_end` (made by ``device_range_start``). Dropped
    without being ended, a started range is ended then and a start not reached yet starts
    nothing; ranges captured into a graph belong to the graph and fire at every replay.

    Attributes:
        message: the range's message.
    """

    cdef greenres_device_range* _range
    cdef bint _ended
    cdef readonly str message

    def __init__(self, *args, **kwargs):
        raise TypeError("greenres.nvtx.DeviceRange objects are made by device_range_start()")

    @property
    def ended(self):
        """True once device_range_end was called for it."""
        return self._ended

    def __dealloc__(self):
        if self._range != NULL:
            if self._ended:
                greenres_device_range_release(self._range)
            else:
                greenres_device_range_abandon(self._range)
            self._range = NULL

    def __repr__(self):
        return f"<greenres.nvtx.DeviceRange {self.message!r}{' ended' if self._ended else ''}>"


# cuStreamGetCaptureInfo's 12.3 ABI (with edge data) is spelled `cuStreamGetCaptureInfo_v3`
# in cuda-bindings 12.x and `cuStreamGetCaptureInfo` in 13.x, with no name common to both;
# asking the driver for it by version works against either.
ctypedef cydriver.CUresult (*capture_info_fn)(
    cydriver.CUstream, cydriver.CUstreamCaptureStatus*, cydriver.cuuint64_t*, cydriver.CUgraph*,
    const cydriver.CUgraphNode**, const cydriver.CUgraphEdgeData**, size_t*) noexcept nogil

cdef capture_info_fn _capture_info = NULL


cdef capture_info_fn _capture_info_function() except NULL:
    global _capture_info
    cdef void* pfn = NULL
    cdef cydriver.CUdriverProcAddressQueryResult found
    if _capture_info == NULL:
        check(cydriver.cuGetProcAddress(b"cuStreamGetCaptureInfo", &pfn, 12030,
                                        cydriver.CU_GET_PROC_ADDRESS_DEFAULT, &found),
              "cuGetProcAddress")
        if found != cydriver.CU_GET_PROC_ADDRESS_SUCCESS or pfn == NULL:
            raise DriverTooOldError("cuStreamGetCaptureInfo (CUDA 12.3 ABI) is not available")
        _capture_info = <capture_info_fn>pfn
    return _capture_info


# The stream handles that mean "the current context's": 0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD.
_SPECIAL_STREAMS = ("NULL", "legacy", "per-thread")


cdef int _enqueue_range(greenres_device_range* r, cydriver.CUstream stream,
                        bint start) except -1:
    """Queue the start or end of ``r`` on ``stream`` (the caller admitted the stream): a
    host function that runs once, or, while the stream captures, a host node of the graph,
    which keeps ``r`` alive through a user object until the graph is destroyed."""
    cdef cydriver.CUstreamCaptureStatus status = cydriver.CU_STREAM_CAPTURE_STATUS_NONE
    cdef cydriver.CUgraph graph = NULL
    cdef cydriver.CUuserObject owner = NULL
    cdef cydriver.CUresult err
    cdef cydriver.cuuint64_t capture_id = 0
    cdef const cydriver.CUgraphNode* deps = NULL
    cdef size_t ndeps = 0
    cdef const cydriver.CUgraphEdgeData* edges = NULL
    cdef capture_info_fn capture_info = _capture_info_function()
    with nogil:
        err = capture_info(stream, &status, &capture_id, &graph, &deps, &edges, &ndeps)
    if err == cydriver.CUDA_ERROR_INVALID_CONTEXT and <uintptr_t>stream <= 2:
        raise UsageError(
            f"'stream' is the {_SPECIAL_STREAMS[<uintptr_t>stream]} stream, which is the "
            "current context's: a device range on it needs a current context (enter a "
            "partition, or make a context current)"
        )
    check(err, "cuStreamGetCaptureInfo")
    if status == cydriver.CU_STREAM_CAPTURE_STATUS_ACTIVE:
        greenres_device_range_retain(r)  # the user object's reference
        with nogil:
            err = cydriver.cuUserObjectCreate(&owner, r, greenres_device_range_graph_release,
                                              1, cydriver.CU_USER_OBJECT_NO_DESTRUCTOR_SYNC)
        if err != cydriver.CUDA_SUCCESS:
            greenres_device_range_release(r)
            check(err, "cuUserObjectCreate")
        with nogil:
            err = cydriver.cuGraphRetainUserObject(graph, owner, 1,
                                                   cydriver.CU_GRAPH_USER_OBJECT_MOVE)
        if err != cydriver.CUDA_SUCCESS:
            with nogil:
                cydriver.cuUserObjectRelease(owner, 1)  # runs the destructor: drops the ref
            check(err, "cuGraphRetainUserObject")
        r.captured = 1
        with nogil:
            err = cydriver.cuLaunchHostFunc(
                stream,
                greenres_device_range_start_replayed if start
                else greenres_device_range_end_replayed, r)
        check(err, "cuLaunchHostFunc")
        return 0
    greenres_device_range_retain(r)  # the host function's reference
    with nogil:
        err = cydriver.cuLaunchHostFunc(
            stream, greenres_device_range_start_once if start else greenres_device_range_end_once,
            r)
    if err != cydriver.CUDA_SUCCESS:
        greenres_device_range_release(r)
        check(err, "cuLaunchHostFunc")
    return 0


def device_range_start(msg, stream, *, domain=None, category=None, color=None):
    """A range that starts when ``stream`` (any stream form) reaches this point, that is
    once the work queued on it so far completed; returns a :class:`DeviceRange` for
    :func:`device_range_end`. During a capture it is part of the graph: it fires at every
    replay."""
    cdef _Message m = _message(msg, domain, category, color)
    cdef DeviceRange handle = DeviceRange.__new__(DeviceRange)
    cdef greenres_device_range* r
    cdef Admissions a
    cdef cydriver.CUstream s
    if m.ascii is not None:
        r = greenres_device_range_new(m.domain, &m.attr, <char*>m.ascii, len(m.ascii) + 1, 0)
    else:
        r = greenres_device_range_new(m.domain, &m.attr, m.wide,
                                      (m.wide_length + 1) * sizeof(wchar_t), 1)
    if r == NULL:
        raise MemoryError()
    handle._range = r
    handle.message = msg
    _admissions_init(&a)
    try:
        s = _use_stream(stream, "stream", &a)
        _enqueue_range(r, s, True)
    finally:
        _admissions_end(&a)
    return handle


def device_range_end(handle, stream):
    """End ``handle``'s range when ``stream`` reaches this point.

    Raises:
        TypeError: when ``handle`` is not a DeviceRange.
        UsageError: when it was ended already.
    """
    cdef Admissions a
    cdef cydriver.CUstream s
    if not isinstance(handle, DeviceRange):
        raise TypeError(
            f"'handle' must be a DeviceRange from device_range_start (got {handle!r})")
    if (<DeviceRange>handle)._ended:
        raise UsageError(f"device_range_end: {handle!r} was ended already")
    _admissions_init(&a)
    try:
        s = _use_stream(stream, "stream", &a)
        _enqueue_range((<DeviceRange>handle)._range, s, False)
    finally:
        _admissions_end(&a)
    (<DeviceRange>handle)._ended = True
