// Resources: query (device, context, green context), split (by count, and the
// 13.1 structured split), and descriptors (the same-split rule).
//
// SM ids: a device's SMs are 0..smCount-1. A split hands out consecutive ids
// starting from the lowest SM of its input, so two independent splits of the
// device hand out the same SMs (the real trap: disjointness only holds within
// one split).
#include <algorithm>
#include <array>
#include <map>

#include "resources.h"

using namespace sim;

namespace {

std::atomic<unsigned long long> g_next_split{1};

CUresult check_resource_type(CUdevResourceType type) {
    // guess: workqueue resources (13.1) are not simulated and answer like an
    // unsupported type.
    if (type != CU_DEV_RESOURCE_TYPE_SM) return CUDA_ERROR_INVALID_RESOURCE_TYPE;
    return CUDA_SUCCESS;
}

void fill_queried(CUdevResource* out, int device, const SmSet& sms) {
    const Device& d = *g_devices[device];
    fill_sm_resource(out, device, sms, 0, kOriginQueried, -1, (unsigned)d.min_partition, (unsigned)d.alignment, 0);
}

// The splittable input of a split call, or an error.
CUresult read_split_input(const CUdevResource* input, ResInfo* info, SmSet* sms) {
    CUresult r = read_sm_resource(input, info, sms);
    if (r != CUDA_SUCCESS) return r;
    // cuda.h: "the output results cannot be split again without first creating a
    // descriptor and a green context with that descriptor". guess: the error code.
    if (info->origin == kOriginGroup) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
    return CUDA_SUCCESS;
}

std::vector<int> ids_of(const SmSet& s) {
    std::vector<int> v;
    for (int i = 0; i < kMaxSms; ++i)
        if (s.test(i)) v.push_back(i);
    return v;
}

SmSet set_of(const std::vector<int>& ids, size_t from, size_t to) {
    SmSet s;
    for (size_t i = from; i < to; ++i) s.set(ids[i]);
    return s;
}

unsigned round_up(unsigned v, unsigned m) { return (v + m - 1) / m * m; }

}  // namespace

SIM_EXPORT CUresult cuDeviceGetDevResource(CUdevice device, CUdevResource* resource, CUdevResourceType type) {
    SIM_ENTER_INIT("cuDeviceGetDevResource");
    if (resource == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_device(device)) return CUDA_ERROR_INVALID_DEVICE;
    CUresult r = check_resource_type(type);
    if (r != CUDA_SUCCESS) return r;
    fill_queried(resource, device, all_sms(device));
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuCtxGetDevResource(CUcontext hCtx, CUdevResource* resource, CUdevResourceType type) {
    SIM_ENTER_INIT("cuCtxGetDevResource");
    if (resource == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r0 = hCtx ? check_settable(hCtx, &c) : require_current(&c);
    if (r0 != CUDA_SUCCESS) return r0;
    CUresult r = check_resource_type(type);
    if (r != CUDA_SUCCESS) return r;
    fill_queried(resource, c->device, c->kind == CtxKind::Green ? c->green->sms : all_sms(c->device));
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuGreenCtxGetDevResource(CUgreenCtx hCtx, CUdevResource* resource, CUdevResourceType type) {
    SIM_ENTER_INIT("cuGreenCtxGetDevResource");
    if (resource == nullptr) return CUDA_ERROR_INVALID_VALUE;
    GreenCtx* g = live_green(hCtx);
    // cuda.h documents INVALID_CONTEXT only: also for a destroyed green context.
    if (g == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    CUresult r = check_resource_type(type);
    if (r != CUDA_SUCCESS) return r;
    fill_queried(resource, g->device, g->sms);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevSmResourceSplitByCount(CUdevResource* result, unsigned int* nbGroups,
                                                const CUdevResource* input, CUdevResource* remainder,
                                                unsigned int flags, unsigned int minCount) {
    SIM_ENTER_INIT("cuDevSmResourceSplitByCount");
    if (nbGroups == nullptr || input == nullptr) return CUDA_ERROR_INVALID_VALUE;
    ResInfo info;
    SmSet sms;
    CUresult r = read_split_input(input, &info, &sms);
    if (r != CUDA_SUCCESS) return r;
    const Device& d = *g_devices[info.device];
    const unsigned known = CU_DEV_SM_RESOURCE_SPLIT_IGNORE_SM_COSCHEDULING | CU_DEV_SM_RESOURCE_SPLIT_MAX_POTENTIAL_CLUSTER_SIZE;
    if (flags & ~known) return CUDA_ERROR_INVALID_VALUE;
    // cuda.h: "Compute Capability 9.0+ only". guess: INVALID_VALUE below 9.0.
    if ((flags & CU_DEV_SM_RESOURCE_SPLIT_MAX_POTENTIAL_CLUSTER_SIZE) && d.major < 9) return CUDA_ERROR_INVALID_VALUE;
    unsigned n = (unsigned)sms.count();
    // cuda.h: "Value of minCount must be between 0 and the SM count specified in input".
    if (minCount > n) return CUDA_ERROR_INVALID_VALUE;

    unsigned min_part = (unsigned)d.min_partition, align = (unsigned)d.alignment;
    if (flags & CU_DEV_SM_RESOURCE_SPLIT_IGNORE_SM_COSCHEDULING) {
        // guess: cuda.h only says "lower"; we use a minimum of 2 and an alignment of 2.
        min_part = std::min(min_part, 2u);
        align = std::min(align, 2u);
    }
    // guess: MAX_POTENTIAL_CLUSTER_SIZE changes nothing in the simulator (no clusters).
    unsigned group = round_up(std::max(minCount, min_part), align);
    unsigned possible = group == 0 ? 0 : n / group;

    if (result == nullptr) {  // query mode
        *nbGroups = possible;
        return CUDA_SUCCESS;
    }
    if (*nbGroups == 0) return CUDA_ERROR_INVALID_VALUE;  // guess
    if (possible == 0) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
    unsigned made = std::min(*nbGroups, possible);
    unsigned long long split = g_next_split.fetch_add(1, std::memory_order_relaxed);
    std::vector<int> ids = ids_of(sms);
    for (unsigned i = 0; i < made; ++i)
        fill_sm_resource(&result[i], info.device, set_of(ids, (size_t)i * group, (size_t)(i + 1) * group), split,
                         kOriginGroup, (int)i, min_part, align, 0);
    if (remainder != nullptr)
        // guess: an empty remainder is an SM resource with smCount 0.
        fill_sm_resource(remainder, info.device, set_of(ids, (size_t)made * group, ids.size()), split,
                         kOriginRemainder, -1, min_part, align, 0);
    *nbGroups = made;
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevSmResourceSplit(CUdevResource* result, unsigned int nbGroups, const CUdevResource* input,
                                         CUdevResource* remainder, unsigned int flags,
                                         CU_DEV_SM_RESOURCE_GROUP_PARAMS* groupParams) {
    SIM_ENTER_INIT("cuDevSmResourceSplit");
    if (g_driver_version < 13010) return CUDA_ERROR_NOT_SUPPORTED;  // only reachable by direct linking
    if (nbGroups == 0 || groupParams == nullptr || input == nullptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    ResInfo info;
    SmSet sms;
    CUresult r = read_split_input(input, &info, &sms);
    if (r != CUDA_SUCCESS) return r;
    const Device& d = *g_devices[info.device];
    const unsigned n = (unsigned)sms.count();
    const unsigned max_cs = d.major >= 9 ? 32u : 2u;
    const unsigned known = CU_DEV_SM_RESOURCE_GROUP_BACKFILL | CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID |
                           CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_SUPPLEMENTAL_SMS;
    std::vector<int> ids = ids_of(sms);
    std::vector<unsigned> counts(nbGroups), aligns(nbGroups);
    size_t pos = 0;
    // Everything is computed first so an error leaves no side effect.
    for (unsigned i = 0; i < nbGroups; ++i) {
        const auto& p = groupParams[i];
        for (unsigned k = 0; k < 11; ++k)
            if (p.reserved[k] != 0) return CUDA_ERROR_INVALID_VALUE;  // "must be zero-initialized"
        if (p.flags & ~known) return CUDA_ERROR_INVALID_VALUE;
        // One locality domain (0) in the simulator.
        if ((p.flags & CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID) && p.localityDomainId != 0 &&
            p.localityDomainId != CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID_ANY)
            return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        unsigned cs = p.coscheduledSmCount ? p.coscheduledSmCount : (unsigned)d.alignment;
        // guess: a co-scheduled count must be even and at most the documented maximum.
        if (cs > max_cs || cs % 2 != 0) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        bool backfill = p.flags & CU_DEV_SM_RESOURCE_GROUP_BACKFILL;
        unsigned left = (unsigned)(ids.size() - pos);
        unsigned count = p.smCount;
        if (count != 0) {
            if (count < 2 || count > n || count % 2 != 0 || (!backfill && count % cs != 0) || count < cs)
                return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            if (count > left) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        } else {
            // Discovery. guess: backfill takes every SM left (rounded down to even).
            count = backfill ? left / 2 * 2 : left / cs * cs;
            if (result != nullptr && (count == 0 || count < cs)) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        }
        counts[i] = count;
        aligns[i] = cs;
        pos += count;
    }
    unsigned long long split = g_next_split.fetch_add(1, std::memory_order_relaxed);
    pos = 0;
    for (unsigned i = 0; i < nbGroups; ++i) {
        if (groupParams[i].smCount == 0) groupParams[i].smCount = counts[i];
        if (result != nullptr)
            fill_sm_resource(&result[i], info.device, set_of(ids, pos, pos + counts[i]), split, kOriginGroup, (int)i,
                             (unsigned)d.min_partition, aligns[i], groupParams[i].flags);
        pos += counts[i];
    }
    if (remainder != nullptr) {
        if (pos == ids.size()) {
            memset(remainder, 0, sizeof *remainder);  // cuda.h: the remainder may be _TYPE_INVALID
        } else {
            // guess: the (unstructured) remainder reports the device's alignment.
            fill_sm_resource(remainder, info.device, set_of(ids, pos, ids.size()), split, kOriginRemainder, -1,
                             (unsigned)d.min_partition, (unsigned)d.alignment, 0);
        }
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDevResourceGenerateDesc(CUdevResourceDesc* phDesc, CUdevResource* resources,
                                              unsigned int nbResources) {
    SIM_ENTER_INIT("cuDevResourceGenerateDesc");
    if (phDesc == nullptr || resources == nullptr || nbResources == 0) return CUDA_ERROR_INVALID_VALUE;
    SmSet all;
    ResInfo first{};
    unsigned first_align = 0;
    for (unsigned i = 0; i < nbResources; ++i) {
        ResInfo info;
        SmSet sms;
        CUresult r = read_sm_resource(&resources[i], &info, &sms);
        if (r != CUDA_SUCCESS) return r;
        if (sms.none()) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;  // guess: empty remainder
        if (i == 0) {
            first = info;
            first_align = resources[i].sm.smCoscheduledAlignment;
        } else {
            // cuda.h: same device, same split API instance, same alignment.
            if (info.device != first.device) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            if (info.origin == kOriginQueried || first.origin == kOriginQueried || info.split_id != first.split_id)
                return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            if (resources[i].sm.smCoscheduledAlignment != first_align) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            // guess: the same group twice is a configuration error.
            if ((all & sms).any()) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        }
        all |= sms;
    }
    // cuda.h has no call that destroys a descriptor: each stays valid for the
    // life of the process. A descriptor is only (device, SM set), so equal ones
    // share one object: a program that makes a descriptor per layout, again
    // and again, uses one slot per distinct SM set instead of growing.
    std::array<uint64_t, kMaxSms / 64> key{};
    for (int i = 0; i < kMaxSms; ++i)
        if (all.test(i)) key[i / 64] |= 1ULL << (i % 64);
    static auto* mu = new std::mutex;
    static auto* known = new std::map<std::pair<int, std::array<uint64_t, kMaxSms / 64>>, Desc*>;
    std::lock_guard<std::mutex> lk(*mu);
    Desc*& desc = (*known)[{first.device, key}];
    if (desc == nullptr) {
        desc = make_object<Desc>();
        if (desc == nullptr) {
            known->erase({first.device, key});
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        desc->device = first.device;
        desc->sms = all;
    }
    *phDesc = handle_of<CUdevResourceDesc>(desc);
    return CUDA_SUCCESS;
}

// 13.1: the SMs a stream's work may run on: its green context's, else the
// whole device. Workqueue types: INVALID_RESOURCE_TYPE (cuda.h says so).
static CUresult stream_get_dev_resource(CUstream hStream, CUdevResource* resource, CUdevResourceType type, bool pt) {
    if (resource == nullptr) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = check_resource_type(type);
    if (r != CUDA_SUCCESS) return r;
    RESOLVE(hStream, s, pt);
    fill_queried(resource, s->ctx->device, s->green != nullptr ? s->green->sms : all_sms(s->ctx->device));
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamGetDevResource(CUstream hStream, CUdevResource* resource, CUdevResourceType type) {
    SIM_ENTER_INIT("cuStreamGetDevResource");
    return stream_get_dev_resource(hStream, resource, type, false);
}

namespace sim {
CUresult stream_get_dev_resource_ptsz(CUstream hStream, CUdevResource* resource, CUdevResourceType type) {
    SIM_ENTER_INIT("cuStreamGetDevResource");
    return stream_get_dev_resource(hStream, resource, type, true);
}
}  // namespace sim
