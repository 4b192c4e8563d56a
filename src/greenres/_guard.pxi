# Included by _driver.pyx (one extension module; one file per concept).
# ContextGuard (GreenContext.guard()): enter a partition around code of a foreign library
# that pushes contexts and does not pop them (NCCL is known to), and give the thread its
# whole context stack back afterwards, exactly, with a report of what was undone.
#
# The driver has no call that reads a thread's context stack, only its top: the guard
# reads the whole stack by popping it and pushing it back (a few driver calls per context
# on it, so a guard is for initialisation and foreign calls, not for the hot path; `with
# part:` repairs the common cases at the cost of one pop).

# More contexts than this on one thread's stack is taken for a runaway push loop.
_GUARD_MAX_STACK = 4096


cdef int _read_stack(list out) except -1:
    """Append this thread's context stack to ``out`` (top first, as ints) and leave the
    stack as it was. On a failure the contexts popped so far are pushed back first."""
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUcontext popped = NULL
    cdef cydriver.CUresult err = cydriver.CUDA_SUCCESS
    cdef const char* where = NULL
    taken = []
    while len(taken) < _GUARD_MAX_STACK:
        with nogil:
            err = cydriver.cuCtxGetCurrent(&current)
        if err != cydriver.CUDA_SUCCESS:
            where = "cuCtxGetCurrent"
            break
        if current == NULL:
            break
        with nogil:
            err = cydriver.cuCtxPopCurrent(&popped)
        if err != cydriver.CUDA_SUCCESS:
            where = "cuCtxPopCurrent"
            break
        taken.append(<uintptr_t>popped)
    try:
        _push_all(taken)
    finally:
        if where != NULL:
            check(err, where)
    if len(taken) == _GUARD_MAX_STACK:
        raise UsageError(f"this thread's context stack holds more than {_GUARD_MAX_STACK} "
                         "contexts; a guard does not read it")
    out.extend(taken)
    return 0


cdef int _pop_all(list out) except -1:
    """Pop this thread's whole context stack into ``out`` (top first)."""
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUcontext popped = NULL
    while len(out) < _GUARD_MAX_STACK:
        with nogil:
            check(cydriver.cuCtxGetCurrent(&current), "cuCtxGetCurrent")
        if current == NULL:
            return 0
        with nogil:
            check(cydriver.cuCtxPopCurrent(&popped), "cuCtxPopCurrent")
        out.append(<uintptr_t>popped)
    raise UsageError(f"this thread's context stack holds more than {_GUARD_MAX_STACK} "
                     "contexts; a guard does not read it")


cdef int _push_all(list top_first) except -1:
    """Push ``top_first`` back (its last entry first), so that it is the stack's top part."""
    cdef cydriver.CUcontext ctx
    for value in reversed(top_first):
        ctx = <cydriver.CUcontext><uintptr_t>value
        with nogil:
            check(cydriver.cuCtxPushCurrent(ctx), "cuCtxPushCurrent")
    return 0


class StackReport:
    """What a :class:`ContextGuard` found on this thread's context stack when it ended,
    and what it did about it. Contexts are ints (``CUcontext`` handles), top first.

    Attributes:
        expected: the stack the guard restored: the partition's context over the stack
            at entry.
        found: the stack as the guarded code left it.
        left_pushed: contexts on ``found`` that the guard popped (pushed and not popped).
        pushed_back: contexts of ``expected`` that were gone and the guard pushed back.
    """

    __slots__ = ("expected", "found", "left_pushed", "pushed_back")

    def __init__(self, expected, found):
        self.expected = tuple(expected)
        self.found = tuple(found)
        # The bottom part both share was left alone; the rest differs.
        same = 0
        while (same < len(self.expected) and same < len(self.found)
               and self.expected[-1 - same] == self.found[-1 - same]):
            same += 1
        changed_found = self.found[:len(self.found) - same]
        changed_expected = self.expected[:len(self.expected) - same]
        self.left_pushed = tuple(c for c in changed_found if c not in changed_expected)
        self.pushed_back = tuple(c for c in changed_expected if c not in changed_found)

    @property
    def clean(self):
        """True when the guarded code left the stack as it found it."""
        return self.expected == self.found

    def __repr__(self):
        def hexes(values):
            return "[" + ", ".join(f"0x{v:x}" for v in values) + "]"
        return (f"StackReport(clean={self.clean}, left_pushed={hexes(self.left_pushed)}, "
                f"pushed_back={hexes(self.pushed_back)})")


class ContextGuard:
    """``with part.guard() as guard:`` enters ``part`` and, at the end, restores this
    thread's whole context stack to what it was (the partition's context over the stack
    at entry) before exiting the partition, whatever the code inside pushed, popped or
    replaced. ``guard.report`` (a :class:`StackReport`) says what was undone; a
    ContextStackWarning says it too when anything was.

    Made by :meth:`GreenContext.guard`. One use per guard, on one thread.

    Attributes:
        partition: the :class:`GreenContext` it enters.
        report: the :class:`StackReport` of the end of the block (None before it).
        warn: whether a ContextStackWarning says what was undone.
    """

    __slots__ = ("_below", "_from_stream", "_thread", "partition", "report", "warn")

    def __init__(self, partition, from_stream=None, warn=True):
        self.partition = partition
        self.report = None
        self.warn = warn
        self._from_stream = from_stream
        self._below = None
        self._thread = None

    def __enter__(self):
        import threading

        if self._below is not None:
            raise UsageError("a ContextGuard is used once: call part.guard() again")
        below = []
        _read_stack(below)
        self.partition.enter(from_stream=self._from_stream)
        self._below = below
        self._thread = threading.get_ident()
        return self

    def __exit__(self, exc_type, exc, tb):
        import threading

        if self._thread != threading.get_ident():
            raise ThreadOwnershipError(
                f"the guard of partition {self.partition.name!r} was entered on another "
                "thread; exit it there")
        found = []
        expected = [self.partition.context_handle, *self._below]
        popped_all = False
        try:
            _pop_all(found)
            popped_all = True
            _push_all(expected)
        except DriverError as error:
            # One failed call of the restore: put the stack back as the guarded code left
            # it (when the failure was in reading it), then exit through the partition's
            # own repair (which pops what is over its context, or puts back the context
            # under it), so that the partition is not left entered; raise the failure.
            if not popped_all:
                _push_all(found)
            self.report = StackReport(expected, found)
            self.partition.__exit__(type(error), error, error.__traceback__)
            raise
        self.report = StackReport(expected, found)
        if not self.report.clean and self.warn:
            warnings.warn(ContextStackWarning(
                f"the guard of partition {self.partition.name!r} restored this thread's "
                f"context stack: {self.report!r}"), stacklevel=2)
        return self.partition.__exit__(exc_type, exc, tb)
