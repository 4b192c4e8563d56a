// The simulator's own C API for tests: live objects, SM ownership, call
// counts, hazards, fault injection, op delay. Not part of CUDA.
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "state.h"

using namespace sim;

namespace sim {
// Defined in core.cpp; iterated here for reset and for hazards.
std::vector<std::string> hazards_snapshot();
void hazards_clear();
void for_each_site(const std::function<void(CallSite*)>& f);
}  // namespace sim

SIM_EXPORT int greenres_sim_live_count(const char* kind) {
    if (kind == nullptr) return -1;
    static const std::unordered_map<std::string, int> kinds = {
        {"context", kLiveContext}, {"green_context", kLiveGreen}, {"stream", kLiveStream},
        {"event", kLiveEvent},     {"allocation", kLiveAlloc},    {"graph", kLiveGraph},
        {"graph_exec", kLiveExec}, {"user_object", kLiveUser},
        {"memory_pool", kLivePool}, {"module", kLiveModule},
    };
    if (strcmp(kind, "primary_context") == 0) {
        // Devices whose primary context is retained (active).
        int n = 0;
        if (primaries_made())
            for (Device* d : g_devices) n += d->primary->primary_refs.load() > 0 ? 1 : 0;
        return n;
    }
    auto it = kinds.find(kind);
    if (it == kinds.end()) return -1;
    return g_live[it->second].load();
}

SIM_EXPORT int greenres_sim_primary_ctx_refcount(int device) {
    if (!primaries_made() || !valid_device(device)) return -1;
    return g_devices[device]->primary->primary_refs.load();
}

// Accepts a CUgreenCtx or the CUcontext that cuCtxFromGreenCtx returns for it.
static GreenCtx* green_of(void* h) {
    GreenCtx* g = as_object<GreenCtx>(h);
    if (g == nullptr) {
        Context* c = as_object<Context>(h);
        if (c != nullptr && c->kind == CtxKind::Green) g = c->green;
    }
    if (g == nullptr || !g->alive.load()) return nullptr;
    return g;
}

SIM_EXPORT int greenres_sim_green_ctx_sms(void* green_ctx, int* out_ids, int capacity) {
    GreenCtx* g = green_of(green_ctx);
    if (g == nullptr) return -1;
    int n = 0;
    for (int i = 0; i < kMaxSms; ++i)
        if (g->sms.test(i)) {
            if (out_ids != nullptr && n < capacity) out_ids[n] = i;
            ++n;
        }
    return n;
}

SIM_EXPORT long long greenres_sim_call_count(const char* function) {
    if (function == nullptr) return -1;
    return site_for(function)->count.load(std::memory_order_relaxed);
}

SIM_EXPORT void greenres_sim_reset_call_counts(void) {
    for_each_site([](CallSite* s) { s->count.store(0, std::memory_order_relaxed); });
}

SIM_EXPORT int greenres_sim_hazard_count(void) { return (int)hazards_snapshot().size(); }

SIM_EXPORT int greenres_sim_hazard_get(int index, char* buf, int capacity) {
    auto v = hazards_snapshot();
    if (index < 0 || index >= (int)v.size()) return -1;
    if (buf != nullptr && capacity > 0) snprintf(buf, (size_t)capacity, "%s", v[index].c_str());
    return (int)v[index].size();
}

SIM_EXPORT void greenres_sim_clear_hazards(void) { hazards_clear(); }

SIM_EXPORT int greenres_sim_inject_fault(const char* function, long long nth, int error) {
    if (function == nullptr || nth < 1 || error == 0) return CUDA_ERROR_INVALID_VALUE;
    CallSite* s = site_for(function);
    {
        std::lock_guard<std::mutex> lk(s->mu);
        s->faults.emplace_back(nth, (CUresult)error);
    }
    g_any_faults.store(true, std::memory_order_release);
    return 0;
}

SIM_EXPORT void greenres_sim_clear_faults(void) {
    for_each_site([](CallSite* s) {
        std::lock_guard<std::mutex> lk(s->mu);
        s->faults.clear();
    });
    g_any_faults.store(false, std::memory_order_release);
}

SIM_EXPORT void greenres_sim_set_op_delay_us(int microseconds) {
    g_op_delay_us.store(microseconds < 0 ? 0 : microseconds, std::memory_order_relaxed);
}

SIM_EXPORT int greenres_sim_get_op_delay_us(void) { return g_op_delay_us.load(std::memory_order_relaxed); }

// The device ordinal a green context was made on, or -1.
SIM_EXPORT int greenres_sim_green_ctx_device(void* green_ctx) {
    GreenCtx* g = green_of(green_ctx);
    if (g == nullptr) return -1;
    return g->device;
}
