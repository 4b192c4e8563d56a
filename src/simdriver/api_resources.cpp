// Resources: query (device, context, green context), split (by count, and the
// 13.1 structured split), and descriptors (the same-split rule).
//
// SM ids: a device's SMs are 0..smCount-1. A split hands out consecutive ids
// starting from the lowest SM of its input, so two independent splits of the
// device hand out the same SMs (the real trap: disjointness only holds within
// one split).
#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <tuple>
#include <type_traits>

#include "resources.h"

using namespace sim;

int sim::max_connections() {
    // cuda.h: "The maximum concurrency limit depends on CUDA_DEVICE_MAX_CONNECTIONS".
    // The CUDA C programming guide documents 8 by default and 1 to 32.
    static const int value = [] {
        const char* text = getenv("CUDA_DEVICE_MAX_CONNECTIONS");
        if (text == nullptr || *text == 0) return 8;
        char* end = nullptr;
        long v = strtol(text, &end, 10);
        if (*end != 0 || v < 1) return 8;  // guess: an unreadable value is ignored
        return (int)std::min(v, 32L);
    }();
    return value;
}

namespace {

std::atomic<unsigned long long> g_next_split{1};

CUresult check_resource_type(CUdevResourceType type) {
    if (type == CU_DEV_RESOURCE_TYPE_SM) return CUDA_SUCCESS;
    // The workqueue types arrived with 13.1: an older driver does not know them.
    if ((type == CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG || type == CU_DEV_RESOURCE_TYPE_WORKQUEUE) &&
        g_driver_version >= versions::kWorkqueues)
        return CUDA_SUCCESS;
    return CUDA_ERROR_INVALID_RESOURCE_TYPE;
}

bool is_workqueue_type(CUdevResourceType type) {
    return type == CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG || type == CU_DEV_RESOURCE_TYPE_WORKQUEUE;
}

// The workqueue resources of a context: a green context's own configuration, or
// the default (device scope, the maximum concurrency) of any other context.
void fill_context_wq(CUdevResource* out, CUdevResourceType type, const Context& c) {
    WqConfig config;
    if (c.kind == CtxKind::Green && c.green->wq_set) {
        config.set = true;
        config.limit = c.green->wq_limit;
        config.scope = c.green->wq_scope;
    }
    fill_wq_resource(out, type, c.device, config, c.id);
}

// The one locality domain all of `sms` lie in, or -1 (several, or none).
int single_domain(const Device& d, const SmSet& sms) {
    int domain = -1;
    for (int i = 0; i < d.sm_count; ++i) {
        if (!sms.test(i)) continue;
        int here = d.domain_of(i);
        if (domain >= 0 && here != domain) return -1;
        domain = here;
    }
    return domain;
}

void fill_queried(CUdevResource* out, int device, const SmSet& sms) {
    const Device& d = *g_devices[device];
    // guess: on a device of several domains (13.4+), SMs of one domain say so.
    int domain = d.locality_domains > 1 && g_driver_version >= versions::kLocalityDomains ? single_domain(d, sms) : -1;
    fill_sm_resource(out, device, sms, 0, kOriginQueried, -1, (unsigned)d.min_partition, (unsigned)d.alignment,
                     domain >= 0 ? CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID : 0, domain >= 0 ? domain : 0);
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
    // cuda.h: a pre-existing workqueue "can be retrieved from existing contexts or green
    // contexts". guess: a device answers with its shared workqueue (the driver's default,
    // device scope): cuda.core's Device.resources.workqueue asks the device for both types.
    if (is_workqueue_type(type)) {
        fill_wq_resource(resource, type, device, WqConfig{}, 0);
        return CUDA_SUCCESS;
    }
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
    if (is_workqueue_type(type)) {
        fill_context_wq(resource, type, *c);
        return CUDA_SUCCESS;
    }
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
    if (is_workqueue_type(type)) {
        fill_context_wq(resource, type, *g->ctx);
        return CUDA_SUCCESS;
    }
    fill_queried(resource, g->device, g->sms);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuStreamGetDevResource(CUstream hStream, CUdevResource* resource, CUdevResourceType type) {
    SIM_ENTER_INIT("cuStreamGetDevResource");
    if (resource == nullptr) return CUDA_ERROR_INVALID_VALUE;
    CUresult r = check_resource_type(type);
    if (r != CUDA_SUCCESS) return r;
    // cuda.h: INVALID_RESOURCE_TYPE "if type is CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG or
    // CU_DEV_RESOURCE_TYPE_WORKQUEUE".
    if (is_workqueue_type(type)) return CUDA_ERROR_INVALID_RESOURCE_TYPE;
    RESOLVE(hStream, s, false);
    fill_queried(resource, s->ctx->device, s->green != nullptr ? s->green->sms : all_sms(s->ctx->device));
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
    if (g_driver_version < versions::kWorkqueues) return CUDA_ERROR_NOT_SUPPORTED;  // only reachable by direct linking
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
    std::vector<unsigned> counts(nbGroups), aligns(nbGroups), domains(nbGroups);
    std::vector<SmSet> taken(nbGroups);
    SmSet used;
    const bool knows_domains = g_driver_version >= versions::kLocalityDomains;
    const unsigned per_domain = (unsigned)d.domain_sm_count();
    // Everything is computed first so an error leaves no side effect.
    for (unsigned i = 0; i < nbGroups; ++i) {
        const auto& p = groupParams[i];
        for (unsigned k = 0; k < 11; ++k)
            if (p.reserved[k] != 0) return CUDA_ERROR_INVALID_VALUE;  // "must be zero-initialized"
        if (p.flags & ~known) return CUDA_ERROR_INVALID_VALUE;
        const bool in_domain = p.flags & CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID;
        const bool supplemental = p.flags & CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_SUPPLEMENTAL_SMS;
        const bool any_domain = p.localityDomainId == CU_DEV_SM_RESOURCE_GROUP_LOCALITY_DOMAIN_ID_ANY;
        // guess: before 13.4 the locality flags are unknown flags; SUPPLEMENTAL_SMS is a
        // modifier of LOCALITY_DOMAIN_ID; a domain the device does not have is a
        // configuration error.
        if ((in_domain || supplemental) && !knows_domains) return CUDA_ERROR_INVALID_VALUE;
        if (supplemental && !in_domain) return CUDA_ERROR_INVALID_VALUE;
        if (in_domain && !any_domain && p.localityDomainId >= (unsigned)d.locality_domains)
            return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        unsigned cs = p.coscheduledSmCount ? p.coscheduledSmCount : (unsigned)d.alignment;
        // guess: a co-scheduled count must be even and at most the documented maximum.
        if (cs > max_cs || cs % 2 != 0) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        bool backfill = p.flags & CU_DEV_SM_RESOURCE_GROUP_BACKFILL;
        // The SMs this group may take: free ones, of its domain when it names one (only
        // the first LOCALITY_DOMAIN_MULTIPROCESSOR_COUNT of them without SUPPLEMENTAL_SMS).
        std::vector<int> pool;
        std::vector<unsigned> seen_in_domain(d.locality_domains, 0);
        for (int id : ids) {
            int domain = d.domain_of(id);
            unsigned rank = seen_in_domain[domain]++;
            if (used.test(id)) continue;
            if (in_domain && !any_domain) {
                if (domain != (int)p.localityDomainId) continue;
                if (!supplemental && rank >= per_domain) continue;
            }
            pool.push_back(id);
        }
        unsigned left = (unsigned)pool.size();
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
        for (unsigned k = 0; k < count; ++k) {
            taken[i].set(pool[k]);
            used.set(pool[k]);
        }
        counts[i] = count;
        aligns[i] = cs;
        domains[i] = in_domain && !any_domain ? p.localityDomainId : 0;
    }
    unsigned long long split = g_next_split.fetch_add(1, std::memory_order_relaxed);
    for (unsigned i = 0; i < nbGroups; ++i) {
        if (groupParams[i].smCount == 0) groupParams[i].smCount = counts[i];
        if (result != nullptr)
            fill_sm_resource(&result[i], info.device, taken[i], split, kOriginGroup, (int)i, (unsigned)d.min_partition,
                             aligns[i], groupParams[i].flags, domains[i]);
    }
    if (remainder != nullptr) {
        SmSet rest = sms & ~used;
        if (rest.none()) {
            memset(remainder, 0, sizeof *remainder);  // cuda.h: the remainder may be _TYPE_INVALID
        } else {
            // guess: the (unstructured) remainder reports the device's alignment and no
            // locality domain.
            fill_sm_resource(remainder, info.device, rest, split, kOriginRemainder, -1, (unsigned)d.min_partition,
                             (unsigned)d.alignment, 0);
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
    bool have_sms = false;
    unsigned first_align = 0;
    unsigned first_domain = 0;
    WqConfig wq;
    int wq_device = -1;
    for (unsigned i = 0; i < nbResources; ++i) {
        const CUdevResource& res = resources[i];
        if (is_workqueue_type(res.type)) {
            CUresult r = check_resource_type(res.type);
            if (r != CUDA_SUCCESS) return r;
            // guess: one workqueue resource (a configuration or a workqueue) per descriptor.
            if (wq.set) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            ResInfo info = res_info(res);
            if (res.type == CU_DEV_RESOURCE_TYPE_WORKQUEUE_CONFIG) {
                // cuda.h: "a new configuration can be used or an existing one queried",
                // so a configuration filled in by the caller is accepted. guess: the
                // errors for a device, scope or limit that cannot be.
                const CUdevWorkqueueConfigResource& config = res.wqConfig;
                if (!valid_device(config.device)) return CUDA_ERROR_INVALID_VALUE;
                // The caller's bytes, read as an integer: loading a value outside the enum's
                // range as the enum type is undefined behaviour (UBSan's -fsanitize=enum).
                std::underlying_type_t<CUdevWorkqueueConfigScope> scope;
                memcpy(&scope, &config.sharingScope, sizeof scope);
                if (scope != CU_WORKQUEUE_SCOPE_DEVICE_CTX && scope != CU_WORKQUEUE_SCOPE_GREEN_CTX_BALANCED)
                    return CUDA_ERROR_INVALID_VALUE;
                if (config.wqConcurrencyLimit == 0) return CUDA_ERROR_INVALID_VALUE;
                // cuda.h: "Configurations may exceed this concurrency limit": accepted.
                wq.limit = config.wqConcurrencyLimit;
                wq.scope = static_cast<int>(scope);
                wq_device = config.device;
            } else {
                // An opaque handle: only what this driver made (guess: INVALID_VALUE).
                if (info.magic != kResMagic || info.origin != kOriginWorkqueue || !valid_device(info.device))
                    return CUDA_ERROR_INVALID_VALUE;
                wq.limit = info.wq_limit;
                wq.scope = info.wq_scope;
                wq.shared_from = info.wq_context;
                wq_device = info.device;
            }
            wq.set = true;
            continue;
        }
        ResInfo info;
        SmSet sms;
        CUresult r = read_sm_resource(&res, &info, &sms);
        if (r != CUDA_SUCCESS) return r;
        if (sms.none()) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;  // guess: empty remainder
        if (!have_sms) {
            first = info;
            first_align = res.sm.smCoscheduledAlignment;
            first_domain = res.sm.localityDomainId;
            have_sms = true;
        } else {
            // cuda.h: same device, same split API instance, same alignment.
            if (info.device != first.device) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            if (info.origin == kOriginQueried || first.origin == kOriginQueried || info.split_id != first.split_id)
                return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            if (res.sm.smCoscheduledAlignment != first_align) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            // cuda.h (13.4): "and localityDomainId values".
            if (g_driver_version >= versions::kLocalityDomains && res.sm.localityDomainId != first_domain)
                return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
            // guess: the same group twice is a configuration error.
            if ((all & sms).any()) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
        }
        all |= sms;
    }
    // guess: a descriptor of workqueue resources alone is refused (the simulator's green
    // contexts always have SMs).
    if (!have_sms) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
    // cuda.h: "If multiple resources are provided in resources, the device they came from
    // must be the same".
    if (wq.set && wq_device != first.device) return CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION;
    // cuda.h has no call that destroys a descriptor: each stays valid for the
    // life of the process. A descriptor is only (device, SM set), so equal ones
    // share one object: a program that makes a descriptor per layout, again
    // and again, uses one slot per distinct SM set instead of growing.
    std::array<uint64_t, kMaxSms / 64> key{};
    for (int i = 0; i < kMaxSms; ++i)
        if (all.test(i)) key[i / 64] |= 1ULL << (i % 64);
    static auto* mu = new std::mutex;
    using DescKey = std::tuple<int, std::array<uint64_t, kMaxSms / 64>, WqConfig>;
    static auto* known = new std::map<DescKey, Desc*>;
    std::lock_guard<std::mutex> lk(*mu);
    const DescKey desc_key{first.device, key, wq};
    Desc*& desc = (*known)[desc_key];
    if (desc == nullptr) {
        desc = make_object<Desc>();
        if (desc == nullptr) {
            known->erase(desc_key);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        desc->device = first.device;
        desc->sms = all;
        desc->wq = wq;
    }
    *phDesc = handle_of<CUdevResourceDesc>(desc);
    return CUDA_SUCCESS;
}
