// Provenance of a CUdevResource, stored in its _internal_padding so resources
// stay plain values that users copy freely (cuda.h: 144 bytes, type at 0, the
// union at 96).
#pragma once

#include <cstring>

#include "state.h"

namespace sim {

constexpr uint32_t kResMagic = 0x47525253;  // "GRRS"

enum ResOrigin : int32_t {
    kOriginQueried = 0,     // from a device, context or green context: splittable
    kOriginGroup = 1,       // a result of a split: not splittable until made a green context
    kOriginRemainder = 2,   // the remainder of a split: splittable (discouraged by cuda.h)
    kOriginWqConfig = 3,    // a CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG (13.1) from a query
    kOriginWorkqueue = 4,   // a CU_DEV_RESOURCE_TYPE_WORKQUEUE: the workqueue of a context
};

// CUDA_DEVICE_MAX_CONNECTIONS: read once (at cuInit), 8 when unset, clamped to the
// documented 1..32. The maximum wqConcurrencyLimit a primary context reports.
int max_connections();

// A workqueue configuration: what a descriptor and a green context carry.
struct WqConfig {
    bool set = false;            // false: the driver's default (device scope, the maximum)
    unsigned limit = 0;
    int scope = CU_WORKQUEUE_SCOPE_DEVICE_CTX;
    unsigned long long shared_from = 0;  // id of the context whose workqueue it reuses (0: own)
    bool operator<(const WqConfig& o) const {
        if (set != o.set) return set < o.set;
        if (limit != o.limit) return limit < o.limit;
        if (scope != o.scope) return scope < o.scope;
        return shared_from < o.shared_from;
    }
};

struct ResInfo {
    uint32_t magic;
    int32_t device;
    unsigned long long split_id;  // 0 for queried resources
    int32_t origin;
    int32_t index;                // group index, -1 for the remainder and queried resources
    uint64_t mask[kMaxSms / 64];
    // workqueue resources: the configuration of the context they came from
    uint32_t wq_limit;
    int32_t wq_scope;
    unsigned long long wq_context;  // kOriginWorkqueue: the context id
};
static_assert(sizeof(ResInfo) <= sizeof(((CUdevResource*)nullptr)->_internal_padding), "provenance fits");
static_assert(sizeof(CUdevResource) == 144, "CUdevResource ABI");

inline ResInfo res_info(const CUdevResource& r) {
    ResInfo info;
    memcpy(&info, r._internal_padding, sizeof info);
    return info;
}

inline SmSet mask_to_set(const uint64_t* mask) {
    SmSet s;
    for (int i = 0; i < kMaxSms; ++i)
        if (mask[i / 64] >> (i % 64) & 1) s.set(i);
    return s;
}

inline void fill_sm_resource(CUdevResource* out, int device, const SmSet& sms, unsigned long long split_id,
                             int origin, int index, unsigned min_part, unsigned align, unsigned flags,
                             unsigned domain = 0) {
    memset(out, 0, sizeof *out);
    out->type = CU_DEV_RESOURCE_TYPE_SM;
    ResInfo info{};
    info.magic = kResMagic;
    info.device = device;
    info.split_id = split_id;
    info.origin = origin;
    info.index = index;
    for (int i = 0; i < kMaxSms; ++i)
        if (sms.test(i)) info.mask[i / 64] |= 1ULL << (i % 64);
    memcpy(out->_internal_padding, &info, sizeof info);
    out->sm.smCount = (unsigned)sms.count();
    out->sm.minSmPartitionSize = min_part;
    out->sm.smCoscheduledAlignment = align;
    out->sm.flags = flags;
    out->sm.localityDomainId = domain;
}

// Reads back a resource made by this driver; INVALID_VALUE when it was not, or
// when its visible fields no longer match the provenance (edited by hand).
inline CUresult read_sm_resource(const CUdevResource* r, ResInfo* info, SmSet* sms) {
    if (r == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (r->type != CU_DEV_RESOURCE_TYPE_SM) return CUDA_ERROR_INVALID_RESOURCE_TYPE;
    *info = res_info(*r);
    if (info->magic != kResMagic || !valid_device(info->device)) return CUDA_ERROR_INVALID_VALUE;
    *sms = mask_to_set(info->mask);
    if (sms->count() != r->sm.smCount) return CUDA_ERROR_INVALID_VALUE;  // guess: tampered resource
    return CUDA_SUCCESS;
}

// A workqueue resource (config or handle) for `device`, carrying `config`.
inline void fill_wq_resource(CUdevResource* out, CUdevResourceType type, int device, const WqConfig& config,
                             unsigned long long context_id) {
    memset(out, 0, sizeof *out);
    out->type = type;
    ResInfo info{};
    info.magic = kResMagic;
    info.device = device;
    info.origin = type == CU_DEV_RESOURCE_TYPE_WORKQUEUE ? kOriginWorkqueue : kOriginWqConfig;
    info.index = -1;
    info.wq_limit = config.set ? config.limit : (unsigned)max_connections();
    info.wq_scope = config.scope;
    info.wq_context = context_id;
    memcpy(out->_internal_padding, &info, sizeof info);
    if (type == CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG) {
        out->wqConfig.device = device;
        out->wqConfig.wqConcurrencyLimit = info.wq_limit;
        out->wqConfig.sharingScope = (CUdevWorkqueueConfigScope)config.scope;
    }
}

struct Desc : Object {
    explicit Desc(uint32_t gen) : Object(kMagicDesc, gen) {}
    static constexpr SlabKind kSlab = kSlabDesc;
    static constexpr uint32_t kMagic = kMagicDesc;
    int device = 0;
    SmSet sms;
    WqConfig wq;
};

}  // namespace sim
