# Included by _driver.pyx (one extension module; one file per concept).
# The nogil hot paths (enter, exit, pooled handoff) and the helpers around them.


# Misuse codes the nogil functions return (the Python wrappers raise the fitting error).
cdef enum:
    OWNED_ELSEWHERE = 1
    NOT_OWNER = 2
    OUT_OF_ORDER = 3
    TOO_DEEP = 4
    STACK_CHANGED = 5
    POOL_EXHAUSTED = 6


cdef inline int _enter_failed(PartState* p, bint claimed, cydriver.CUresult err,
                              const char* function) except -1 nogil:
    """A driver call of enter failed: give up the ownership enter claimed, raise DriverError."""
    if claimed:
        greenres_release(&p.owner)
    return check(err, function)


cdef int enter_partition(PartState* p, cydriver.CUstream from_stream,
                         bint resolve) except -1 nogil:
    """Make the partition current on this thread after the caller's stream's work so far.

    ``resolve``: find the caller's stream here (the stream of the partition this thread is
    in, else the legacy stream of the current context, else none: nothing to order after).
    Returns 0, a misuse code, or -1 with a DriverError set; on any failure nothing changed.
    """
    cdef uintptr_t me = greenres_thread_token()
    cdef bint claimed = False
    cdef int depth
    cdef char has_from = 1
    cdef PartState* outer
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUcontext popped = NULL
    cdef cydriver.CUresult err
    if greenres_owner(&p.owner) != me:
        if not greenres_claim(&p.owner, me):
            return OWNED_ELSEWHERE
        claimed = True
        p.owner_ident = greenres_thread_ident()
    depth = p.depth
    if depth >= GREENRES_MAX_NESTING or greenres_stack_depth() >= GREENRES_MAX_NESTING:
        if claimed:
            greenres_release(&p.owner)
        return TOO_DEEP
    if resolve:
        outer = <PartState*>greenres_stack_top()
        if outer != NULL:
            from_stream = outer.stream
        else:
            err = cydriver.cuCtxGetCurrent(&current)
            if err != cydriver.CUDA_SUCCESS:
                return _enter_failed(p, claimed, err, "cuCtxGetCurrent")
            # The legacy stream of the device's primary context, when that is current. Any
            # other current context (another device's, a user context) cannot record this
            # partition's events: then there is no caller stream to order after, and
            # callers pass from_stream explicitly.
            from_stream = NULL
            has_from = current != NULL and current == p.primary
    if has_from:
        err = cydriver.cuEventRecord(p.enter_event, from_stream)
        if err != cydriver.CUDA_SUCCESS:
            return _enter_failed(p, claimed, err, "cuEventRecord")
    err = cydriver.cuCtxPushCurrent(p.ctx)
    if err != cydriver.CUDA_SUCCESS:
        return _enter_failed(p, claimed, err, "cuCtxPushCurrent")
    if has_from:
        err = cydriver.cuStreamWaitEvent(p.stream, p.enter_event, 0)
        if err != cydriver.CUDA_SUCCESS:
            cydriver.cuCtxPopCurrent(&popped)
            return _enter_failed(p, claimed, err, "cuStreamWaitEvent")
    p.from_streams[depth] = from_stream
    p.has_from[depth] = has_from
    p.depth = depth + 1
    greenres_stack_push(p)
    return 0


cdef inline void _exit_bookkeeping(PartState* p, int depth) noexcept nogil:
    """The partition's context was popped: drop it from this thread's stack, and give up
    ownership when that was the outermost enter."""
    greenres_stack_pop()
    p.depth = depth
    if depth == 0:
        greenres_release(&p.owner)


cdef int exit_partition(PartState* p) except -1 nogil:
    """Undo the innermost enter of ``p`` on this thread: the caller's stream waits for the
    partition's stream, and the partition's context is popped. Returns 0, a misuse code, or
    -1 with a DriverError set; on any failure nothing changed (a failed final wait pushes
    the context back), so the exit can be retried."""
    cdef uintptr_t me = greenres_thread_token()
    cdef int depth
    cdef char has_from
    cdef cydriver.CUcontext popped = NULL
    cdef cydriver.CUresult err
    if greenres_owner(&p.owner) != me or p.depth == 0:
        return NOT_OWNER
    if greenres_stack_top() != <void*>p:
        return OUT_OF_ORDER
    depth = p.depth - 1
    has_from = p.has_from[depth]
    if has_from:
        err = cydriver.cuEventRecord(p.exit_event, p.stream)
        if err != cydriver.CUDA_SUCCESS:
            return check(err, "cuEventRecord")
    err = cydriver.cuCtxPopCurrent(&popped)
    if err != cydriver.CUDA_SUCCESS:
        return check(err, "cuCtxPopCurrent")
    if popped != p.ctx:
        # Someone pushed a context inside the partition and did not pop it: put it back and
        # refuse, rather than leave the partition current under the caller.
        cydriver.cuCtxPushCurrent(popped)
        return STACK_CHANGED
    if has_from:
        # After the pop: a NULL caller stream is the legacy stream of the context current
        # under the partition.
        err = cydriver.cuStreamWaitEvent(p.from_streams[depth], p.exit_event, 0)
        if err != cydriver.CUDA_SUCCESS:
            # Undo the pop so that a failed exit changes nothing (the partition stays
            # entered and current; exit again to retry). Only if the context cannot be
            # pushed back does the exit stand, so that greenres agrees with the driver.
            if cydriver.cuCtxPushCurrent(p.ctx) != cydriver.CUDA_SUCCESS:
                _exit_bookkeeping(p, depth)
            return check(err, "cuStreamWaitEvent")
    _exit_bookkeeping(p, depth)
    return 0


cdef int pooled_handoff(EventPool* pool, cydriver.CUstream src,
                        cydriver.CUstream dst) except -1 nogil:
    """``dst`` waits for the work queued on ``src`` so far, through a pooled event.

    Stream-level calls only (cuEventRecord + cuStreamWaitEvent), so it is capture-safe.
    Returns 0, POOL_EXHAUSTED, or -1 with a DriverError set."""
    cdef uintptr_t me = greenres_thread_token()
    cdef int start = <int>((me >> 6) % POOL_SIZE)
    cdef int i, slot = -1
    cdef cydriver.CUresult err
    for i in range(POOL_SIZE):
        if greenres_claim(&pool.busy[(start + i) % POOL_SIZE], me):
            slot = (start + i) % POOL_SIZE
            break
    if slot < 0:
        return POOL_EXHAUSTED
    err = cydriver.cuEventRecord(pool.events[slot], src)
    if err == cydriver.CUDA_SUCCESS:
        err = cydriver.cuStreamWaitEvent(dst, pool.events[slot], 0)
        greenres_release(&pool.busy[slot])
        return check(err, "cuStreamWaitEvent")
    greenres_release(&pool.busy[slot])
    return check(err, "cuEventRecord")


# ----------------------------------------------------------------------------- helpers


_STREAM_FORMS = (
    "a greenres.Stream, an object with __cuda_stream__, a cuda.bindings CUstream or an "
    "int handle"
)


cdef cydriver.CUstream _stream_handle(object stream, str name="stream") except? NULL:
    """The CUstream of a greenres Stream, an object with ``__cuda_stream__``, a
    cuda.bindings ``CUstream`` or a raw int handle. Anything else (floats, bools, strings)
    raises TypeError naming ``name`` and the accepted forms."""
    cdef object value
    if type(stream) is int:  # the common raw-handle case first: no other test, no lookup
        if stream < 0:
            raise ValueError(f"{name!r} must be a stream handle >= 0 (got {stream!r})")
        return <cydriver.CUstream><uintptr_t>stream
    if isinstance(stream, Stream):
        return (<Stream>stream)._checked_handle()
    protocol = getattr(stream, "__cuda_stream__", None)
    if protocol is not None:
        version_and_handle = protocol() if callable(protocol) else protocol
        value = version_and_handle[1]
        if _is_index(value):
            value = value.__index__()
    elif _is_index(stream):
        value = stream.__index__()
    elif type(stream).__module__.startswith("cuda.bindings"):
        value = int(stream)  # CUstream and friends convert to their pointer value
    else:
        value = None
    if type(value) is not int:
        raise TypeError(f"{name!r} must be {_STREAM_FORMS} (got {stream!r})")
    if value < 0:
        raise ValueError(f"{name!r} must be a stream handle >= 0 (got {value!r})")
    return <cydriver.CUstream><uintptr_t>value


def _thread_rule_error(str name, int code):
    if code == OWNED_ELSEWHERE:
        return ThreadOwnershipError(
            f"partition {name!r} is current on another thread; a green context can be "
            "current on one thread at a time (exit it there first)"
        )
    if code == NOT_OWNER:
        return ThreadOwnershipError(
            f"partition {name!r} was not entered on this thread; exit it on the thread that "
            "entered it"
        )
    if code == OUT_OF_ORDER:
        return UsageError(
            f"partition {name!r} is not the innermost partition entered on this thread; "
            "exit partitions in the reverse order of entering them"
        )
    if code == TOO_DEEP:
        return UsageError(
            f"partition {name!r} cannot be entered: partitions are nested at most "
            f"{GREENRES_MAX_NESTING} levels deep on one thread"
        )
    if code == STACK_CHANGED:
        return UsageError(
            f"the context stack changed inside partition {name!r}: a context pushed inside "
            "it was not popped before exit"
        )
    return UsageError(f"internal error {code}")


cdef int _push_primary(cydriver.CUcontext primary) except -1:
    with nogil:
        check(cydriver.cuCtxPushCurrent(primary), "cuCtxPushCurrent")
    return 0


cdef int _pop_context() except -1:
    cdef cydriver.CUcontext popped = NULL
    with nogil:
        check(cydriver.cuCtxPopCurrent(&popped), "cuCtxPopCurrent")
    return 0


cdef void _pop_if_current(cydriver.CUcontext ctx) noexcept:
    """Best effort after a failure: take ``ctx`` off this thread's stack if it is still on
    top, so a failed operation leaves the context stack as it found it."""
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUcontext popped = NULL
    try:
        if cydriver.cuCtxGetCurrent(&current) == cydriver.CUDA_SUCCESS and current == ctx \
                and ctx != NULL:
            cydriver.cuCtxPopCurrent(&popped)
    except BaseException:
        pass


cdef bint _is_capturing(cydriver.CUstream stream) except -1:
    cdef cydriver.CUstreamCaptureStatus status = cydriver.CU_STREAM_CAPTURE_STATUS_NONE
    if stream == NULL:
        return False
    with nogil:
        check(cydriver.cuStreamIsCapturing(stream, &status), "cuStreamIsCapturing")
    return status == cydriver.CU_STREAM_CAPTURE_STATUS_ACTIVE


cdef cydriver.CUevent _new_event(unsigned int flags) except? NULL:
    cdef cydriver.CUevent event = NULL
    with nogil:
        check(cydriver.cuEventCreate(&event, flags), "cuEventCreate")
    return event


def _thread_name(unsigned long ident):
    """``'name' (ident N)`` of a live Python thread, else ``ident N``."""
    import threading

    thread = threading._active.get(ident)
    if thread is not None:
        return f"{thread.name!r} (ident {ident})"
    return f"ident {ident}"
