// Memory pools and stream-ordered allocation: cuDeviceGet(Default)MemPool,
// cuDeviceSetMemPool, cuMemPoolCreate/Destroy/Get|SetAttribute/TrimTo/
// Set|GetAccess, cuMemAllocAsync, cuMemAllocFromPoolAsync, cuMemFreeAsync.
//
// An allocation is made when cuMemAllocAsync is called (its memory is usable
// from then on, which a correct program cannot tell apart from "in stream
// order"); cuMemFreeAsync frees it when the stream reaches the free, so work
// queued on another stream without a dependency that runs after it records
// memory_op_on_freed_memory. guess: freed memory the pool keeps (up to
// CU_MEMPOOL_ATTR_RELEASE_THRESHOLD) is released back to the device at the
// free that exceeds the threshold, not "on the next synchronize" (cuda.h), so
// RESERVED_MEM_CURRENT never exceeds used + threshold; the simulator keeps no
// granularity (a real pool reserves in chunks of MiBs).
// Not modelled: allocations during stream capture (graph memory nodes):
// CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED and the capture is invalidated; pools
// of host memory and IPC handle types: CUDA_ERROR_NOT_SUPPORTED.
#include "pools.h"

using namespace sim;

namespace {

MemPool* live_pool(CUmemoryPool h) { return live_object<MemPool>(h); }

MemPool* new_pool(int device, bool is_default) {
    auto* p = make_object<MemPool>();
    if (p == nullptr) return nullptr;
    p->device = device;
    p->is_default = is_default;
    g_live[kLivePool].fetch_add(1, std::memory_order_relaxed);
    return p;
}

// The default pool of a device, made on first use. Caller holds d.pool_mu.
MemPool* default_pool_locked(int device) {
    Device& d = *g_devices[device];
    if (d.default_pool == nullptr) d.default_pool = new_pool(device, true);
    return d.default_pool;
}

MemPool* current_pool(int device) {
    Device& d = *g_devices[device];
    std::lock_guard<std::mutex> lk(d.pool_mu);
    return d.current_pool != nullptr ? d.current_pool : default_pool_locked(device);
}

void reclaim_pool(MemPool* p) {
    g_live[kLivePool].fetch_sub(1, std::memory_order_relaxed);
    reclaim_object(p);
}

// Gives the device back what the pool holds beyond `keep` bytes of freed memory.
void release_cached_locked(MemPool* p, unsigned long long keep) {
    unsigned long long cached = p->reserved - p->used;
    if (cached <= keep) return;
    unsigned long long give = cached - keep;
    p->reserved -= give;
    g_devices[p->device]->allocated.fetch_sub(give);
}

CUresult pool_allocate(MemPool* p, size_t bytesize, CUdeviceptr* out) {
    size_t rounded = round_alloc(bytesize);
    Device& d = *g_devices[p->device];
    {
        std::lock_guard<std::mutex> lk(p->mu);
        unsigned long long cached = p->reserved - p->used;
        unsigned long long fresh = rounded > cached ? rounded - cached : 0;
        if (p->max_size != 0 && p->reserved + fresh > p->max_size) return CUDA_ERROR_OUT_OF_MEMORY;
        unsigned long long before = d.allocated.fetch_add(fresh);
        if (before + fresh > d.total_mem) {
            d.allocated.fetch_sub(fresh);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        p->reserved += fresh;
        p->used += rounded;
        p->reserved_high = std::max(p->reserved_high, p->reserved);
        p->used_high = std::max(p->used_high, p->used);
        ++p->outstanding;
    }
    CUresult r = pool_alloc_memory(p, bytesize, out);
    if (r != CUDA_SUCCESS) pool_released(p, rounded);
    return r;
}

// The stream must be usable and not capturing (graph memory nodes are not modelled).
CUresult ordered_stream(CUstream h, bool pt, Stream** out) {
    CUresult r = resolve_stream(h, out, pt);
    if (r != CUDA_SUCCESS) return r;
    Capture* c = (*out)->capture.load(std::memory_order_acquire);
    if (c != nullptr) {
        invalidate_capture(c);
        return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    return CUDA_SUCCESS;
}

CUresult alloc_async(CUdeviceptr* dptr, size_t bytesize, MemPool* pool, CUstream h, bool pt) {
    if (dptr == nullptr || bytesize == 0) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CUresult r = ordered_stream(h, pt, &s);
    if (r != CUDA_SUCCESS) return r;
    if (pool == nullptr) pool = current_pool(s->ctx->device);
    else if (pool->device != s->ctx->device) return CUDA_ERROR_INVALID_VALUE;  // guess: a pool of another device
    return pool_allocate(pool, bytesize, dptr);
}

CUresult free_async(CUdeviceptr dptr, CUstream h, bool pt) {
    if (!is_device_alloc(dptr)) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CUresult r = ordered_stream(h, pt, &s);
    if (r != CUDA_SUCCESS) return r;
    return submit(s, [dptr] {
        if (free_device_memory(dptr) != CUDA_SUCCESS)
            add_hazard("memory_op_on_freed_memory", "cuMemFreeAsync ran after its allocation was freed");
    }, false);
}

bool readonly_attr(CUmemPool_attribute a) {
    return a == CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT || a == CU_MEMPOOL_ATTR_USED_MEM_CURRENT ||
           a == CU_MEMPOOL_ATTR_ALLOCATION_TYPE || a == CU_MEMPOOL_ATTR_EXPORT_HANDLE_TYPES ||
           a == CU_MEMPOOL_ATTR_LOCATION_ID || a == CU_MEMPOOL_ATTR_LOCATION_TYPE ||
           a == CU_MEMPOOL_ATTR_MAX_POOL_SIZE || a == CU_MEMPOOL_ATTR_HW_DECOMPRESS_ENABLED ||
           a == CU_MEMPOOL_ATTR_LOCALITY_DOMAIN_ID;
}

}  // namespace

namespace sim {
void pool_released(MemPool* p, size_t rounded) {
    bool reclaim = false;
    {
        std::lock_guard<std::mutex> lk(p->mu);
        p->used -= rounded;
        --p->outstanding;
        release_cached_locked(p, p->destroyed ? 0 : p->release_threshold);
        reclaim = p->destroyed && p->outstanding == 0;
    }
    if (reclaim) reclaim_pool(p);
}
}  // namespace sim

// ---------------------------------------------------------------- device pools
SIM_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* out, CUdevice dev) {
    SIM_ENTER_INIT("cuDeviceGetDefaultMemPool");
    if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    Device& d = *g_devices[dev];
    std::lock_guard<std::mutex> lk(d.pool_mu);
    MemPool* p = default_pool_locked(dev);
    if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    *out = handle_of<CUmemoryPool>(p);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool* out, CUdevice dev) {
    SIM_ENTER_INIT("cuDeviceGetMemPool");
    if (out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    MemPool* p = current_pool(dev);
    if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    *out = handle_of<CUmemoryPool>(p);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool) {
    SIM_ENTER_INIT("cuDeviceSetMemPool");
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    MemPool* p = live_pool(pool);
    if (p == nullptr || p->device != dev) return CUDA_ERROR_INVALID_VALUE;
    Device& d = *g_devices[dev];
    std::lock_guard<std::mutex> lk(d.pool_mu);
    d.current_pool = p->is_default ? nullptr : p;
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- pools
SIM_EXPORT CUresult cuMemPoolCreate(CUmemoryPool* out, const CUmemPoolProps* props) {
    SIM_ENTER_INIT("cuMemPoolCreate");
    if (out == nullptr || props == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (props->allocType != CU_MEM_ALLOCATION_TYPE_PINNED || props->win32SecurityAttributes != nullptr)
        return CUDA_ERROR_INVALID_VALUE;
    if (props->location.type != CU_MEM_LOCATION_TYPE_DEVICE) {
        bool host = props->location.type == CU_MEM_LOCATION_TYPE_HOST ||
                    props->location.type == CU_MEM_LOCATION_TYPE_HOST_NUMA ||
                    props->location.type == CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT;
        return host ? CUDA_ERROR_NOT_SUPPORTED : CUDA_ERROR_INVALID_VALUE;
    }
    if (!valid_device(props->location.id)) return CUDA_ERROR_INVALID_VALUE;
    if (props->handleTypes != CU_MEM_HANDLE_TYPE_NONE) return CUDA_ERROR_NOT_SUPPORTED;
    MemPool* p = new_pool(props->location.id, false);
    if (p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    p->max_size = props->maxSize;
    *out = handle_of<CUmemoryPool>(p);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool) {
    SIM_ENTER_INIT("cuMemPoolDestroy");
    MemPool* p = live_pool(pool);
    if (p == nullptr || p->is_default) return CUDA_ERROR_INVALID_VALUE;  // cuda.h: the default pool cannot be destroyed
    bool expected = true;
    if (!p->alive.compare_exchange_strong(expected, false)) {
        note_destroyed_handle(kSlabPool, slot_size<MemPool>(), kMagicPool, pool);
        return CUDA_ERROR_INVALID_VALUE;
    }
    {
        Device& d = *g_devices[p->device];
        std::lock_guard<std::mutex> lk(d.pool_mu);
        if (d.current_pool == p) d.current_pool = nullptr;  // the default pool is current again
    }
    bool reclaim;
    {
        std::lock_guard<std::mutex> lk(p->mu);
        p->destroyed = true;
        release_cached_locked(p, 0);
        reclaim = p->outstanding == 0;  // else the last free reclaims it
    }
    if (reclaim) reclaim_pool(p);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void* value) {
    SIM_ENTER_INIT("cuMemPoolGetAttribute");
    MemPool* p = live_pool(pool);
    if (p == nullptr || value == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(p->mu);
    auto* i = static_cast<int*>(value);
    auto* u = static_cast<cuuint64_t*>(value);
    switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES: *i = p->reuse_follow_events; break;
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC: *i = p->reuse_opportunistic; break;
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES: *i = p->reuse_internal_deps; break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: *u = p->release_threshold; break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT: *u = p->reserved; break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: *u = p->reserved_high; break;
        case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: *u = p->used; break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH: *u = p->used_high; break;
        case CU_MEMPOOL_ATTR_ALLOCATION_TYPE: *static_cast<CUmemAllocationType*>(value) = CU_MEM_ALLOCATION_TYPE_PINNED; break;
        case CU_MEMPOOL_ATTR_EXPORT_HANDLE_TYPES: *static_cast<CUmemAllocationHandleType*>(value) = CU_MEM_HANDLE_TYPE_NONE; break;
        case CU_MEMPOOL_ATTR_LOCATION_ID: *i = p->device; break;
        case CU_MEMPOOL_ATTR_LOCATION_TYPE: *static_cast<CUmemLocationType*>(value) = CU_MEM_LOCATION_TYPE_DEVICE; break;
        case CU_MEMPOOL_ATTR_MAX_POOL_SIZE: *u = p->max_size; break;
        case CU_MEMPOOL_ATTR_HW_DECOMPRESS_ENABLED: *i = 0; break;
        case CU_MEMPOOL_ATTR_LOCALITY_DOMAIN_ID: *i = 0; break;  // one locality domain, as in the splits
        default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void* value) {
    SIM_ENTER_INIT("cuMemPoolSetAttribute");
    MemPool* p = live_pool(pool);
    if (p == nullptr || value == nullptr || readonly_attr(attr)) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(p->mu);
    int i = *static_cast<int*>(value);
    cuuint64_t u = *static_cast<cuuint64_t*>(value);
    switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES: p->reuse_follow_events = i != 0; break;
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC: p->reuse_opportunistic = i != 0; break;
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES: p->reuse_internal_deps = i != 0; break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            p->release_threshold = u;
            release_cached_locked(p, u);
            break;
        // cuda.h: "High watermark can only be reset to zero" (it then restarts from the current value).
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
            if (u != 0) return CUDA_ERROR_INVALID_VALUE;
            p->reserved_high = p->reserved;
            break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            if (u != 0) return CUDA_ERROR_INVALID_VALUE;
            p->used_high = p->used;
            break;
        default: return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep) {
    SIM_ENTER_INIT("cuMemPoolTrimTo");
    MemPool* p = live_pool(pool);
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(p->mu);
    // Keep at least minBytesToKeep reserved; what live allocations use cannot go.
    if (p->reserved > minBytesToKeep) {
        unsigned long long keep_cached = minBytesToKeep > p->used ? minBytesToKeep - p->used : 0;
        release_cached_locked(p, keep_cached);
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolSetAccess(CUmemoryPool pool, const CUmemAccessDesc* map, size_t count) {
    SIM_ENTER_INIT("cuMemPoolSetAccess");
    MemPool* p = live_pool(pool);
    if (p == nullptr || (map == nullptr && count > 0)) return CUDA_ERROR_INVALID_VALUE;
    for (size_t k = 0; k < count; ++k) {
        const CUmemAccessDesc& a = map[k];
        if (a.location.type != CU_MEM_LOCATION_TYPE_DEVICE || !valid_device(a.location.id) ||
            a.flags > CU_MEM_ACCESS_FLAGS_PROT_READWRITE)
            return CUDA_ERROR_INVALID_VALUE;
        // The pool's own device always reads and writes it.
        if (a.location.id == p->device && a.flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE) return CUDA_ERROR_INVALID_VALUE;
    }
    std::lock_guard<std::mutex> lk(p->mu);
    for (size_t k = 0; k < count; ++k) {
        int dev = map[k].location.id;
        if (dev == p->device) continue;
        bool found = false;
        for (auto& e : p->peer_access)
            if (e.first == dev) {
                e.second = map[k].flags;
                found = true;
            }
        if (!found) p->peer_access.emplace_back(dev, map[k].flags);
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuMemPoolGetAccess(CUmemAccess_flags* flags, CUmemoryPool pool, CUmemLocation* location) {
    SIM_ENTER_INIT("cuMemPoolGetAccess");
    MemPool* p = live_pool(pool);
    if (p == nullptr || flags == nullptr || location == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (location->type != CU_MEM_LOCATION_TYPE_DEVICE || !valid_device(location->id)) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(p->mu);
    *flags = location->id == p->device ? CU_MEM_ACCESS_FLAGS_PROT_READWRITE : CU_MEM_ACCESS_FLAGS_PROT_NONE;
    for (auto& e : p->peer_access)
        if (e.first == location->id) *flags = e.second;
    return CUDA_SUCCESS;
}

// ---------------------------------------------------------------- stream-ordered allocation
SIM_EXPORT CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytesize, CUstream h) {
    SIM_ENTER_INIT("cuMemAllocAsync");
    return alloc_async(dptr, bytesize, nullptr, h, false);
}

SIM_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream h) {
    SIM_ENTER_INIT("cuMemAllocFromPoolAsync");
    MemPool* p = live_pool(pool);
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return alloc_async(dptr, bytesize, p, h, false);
}

SIM_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream h) {
    SIM_ENTER_INIT("cuMemFreeAsync");
    return free_async(dptr, h, false);
}

namespace sim {
CUresult memAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytesize, CUstream h) {
    SIM_ENTER_INIT("cuMemAllocAsync");
    return alloc_async(dptr, bytesize, nullptr, h, true);
}
CUresult memAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream h) {
    SIM_ENTER_INIT("cuMemAllocFromPoolAsync");
    MemPool* p = live_pool(pool);
    if (p == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return alloc_async(dptr, bytesize, p, h, true);
}
CUresult memFreeAsync_ptsz(CUdeviceptr dptr, CUstream h) {
    SIM_ENTER_INIT("cuMemFreeAsync");
    return free_async(dptr, h, true);
}
}  // namespace sim
