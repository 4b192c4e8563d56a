# cython: language_level=3
"""The only module of greenres that calls the CUDA driver.

Every driver call goes through :func:`check`, which turns a failing ``CUresult`` into
:class:`greenres.DriverError` naming the function, the CUDA error and its text.

Ownership: a :class:`Layout` and its :class:`GreenContext` partitions share one private
``_LayoutCore`` that owns every native handle of the layout (green contexts, their
streams, pooled events, the primary-context retain). The core is freed when the layout is
closed, or when the last Python object referring to it goes; its free order is always
streams, events, graphs, green contexts, then the primary context.

Hot paths (``enter_partition``, ``exit_partition``, ``pooled_handoff``) are nogil C
functions over a plain ``PartState`` struct: no Python object is touched between their
driver calls and no lock is taken; a partition's owner thread is one atomic word.
"""

import warnings
import weakref

from cuda.bindings cimport cydriver
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from greenres.devices import documented_granularity
from greenres.errors import (
    ClosedError,
    DriverError,
    DriverTooOldError,
    PlanError,
    ThreadOwnershipError,
    UsageError,
)

# ----------------------------------------------------------------------------- errors


cdef str _error_name(cydriver.CUresult err):
    cdef const char* text = NULL
    try:
        if cydriver.cuGetErrorName(err, &text) == cydriver.CUDA_SUCCESS and text != NULL:
            return text.decode()
    except Exception:  # a driver without cuGetErrorName: still report the code
        pass
    return f"CUresult({<int>err})"


cdef str _error_string(cydriver.CUresult err):
    cdef const char* text = NULL
    try:
        if cydriver.cuGetErrorString(err, &text) == cydriver.CUDA_SUCCESS and text != NULL:
            return text.decode()
    except Exception:
        pass
    return "unknown error"


cdef int _raise_driver_error(cydriver.CUresult err, const char* function) except -1:
    raise DriverError(function.decode(), <int>err, _error_name(err), _error_string(err))


cdef int check(cydriver.CUresult err, const char* function) except -1 nogil:
    """Raise DriverError for a failed driver call; takes the GIL only on failure."""
    if err == cydriver.CUDA_SUCCESS:
        return 0
    with gil:
        return _raise_driver_error(err, function)


def _version_text(int version):
    return f"{version // 1000}.{version % 1000 // 10}"


# ----------------------------------------------------------------------------- arguments
# Validation at the public entry points, with messages that name the parameter, the rule
# and the value. Cython's own coercions ("an integer is required", bint accepting any
# object, int() of a float) are never relied on for user input.


def _require_int(str name, value):
    """``value`` as an int: ints and integer-like objects (``__index__``), never bools,
    floats or strings."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name!r} must be an int (got {value!r})")
    return value.__index__()


def _require_bool(str name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name!r} must be a bool (got {value!r})")
    return value


cdef Device _device_of(str name, object device):
    """A Device from a Device or an ordinal."""
    if isinstance(device, Device):
        return <Device>device
    if isinstance(device, bool) or not hasattr(type(device), "__index__"):
        raise TypeError(
            f"{name!r} must be a device ordinal (int) or a greenres.Device (got {device!r})"
        )
    return Device(device.__index__())


# ----------------------------------------------------------------------------- driver


cdef bint _initialized = False
cdef bint _resolved = False
cdef greenres_split_fn _structured_split = NULL
cdef greenres_green_id_fn _green_ctx_get_id = NULL

# Flags of the 12.4 API, spelled as numbers so the module reads the same on every header.
cdef unsigned int _SPLIT_IGNORE_SM_COSCHEDULING = 0x1
cdef unsigned int _GROUP_BACKFILL = 0x1


cdef int _ensure_init() except -1:
    global _initialized
    if not _initialized:
        with nogil:
            check(cydriver.cuInit(0), "cuInit")
        _initialized = True
    return 0


cdef void* _proc_address(const char* name, int version) except? NULL:
    cdef void* fn = NULL
    cdef cydriver.CUdriverProcAddressQueryResult status
    cdef cydriver.CUresult err = cydriver.cuGetProcAddress(
        name, &fn, version, cydriver.CU_GET_PROC_ADDRESS_DEFAULT, &status)
    if err != cydriver.CUDA_SUCCESS or status != cydriver.CU_GET_PROC_ADDRESS_SUCCESS:
        return NULL
    return fn


cdef int _resolve_newer_functions() except -1:
    """Functions newer than the 12.9 header are looked up in the loaded driver once."""
    global _resolved, _structured_split, _green_ctx_get_id
    if _resolved:
        return 0
    _ensure_init()
    _structured_split = <greenres_split_fn>_proc_address("cuDevSmResourceSplit", 13010)
    _green_ctx_get_id = <greenres_green_id_fn>_proc_address("cuGreenCtxGetId", 13000)
    _resolved = True
    return 0


def driver_version():
    """The loaded CUDA driver's version as an int, e.g. 13010 for 13.1."""
    cdef int version = 0
    check(cydriver.cuDriverGetVersion(&version), "cuDriverGetVersion")
    return version


def device_count():
    """How many CUDA devices the loaded driver reports."""
    cdef int count = 0
    _ensure_init()
    check(cydriver.cuDeviceGetCount(&count), "cuDeviceGetCount")
    return count


def _too_old(feature, int needed):
    cdef int loaded = driver_version()
    return DriverTooOldError(
        f"{feature} needs CUDA driver {_version_text(needed)} ({needed}) or newer; the loaded "
        f"driver is {_version_text(loaded)} ({loaded})"
    )


class SmResource:
    """The SM resource of a device: ``count`` SMs, split in groups of at least
    ``min_partition_size`` SMs, sized in multiples of ``alignment``."""

    __slots__ = ("alignment", "count", "min_partition_size")

    def __init__(self, count, min_partition_size, alignment):
        self.count = count
        self.min_partition_size = min_partition_size
        self.alignment = alignment

    def __repr__(self):
        return (
            f"SmResource(count={self.count}, min_partition_size={self.min_partition_size}, "
            f"alignment={self.alignment})"
        )

    def __eq__(self, other):
        if not isinstance(other, SmResource):
            return NotImplemented
        return (self.count, self.min_partition_size, self.alignment) == (
            other.count, other.min_partition_size, other.alignment)

    def __hash__(self):
        return hash((self.count, self.min_partition_size, self.alignment))


cdef class Device:
    """A CUDA device, read through the driver: ``Device(0)``."""

    cdef readonly int ordinal
    cdef cydriver.CUdevice _device

    def __init__(self, ordinal=0):
        cdef int count = 0
        ordinal = _require_int("ordinal", ordinal)
        _ensure_init()
        check(cydriver.cuDeviceGetCount(&count), "cuDeviceGetCount")
        if ordinal < 0 or ordinal >= count:
            raise ValueError(f"'ordinal' must be in [0, {count}) (got {ordinal})")
        check(cydriver.cuDeviceGet(&self._device, ordinal), "cuDeviceGet")
        self.ordinal = ordinal

    cdef int _attribute(self, cydriver.CUdevice_attribute attribute) except? -1:
        cdef int value = 0
        check(cydriver.cuDeviceGetAttribute(&value, attribute, self._device),
              "cuDeviceGetAttribute")
        return value

    @property
    def handle(self):
        """The ``CUdevice`` as an int."""
        return <int>self._device

    @property
    def name(self):
        """The product name the driver reports, e.g. ``"NVIDIA H100 80GB HBM3"``."""
        cdef char buffer[256]
        memset(buffer, 0, sizeof(buffer))
        check(cydriver.cuDeviceGetName(buffer, sizeof(buffer) - 1, self._device),
              "cuDeviceGetName")
        return buffer.decode()

    @property
    def compute_capability(self):
        """``(major, minor)``."""
        return (
            self._attribute(cydriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            self._attribute(cydriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        )

    @property
    def sm_count(self):
        """Number of streaming multiprocessors."""
        return self._attribute(cydriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)

    @property
    def total_memory(self):
        """Device memory in bytes."""
        cdef size_t nbytes = 0
        check(cydriver.cuDeviceTotalMem(&nbytes, self._device), "cuDeviceTotalMem")
        return nbytes

    cdef int _sm_resource(self, cydriver.CUdevResource* resource) except -1:
        memset(resource, 0, sizeof(cydriver.CUdevResource))
        with nogil:
            check(cydriver.cuDeviceGetDevResource(self._device, resource,
                                                  cydriver.CU_DEV_RESOURCE_TYPE_SM),
                  "cuDeviceGetDevResource")
        return 0

    @property
    def sm_resource(self):
        """The device's :class:`SmResource` (count, minimum partition size, alignment)."""
        cdef cydriver.CUdevResource resource
        self._sm_resource(&resource)
        cdef const greenres_sm_prefix* sm = greenres_sm_prefix_of(&resource)
        minimum, alignment = sm.minSmPartitionSize, sm.smCoscheduledAlignment
        if minimum == 0 or alignment == 0:
            # drivers older than 13.0 do not report it: use the documented guideline
            minimum, alignment = documented_granularity(self.compute_capability)
        return SmResource(sm.smCount, minimum, alignment)

    cdef unsigned int _group_size(self, unsigned int flags, unsigned int min_count) except 0:
        """The SMs of the first group a split with ``flags`` and ``min_count`` makes.

        A split whose results are never given to a green context allocates nothing, so this
        measures the driver's granularity without side effects."""
        cdef cydriver.CUdevResource device_resource
        cdef unsigned int groups = 0
        cdef unsigned int size
        cdef cydriver.CUdevResource* results = NULL
        self._sm_resource(&device_resource)
        with nogil:
            check(cydriver.cuDevSmResourceSplitByCount(NULL, &groups, &device_resource, NULL,
                                                       flags, min_count),
                  "cuDevSmResourceSplitByCount")
        if groups == 0:
            raise PlanError(f"the device cannot make one group of {min_count} SMs")
        results = <cydriver.CUdevResource*>calloc(groups, sizeof(cydriver.CUdevResource))
        if results == NULL:
            raise MemoryError()
        try:
            with nogil:
                check(cydriver.cuDevSmResourceSplitByCount(results, &groups, &device_resource,
                                                           NULL, flags, min_count),
                      "cuDevSmResourceSplitByCount")
            size = greenres_sm_prefix_of(&results[0]).smCount
        finally:
            free(results)
        return size

    def sm_facts(self):
        """The device's :class:`greenres.facts.SmFacts`, measured through the driver.

        The co-scheduled granularity is what the device resource reports (or the documented
        table on drivers older than 13.0); the un-co-scheduled granularity is measured with
        two split queries using ``CU_DEV_SM_RESOURCE_SPLIT_IGNORE_SM_COSCHEDULING``."""
        from greenres.facts import SmFacts

        resource = self.sm_resource
        loose_min = self._group_size(_SPLIT_IGNORE_SM_COSCHEDULING, 1)
        loose_alignment = self._group_size(_SPLIT_IGNORE_SM_COSCHEDULING, loose_min + 1)
        loose_alignment -= loose_min
        version = driver_version()
        return SmFacts(
            device_name=self.name,
            compute_capability=self.compute_capability,
            sm_count=resource.count,
            min_partition_size=resource.min_partition_size,
            alignment=resource.alignment,
            uncoscheduled_min_partition_size=loose_min,
            uncoscheduled_alignment=max(loose_alignment, 1),
            driver_version=version,
            structured_split=structured_split_available(),
            total_memory=self.total_memory,
        )

    def __eq__(self, other):
        if not isinstance(other, Device):
            return NotImplemented
        return self.ordinal == (<Device>other).ordinal

    def __hash__(self):
        return hash(("greenres.Device", self.ordinal))

    def __repr__(self):
        return f"<greenres.Device {self.ordinal}: {self.name}>"


def structured_split_available():
    """True when the loaded driver is 13.1 or newer and provides ``cuDevSmResourceSplit``."""
    _resolve_newer_functions()
    return driver_version() >= 13010 and _structured_split != NULL


# ----------------------------------------------------------------------------- hot paths

# Misuse codes the nogil functions return (the Python wrappers raise the fitting error).
cdef enum:
    OWNED_ELSEWHERE = 1
    NOT_OWNER = 2
    OUT_OF_ORDER = 3
    TOO_DEEP = 4
    STACK_CHANGED = 5
    POOL_EXHAUSTED = 6


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
                if claimed:
                    greenres_release(&p.owner)
                return check(err, "cuCtxGetCurrent")
            # The legacy stream of the device's primary context, when that is current. Any
            # other current context (another device's, a user context) cannot record this
            # partition's events: then there is no caller stream to order after, and
            # callers pass from_stream explicitly.
            from_stream = NULL
            has_from = current != NULL and current == p.primary
    if has_from:
        err = cydriver.cuEventRecord(p.enter_event, from_stream)
        if err != cydriver.CUDA_SUCCESS:
            if claimed:
                greenres_release(&p.owner)
            return check(err, "cuEventRecord")
    err = cydriver.cuCtxPushCurrent(p.ctx)
    if err != cydriver.CUDA_SUCCESS:
        if claimed:
            greenres_release(&p.owner)
        return check(err, "cuCtxPushCurrent")
    if has_from:
        err = cydriver.cuStreamWaitEvent(p.stream, p.enter_event, 0)
        if err != cydriver.CUDA_SUCCESS:
            cydriver.cuCtxPopCurrent(&popped)
            if claimed:
                greenres_release(&p.owner)
            return check(err, "cuStreamWaitEvent")
    p.from_streams[depth] = from_stream
    p.has_from[depth] = has_from
    p.depth = depth + 1
    greenres_stack_push(p)
    return 0


cdef int exit_partition(PartState* p) except -1 nogil:
    """Undo the innermost enter of ``p`` on this thread: the caller's stream waits for the
    partition's stream, and the partition's context is popped. Returns 0, a misuse code, or
    -1 with a DriverError set."""
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
    greenres_stack_pop()
    p.depth = depth
    if depth == 0:
        greenres_release(&p.owner)
    if has_from:
        err = cydriver.cuStreamWaitEvent(p.from_streams[depth], p.exit_event, 0)
        if err != cydriver.CUDA_SUCCESS:
            return check(err, "cuStreamWaitEvent")
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
    if isinstance(stream, Stream):
        return (<Stream>stream)._checked_handle()
    if type(stream) is int:  # the common raw-handle case, without an attribute lookup
        value = stream
    else:
        protocol = getattr(stream, "__cuda_stream__", None)
        if protocol is not None:
            version_and_handle = protocol() if callable(protocol) else protocol
            value = version_and_handle[1]
            if not isinstance(value, bool) and hasattr(type(value), "__index__"):
                value = value.__index__()
        elif isinstance(stream, bool):
            value = None
        elif hasattr(type(stream), "__index__"):
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


# ----------------------------------------------------------------------------- layout core


cdef class _Request:
    """One partition to create, normalised from a PlannedPartition."""
    cdef public str name
    cdef public int sm_count, result_sm_count, groups, streams, priority
    cdef public bint includes_remainder, is_remainder
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
    """(requests, mechanism, group_size, split_group_count, coscheduling, backfill)."""
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
        r.is_remainder = pp.is_remainder
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
            _resolve_newer_functions()
            if _structured_split == NULL or driver_version() < 13010:
                raise _too_old("the structured split (cuDevSmResourceSplit)", 13010)
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
    cdef bint _closed
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
        if isinstance(plan_or_counts, dict) or (
                hasattr(plan_or_counts, "items") and not hasattr(plan_or_counts, "partitions")
                and not _is_modal(plan_or_counts)):
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
            except BaseException:
                _pop_if_current(core.primary)
                raise
            try:
                _pop_context()
            except BaseException:
                _pop_if_current(core.primary)
                raise
        except BaseException:
            # Free what was made, streams before green contexts, then re-raise.
            for parts in modes.values():
                for p in parts:
                    (<GreenContext>p)._closed = True
            core.release()
            raise
        layout = Layout.__new__(Layout)
        layout._core = core
        layout.device = dev
        layout._plan = plan_or_counts
        layout._modes = modes
        layout._closed = False
        layout._select(default)
        for parts in modes.values():
            for p in parts:
                (<GreenContext>p)._layout_ref = weakref.ref(layout)
        return layout

    cdef _select(self, mode):
        self._mode = mode
        self._current = self._modes[mode]
        self._by_name = {(<GreenContext>p).name: p for p in self._current}

    cdef _check_open(self):
        if self._closed:
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
        return self._closed

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
            KeyError: for an unknown mode (or any mode of a layout made from one Plan).
            ThreadOwnershipError: when a partition of the old mode is entered on some
            thread.
        """
        cdef GreenContext p
        self._check_open()
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
        if self._closed:
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
        for parts in self._modes.values():
            for p in parts:
                (<GreenContext>p)._closed = True
        self._core.release()
        self._closed = True

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        if self._core is not None and not self._closed and not self._core.closed:
            try:
                warnings.warn(
                    "unclosed greenres.Layout: call close() or use 'with'",
                    ResourceWarning, source=None)
            except BaseException:
                pass
            # The core (shared with partitions and streams still referenced) frees the
            # handles when the last of them goes.

    def __repr__(self):
        state = "closed" if self._closed else ", ".join(
            f"{p.name}={p.sm_count}" for p in self._current)
        mode = f" mode={self._mode!r}" if self._mode is not None else ""
        return f"<greenres.Layout device={self.device.ordinal}{mode} [{state}]>"


cdef class GreenContext:
    """One partition: a green context on a disjoint set of SMs, with its streams.

    Made by :meth:`Layout.create`. ``with part:`` makes it current on this thread (see
    :meth:`enter`).
    """

    cdef _LayoutCore _core
    cdef int _index
    cdef readonly str name
    cdef readonly int sm_count
    cdef readonly Device device
    cdef readonly object planned_partition
    cdef readonly object plan
    cdef Stream _stream
    cdef list _extra_streams
    cdef bint _closed
    cdef object _layout_ref
    cdef object _scope         # the reusable object enter() returns
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "greenres.GreenContext objects are made by greenres.Layout.create(plan); "
            "get one with layout['name']"
        )

    cdef _init(self, _LayoutCore core, int index, Device device, _Request r, object plan,
               int sm_count):
        self._core = core
        self._index = index
        self.name = r.name
        self.sm_count = sm_count
        self.device = device
        self.planned_partition = r.planned
        self.plan = plan
        self._closed = False
        self._extra_streams = []
        self._layout_ref = None
        s = Stream.__new__(Stream)
        (<Stream>s)._init(core, self, core.states[index].stream, r.priority, False)
        self._stream = s

    cdef inline PartState* _state(self):
        return self._core.states[self._index]

    cdef inline int _check_open(self) except -1:
        if self._closed or self._core.closed:
            raise ClosedError(f"partition {self.name!r} is closed (its layout was closed)")
        return 0

    cdef Stream _make_stream(self, int priority):
        cdef cydriver.CUstream handle = NULL
        cdef cydriver.CUgreenCtx green = self._state().green
        cdef int actual = priority
        with nogil:
            check(cydriver.cuGreenCtxStreamCreate(&handle, green,
                                                  cydriver.CU_STREAM_NON_BLOCKING, priority),
                  "cuGreenCtxStreamCreate")
        self._core.extra_streams[self._index].add(<uintptr_t>handle)
        try:
            with nogil:
                check(cydriver.cuStreamGetPriority(handle, &actual), "cuStreamGetPriority")
        except BaseException:
            self._core.extra_streams[self._index].discard(<uintptr_t>handle)
            with nogil:
                cydriver.cuStreamDestroy(handle)
            raise
        s = Stream.__new__(Stream)
        (<Stream>s)._init(self._core, self, handle, actual, True)
        return s

    @property
    def layout(self):
        """The Layout this partition belongs to (None once the layout object is gone)."""
        return self._layout_ref() if self._layout_ref is not None else None

    @property
    def closed(self):
        """True once the layout was closed."""
        return self._closed or self._core.closed

    @property
    def handle(self):
        """The ``CUgreenCtx`` as an int."""
        self._check_open()
        return <uintptr_t>self._state().green

    @property
    def context_handle(self):
        """The ``CUcontext`` of the green context (``cuCtxFromGreenCtx``) as an int."""
        self._check_open()
        return <uintptr_t>self._state().ctx

    @property
    def id(self):
        """The driver's unique id of the green context (``cuGreenCtxGetId``, CUDA 13.0+)."""
        cdef unsigned long long value = 0
        cdef cydriver.CUgreenCtx green
        self._check_open()
        _resolve_newer_functions()
        if _green_ctx_get_id == NULL:
            raise _too_old("GreenContext.id (cuGreenCtxGetId)", 13000)
        green = self._state().green
        with nogil:
            check(_green_ctx_get_id(green, &value), "cuGreenCtxGetId")
        return value

    @property
    def sm_resource(self):
        """The :class:`SmResource` this partition holds (``cuGreenCtxGetDevResource``);
        minimum and alignment are the device's."""
        cdef cydriver.CUdevResource held
        cdef cydriver.CUgreenCtx green
        self._check_open()
        green = self._state().green
        memset(&held, 0, sizeof(held))
        with nogil:
            check(cydriver.cuGreenCtxGetDevResource(green, &held,
                                                    cydriver.CU_DEV_RESOURCE_TYPE_SM),
                  "cuGreenCtxGetDevResource")
        device = self.device.sm_resource
        return SmResource(greenres_sm_prefix_of(&held).smCount, device.min_partition_size,
                          device.alignment)

    @property
    def stream(self):
        """The partition's default stream (non-blocking, made with cuGreenCtxStreamCreate):
        work on it runs on this partition's SMs with no push at all."""
        self._check_open()
        return self._stream

    @property
    def streams(self):
        """The streams the plan asked for: the default stream first."""
        self._check_open()
        return (self._stream, *self._extra_streams)

    def create_stream(self, priority=0):
        """A new non-blocking stream of this partition. Lower numbers are higher priority
        (the driver clamps to its range; :attr:`Stream.priority` tells the result). Closed
        with the layout at the latest.

        Raises:
            TypeError: when ``priority`` is not an int.
        """
        priority = _require_int("priority", priority)
        if not -2**31 <= priority < 2**31:
            raise ValueError(f"'priority' must fit in a C int (got {priority!r})")
        self._check_open()
        return self._make_stream(priority)

    @property
    def entered(self):
        """True while the partition is entered on some thread."""
        return not self.closed and greenres_owner(&self._state().owner) != 0

    def enter(self, from_stream=None):
        """Make this partition current on this thread: the caller's stream records an event,
        the green context is pushed, the partition's stream waits for the event. Nesting
        works (also of the same partition); exit in reverse order on the same thread.

        ``from_stream``: the caller's stream (any stream form); by default the stream of
        the partition this thread is in, else the legacy stream of the device's primary
        context when that is current, else none (nothing to order after).

        Raises:
            ThreadOwnershipError: when the partition is current on another thread.
        """
        cdef cydriver.CUstream caller = NULL
        cdef bint resolve = from_stream is None
        cdef int code
        cdef PartState* s
        self._check_open()
        if not resolve:
            caller = _stream_handle(from_stream, "from_stream")
        s = self._state()
        with nogil:
            code = enter_partition(s, caller, resolve)
        if code:
            raise _thread_rule_error(self.name, code)
        if self._scope is None:
            self._scope = _Entered(self)
        return self._scope

    def exit(self):
        """Undo the innermost :meth:`enter`: the caller's stream waits for the partition's
        stream, the green context is popped.

        Raises:
            ThreadOwnershipError: on a thread that did not enter the partition.
        """
        cdef int code
        cdef PartState* s
        self._check_open()
        s = self._state()
        with nogil:
            code = exit_partition(s)
        if code:
            raise _thread_rule_error(self.name, code)

    def __enter__(self):
        cdef int code
        cdef PartState* s
        self._check_open()
        s = self._state()
        with nogil:
            code = enter_partition(s, NULL, True)
        if code:
            raise _thread_rule_error(self.name, code)
        return self

    def __exit__(self, exc_type, exc, tb):
        cdef int code
        cdef PartState* s
        self._check_open()
        s = self._state()
        with nogil:
            code = exit_partition(s)
        if code:
            raise _thread_rule_error(self.name, code)
        return False

    cdef tuple _live_extra_streams(self):
        """Every live stream of the partition but the default one: those the plan asked
        for and those made by :meth:`create_stream` (the core tracks both)."""
        return tuple(self._core.extra_streams[self._index])

    cdef int _fence_record(self) except -1:
        cdef PartState* s = self._state()
        # Every other live stream joins the default stream first, so one fence event
        # covers all the partition's work.
        for handle in self._live_extra_streams():
            pooled_or_temporary_handoff(self._core, <cydriver.CUstream><uintptr_t>handle,
                                        s.stream)
        with nogil:
            check(cydriver.cuEventRecord(s.fence_event, s.stream), "cuEventRecord")
        return 0

    cdef int _fence_wait(self, GreenContext old) except -1:
        cdef PartState* s = self._state()
        cdef cydriver.CUevent event = old._state().fence_event
        cdef cydriver.CUstream extra
        with nogil:
            check(cydriver.cuStreamWaitEvent(s.stream, event, 0), "cuStreamWaitEvent")
        for handle in self._live_extra_streams():
            extra = <cydriver.CUstream><uintptr_t>handle
            with nogil:
                check(cydriver.cuStreamWaitEvent(extra, event, 0), "cuStreamWaitEvent")
        return 0

    def isolation_key(self, schema, **kwargs):
        """This partition's isolation key (see :func:`greenres.isolation.isolation_key`)."""
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
        self.partition.exit()
        return False


cdef int pooled_or_temporary_handoff(_LayoutCore core, cydriver.CUstream src,
                                     cydriver.CUstream dst) except -1:
    cdef int code = POOL_EXHAUSTED
    cdef EventPool* pool = NULL
    if core is not None and not core.closed:
        pool = core.pool
        with nogil:
            code = pooled_handoff(pool, src, dst)
    if code == 0:
        return 0
    # No pool (foreign streams only) or all slots busy: a temporary event in the current
    # context. Slow, but correct.
    cdef cydriver.CUevent event = NULL
    cdef cydriver.CUcontext current = NULL
    check(cydriver.cuCtxGetCurrent(&current), "cuCtxGetCurrent")
    if current == NULL:
        raise UsageError(
            "handoff between streams that are not greenres streams needs a current context "
            "(no context is current on this thread)"
        )
    with nogil:
        check(cydriver.cuEventCreate(&event, cydriver.CU_EVENT_DISABLE_TIMING), "cuEventCreate")
    try:
        with nogil:
            check(cydriver.cuEventRecord(event, src), "cuEventRecord")
            check(cydriver.cuStreamWaitEvent(dst, event, 0), "cuStreamWaitEvent")
    finally:
        with nogil:
            cydriver.cuEventDestroy(event)
    return 0


def handoff(src, dst):
    """Make ``dst`` wait for all work queued on ``src`` so far (an event record and a wait,
    both stream-level calls, so capture-safe; the event comes from a lock-free pool).

    ``src`` and ``dst`` are greenres Streams, objects with ``__cuda_stream__`` or raw int
    handles. Foreign streams only (no greenres Stream on either side) use a temporary event
    of the current context.
    """
    cdef cydriver.CUstream s = _stream_handle(src, "src")
    cdef cydriver.CUstream d = _stream_handle(dst, "dst")
    cdef _LayoutCore core = None
    if isinstance(src, Stream):
        core = (<Stream>src)._core
    elif isinstance(dst, Stream):
        core = (<Stream>dst)._core
    pooled_or_temporary_handoff(core, s, d)


# ----------------------------------------------------------------------------- streams


cdef class Stream:
    """A stream of a partition. Implements ``__cuda_stream__`` so cuda.core, PyTorch
    (``torch.cuda.ExternalStream(s.handle)``) and CuPy can use it.

    Made by :attr:`GreenContext.stream` and :meth:`GreenContext.create_stream`.
    """

    cdef cydriver.CUstream _handle
    cdef _LayoutCore _core
    cdef readonly GreenContext partition
    cdef readonly int priority
    cdef bint _owned          # created by create_stream (else the partition's default)
    cdef bint _closed
    cdef object __weakref__

    def __init__(self, *args, **kwargs):
        raise TypeError(
            "greenres.Stream objects are made by GreenContext.stream and "
            "GreenContext.create_stream()"
        )

    cdef _init(self, _LayoutCore core, GreenContext partition, cydriver.CUstream handle,
               int priority, bint owned):
        self._core = core
        self.partition = partition
        self._handle = handle
        self.priority = priority
        self._owned = owned
        self._closed = False

    cdef inline cydriver.CUstream _checked_handle(self) except? NULL:
        if self._closed or self._core.closed:
            raise ClosedError("the stream is closed")
        return self._handle

    @property
    def handle(self):
        """The ``CUstream`` as an int."""
        return <uintptr_t>self._checked_handle()

    @property
    def closed(self):
        """True after :meth:`close` or once its layout was closed."""
        return self._closed or self._core.closed

    def __cuda_stream__(self):
        """The CUDA stream protocol: ``(version, handle)``."""
        return (0, <uintptr_t>self._checked_handle())

    def __int__(self):
        return <uintptr_t>self._checked_handle()

    def synchronize(self):
        """Wait (GIL released) until all work queued on the stream is done."""
        cdef cydriver.CUstream h = self._checked_handle()
        with nogil:
            check(cydriver.cuStreamSynchronize(h), "cuStreamSynchronize")

    def query(self):
        """True when all work queued on the stream is done."""
        cdef cydriver.CUstream h = self._checked_handle()
        cdef cydriver.CUresult err
        with nogil:
            err = cydriver.cuStreamQuery(h)
        if err == cydriver.CUDA_ERROR_NOT_READY:
            return False
        check(err, "cuStreamQuery")
        return True

    def wait(self, other):
        """This stream waits for the work queued on ``other`` so far (see :func:`handoff`)."""
        cdef cydriver.CUstream src = _stream_handle(other, "other")
        cdef cydriver.CUstream dst = self._checked_handle()
        pooled_or_temporary_handoff(self._core, src, dst)

    def close(self):
        """Destroy a stream made by :meth:`GreenContext.create_stream`. Idempotent. The
        partition's default stream is destroyed with its layout.

        Raises:
            ValueError: for the partition's default stream.
        """
        if not self._owned:
            raise ValueError(
                f"the default stream of partition {self.partition.name!r} is closed with its "
                "layout"
            )
        if self._closed or self._core.closed:
            self._closed = True
            return
        self._closed = True
        self._core.extra_streams[self.partition._index].discard(<uintptr_t>self._handle)
        try:
            self.partition._extra_streams.remove(self)
        except ValueError:
            pass
        cdef cydriver.CUstream h = self._handle
        with nogil:
            check(cydriver.cuStreamDestroy(h), "cuStreamDestroy")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._owned:
            self.close()
        return False

    def __dealloc__(self):
        # A Stream holds its core, so the green context is alive here: destroying the
        # stream now keeps the streams-first order.
        if self._owned and not self._closed and self._core is not None \
                and not self._core.closed:
            try:
                self._core.extra_streams[self.partition._index].discard(
                    <uintptr_t>self._handle)
                warnings.warn("unclosed greenres.Stream", ResourceWarning, source=None)
            except BaseException:
                pass
            cydriver.cuStreamDestroy(self._handle)

    def __repr__(self):
        where = self.partition.name if self.partition is not None else "?"
        state = " closed" if self.closed else ""
        return f"<greenres.Stream of {where!r} priority={self.priority}{state}>"


# ----------------------------------------------------------------------------- events


cdef class Event:
    """A CUDA event of a device's primary context (usable with every stream of the device,
    including partition streams).

    ``Event(timing=False)``: timing-disabled events are cheaper; :meth:`elapsed_time` needs
    ``timing=True`` on both events.
    """

    cdef cydriver.CUevent _handle
    cdef cydriver.CUdevice _device
    cdef bint _retained
    cdef bint _closed
    cdef readonly bint timing

    def __cinit__(self):
        self._handle = NULL
        self._retained = False
        self._closed = True

    def __init__(self, timing=False, device=0):
        timing = _require_bool("timing", timing)
        cdef Device dev = _device_of("device", device)
        cdef cydriver.CUcontext primary = NULL
        cdef unsigned int flags = 0 if timing else cydriver.CU_EVENT_DISABLE_TIMING
        self._device = dev._device
        self.timing = timing
        with nogil:
            check(cydriver.cuDevicePrimaryCtxRetain(&primary, self._device),
                  "cuDevicePrimaryCtxRetain")
        self._retained = True
        try:
            _push_primary(primary)
            try:
                self._handle = _new_event(flags)
                _pop_context()
            except BaseException:
                _pop_if_current(primary)
                raise
        except BaseException:
            if self._handle != NULL:
                cydriver.cuEventDestroy(self._handle)
                self._handle = NULL
            self._release_primary()
            raise
        self._closed = False

    cdef void _release_primary(self) noexcept:
        if self._retained:
            self._retained = False
            try:
                cydriver.cuDevicePrimaryCtxRelease(self._device)
            except BaseException:
                pass

    cdef inline cydriver.CUevent _checked(self) except? NULL:
        if self._closed:
            raise ClosedError("the event is closed")
        return self._handle

    @property
    def handle(self):
        """The ``CUevent`` as an int."""
        return <uintptr_t>self._checked()

    @property
    def closed(self):
        return self._closed

    def record(self, stream):
        """Record the work queued on ``stream`` so far (stream-level: capture-safe)."""
        cdef cydriver.CUevent e = self._checked()
        cdef cydriver.CUstream s = _stream_handle(stream, "stream")
        with nogil:
            check(cydriver.cuEventRecord(e, s), "cuEventRecord")
        return self

    def wait(self, stream):
        """Make ``stream`` wait for the work this event recorded."""
        cdef cydriver.CUevent e = self._checked()
        cdef cydriver.CUstream s = _stream_handle(stream, "stream")
        with nogil:
            check(cydriver.cuStreamWaitEvent(s, e, 0), "cuStreamWaitEvent")

    def query(self):
        """True when the recorded work is done."""
        cdef cydriver.CUevent e = self._checked()
        cdef cydriver.CUresult err
        with nogil:
            err = cydriver.cuEventQuery(e)
        if err == cydriver.CUDA_ERROR_NOT_READY:
            return False
        check(err, "cuEventQuery")
        return True

    def synchronize(self):
        """Wait (GIL released) for the recorded work."""
        cdef cydriver.CUevent e = self._checked()
        with nogil:
            check(cydriver.cuEventSynchronize(e), "cuEventSynchronize")

    def elapsed_time(self, end):
        """Milliseconds between this event and ``end`` (both recorded, both ``timing``)."""
        if not isinstance(end, Event):
            raise TypeError(f"'end' must be a greenres.Event (got {end!r})")
        cdef cydriver.CUevent start = self._checked()
        cdef cydriver.CUevent stop = (<Event>end)._checked()
        cdef float ms = 0
        if not (self.timing and (<Event>end).timing):
            raise ValueError("elapsed_time needs two events created with timing=True")
        with nogil:
            check(cydriver.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime")
        return ms

    def close(self):
        """Destroy the event and release the primary context. Idempotent."""
        if self._closed:
            return
        self._closed = True
        cdef cydriver.CUevent e = self._handle
        self._handle = NULL
        try:
            with nogil:
                check(cydriver.cuEventDestroy(e), "cuEventDestroy")
        finally:
            self._release_primary()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        if not self._closed:
            try:
                warnings.warn("unclosed greenres.Event", ResourceWarning, source=None)
            except BaseException:
                pass
            try:
                cydriver.cuEventDestroy(self._handle)
            except BaseException:
                pass
        self._release_primary()


# ----------------------------------------------------------------------------- graphs


cdef class DeviceBuffer:
    """Device memory from a :class:`GraphPool`. ``free()`` gives it back to the pool (whose
    later allocations, in any graph of the pool, may reuse it); the memory itself is freed
    when the pool is."""

    cdef readonly uintptr_t ptr
    cdef readonly size_t nbytes
    cdef readonly GraphPool pool
    cdef bint _freed

    def __init__(self, *args, **kwargs):
        raise TypeError("DeviceBuffer objects are made by GraphPool.allocate() / Graph.allocate()")

    def __int__(self):
        return self.ptr

    @property
    def freed(self):
        return self._freed

    def free(self):
        """Return the memory to the pool. Idempotent."""
        if not self._freed:
            self._freed = True
            self.pool._give_back(self.ptr, self.nbytes)

    def __repr__(self):
        return f"<greenres.DeviceBuffer 0x{self.ptr:x} nbytes={self.nbytes}>"


cdef size_t _POOL_GRANULE = 512


cdef class GraphPool:
    """A memory pool shared by graphs: the opaque token of :meth:`Graph.pool`.

    Device memory allocated through the pool (``pool.allocate`` or ``graph.allocate``, also
    during capture) belongs to the pool. A buffer given back with ``free()`` may be handed
    to a later allocation of any graph of the pool, as in PyTorch's private pools: replay
    graphs that share memory in the order they were captured. The pool's memory is freed
    when the pool is closed and no open graph uses it any more (or when the last reference
    goes).
    """

    cdef cydriver.CUdevice _device
    cdef bint _retained
    cdef cydriver.CUcontext _primary
    cdef dict _blocks          # ptr -> nbytes (every allocation the pool owns)
    cdef dict _free_lists      # nbytes -> [ptr, ...]
    cdef int _users            # open graphs using the pool
    cdef bint _close_requested
    cdef bint _freed
    cdef readonly int device

    def __cinit__(self):
        self._blocks = {}
        self._free_lists = {}
        self._users = 0
        self._retained = False
        self._freed = False
        self._close_requested = False

    def __init__(self, device=0):
        cdef Device dev = _device_of("device", device)
        self.device = dev.ordinal
        self._device = dev._device
        with nogil:
            check(cydriver.cuDevicePrimaryCtxRetain(&self._primary, self._device),
                  "cuDevicePrimaryCtxRetain")
        self._retained = True

    @property
    def bytes_reserved(self):
        """Device memory the pool holds, in bytes."""
        return sum(self._blocks.values())

    @property
    def closed(self):
        return self._freed

    def allocate(self, nbytes):
        """A :class:`DeviceBuffer` of at least ``nbytes`` bytes (rounded up to 512), reusing
        a freed block of the same size when there is one. Safe while capturing: the
        allocation switches this thread to the relaxed capture mode around ``cuMemAlloc``."""
        cdef cydriver.CUdeviceptr ptr = 0
        cdef size_t size
        cdef cydriver.CUstreamCaptureMode mode = cydriver.CU_STREAM_CAPTURE_MODE_RELAXED
        cdef cydriver.CUresult err = cydriver.CUDA_SUCCESS
        nbytes = _require_int("nbytes", nbytes)
        if nbytes <= 0:
            raise ValueError(f"'nbytes' must be > 0 (got {nbytes!r})")
        if self._freed or self._close_requested:
            raise ClosedError("the graph pool is closed")
        size = (nbytes + _POOL_GRANULE - 1) // _POOL_GRANULE * _POOL_GRANULE
        free_list = self._free_lists.get(size)
        if free_list:
            address = free_list.pop()
        else:
            _push_primary(self._primary)
            try:
                with nogil:
                    check(cydriver.cuThreadExchangeStreamCaptureMode(&mode),
                          "cuThreadExchangeStreamCaptureMode")
                    err = cydriver.cuMemAlloc(&ptr, size)
                    check(cydriver.cuThreadExchangeStreamCaptureMode(&mode),
                          "cuThreadExchangeStreamCaptureMode")
                if err != cydriver.CUDA_SUCCESS:
                    check(err, "cuMemAlloc")
                _pop_context()
            except BaseException:
                if ptr:
                    cydriver.cuMemFree(ptr)
                _pop_if_current(self._primary)
                raise
            address = <uintptr_t>ptr
            self._blocks[address] = size
        buf = DeviceBuffer.__new__(DeviceBuffer)
        (<DeviceBuffer>buf).ptr = address
        (<DeviceBuffer>buf).nbytes = size
        (<DeviceBuffer>buf).pool = self
        (<DeviceBuffer>buf)._freed = False
        return buf

    cdef _give_back(self, uintptr_t ptr, size_t nbytes):
        if not self._freed and ptr in self._blocks:
            self._free_lists.setdefault(nbytes, []).append(ptr)

    cdef _add_user(self):
        if self._freed or self._close_requested:
            raise ClosedError("the graph pool is closed")
        self._users += 1

    cdef _drop_user(self):
        self._users -= 1
        if self._users <= 0 and self._close_requested:
            self._free_memory()

    def close(self):
        """Free the pool's memory now, or when the last open graph using it is closed.
        Idempotent."""
        self._close_requested = True
        if self._users <= 0:
            self._free_memory()

    cdef void _free_memory(self) noexcept:
        cdef cydriver.CUdeviceptr ptr
        if self._freed:
            return
        self._freed = True
        try:
            for address in self._blocks:
                ptr = <cydriver.CUdeviceptr><uintptr_t>address
                cydriver.cuMemFree(ptr)
            self._blocks.clear()
            self._free_lists.clear()
        except BaseException:
            pass
        if self._retained:
            self._retained = False
            try:
                cydriver.cuDevicePrimaryCtxRelease(self._device)
            except BaseException:
                pass

    def __dealloc__(self):
        if not self._freed and not self._close_requested:
            try:
                warnings.warn("unclosed greenres.GraphPool: call close()", ResourceWarning,
                              source=None)
            except BaseException:
                pass
        self._free_memory()

    def __repr__(self):
        return (f"<greenres.GraphPool device={self.device} bytes={self.bytes_reserved} "
                f"graphs={self._users}{' closed' if self._freed else ''}>")


_CAPTURE_MODES = {
    "global": cydriver.CU_STREAM_CAPTURE_MODE_GLOBAL,
    "thread_local": cydriver.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
    "relaxed": cydriver.CU_STREAM_CAPTURE_MODE_RELAXED,
}


cdef cydriver.CUstreamCaptureMode _capture_mode(object mode) except *:
    try:
        return _CAPTURE_MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(
            f"'mode' must be one of {', '.join(map(repr, _CAPTURE_MODES))} (got {mode!r})"
        ) from None


class _Capture:
    """The context manager of :meth:`Graph.capture`."""

    __slots__ = ("graph", "stream", "mode")

    def __init__(self, graph, stream, mode):
        self.graph = graph
        self.stream = stream
        self.mode = mode

    def __enter__(self):
        self.graph.capture_begin(self.stream, mode=self.mode)
        return self.graph

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.graph.capture_end()
        else:
            self.graph._abort_capture()
        return False


cdef class Graph:
    """A CUDA graph captured from a stream, instantiated and replayed.

    ``Graph(keep_graph=False, pool=None)``: with ``keep_graph=False`` the captured
    ``CUgraph`` is destroyed once instantiated (only the executable is kept). ``pool``: a
    :class:`GraphPool` (``other_graph.pool()``) to share memory with other graphs; by default
    the graph makes its own on first use.

    Capturing on a partition's stream keeps the partition: the nodes run in that green
    context when replayed, whatever stream the replay is launched on.
    """

    cdef cydriver.CUgraph _graph
    cdef cydriver.CUgraphExec _exec
    cdef cydriver.CUstream _stream
    cdef object _stream_obj
    cdef _LayoutCore _core
    cdef GraphPool _pool
    cdef bint _capturing
    cdef bint _closed
    cdef bint _orphaned        # its layout was closed under it
    cdef bint _owns_pool       # the pool was made by pool(): closed with the graph
    cdef readonly bint keep_graph
    cdef object __weakref__

    def __cinit__(self):
        self._graph = NULL
        self._exec = NULL
        self._capturing = False
        self._closed = False
        self._orphaned = False
        self._owns_pool = False

    def __init__(self, keep_graph=False, pool=None):
        self.keep_graph = _require_bool("keep_graph", keep_graph)
        if pool is not None:
            if not isinstance(pool, GraphPool):
                raise TypeError(
                    f"'pool' must be a greenres.GraphPool (another graph's pool()) or None "
                    f"(got {pool!r})"
                )
            (<GraphPool>pool)._add_user()
            self._pool = pool

    cdef int _check_open(self) except -1:
        if self._closed:
            raise ClosedError("the graph is closed")
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
            device = 0
            if self._core is not None:
                device = self._core.ordinal
            p = GraphPool(device)
            p._add_user()
            self._pool = p
            self._owns_pool = True
        return self._pool

    cdef void _leave_pool(self) noexcept:
        if self._pool is None:
            return
        try:
            if self._owns_pool:
                self._pool._close_requested = True
            self._pool._drop_user()
        except BaseException:
            pass

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
        return self._capturing

    @property
    def closed(self):
        return self._closed

    @property
    def captured(self):
        """True between a successful capture and :meth:`reset`."""
        return self._graph != NULL or self._exec != NULL

    def capture(self, stream, mode="thread_local"):
        """Context manager: capture the work queued on ``stream`` inside the block.

        ``mode``: the capture mode, ``"thread_local"`` (default), ``"global"`` or
        ``"relaxed"``."""
        _capture_mode(mode)
        _stream_handle(stream, "stream")
        return _Capture(self, stream, mode)

    def capture_begin(self, stream, mode="thread_local"):
        """Begin capturing ``stream`` (``cuStreamBeginCapture``).

        Raises:
            UsageError: when the graph is capturing or holds a capture (``reset()`` first).
        """
        cdef cydriver.CUstream s
        cdef cydriver.CUstreamCaptureMode cmode
        self._check_open()
        cmode = _capture_mode(mode)
        s = _stream_handle(stream, "stream")
        if self._capturing:
            raise UsageError("the graph is already capturing: call capture_end() first")
        if self._graph != NULL or self._exec != NULL:
            raise UsageError("the graph holds a capture: call reset() before capturing again")
        with nogil:
            check(cydriver.cuStreamBeginCapture(s, cmode), "cuStreamBeginCapture")
        self._stream = s
        self._stream_obj = stream
        self._capturing = True
        if isinstance(stream, Stream):
            self._core = (<Stream>stream)._core
            self._core.graphs.add(self)

    def capture_end(self):
        """End the capture (``cuStreamEndCapture``) and keep the graph."""
        cdef cydriver.CUgraph graph = NULL
        cdef cydriver.CUstream s = self._stream
        self._check_open()
        if not self._capturing:
            raise UsageError("the graph is not capturing: call capture_begin() first")
        self._capturing = False
        with nogil:
            check(cydriver.cuStreamEndCapture(s, &graph), "cuStreamEndCapture")
        self._graph = graph

    def _abort_capture(self):
        cdef cydriver.CUgraph graph = NULL
        cdef cydriver.CUstream s = self._stream
        if self._capturing:
            self._capturing = False
            cydriver.cuStreamEndCapture(s, &graph)
            if graph != NULL:
                cydriver.cuGraphDestroy(graph)

    def instantiate(self):
        """Instantiate the captured graph (``cuGraphInstantiate``). Without ``keep_graph``
        the ``CUgraph`` is destroyed afterwards."""
        cdef cydriver.CUgraphExec exec_ = NULL
        cdef cydriver.CUgraph graph = self._graph
        self._check_open()
        if self._exec != NULL:
            return self
        if self._capturing:
            raise UsageError("the graph is still capturing: call capture_end() first")
        if graph == NULL:
            raise UsageError("nothing captured: use capture() first")
        with nogil:
            check(cydriver.cuGraphInstantiate(&exec_, graph, 0), "cuGraphInstantiate")
        self._exec = exec_
        if not self.keep_graph:
            self._graph = NULL
            with nogil:
                check(cydriver.cuGraphDestroy(graph), "cuGraphDestroy")
        return self

    def replay(self, stream=None):
        """Launch the graph on ``stream`` (default: the stream it was captured on);
        instantiates first when needed. Nodes keep the context they were captured in."""
        cdef cydriver.CUstream s
        cdef cydriver.CUgraphExec exec_
        self._check_open()
        if self._exec == NULL:
            self.instantiate()
        s = self._stream if stream is None else _stream_handle(stream, "stream")
        exec_ = self._exec
        with nogil:
            check(cydriver.cuGraphLaunch(exec_, s), "cuGraphLaunch")

    def reset(self):
        """Destroy the captured graph and its executable so the graph can capture again.
        The pool stays."""
        if self._closed:
            raise ClosedError("the graph is closed")
        if self._capturing:
            self._abort_capture()
        self._release_native()
        self._orphaned = False
        if self._core is not None:
            self._core.graphs.discard(self)
            self._core = None

    cdef void _release_native(self) noexcept:
        cdef cydriver.CUgraphExec exec_ = self._exec
        cdef cydriver.CUgraph graph = self._graph
        self._exec = NULL
        self._graph = NULL
        try:
            if exec_ != NULL:
                cydriver.cuGraphExecDestroy(exec_)
            if graph != NULL:
                cydriver.cuGraphDestroy(graph)
        except BaseException:
            pass

    def close(self):
        """Destroy the graph and stop using its pool. Idempotent."""
        if self._closed:
            return
        if self._capturing:
            self._abort_capture()
        self._release_native()
        self._closed = True
        self._leave_pool()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __dealloc__(self):
        if not self._closed:
            if self._graph != NULL or self._exec != NULL:
                try:
                    warnings.warn("unclosed greenres.Graph", ResourceWarning, source=None)
                except BaseException:
                    pass
            self._release_native()
            self._leave_pool()

    def __repr__(self):
        state = ("closed" if self._closed else "capturing" if self._capturing
                 else "instantiated" if self._exec != NULL
                 else "captured" if self._graph != NULL else "empty")
        return f"<greenres.Graph {state}>"
