# cython: language_level=3
# Declarations of greenres._driver: the C helpers of the hot paths (greenres_runtime.h) and
# the per-partition state they work on. Private to the module: cimporting it elsewhere would
# include the header's thread-local nesting stack a second time (C, C++ and Cython callers
# use the capsule API instead). Only symbols that exist in the CUDA 12.9 cuda.h are cimported
# from cydriver; 13.x functions are resolved at run time (see _device.pxi).

from libc.stddef cimport wchar_t
from libc.stdint cimport uintptr_t

from cuda.bindings cimport cydriver


cdef extern from "greenres_runtime.h":
    ctypedef struct greenres_sm_prefix:
        unsigned int smCount
        unsigned int minSmPartitionSize
        unsigned int smCoscheduledAlignment
    const greenres_sm_prefix* greenres_sm_prefix_of(const cydriver.CUdevResource* r) nogil

    ctypedef struct greenres_group_params:
        unsigned int smCount
        unsigned int coscheduledSmCount
        unsigned int preferredCoscheduledSmCount
        unsigned int flags
        unsigned int reserved[12]
    ctypedef cydriver.CUresult (*greenres_split_fn)(
        cydriver.CUdevResource*, unsigned int, const cydriver.CUdevResource*,
        cydriver.CUdevResource*, unsigned int, greenres_group_params*) noexcept nogil
    ctypedef cydriver.CUresult (*greenres_green_id_fn)(
        cydriver.CUgreenCtx, unsigned long long*) noexcept nogil

    ctypedef struct greenres_wq_config:
        cydriver.CUdevice device
        unsigned int wqConcurrencyLimit
        int sharingScope
    greenres_wq_config* greenres_wq_config_of(cydriver.CUdevResource* r) nogil
    cydriver.CUdevResourceType GREENRES_RESOURCE_TYPE_WORKQUEUE_CONFIG

    uintptr_t greenres_thread_token() nogil
    unsigned long greenres_thread_ident() nogil
    int greenres_claim(uintptr_t* owner, uintptr_t me) nogil
    uintptr_t greenres_owner(const uintptr_t* owner) nogil
    void greenres_release(uintptr_t* owner) nogil

    enum:
        GREENRES_OPEN
        GREENRES_CLOSING
        GREENRES_CLOSED
    int greenres_begin(const int* gate, long* inflight) nogil
    int greenres_admit(const int* gate, long* inflight) nogil
    void greenres_readmit(long* inflight) nogil
    void greenres_end(long* inflight) nogil
    int greenres_gate_state(const int* gate) nogil
    int greenres_gate_close(int* gate) nogil
    void greenres_gate_set(int* gate, int state) nogil
    int greenres_gate_wait(const int* gate) nogil
    unsigned long long greenres_next_layout_number() nogil
    int greenres_idle(const long* inflight) nogil
    void greenres_wait_idle(const long* inflight) nogil

    enum:
        GREENRES_MAX_NESTING  # a compile-time constant: it sizes the arrays below
    ctypedef struct greenres_thread_state
    greenres_thread_state* greenres_this_thread() nogil
    uintptr_t greenres_token_of(const greenres_thread_state* t) nogil
    int greenres_push_on(greenres_thread_state* t, void* p) nogil
    void* greenres_top_of(const greenres_thread_state* t) nogil
    void greenres_pop_on(greenres_thread_state* t) nogil
    int greenres_depth_of(const greenres_thread_state* t) nogil
    int greenres_stack_push(void* p) nogil
    void* greenres_stack_top() nogil
    void greenres_stack_pop() nogil
    int greenres_stack_depth() nogil
    void* greenres_stack_at(int i) nogil

    ctypedef cydriver.CUresult (*greenres_record_fn)(
        cydriver.CUevent, cydriver.CUstream) noexcept nogil
    ctypedef cydriver.CUresult (*greenres_wait_fn)(
        cydriver.CUstream, cydriver.CUevent, unsigned int) noexcept nogil
    ctypedef cydriver.CUresult (*greenres_push_fn)(cydriver.CUcontext) noexcept nogil
    ctypedef cydriver.CUresult (*greenres_context_out_fn)(cydriver.CUcontext*) noexcept nogil
    ctypedef cydriver.CUresult (*greenres_event_create_fn)(
        cydriver.CUevent*, unsigned int) noexcept nogil
    ctypedef struct greenres_hot_calls:
        greenres_record_fn event_record
        greenres_wait_fn stream_wait_event
        greenres_push_fn ctx_push_current
        greenres_context_out_fn ctx_pop_current
        greenres_context_out_fn ctx_get_current
        greenres_event_create_fn event_create
    greenres_hot_calls greenres_hot


cdef extern from "greenres_nvtx.h":
    ctypedef struct nvtxEventAttributes_t:
        pass
    ctypedef void* nvtxDomainHandle_t
    ctypedef void* nvtxStringHandle_t
    ctypedef unsigned long long nvtxRangeId_t
    nvtxDomainHandle_t greenres_nvtx_domain
    nvtxDomainHandle_t nvtxDomainCreateA(const char* name) nogil
    nvtxStringHandle_t nvtxDomainRegisterStringA(nvtxDomainHandle_t domain,
                                                 const char* string) nogil
    void nvtxDomainNameCategoryA(nvtxDomainHandle_t domain, unsigned int category,
                                 const char* name) nogil
    int nvtxDomainRangePushEx(nvtxDomainHandle_t domain,
                              const nvtxEventAttributes_t* attr) nogil
    int nvtxDomainRangePop(nvtxDomainHandle_t domain) nogil
    nvtxRangeId_t nvtxDomainRangeStartEx(nvtxDomainHandle_t domain,
                                         const nvtxEventAttributes_t* attr) nogil
    void nvtxDomainRangeEnd(nvtxDomainHandle_t domain, nvtxRangeId_t id) nogil
    void nvtxDomainMarkEx(nvtxDomainHandle_t domain, const nvtxEventAttributes_t* attr) nogil
    nvtxStringHandle_t nvtxDomainRegisterStringW(nvtxDomainHandle_t domain,
                                                 const wchar_t* string) nogil
    void nvtxDomainNameCategoryW(nvtxDomainHandle_t domain, unsigned int category,
                                 const wchar_t* name) nogil
    void nvtxNameCuStreamA(cydriver.CUstream stream, const char* name) nogil
    void nvtxNameCuStreamW(cydriver.CUstream stream, const wchar_t* name) nogil
    void nvtxNameCuContextA(cydriver.CUcontext context, const char* name) nogil
    void nvtxNameCuContextW(cydriver.CUcontext context, const wchar_t* name) nogil
    void greenres_nvtx_attr_init(nvtxEventAttributes_t* a) nogil
    void greenres_nvtx_attr_ascii(nvtxEventAttributes_t* a, const char* message) nogil
    void greenres_nvtx_attr_wide(nvtxEventAttributes_t* a, const wchar_t* message) nogil
    void greenres_nvtx_attr_registered(nvtxEventAttributes_t* a,
                                       nvtxStringHandle_t message) nogil
    void greenres_nvtx_attr_color(nvtxEventAttributes_t* a, unsigned int argb) nogil
    void greenres_nvtx_attr_category(nvtxEventAttributes_t* a, unsigned int category) nogil

    ctypedef struct greenres_device_range:
        int captured
    greenres_device_range* greenres_device_range_new(
        nvtxDomainHandle_t domain, const nvtxEventAttributes_t* attr, const void* text,
        size_t text_bytes, int wide) nogil
    void greenres_device_range_retain(greenres_device_range* r) nogil
    void greenres_device_range_release(greenres_device_range* r) nogil
    void greenres_device_range_abandon(greenres_device_range* r) nogil
    void greenres_device_range_start_once(void* data) noexcept nogil
    void greenres_device_range_end_once(void* data) noexcept nogil
    void greenres_device_range_start_replayed(void* data) noexcept nogil
    void greenres_device_range_end_replayed(void* data) noexcept nogil
    void greenres_device_range_graph_release(void* data) noexcept nogil


# A failed driver call of a nogil path, raised as DriverError once the path is done.
cdef struct Failure:
    cydriver.CUresult error
    const char* function


# Hot state of one partition, touched by nogil code. Everything but `owner` and `inflight`
# is written only by the thread that owns the partition (or under the GIL while nobody does,
# or by close() once nothing is in flight). Allocated 64-byte aligned: the counter and the
# owner word of two partitions never share a cache line.
cdef struct EventPool


cdef struct PartState:
    long inflight                   # operations in flight on the partition (lifetime protocol)
    const int* gate                 # the layout's lifetime gate
    EventPool* pool                 # the layout's handoff events
    cydriver.CUgreenCtx green
    cydriver.CUcontext ctx
    cydriver.CUstream stream
    cydriver.CUcontext primary      # the device's primary context (owns the events)
    cydriver.CUdevice device
    cydriver.CUevent enter_event    # recorded on the caller's stream, waited by `stream`
    cydriver.CUevent exit_event     # recorded on `stream`, waited by the caller's stream
    cydriver.CUevent fence_event    # recorded by Layout.switch (NULL: a layout of one mode)
    uintptr_t owner
    unsigned long owner_ident       # threading.get_ident() of the owner (for messages)
    void* entered_by                # the GreenContext, referenced while it is entered
    int depth
    cydriver.CUstream from_streams[GREENRES_MAX_NESTING]
    cydriver.CUcontext below[GREENRES_MAX_NESTING]   # the context current before each enter
    char has_from[GREENRES_MAX_NESTING]
    # 1 for an enter by set_context(): the partition's side of it is the green context's
    # default (NULL) stream, not `stream` (the torch seed's semantics)
    char on_default[GREENRES_MAX_NESTING]
    # NVTX annotation (when the layout was created with it): the range of an enter, and a
    # handoff mark to every partition of the layout (by index; the last: to any other stream)
    int nvtx
    nvtxEventAttributes_t nvtx_range
    nvtxEventAttributes_t* nvtx_handoff


# Events for handoff, claimed lock-free: a slot is busy only between one record and one
# wait of one thread, so a small pool serves any number of threads. One cache line per
# slot's busy word: threads that claim different slots do not share a line. A slot's event
# is made by the first handoff that claims it (in `primary`, as the partitions' events):
# a thread keeps claiming the same slot, so a layout holds one event per thread that hands
# off through it, not POOL_SIZE from its creation on.
cdef enum:
    POOL_SIZE = 32

cdef struct PoolSlot:
    uintptr_t busy
    char pad[56]

cdef struct EventPool:
    PoolSlot slots[POOL_SIZE]
    cydriver.CUevent events[POOL_SIZE]  # NULL until the slot's first handoff
    cydriver.CUcontext primary          # the device's primary context (owns the events)


# What an exit had to undo on this thread's context stack (see _hotpath.pxi).
cdef struct StackRepair:
    int kind
    int popped                      # foreign contexts popped
    cydriver.CUcontext found        # the context found on top instead of the partition's


cdef int check(cydriver.CUresult err, const char* function) except -1 nogil
cdef int enter_partition(PartState* p, cydriver.CUstream from_stream, bint resolve,
                         bint on_default, Failure* failure) noexcept nogil
cdef int exit_partition(PartState* p, Failure* failure, StackRepair* repair,
                        void** unpinned) noexcept nogil
cdef int pooled_handoff(EventPool* pool, cydriver.CUstream src, cydriver.CUstream dst,
                        const nvtxEventAttributes_t* mark, Failure* failure) noexcept nogil
