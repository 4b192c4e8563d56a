# Included by _driver.pyx (one extension module; one file per concept).
# The nogil hot paths: enter, exit (with the repair of a context stack changed inside the
# partition) and the pooled handoff. They return codes and fill a Failure instead of
# raising, so that the Python wrappers end their lifetime admissions before raising, and C
# callers get plain codes.


# The GIL policy of the hot paths (enter, exit, handoff, event record and wait, stream
# query, graph launch): their driver calls do not wait for the device, and releasing and
# taking the GIL back around them costs more than the calls themselves (docs/benchmarks.md,
# "The GIL policy"), so by default they run with the GIL held. Calls that can wait for the
# device (synchronize, blocking copies) always release it.
# greenres.configure(hot_path_gil="release") releases it around the hot paths too.
cdef bint _hot_path_releases_gil = False


def _set_hot_path_gil(str policy):
    """Called by greenres.configure(hot_path_gil=...)."""
    global _hot_path_releases_gil
    if policy not in ("hold", "release"):
        raise ValueError(f"'hot_path_gil' must be 'hold' or 'release' (got {policy!r})")
    _hot_path_releases_gil = policy == "release"


# The hot paths' driver functions, resolved once (greenres_runtime.h, "hot driver calls").
cdef bint _hot_calls_resolved = False


cdef int _resolve_hot_calls() except -1:
    """Ask the loaded driver for the hot paths' functions; called by _ensure_init, once,
    with the GIL, before any Device exists. The ABI version asked for is CUDA 12.0's
    (these five functions have kept their signatures since CUDA 4). Per-thread default
    stream semantics as cuda.bindings chooses them (CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM),
    so that a NULL stream means the same to greenres' calls as to everyone else's."""
    global _hot_calls_resolved, greenres_hot
    if _hot_calls_resolved:
        return 0
    cdef int version = 12000
    cdef cydriver.cuuint64_t flags = cydriver.CU_GET_PROC_ADDRESS_DEFAULT
    if os.environ.get("CUDA_PYTHON_CUDA_PER_THREAD_DEFAULT_STREAM"):
        flags = cydriver.CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
    cdef greenres_hot_calls calls
    calls.event_record = <greenres_record_fn>_driver_function(b"cuEventRecord", version, flags)
    calls.stream_wait_event = <greenres_wait_fn>_driver_function(b"cuStreamWaitEvent", version,
                                                                 flags)
    calls.ctx_push_current = <greenres_push_fn>_driver_function(b"cuCtxPushCurrent", version,
                                                                flags)
    calls.ctx_pop_current = <greenres_context_out_fn>_driver_function(b"cuCtxPopCurrent",
                                                                      version, flags)
    calls.ctx_get_current = <greenres_context_out_fn>_driver_function(b"cuCtxGetCurrent",
                                                                      version, flags)
    calls.event_create = <greenres_event_create_fn>_driver_function(b"cuEventCreate", version,
                                                                    flags)
    greenres_hot = calls
    _hot_calls_resolved = True
    return 0


cdef void* _driver_function(const char* name, int version, cydriver.cuuint64_t flags) except NULL:
    cdef void* pfn = NULL
    cdef cydriver.CUdriverProcAddressQueryResult found
    check(cydriver.cuGetProcAddress(name, &pfn, version, flags, &found), "cuGetProcAddress")
    if found != cydriver.CU_GET_PROC_ADDRESS_SUCCESS or pfn == NULL:
        raise DriverError("cuGetProcAddress", <int>cydriver.CUDA_ERROR_NOT_FOUND,
                          "CUDA_ERROR_NOT_FOUND",
                          f"the driver has no {name.decode()} (query result {<int>found})")
    return pfn


# Codes the nogil functions return (the Python wrappers raise the fitting error).
cdef enum:
    OWNED_ELSEWHERE = 1
    NOT_OWNER = 2
    OUT_OF_ORDER = 3
    TOO_DEEP = 4
    OTHER_DEVICE = 5
    POOL_EXHAUSTED = 6
    DRIVER_FAILED = 7
    ADMIT_CLOSED = 8     # the layout was closed (the wrappers raise ClosedError)
    ADMIT_WAIT = 9       # a close() of the layout is deciding: wait for it, then retry
    NOT_CURRENT = 10     # a set_context() enter's exit while its green context is not current

# What an exit had to undo on this thread's context stack (ContextStackWarning).
cdef enum:
    REPAIR_NONE = 0
    REPAIR_PUSHED = 1      # contexts pushed inside the partition were popped
    REPAIR_REPLACED = 2    # the partition's context had been replaced (cuCtxSetCurrent)
    REPAIR_POPPED = 3      # the partition's context had been popped already
    REPAIR_LOST = 4        # not even the context current at enter is on the stack any more

# The NULL stream, typed: the default stream of the current context in a ternary.
cdef cydriver.CUstream NULL_STREAM = NULL

cdef inline int _fail(Failure* failure, cydriver.CUresult err, const char* function) noexcept nogil:
    failure.error = err
    failure.function = function
    return DRIVER_FAILED


cdef inline int _enter_failed(PartState* p, bint claimed, Failure* failure,
                              cydriver.CUresult err, const char* function) noexcept nogil:
    """A driver call of enter failed: give up the ownership enter claimed."""
    if claimed:
        greenres_release(&p.owner)
    return _fail(failure, err, function)


cdef int enter_partition(PartState* p, cydriver.CUstream from_stream, bint resolve,
                         bint on_default, Failure* failure) noexcept nogil:
    """Make the partition current on this thread after the caller's stream's work so far.

    ``resolve``: find the caller's stream here (the partition's side of the enter this
    thread is in, else the legacy stream of the current context when it is the device's
    primary context, else none: nothing to order after). ``on_default``: the partition's
    side is the green context's default stream (NULL while it is current: the torch
    seed's set_context) instead of its own stream. Returns 0 or a code; on any failure
    nothing changed. The claim of the owner word admits the enter on the layout's lifetime
    (greenres_runtime.h, "lifetimes"): ADMIT_CLOSED or ADMIT_WAIT when the layout is closed
    or being closed; a nested enter owns the partition already, and no close can destroy
    it meanwhile."""
    cdef greenres_thread_state* t = greenres_this_thread()
    cdef uintptr_t me = greenres_token_of(t)
    cdef bint claimed = False
    cdef int depth, state
    cdef char has_from = 1
    cdef PartState* outer
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUcontext popped = NULL
    cdef cydriver.CUresult err
    if greenres_owner(&p.owner) != me:
        if not greenres_claim(&p.owner, me):
            if greenres_gate_state(p.gate) == GREENRES_CLOSED:
                return ADMIT_CLOSED
            return OWNED_ELSEWHERE
        state = greenres_gate_state(p.gate)
        if state != GREENRES_OPEN:
            greenres_release(&p.owner)
            return ADMIT_CLOSED if state == GREENRES_CLOSED else ADMIT_WAIT
        claimed = True
        p.owner_ident = greenres_thread_ident()
    depth = p.depth
    if depth >= GREENRES_MAX_NESTING or greenres_depth_of(t) >= GREENRES_MAX_NESTING:
        if claimed:
            greenres_release(&p.owner)
        return TOO_DEEP
    # The context current now is what exit restores if code inside changes the stack.
    err = greenres_hot.ctx_get_current(&current)
    if err != cydriver.CUDA_SUCCESS:
        return _enter_failed(p, claimed, failure, err, "cuCtxGetCurrent")
    if resolve:
        outer = <PartState*>greenres_top_of(t)
        if outer != NULL:
            if outer.device != p.device:
                # Events of one device cannot be recorded on another device's stream.
                if claimed:
                    greenres_release(&p.owner)
                return OTHER_DEVICE
            # the outer enter's side: its stream, or its default stream (NULL, while its
            # green context is current, as it is now)
            from_stream = outer.stream
            if outer.on_default[outer.depth - 1]:
                from_stream = NULL
        else:
            # The legacy stream of the device's primary context, when that is current. Any
            # other current context (another device's, a user context) cannot record this
            # partition's events: then there is no caller stream to order after, and
            # callers pass from_stream explicitly.
            from_stream = NULL
            has_from = current != NULL and current == p.primary
    if has_from:
        err = greenres_hot.event_record(p.enter_event, from_stream)
        if err != cydriver.CUDA_SUCCESS:
            return _enter_failed(p, claimed, failure, err, "cuEventRecord")
    err = greenres_hot.ctx_push_current(p.ctx)
    if err != cydriver.CUDA_SUCCESS:
        return _enter_failed(p, claimed, failure, err, "cuCtxPushCurrent")
    if has_from:
        # after the push: NULL is then the green context's default stream
        err = greenres_hot.stream_wait_event(NULL_STREAM if on_default else p.stream,
                                             p.enter_event, 0)
        if err != cydriver.CUDA_SUCCESS:
            greenres_hot.ctx_pop_current(&popped)
            return _enter_failed(p, claimed, failure, err, "cuStreamWaitEvent")
    p.from_streams[depth] = from_stream
    p.has_from[depth] = has_from
    p.on_default[depth] = on_default
    p.below[depth] = current
    p.depth = depth + 1
    greenres_push_on(t, p)
    if p.nvtx:
        nvtxDomainRangePushEx(greenres_nvtx_domain, &p.nvtx_range)
    return 0


cdef inline void _exit_bookkeeping(greenres_thread_state* t, PartState* p, int depth,
                                   void** unpinned) noexcept nogil:
    """The partition's context was popped: drop it from this thread's stack, and give up
    ownership when that was the outermost enter, handing the reference that pinned it to
    the caller (who drops it): once ownership is given up, another thread may enter and
    pin it again at once."""
    greenres_pop_on(t)
    if p.nvtx:
        nvtxDomainRangePop(greenres_nvtx_domain)
    p.depth = depth
    if depth == 0:
        unpinned[0] = p.entered_by
        p.entered_by = NULL
        greenres_release(&p.owner)


cdef int _restore_stack(PartState* p, cydriver.CUcontext popped, cydriver.CUcontext below,
                        StackRepair* repair, Failure* failure) noexcept nogil:
    """The partition's context was not on top of this thread's context stack at exit (and
    ``popped`` was popped instead, NULL when nothing could be popped): code inside the
    partition pushed contexts without popping them, replaced the partition's context with
    cuCtxSetCurrent, or popped it. Bring the stack back to what it was at enter: ``below``
    (the context current then) current again and nothing of the partition's left on it."""
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUresult err
    cdef int i
    repair.found = popped
    repair.popped = 1 if popped != NULL else 0
    if popped == NULL:
        repair.kind = REPAIR_POPPED if below == NULL else REPAIR_LOST
        return 0
    for i in range(GREENRES_MAX_NESTING):
        err = greenres_hot.ctx_get_current(&current)
        if err != cydriver.CUDA_SUCCESS:
            return _fail(failure, err, "cuCtxGetCurrent")
        if current == p.ctx:
            # What was popped had been pushed over the partition's context: pop that too.
            err = greenres_hot.ctx_pop_current(&popped)
            if err != cydriver.CUDA_SUCCESS:
                return _fail(failure, err, "cuCtxPopCurrent")
            repair.kind = REPAIR_PUSHED
            return 0
        if current == below:
            # What was popped had replaced the partition's context (cuCtxSetCurrent).
            repair.kind = REPAIR_REPLACED
            return 0
        if popped == below:
            # What was popped is the context that was under the partition's: the
            # partition's context had been popped inside already. Put it back.
            err = greenres_hot.ctx_push_current(popped)
            if err != cydriver.CUDA_SUCCESS:
                return _fail(failure, err, "cuCtxPushCurrent")
            repair.popped -= 1
            repair.kind = REPAIR_POPPED
            return 0
        err = greenres_hot.ctx_pop_current(&popped)
        if err != cydriver.CUDA_SUCCESS:
            repair.kind = REPAIR_LOST  # the stack ran out before `below` came back
            return 0
        repair.popped += 1
    repair.kind = REPAIR_LOST
    return 0


cdef int exit_partition(PartState* p, Failure* failure, StackRepair* repair,
                        void** unpinned) noexcept nogil:
    """Undo the innermost enter of ``p`` on this thread: the caller's stream waits for the
    partition's stream, the partition's context is popped and the thread's context stack is
    as it was at enter (repaired when code inside changed it: ``repair`` says how). Returns
    0 or a code; on a failure nothing changed (a failed final wait pushes the context back),
    so the exit can be retried. The outermost exit stores the reference that pinned the
    partition in ``*unpinned``. Owning the partition is the exit's admission: no close can
    destroy it until the owner word is given up, after the last driver call."""
    cdef greenres_thread_state* t = greenres_this_thread()
    cdef uintptr_t me = greenres_token_of(t)
    cdef int depth
    cdef char has_from
    cdef cydriver.CUcontext popped = NULL
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUresult err
    cdef int code
    repair.kind = REPAIR_NONE
    if greenres_owner(&p.owner) != me or p.depth == 0:
        if greenres_gate_state(p.gate) == GREENRES_CLOSED:
            return ADMIT_CLOSED
        return NOT_OWNER
    if greenres_top_of(t) != <void*>p:
        return OUT_OF_ORDER
    depth = p.depth - 1
    has_from = p.has_from[depth]
    if p.on_default[depth]:
        # The default stream is NULL only while the green context is current: if code
        # inside changed the stack, the partition's work cannot be named; change nothing
        # (the seed asserts that the popped context is its own).
        err = greenres_hot.ctx_get_current(&current)
        if err != cydriver.CUDA_SUCCESS:
            return _fail(failure, err, "cuCtxGetCurrent")
        if current != p.ctx:
            return NOT_CURRENT
    if has_from:
        err = greenres_hot.event_record(p.exit_event,
                                        NULL_STREAM if p.on_default[depth] else p.stream)
        if err != cydriver.CUDA_SUCCESS:
            return _fail(failure, err, "cuEventRecord")
    err = greenres_hot.ctx_pop_current(&popped)
    if err != cydriver.CUDA_SUCCESS:
        # A failed pop changes nothing, unless there was nothing of the partition's to
        # pop (the stack was emptied inside): then that is what is repaired.
        if greenres_hot.ctx_get_current(&current) != cydriver.CUDA_SUCCESS or current != NULL:
            return _fail(failure, err, "cuCtxPopCurrent")
        popped = NULL
    if popped != p.ctx:
        code = _restore_stack(p, popped, p.below[depth], repair, failure)
        if code:
            return code
    if has_from:
        # After the pop: a NULL caller stream is the legacy stream of the context current
        # under the partition.
        err = greenres_hot.stream_wait_event(p.from_streams[depth], p.exit_event, 0)
        if err != cydriver.CUDA_SUCCESS:
            # Undo the pop so that a failed exit changes nothing (the partition stays
            # entered and current; exit again to retry). After a repair, or if the context
            # cannot be pushed back, the exit stands, so that greenres agrees with the driver.
            if repair.kind != REPAIR_NONE \
                    or greenres_hot.ctx_push_current(p.ctx) != cydriver.CUDA_SUCCESS:
                _exit_bookkeeping(t, p, depth, unpinned)
            return _fail(failure, err, "cuStreamWaitEvent")
    _exit_bookkeeping(t, p, depth, unpinned)
    return 0


cdef int pooled_handoff(EventPool* pool, cydriver.CUstream src, cydriver.CUstream dst,
                        const nvtxEventAttributes_t* mark, Failure* failure) noexcept nogil:
    """``dst`` waits for the work queued on ``src`` so far, through a pooled event; an NVTX
    ``mark`` (NULL: none) says so once it is done.

    Stream-level calls only (cuEventRecord + cuStreamWaitEvent), so it is capture-safe; the
    first handoff through a slot also makes its event (_make_pool_event: no stream call
    either). Returns 0, POOL_EXHAUSTED or DRIVER_FAILED. The caller admitted the operation
    on the layout that owns the pool."""
    cdef uintptr_t me = greenres_thread_token()
    cdef int start = <int>((me >> 6) % POOL_SIZE)
    cdef int i, slot = -1
    cdef cydriver.CUresult err
    for i in range(POOL_SIZE):
        if greenres_claim(&pool.slots[(start + i) % POOL_SIZE].busy, me):
            slot = (start + i) % POOL_SIZE
            break
    if slot < 0:
        return POOL_EXHAUSTED
    if pool.events[slot] == NULL and _make_pool_event(pool, slot, failure) != 0:
        greenres_release(&pool.slots[slot].busy)
        return DRIVER_FAILED
    err = greenres_hot.event_record(pool.events[slot], src)
    if err != cydriver.CUDA_SUCCESS:
        greenres_release(&pool.slots[slot].busy)
        return _fail(failure, err, "cuEventRecord")
    err = greenres_hot.stream_wait_event(dst, pool.events[slot], 0)
    greenres_release(&pool.slots[slot].busy)
    if err != cydriver.CUDA_SUCCESS:
        return _fail(failure, err, "cuStreamWaitEvent")
    if mark != NULL:
        nvtxDomainMarkEx(greenres_nvtx_domain, mark)
    return 0


cdef int _make_pool_event(EventPool* pool, int slot, Failure* failure) noexcept nogil:
    """Make the event of the claimed ``slot`` in the pool's primary context, pushed over
    whatever is current and popped again. Only the slot's claimant writes its event; the
    release of the claim publishes it to the next claimant, and the layout's close (after
    every admission ended) destroys it. Returns 0 or DRIVER_FAILED (the slot stays empty,
    or keeps the event made before a failed pop; the context stack is left as found)."""
    cdef cydriver.CUevent event = NULL
    cdef cydriver.CUcontext popped = NULL
    cdef cydriver.CUresult pop_err
    cdef cydriver.CUresult err = greenres_hot.ctx_push_current(pool.primary)
    if err != cydriver.CUDA_SUCCESS:
        return _fail(failure, err, "cuCtxPushCurrent")
    err = greenres_hot.event_create(&event, cydriver.CU_EVENT_DISABLE_TIMING)
    pop_err = greenres_hot.ctx_pop_current(&popped)
    if pop_err != cydriver.CUDA_SUCCESS:
        _pop_if_current(pool.primary)  # leave the stack as it was found
    if err != cydriver.CUDA_SUCCESS:
        return _fail(failure, err, "cuEventCreate")
    pool.events[slot] = event
    if pop_err != cydriver.CUDA_SUCCESS:
        return _fail(failure, pop_err, "cuCtxPopCurrent")
    return 0


cdef int _raise_failure(Failure* failure) except -1:
    """Raise the DriverError a nogil path recorded."""
    raise DriverError(failure.function.decode(), <int>failure.error,
                      _error_name(failure.error), _error_string(failure.error))


# ----------------------------------------------------------------------------- messages


def _thread_rule_error(str name, int code):
    if code == OWNED_ELSEWHERE:
        return ThreadOwnershipError(
            f"partition {name!r} is current on another thread; a green context can be "
            "current on one thread at a time (exit it there first)"
        )
    if code == NOT_OWNER:
        return ThreadOwnershipError(
            f"partition {name!r} was not entered on this thread; exit it on the thread that "
            "entered it (pop_context() on the thread that called set_context())"
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
    if code == OTHER_DEVICE:
        return UsageError(
            f"partition {name!r} cannot be entered inside a partition of another device "
            "without from_stream: events of one device cannot order another device's "
            "stream (exit the outer partition first, or pass from_stream= a stream of "
            "this partition's device)"
        )
    if code == NOT_CURRENT:
        return UsageError(
            f"the current context is not the green context of partition {name!r}: code after "
            "set_context() changed this thread's context stack (pop what it pushed first); "
            "pop_context() changed nothing"
        )
    return UsageError(f"internal error {code}")


def _repair_warning(str name, int kind, int popped, uintptr_t found):
    """The ContextStackWarning of an exit that repaired the thread's context stack."""
    what = {
        REPAIR_PUSHED: f"popped {popped} context{'s' if popped != 1 else ''} pushed inside "
                       "it and not popped",
        REPAIR_REPLACED: f"its context had been replaced (cuCtxSetCurrent) by context "
                         f"0x{found:x}; popped that",
        REPAIR_POPPED: "its context had been popped inside it already",
        REPAIR_LOST: "the context stack had been emptied inside it; the context current "
                     "at enter is not current again",
    }.get(kind, f"repair {kind}")
    return ContextStackWarning(
        f"exit of partition {name!r} restored this thread's context stack: {what}"
    )


def _thread_name(unsigned long ident):
    """``'name' (ident N)`` of a live Python thread, else ``ident N``."""
    import threading

    for thread in threading.enumerate():
        if thread.ident == ident:
            return f"{thread.name!r} (ident {ident})"
    return f"ident {ident}"
