# cython: language_level=3
# Declarations shared by greenres' Cython modules: the C helpers the hot paths use and the
# per-partition state they work on. Only symbols that exist in the CUDA 12.9 cuda.h are
# cimported from cydriver; 13.x functions are resolved at run time (see _driver.pyx).

from libc.stdint cimport uintptr_t

from cuda.bindings cimport cydriver


cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>

    /* CUdevSmResource since CUDA 13.0 starts with these three fields. 12.x headers declare
       only smCount, so the 13.0 fields are read through this prefix view; a 12.x driver
       leaves them 0 and the documented granularity table is used instead. */
    typedef struct {
        unsigned int smCount;
        unsigned int minSmPartitionSize;
        unsigned int smCoscheduledAlignment;
    } greenres_sm_prefix;
    static inline const greenres_sm_prefix* greenres_sm_prefix_of(const CUdevResource* r) {
        return (const greenres_sm_prefix*)&r->sm;
    }

    /* CU_DEV_SM_RESOURCE_GROUP_PARAMS of CUDA 13.1 (64 bytes; 13.5 names one reserved
       word localityDomainId). Declared here so the module compiles against 12.9's
       cuda.h, which lacks it; cuDevSmResourceSplit is called through a pointer. */
    typedef struct {
        unsigned int smCount;
        unsigned int coscheduledSmCount;
        unsigned int preferredCoscheduledSmCount;
        unsigned int flags;
        unsigned int reserved[12];
    } greenres_group_params;
    typedef CUresult (*greenres_split_fn)(CUdevResource*, unsigned int, const CUdevResource*,
                                          CUdevResource*, unsigned int, greenres_group_params*);
    typedef CUresult (*greenres_green_id_fn)(CUgreenCtx, unsigned long long*);

    /* Thread identity without a syscall: the address of a thread_local is unique among
       live threads. */
    static thread_local char greenres_tls_anchor;
    static inline uintptr_t greenres_thread_token(void) {
        return (uintptr_t)&greenres_tls_anchor;
    }
    /* The Python thread ident (threading.get_ident()) of the calling thread; no GIL
       needed. Kept only to name the thread in error messages. */
    static inline unsigned long greenres_thread_ident(void) {
        return PyThread_get_thread_ident();
    }

    /* The owner word of a partition: 0 when free, else the owning thread's token. Only
       the owner writes the rest of the partition's hot state, so this one atomic is the
       whole synchronisation of enter/exit (no lock, nothing shared between partitions). */
    static inline int greenres_claim(uintptr_t* owner, uintptr_t me) {
        uintptr_t expected = 0;
        return __atomic_compare_exchange_n(owner, &expected, me, 0,
                                           __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    }
    static inline uintptr_t greenres_owner(uintptr_t* owner) {
        return __atomic_load_n(owner, __ATOMIC_ACQUIRE);
    }
    static inline void greenres_release(uintptr_t* owner) {
        __atomic_store_n(owner, (uintptr_t)0, __ATOMIC_RELEASE);
    }

    /* Per-thread stack of entered partitions: gives the caller's stream of a nested enter
       and rejects exits out of order, with no driver call. */
    #define GREENRES_MAX_NESTING 64
    static thread_local void* greenres_tls_stack[GREENRES_MAX_NESTING];
    static thread_local int greenres_tls_top = 0;
    static inline int greenres_stack_push(void* p) {
        if (greenres_tls_top >= GREENRES_MAX_NESTING) return 0;
        greenres_tls_stack[greenres_tls_top++] = p;
        return 1;
    }
    static inline void* greenres_stack_top(void) {
        return greenres_tls_top ? greenres_tls_stack[greenres_tls_top - 1] : NULL;
    }
    static inline void greenres_stack_pop(void) {
        if (greenres_tls_top) --greenres_tls_top;
    }
    static inline int greenres_stack_depth(void) { return greenres_tls_top; }
    """
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

    uintptr_t greenres_thread_token() nogil
    unsigned long greenres_thread_ident() nogil
    int greenres_claim(uintptr_t* owner, uintptr_t me) nogil
    uintptr_t greenres_owner(uintptr_t* owner) nogil
    void greenres_release(uintptr_t* owner) nogil
    enum:
        GREENRES_MAX_NESTING  # a compile-time constant: it sizes the arrays below
    int greenres_stack_push(void* p) nogil
    void* greenres_stack_top() nogil
    void greenres_stack_pop() nogil
    int greenres_stack_depth() nogil


# Hot state of one partition, touched only by nogil code. Everything but `owner` is
# written only by the thread that owns the partition (or under the GIL while nobody does).
cdef struct PartState:
    cydriver.CUgreenCtx green
    cydriver.CUcontext ctx
    cydriver.CUstream stream
    cydriver.CUcontext primary      # the device's primary context (owns the events)
    cydriver.CUevent enter_event    # recorded on the caller's stream, waited by `stream`
    cydriver.CUevent exit_event     # recorded on `stream`, waited by the caller's stream
    cydriver.CUevent fence_event    # recorded by Layout.switch
    uintptr_t owner
    unsigned long owner_ident       # threading.get_ident() of the owner (for messages)
    int depth
    cydriver.CUstream from_streams[GREENRES_MAX_NESTING]
    char has_from[GREENRES_MAX_NESTING]


# Events for handoff, claimed lock-free: a slot is busy only between one record and one
# wait of one thread, so a small pool serves any number of threads.
cdef enum:
    POOL_SIZE = 32

cdef struct EventPool:
    cydriver.CUevent events[POOL_SIZE]
    uintptr_t busy[POOL_SIZE]


cdef int check(cydriver.CUresult err, const char* function) except -1 nogil
cdef int enter_partition(PartState* p, cydriver.CUstream from_stream, bint resolve) except -1 nogil
cdef int exit_partition(PartState* p) except -1 nogil
cdef int pooled_handoff(EventPool* pool, cydriver.CUstream src,
                        cydriver.CUstream dst) except -1 nogil
