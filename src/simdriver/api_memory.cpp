// Memory: allocations (device pointers are real host memory), memset, memcpy,
// host functions. Asynchronous operations run on the stream's worker; the
// synchronous forms go through the legacy stream (or the per-thread stream
// for the _ptds variants) and wait for completion, so they are ordered like
// the real driver's.
//
// guess/choice: an async host-to-device copy reads the host buffer when it
// runs (as with pinned memory), not at call time (pageable staging); this
// keeps ordering bugs of the caller visible.
#include <cstdlib>
#include <cstring>
#include <map>

#include "graph_nodes.h"
#include "pools.h"
#include "state.h"

using namespace sim;

namespace sim {

static std::shared_mutex& alloc_mu() {
    static auto* m = new std::shared_mutex;
    return *m;
}
struct Alloc {
    size_t size;
    int device;
    bool host;
    MemPool* pool;   // stream-ordered allocations: the pool that accounts for them
};
static std::map<uintptr_t, Alloc>& allocs() {
    static auto* m = new std::map<uintptr_t, Alloc>;
    return *m;
}

// Allocations are made and accounted in 256-byte units (cuMemAlloc's alignment).
static size_t round256(size_t n) { return (n + 255) / 256 * 256; }

static void register_alloc(void* p, size_t size, int device, bool host, MemPool* pool = nullptr) {
    {
        std::unique_lock<std::shared_mutex> lk(alloc_mu());
        allocs()[(uintptr_t)p] = Alloc{size, device, host, pool};
    }
    g_live[kLiveAlloc].fetch_add(1, std::memory_order_relaxed);
}

// Caller holds alloc_mu (shared or exclusive).
static bool range_ok_locked(uintptr_t p, size_t n) {
    auto& m = allocs();
    auto it = m.upper_bound(p);
    if (it == m.begin()) return false;
    --it;
    return p >= it->first && p + n <= it->first + it->second.size && p < it->first + it->second.size;
}

bool device_range_ok(CUdeviceptr p, size_t n) {
    std::shared_lock<std::shared_mutex> lk(alloc_mu());
    return range_ok_locked((uintptr_t)p, n);
}

// An op touching device memory re-checks its range when it runs, under the
// shared lock, so a free that raced ahead of queued work is reported instead
// of corrupting memory.
static void guarded(std::initializer_list<std::pair<uintptr_t, size_t>> ranges, const std::function<void()>& body) {
    std::shared_lock<std::shared_mutex> lk(alloc_mu());
    for (auto& r : ranges)
        if (!range_ok_locked(r.first, r.second)) {
            add_hazard("memory_op_on_freed_memory", "a queued memory operation ran after its allocation was freed");
            return;
        }
    body();
}

static CUresult sync_op(Op op, bool pt) {
    CUresult r = check_unsafe_call();
    if (r != CUDA_SUCCESS) return r;
    Stream* s;
    r = resolve_stream(nullptr, &s, pt);
    if (r != CUDA_SUCCESS) return r;
    auto sig = std::make_shared<Signal>();
    r = submit(s, [op, sig] {
        op();
        sig->arrive();
    }, true);
    if (r != CUDA_SUCCESS) return r;
    sig->wait();
    return CUDA_SUCCESS;
}

static CUresult async_op(CUstream h, Op op, bool pt, const NodeSpec* spec) {
    RESOLVE(h, s, pt);
    return submit(s, std::move(op), true, spec);
}

// ---- operation builders (validate now, run later)
static CUDA_MEMSET_NODE_PARAMS memset_params(CUdeviceptr d, unsigned v, unsigned element, size_t n) {
    CUDA_MEMSET_NODE_PARAMS p{};
    p.dst = d;
    p.value = v;
    p.elementSize = element;
    p.width = n;
    p.height = 1;
    return p;
}
static CUresult memset8(CUdeviceptr d, unsigned char v, size_t n, Op* op) {
    return memset_op(memset_params(d, v, 1, n), op);
}
static CUresult memset32(CUdeviceptr d, unsigned int v, size_t n, Op* op) {
    return memset_op(memset_params(d, v, 4, n), op);
}
// What a captured memset or copy node reports (cuGraphMemsetNodeGetParams...).
static NodeSpec memset_spec(CUdeviceptr d, unsigned v, unsigned element, size_t n) {
    NodeSpec spec;
    spec.type = CU_GRAPH_NODE_TYPE_MEMSET;
    spec.memset = memset_params(d, v, element, n);
    return spec;
}
static NodeSpec copy_spec(uintptr_t dst, CUmemorytype dt, uintptr_t src, CUmemorytype st, size_t n) {
    NodeSpec spec;
    spec.type = CU_GRAPH_NODE_TYPE_MEMCPY;
    CUDA_MEMCPY3D& c = spec.copy;
    c.dstMemoryType = dt;
    c.srcMemoryType = st;
    (dt == CU_MEMORYTYPE_HOST ? (void)(c.dstHost = (void*)dst) : (void)(c.dstDevice = (CUdeviceptr)dst));
    (st == CU_MEMORYTYPE_HOST ? (void)(c.srcHost = (const void*)src) : (void)(c.srcDevice = (CUdeviceptr)src));
    c.WidthInBytes = n;
    c.Height = 1;
    c.Depth = 1;
    return spec;
}
static NodeSpec host_spec(CUhostFn fn, void* data) {
    NodeSpec spec;
    spec.type = CU_GRAPH_NODE_TYPE_HOST;
    spec.fn = fn;
    spec.user_data = data;
    return spec;
}
static CUresult htod(CUdeviceptr d, const void* src, size_t n, Op* op) {
    if (src == nullptr && n > 0) return CUDA_ERROR_INVALID_VALUE;
    if (!device_range_ok(d, n)) return CUDA_ERROR_INVALID_VALUE;
    *op = [d, src, n] { guarded({{(uintptr_t)d, n}}, [&] { memcpy((void*)d, src, n); }); };
    return CUDA_SUCCESS;
}
static CUresult dtoh(void* dst, CUdeviceptr s, size_t n, Op* op) {
    if (dst == nullptr && n > 0) return CUDA_ERROR_INVALID_VALUE;
    if (!device_range_ok(s, n)) return CUDA_ERROR_INVALID_VALUE;
    *op = [dst, s, n] { guarded({{(uintptr_t)s, n}}, [&] { memcpy(dst, (const void*)s, n); }); };
    return CUDA_SUCCESS;
}
static CUresult dtod(CUdeviceptr d, CUdeviceptr s, size_t n, Op* op) {
    if (!device_range_ok(d, n) || !device_range_ok(s, n)) return CUDA_ERROR_INVALID_VALUE;
    *op = [d, s, n] { guarded({{(uintptr_t)d, n}, {(uintptr_t)s, n}}, [&] { memmove((void*)d, (const void*)s, n); }); };
    return CUDA_SUCCESS;
}
// Unified addressing: either side may be host or device memory.
static CUresult any_copy(CUdeviceptr d, CUdeviceptr s, size_t n, Op* op) {
    if ((d == 0 || s == 0) && n > 0) return CUDA_ERROR_INVALID_VALUE;
    *op = [d, s, n] { memmove((void*)d, (const void*)s, n); };
    return CUDA_SUCCESS;
}

#define SYNC_FORM(NAME, BUILD, PT)        \
    {                                     \
        SIM_ENTER_INIT(NAME);             \
        Op op;                            \
        CUresult r = BUILD;               \
        if (r != CUDA_SUCCESS) return r;  \
        return sync_op(std::move(op), PT); \
    }
#define ASYNC_FORM(NAME, BUILD, SPEC, H, PT)           \
    {                                                  \
        SIM_ENTER_INIT(NAME);                          \
        Op op;                                         \
        CUresult r = BUILD;                            \
        if (r != CUDA_SUCCESS) return r;               \
        NodeSpec spec = SPEC;                          \
        return async_op(H, std::move(op), PT, &spec);  \
    }

// Per-thread variants (reached through cuGetProcAddress with
// CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM).
CUresult memsetD8_ptds(CUdeviceptr d, unsigned char v, size_t n) SYNC_FORM("cuMemsetD8", memset8(d, v, n, &op), true)
CUresult memsetD32_ptds(CUdeviceptr d, unsigned int v, size_t n) SYNC_FORM("cuMemsetD32", memset32(d, v, n, &op), true)
CUresult memcpyHtoD_ptds(CUdeviceptr d, const void* s, size_t n) SYNC_FORM("cuMemcpyHtoD", htod(d, s, n, &op), true)
CUresult memcpyDtoH_ptds(void* d, CUdeviceptr s, size_t n) SYNC_FORM("cuMemcpyDtoH", dtoh(d, s, n, &op), true)
CUresult memcpyDtoD_ptds(CUdeviceptr d, CUdeviceptr s, size_t n) SYNC_FORM("cuMemcpyDtoD", dtod(d, s, n, &op), true)
CUresult memcpy_ptds(CUdeviceptr d, CUdeviceptr s, size_t n) SYNC_FORM("cuMemcpy", any_copy(d, s, n, &op), true)
CUresult memsetD8Async_ptsz(CUdeviceptr d, unsigned char v, size_t n, CUstream h) ASYNC_FORM("cuMemsetD8Async", memset8(d, v, n, &op), memset_spec(d, v, 1, n), h, true)
CUresult memsetD32Async_ptsz(CUdeviceptr d, unsigned int v, size_t n, CUstream h) ASYNC_FORM("cuMemsetD32Async", memset32(d, v, n, &op), memset_spec(d, v, 4, n), h, true)
CUresult memcpyHtoDAsync_ptsz(CUdeviceptr d, const void* s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyHtoDAsync", htod(d, s, n, &op), copy_spec(d, CU_MEMORYTYPE_DEVICE, (uintptr_t)s, CU_MEMORYTYPE_HOST, n), h, true)
CUresult memcpyDtoHAsync_ptsz(void* d, CUdeviceptr s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyDtoHAsync", dtoh(d, s, n, &op), copy_spec((uintptr_t)d, CU_MEMORYTYPE_HOST, s, CU_MEMORYTYPE_DEVICE, n), h, true)
CUresult memcpyDtoDAsync_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyDtoDAsync", dtod(d, s, n, &op), copy_spec(d, CU_MEMORYTYPE_DEVICE, s, CU_MEMORYTYPE_DEVICE, n), h, true)
CUresult memcpyAsync_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyAsync", any_copy(d, s, n, &op), copy_spec(d, CU_MEMORYTYPE_UNIFIED, s, CU_MEMORYTYPE_UNIFIED, n), h, true)

static CUresult host_func(CUstream h, CUhostFn fn, void* data, bool pt) {
    if (fn == nullptr) return CUDA_ERROR_INVALID_VALUE;
    NodeSpec spec = host_spec(fn, data);
    return async_op(h, [fn, data] { fn(data); }, pt, &spec);
}
CUresult launchHostFunc_ptsz(CUstream h, CUhostFn fn, void* data) {
    SIM_ENTER_INIT("cuLaunchHostFunc");
    return host_func(h, fn, data, true);
}
CUresult launchHostFunc_v2_ptsz(CUstream h, CUhostFn fn, void* data, unsigned int mode) {
    SIM_ENTER_INIT("cuLaunchHostFunc");
    if (mode > CU_HOST_TASK_SPINWAIT) return CUDA_ERROR_INVALID_VALUE;
    return host_func(h, fn, data, true);
}

}  // namespace sim

// ---------------------------------------------------------------- allocation
SIM_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytesize) {
    SIM_ENTER_INIT("cuMemAlloc");
    if (dptr == nullptr || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    r = check_unsafe_call();
    if (r != CUDA_SUCCESS) return r;
    Device& d = *g_devices[c->device];
    size_t rounded = round256(bytesize);
    unsigned long long before = d.allocated.fetch_add(rounded);
    if (before + rounded > d.total_mem) {
        d.allocated.fetch_sub(rounded);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    void* p = aligned_alloc(256, rounded);
    if (p == nullptr) {
        d.allocated.fetch_sub(rounded);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    register_alloc(p, bytesize, c->device, false);
    *dptr = (CUdeviceptr)p;
    return CUDA_SUCCESS;
}

static CUresult free_alloc(uintptr_t p, bool host);
size_t sim::round_alloc(size_t n) { return round256(n); }

CUresult sim::pool_alloc_memory(MemPool* pool, size_t bytesize, CUdeviceptr* out) {
    void* p = aligned_alloc(256, round256(bytesize));
    if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    register_alloc(p, bytesize, pool->device, false, pool);
    *out = (CUdeviceptr)p;
    return CUDA_SUCCESS;
}

bool sim::is_device_alloc(CUdeviceptr p) {
    std::shared_lock<std::shared_mutex> lk(alloc_mu());
    auto it = allocs().find((uintptr_t)p);
    return it != allocs().end() && !it->second.host;
}

CUresult sim::free_device_memory(CUdeviceptr p) { return free_alloc((uintptr_t)p, false); }

// cuPointerGetAttribute for the memory the simulator allocated (cuMemAlloc,
// cuMemAllocAsync, cuMemAllocHost): what cuda.core asks to tell host from
// device memory. Any other pointer is INVALID_VALUE (cuda.h), as for memory the
// driver does not know. Managed memory does not exist here (IS_MANAGED is 0).
SIM_EXPORT CUresult cuPointerGetAttribute(void* data, CUpointer_attribute attribute, CUdeviceptr ptr) {
    SIM_ENTER_INIT("cuPointerGetAttribute");
    if (data == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::shared_lock<std::shared_mutex> lk(alloc_mu());
    auto& m = allocs();
    auto it = m.upper_bound((uintptr_t)ptr);
    if (it == m.begin()) return CUDA_ERROR_INVALID_VALUE;
    --it;
    const uintptr_t base = it->first;
    const Alloc& a = it->second;
    if ((uintptr_t)ptr >= base + a.size) return CUDA_ERROR_INVALID_VALUE;
    switch (attribute) {
        case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
            *(unsigned*)data = a.host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE;
            return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *(int*)data = a.device; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
        case CU_POINTER_ATTRIBUTE_HOST_POINTER:
            // One address space: device memory is host memory here, at the same address.
            *(void**)data = (void*)ptr;
            return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *(CUdeviceptr*)data = base; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *(size_t*)data = a.size; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_IS_MANAGED: *(unsigned*)data = 0; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_MAPPED: *(unsigned*)data = 1; return CUDA_SUCCESS;
        case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE: *(CUmemoryPool*)data = a.pool != nullptr ? handle_of<CUmemoryPool>(a.pool) : nullptr;
            return CUDA_SUCCESS;
        default: return CUDA_ERROR_NOT_SUPPORTED;
    }
}

static CUresult free_alloc(uintptr_t p, bool host) {
    Alloc a;
    {
        std::unique_lock<std::shared_mutex> lk(alloc_mu());
        auto it = allocs().find(p);
        if (it == allocs().end() || it->second.host != host) return CUDA_ERROR_INVALID_VALUE;
        a = it->second;
        allocs().erase(it);
    }
    if (a.pool != nullptr)
        pool_released(a.pool, round256(a.size));  // the pool decides what the device gets back
    else if (!host)
        g_devices[a.device]->allocated.fetch_sub(round256(a.size));
    free((void*)p);
    g_live[kLiveAlloc].fetch_sub(1, std::memory_order_relaxed);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
    SIM_ENTER_INIT("cuMemFree");
    CUresult r = check_unsafe_call();
    if (r != CUDA_SUCCESS) return r;
    return free_alloc((uintptr_t)dptr, false);
}

SIM_EXPORT CUresult cuMemAllocHost_v2(void** pp, size_t bytesize) {
    SIM_ENTER_INIT("cuMemAllocHost");
    if (pp == nullptr || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    void* p = aligned_alloc(256, round256(bytesize));
    if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    register_alloc(p, bytesize, c->device, true);
    *pp = p;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemFreeHost(void* p) {
    SIM_ENTER_INIT("cuMemFreeHost");
    return free_alloc((uintptr_t)p, true);
}

SIM_EXPORT CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    SIM_ENTER_INIT("cuMemGetInfo");
    if (free_bytes == nullptr || total == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    Device& d = *g_devices[c->device];
    *total = (size_t)d.total_mem;
    *free_bytes = (size_t)(d.total_mem - d.allocated.load());
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- set & copy
SIM_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) SYNC_FORM("cuMemsetD8", memset8(d, v, n, &op), false)
SIM_EXPORT CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) SYNC_FORM("cuMemsetD32", memset32(d, v, n, &op), false)
SIM_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void* s, size_t n) SYNC_FORM("cuMemcpyHtoD", htod(d, s, n, &op), false)
SIM_EXPORT CUresult cuMemcpyDtoH_v2(void* d, CUdeviceptr s, size_t n) SYNC_FORM("cuMemcpyDtoH", dtoh(d, s, n, &op), false)
SIM_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr d, CUdeviceptr s, size_t n) SYNC_FORM("cuMemcpyDtoD", dtod(d, s, n, &op), false)
SIM_EXPORT CUresult cuMemcpy(CUdeviceptr d, CUdeviceptr s, size_t n) SYNC_FORM("cuMemcpy", any_copy(d, s, n, &op), false)
SIM_EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream h) ASYNC_FORM("cuMemsetD8Async", memset8(d, v, n, &op), memset_spec(d, v, 1, n), h, false)
SIM_EXPORT CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream h) ASYNC_FORM("cuMemsetD32Async", memset32(d, v, n, &op), memset_spec(d, v, 4, n), h, false)
SIM_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyHtoDAsync", htod(d, s, n, &op), copy_spec(d, CU_MEMORYTYPE_DEVICE, (uintptr_t)s, CU_MEMORYTYPE_HOST, n), h, false)
SIM_EXPORT CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyDtoHAsync", dtoh(d, s, n, &op), copy_spec((uintptr_t)d, CU_MEMORYTYPE_HOST, s, CU_MEMORYTYPE_DEVICE, n), h, false)
SIM_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyDtoDAsync", dtod(d, s, n, &op), copy_spec(d, CU_MEMORYTYPE_DEVICE, s, CU_MEMORYTYPE_DEVICE, n), h, false)
SIM_EXPORT CUresult cuMemcpyAsync(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream h) ASYNC_FORM("cuMemcpyAsync", any_copy(d, s, n, &op), copy_spec(d, CU_MEMORYTYPE_UNIFIED, s, CU_MEMORYTYPE_UNIFIED, n), h, false)

SIM_EXPORT CUresult cuLaunchHostFunc(CUstream h, CUhostFn fn, void* data) {
    SIM_ENTER_INIT("cuLaunchHostFunc");
    return host_func(h, fn, data, false);
}
SIM_EXPORT CUresult cuLaunchHostFunc_v2(CUstream h, CUhostFn fn, void* data, unsigned int syncMode) {
    SIM_ENTER_INIT("cuLaunchHostFunc");
    if (syncMode > CU_HOST_TASK_SPINWAIT) return CUDA_ERROR_INVALID_VALUE;
    return host_func(h, fn, data, false);
}

// ---------------------------------------------------------------- memset and copy operations
// Shared by the stream forms above and by graph memset/memcpy nodes.
namespace sim {

// The bytes of one row (width elements) and of `rows` rows `pitch` apart;
// false when they overflow or a row does not fit its pitch (a wrapped span
// would pass the range check and write past the allocation).
static bool pitched_span(size_t width, size_t element, size_t rows, size_t pitch, size_t* row, size_t* span) {
    if (__builtin_mul_overflow(width, element, row)) return false;
    if (rows == 1) {
        *span = *row;
        return true;
    }
    size_t before_last;
    if (pitch < *row || __builtin_mul_overflow(rows - 1, pitch, &before_last)) return false;
    return !__builtin_add_overflow(before_last, *row, span);
}

CUresult memset_op(const CUDA_MEMSET_NODE_PARAMS& p, Op* op) {
    const size_t element = p.elementSize;
    if (element != 1 && element != 2 && element != 4) return CUDA_ERROR_INVALID_VALUE;
    if (p.dst % element != 0) return CUDA_ERROR_INVALID_VALUE;  // cuda.h: dst aligned to the element size
    const size_t rows = p.height == 0 ? 1 : p.height;
    size_t row, span;
    if (!pitched_span(p.width, element, rows, p.pitch, &row, &span)) return CUDA_ERROR_INVALID_VALUE;
    if (!device_range_ok(p.dst, span)) return CUDA_ERROR_INVALID_VALUE;
    const uintptr_t dst = (uintptr_t)p.dst;
    const size_t pitch = p.pitch, width = p.width;
    const unsigned value = p.value;
    *op = [dst, span, rows, pitch, width, element, value] {
        guarded({{dst, span}}, [&] {
            for (size_t y = 0; y < rows; ++y) {
                auto* line = (unsigned char*)(dst + y * pitch);
                if (element == 1) {
                    memset(line, (unsigned char)value, width);
                } else if (element == 2) {
                    auto* q = (unsigned short*)line;
                    for (size_t i = 0; i < width; ++i) q[i] = (unsigned short)value;
                } else {
                    auto* q = (unsigned int*)line;
                    for (size_t i = 0; i < width; ++i) q[i] = value;
                }
            }
        });
    };
    return CUDA_SUCCESS;
}

// One side of a copy: its first byte, and whether it is device memory (checked
// when the copy runs). Unified: device memory when it lies in an allocation.
static CUresult copy_side(CUmemorytype type, const void* host, CUdeviceptr device, size_t x, size_t y, size_t pitch,
                          size_t span, uintptr_t* at, bool* is_device) {
    if (type == CU_MEMORYTYPE_ARRAY) return CUDA_ERROR_NOT_SUPPORTED;  // CUDA arrays are not simulated
    uintptr_t base = type == CU_MEMORYTYPE_HOST ? (uintptr_t)host : (uintptr_t)device;
    if (type != CU_MEMORYTYPE_HOST && type != CU_MEMORYTYPE_DEVICE && type != CU_MEMORYTYPE_UNIFIED)
        return CUDA_ERROR_INVALID_VALUE;
    if (base == 0) return CUDA_ERROR_INVALID_VALUE;
    size_t offset;
    if (__builtin_mul_overflow(y, pitch, &offset) || __builtin_add_overflow(offset, x, &offset) ||
        __builtin_add_overflow(base, offset, at))
        return CUDA_ERROR_INVALID_VALUE;
    *is_device = type == CU_MEMORYTYPE_DEVICE || (type == CU_MEMORYTYPE_UNIFIED && device_range_ok(*at, span));
    if (type == CU_MEMORYTYPE_DEVICE && !device_range_ok(*at, span)) return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

CUresult copy3d_op(const CUDA_MEMCPY3D& p, Op* op) {
    // Linear memory, one slice (a 3D copy of several slices is not simulated).
    const size_t rows = p.Height == 0 ? 1 : p.Height;
    if (p.Depth > 1 || p.srcZ != 0 || p.dstZ != 0 || p.srcLOD != 0 || p.dstLOD != 0) return CUDA_ERROR_NOT_SUPPORTED;
    const size_t width = p.WidthInBytes;
    size_t row, src_span, dst_span;
    if (!pitched_span(width, 1, rows, p.srcPitch, &row, &src_span) ||
        !pitched_span(width, 1, rows, p.dstPitch, &row, &dst_span))
        return CUDA_ERROR_INVALID_VALUE;
    uintptr_t src, dst;
    bool src_dev, dst_dev;
    CUresult r = copy_side(p.srcMemoryType, p.srcHost, p.srcDevice, p.srcXInBytes, p.srcY, p.srcPitch, src_span, &src,
                           &src_dev);
    if (r != CUDA_SUCCESS) return r;
    r = copy_side(p.dstMemoryType, p.dstHost, p.dstDevice, p.dstXInBytes, p.dstY, p.dstPitch, dst_span, &dst, &dst_dev);
    if (r != CUDA_SUCCESS) return r;
    const size_t sp = p.srcPitch, dp = p.dstPitch;
    *op = [=] {
        auto copy = [&] {
            for (size_t y = 0; y < rows; ++y) memmove((void*)(dst + y * dp), (const void*)(src + y * sp), width);
        };
        if (src_dev && dst_dev)
            guarded({{src, src_span}, {dst, dst_span}}, copy);
        else if (src_dev)
            guarded({{src, src_span}}, copy);
        else if (dst_dev)
            guarded({{dst, dst_span}}, copy);
        else
            copy();
    };
    return CUDA_SUCCESS;
}

}  // namespace sim
