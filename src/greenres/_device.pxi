# Included by _driver.pyx (one extension module; one file per concept).
# Driver initialisation, newer functions resolved at run time, and Device.


# CUdevice_attribute values of CUDA 13.4 (the 12.9 header the module is written against
# lacks them).
cdef int _ATTRIBUTE_LOCALITY_DOMAIN_COUNT = 149
cdef int _ATTRIBUTE_LOCALITY_DOMAIN_SMS = 157

cdef bint _initialized = False
cdef bint _resolved = False
cdef greenres_split_fn _structured_split = NULL
cdef greenres_green_id_fn _green_ctx_get_id = NULL


cdef int _ensure_init() except -1:
    """cuInit, then the hot paths' driver functions (before any Device, so before any
    layout and partition: the hot paths call through them)."""
    global _initialized
    if not _initialized:
        with nogil:
            check(cydriver.cuInit(0), "cuInit")
        _resolve_hot_calls()
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
    _structured_split = <greenres_split_fn>_proc_address("cuDevSmResourceSplit", STRUCTURED_SPLIT)
    _green_ctx_get_id = <greenres_green_id_fn>_proc_address("cuGreenCtxGetId", GREEN_CONTEXT_ID)
    _resolved = True
    return 0


def driver_version():
    """The loaded CUDA driver's version as an int, e.g. 13010 for 13.1."""
    return _driver_version()


cdef int _driver_version() except -1:
    cdef int version = 0
    check(cydriver.cuDriverGetVersion(&version), "cuDriverGetVersion")
    return version


def device_count():
    """How many CUDA devices the loaded driver reports."""
    cdef int count = 0
    _ensure_init()
    check(cydriver.cuDeviceGetCount(&count), "cuDeviceGetCount")
    return count


def _current_ordinal():
    """The ordinal of the current context's device, else 0: the seeds' default device
    (``torch.cuda.current_device()`` and friends)."""
    cdef cydriver.CUdevice current
    cdef cydriver.CUdevice candidate
    cdef int count = 0
    cdef int i
    cdef cydriver.CUresult err
    _ensure_init()
    with nogil:
        err = cydriver.cuCtxGetDevice(&current)
    if err == cydriver.CUDA_ERROR_INVALID_CONTEXT:
        return 0  # no current context
    check(err, "cuCtxGetDevice")
    check(cydriver.cuDeviceGetCount(&count), "cuDeviceGetCount")
    for i in range(count):
        # a CUdevice is an opaque handle: map it back to its ordinal through the driver
        check(cydriver.cuDeviceGet(&candidate, i), "cuDeviceGet")
        if candidate == current:
            return i
    return 0


def _current_device_identity():
    """``(device form, driver version)`` of :func:`_current_ordinal`'s device for
    :mod:`greenres.isolation`: only what the ``device`` form holds, no split queries."""
    device = Device(_current_ordinal())
    identity = {
        "name": device.name,
        "compute_capability": list(device.compute_capability),
        "sm_count": device.sm_resource.count,  # as SmFacts.sm_count: keys agree with facts=
    }
    return identity, driver_version()


def _too_old(feature, int needed):
    cdef int loaded = driver_version()
    return DriverTooOldError(
        f"{feature} needs CUDA driver {version_text(needed)} ({needed}) or newer; the loaded "
        f"driver is {version_text(loaded)} ({loaded})"
    )


class SmResource:
    """The SM resource of a device: ``count`` SMs, split in groups of at least
    ``min_partition_size`` SMs, sized in multiples of ``alignment``.

    Attributes:
        count: the SMs of the resource.
        min_partition_size: the smallest co-scheduled group the driver makes.
        alignment: group sizes are multiples of this.
    """

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


cdef int _require_device_ordinal(str name, object ordinal) except -1:
    """ValueError naming ``name`` unless ``ordinal`` (an int) is a device of the driver."""
    cdef int count = 0
    check(cydriver.cuDeviceGetCount(&count), "cuDeviceGetCount")
    if ordinal < 0 or ordinal >= count:
        raise ValueError(f"{name!r} must be in [0, {count}) (got {ordinal})")
    return 0


cdef class Device:
    """A CUDA device, read through the driver: ``Device(0)``.

    Attributes:
        ordinal: the device's ordinal (``cuDeviceGet``'s argument).
    """

    cdef readonly int ordinal
    cdef cydriver.CUdevice _device

    def __init__(self, ordinal=0):
        ordinal = _require_int("ordinal", ordinal)
        _ensure_init()
        _require_device_ordinal("ordinal", ordinal)
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
        # a query: keeps the GIL (see _push_primary)
        check(cydriver.cuDeviceGetDevResource(self._device, resource,
                                              cydriver.CU_DEV_RESOURCE_TYPE_SM),
              "cuDeviceGetDevResource")
        return 0

    @property
    def sm_resource(self):
        """The device's :class:`SmResource` (count, minimum partition size, alignment)."""
        cdef cydriver.CUdevResource resource
        self._sm_resource(&resource)
        return self._sm_resource_of(&resource)

    cdef object _sm_resource_of(self, const cydriver.CUdevResource* resource):
        cdef const greenres_sm_prefix* sm = greenres_sm_prefix_of(resource)
        minimum, alignment = sm.minSmPartitionSize, sm.smCoscheduledAlignment
        if minimum == 0 or alignment == 0:
            # drivers older than 13.0 do not report it: use the documented guideline
            minimum, alignment = documented_granularity(self.compute_capability)
        return SmResource(sm.smCount, minimum, alignment)

    cdef unsigned int _group_size(self, const cydriver.CUdevResource* device_resource,
                                  unsigned int flags, unsigned int min_count) except 0:
        """The SMs of the first group a split of ``device_resource`` with ``flags`` and
        ``min_count`` makes.

        A split whose results are never given to a green context allocates nothing, so this
        measures the driver's granularity without side effects."""
        cdef unsigned int groups = 0
        cdef unsigned int size
        cdef cydriver.CUdevResource* results = NULL
        with nogil:
            check(cydriver.cuDevSmResourceSplitByCount(NULL, &groups, device_resource, NULL,
                                                       flags, min_count),
                  "cuDevSmResourceSplitByCount")
        if groups == 0:
            raise PlanError(f"the device cannot make one group of {min_count} SMs")
        results = <cydriver.CUdevResource*>calloc(groups, sizeof(cydriver.CUdevResource))
        if results == NULL:
            raise MemoryError()
        try:
            with nogil:
                check(cydriver.cuDevSmResourceSplitByCount(results, &groups, device_resource,
                                                           NULL, flags, min_count),
                      "cuDevSmResourceSplitByCount")
            size = greenres_sm_prefix_of(&results[0]).smCount
        finally:
            free(results)
        return size

    cdef int _workqueue_config(self, cydriver.CUdevResource* resource) except -1:
        """The device's workqueue-config resource (CUDA 13.1) into ``resource``: the
        starting point of a partition's configuration."""
        memset(resource, 0, sizeof(cydriver.CUdevResource))
        with nogil:
            check(cydriver.cuDeviceGetDevResource(self._device, resource,
                                                  GREENRES_RESOURCE_TYPE_WORKQUEUE_CONFIG),
                  "cuDeviceGetDevResource")
        return 0

    @property
    def workqueue_max_concurrency(self):
        """The ``wqConcurrencyLimit`` of the device's workqueue-config resource (CUDA 13.1):
        how many concurrent stream-ordered workloads its workqueues take
        (``CUDA_DEVICE_MAX_CONNECTIONS``); 0 on a driver older than 13.1, which has no
        such resource."""
        cdef cydriver.CUdevResource resource
        cdef cydriver.CUresult err
        if driver_version() < WORKQUEUES:
            return 0
        memset(&resource, 0, sizeof(resource))
        with nogil:
            err = cydriver.cuDeviceGetDevResource(self._device, &resource,
                                                  GREENRES_RESOURCE_TYPE_WORKQUEUE_CONFIG)
        if err == cydriver.CUDA_ERROR_INVALID_RESOURCE_TYPE:
            return 0  # a 13.1 driver without workqueue resources for this device
        check(err, "cuDeviceGetDevResource")
        return greenres_wq_config_of(&resource).wqConcurrencyLimit

    @property
    def locality_domains(self):
        """``(count, sm_count)``: the device's locality domains and the SMs of each
        (``CU_DEVICE_ATTRIBUTE_LOCALITY_DOMAIN_COUNT`` and ``..._MULTIPROCESSOR_COUNT``,
        CUDA 13.4); ``(0, 0)`` on an older driver."""
        if driver_version() < LOCALITY_DOMAINS:
            return (0, 0)
        return (
            self._attribute(<cydriver.CUdevice_attribute>_ATTRIBUTE_LOCALITY_DOMAIN_COUNT),
            self._attribute(<cydriver.CUdevice_attribute>_ATTRIBUTE_LOCALITY_DOMAIN_SMS),
        )

    def _granularity(self, bint uncoscheduled, bint workqueues=False, bint locality=False):
        """The device's :class:`greenres.recipe.Granularity` (what a recipe is checked
        against); ``uncoscheduled`` also measures the granularity without co-scheduling
        (two split queries), ``workqueues`` the workqueue maximum concurrency."""
        from greenres.recipe import Granularity

        cdef cydriver.CUdevResource device_resource
        cdef unsigned int loose_min, loose_alignment
        self._sm_resource(&device_resource)  # once: the measurements below share it
        resource = self._sm_resource_of(&device_resource)
        loose = None
        if uncoscheduled:
            loose_min = self._group_size(&device_resource, SPLIT_IGNORE_SM_COSCHEDULING, 1)
            loose_alignment = self._group_size(
                &device_resource, SPLIT_IGNORE_SM_COSCHEDULING, loose_min + 1) - loose_min
            loose = (loose_min, max(loose_alignment, 1))
        return Granularity(
            compute_capability=self.compute_capability,
            sm_count=resource.count,
            min_partition_size=resource.min_partition_size,
            alignment=resource.alignment,
            uncoscheduled=loose,
            workqueue_max_concurrency=self.workqueue_max_concurrency if workqueues else None,
            locality=self.locality_domains if locality else None,
        )

    def sm_facts(self):
        """The device's :class:`greenres.facts.SmFacts`, measured through the driver.

        The co-scheduled granularity is what the device resource reports (or the documented
        table on drivers older than 13.0); the un-co-scheduled granularity is measured with
        two split queries using ``CU_DEV_SM_RESOURCESPLIT_IGNORE_SM_COSCHEDULING``; the
        workqueue maximum is :attr:`workqueue_max_concurrency`."""
        from greenres.facts import SmFacts

        granularity = self._granularity(True)
        domains = self.locality_domains
        return SmFacts(
            device_name=self.name,
            compute_capability=granularity.compute_capability,
            sm_count=granularity.sm_count,
            min_partition_size=granularity.min_partition_size,
            alignment=granularity.alignment,
            uncoscheduled_min_partition_size=granularity.uncoscheduled[0],
            uncoscheduled_alignment=granularity.uncoscheduled[1],
            driver_version=driver_version(),
            structured_split=structured_split_available(),
            total_memory=self.total_memory,
            workqueue_max_concurrency=self.workqueue_max_concurrency,
            locality_domain_count=domains[0],
            locality_domain_sm_count=domains[1],
        )

    def __eq__(self, other):
        if not isinstance(other, Device):
            return NotImplemented
        return self.ordinal == (<Device>other).ordinal

    def __hash__(self):
        return hash(("greenres.Device", self.ordinal))

    def __repr__(self):
        return f"<greenres.Device {self.ordinal}: {self.name}>"


# ----------------------------------------------------------------------------- contexts


# Driver calls that cannot wait for the device keep the GIL: context push and pop, event
# create and destroy, stream destroy, capture and resource queries. A GIL hand-over costs
# more than such a call (docs/benchmarks.md, "The GIL policy"); calls that can wait
# (primary context retain and release, green context and stream creation, green context
# destroy, the split, synchronize) release it.

cdef int _push_primary(cydriver.CUcontext primary) except -1:
    check(cydriver.cuCtxPushCurrent(primary), "cuCtxPushCurrent")
    return 0


cdef int _pop_context() except -1:
    cdef cydriver.CUcontext popped = NULL
    check(cydriver.cuCtxPopCurrent(&popped), "cuCtxPopCurrent")
    return 0


cdef void _pop_if_current(cydriver.CUcontext ctx) noexcept nogil:
    """Best effort after a failure: take ``ctx`` off this thread's stack if it is still on
    top, so a failed operation leaves the context stack as it found it."""
    cdef cydriver.CUcontext current = NULL
    cdef cydriver.CUcontext popped = NULL
    if ctx != NULL and cydriver.cuCtxGetCurrent(&current) == cydriver.CUDA_SUCCESS \
            and current == ctx:
        cydriver.cuCtxPopCurrent(&popped)


cdef cydriver.CUevent _new_event(unsigned int flags) except? NULL:
    cdef cydriver.CUevent event = NULL
    check(cydriver.cuEventCreate(&event, flags), "cuEventCreate")  # keeps the GIL (above)
    return event


def structured_split_available():
    """True when the loaded driver is 13.1 or newer and provides ``cuDevSmResourceSplit``."""
    return _structured_split_ok()


cdef bint _structured_split_ok() except -1:
    """structured_split_available() without a Python call (every structured create asks)."""
    _resolve_newer_functions()
    return _driver_version() >= STRUCTURED_SPLIT and _structured_split != NULL
