// Globals, cuInit / cuDriverGetVersion, device configuration, call sites and
// faults, hazards, thread state and signals, fork handling.
#include <pthread.h>

#include <cstring>
#include <map>
#include <unordered_map>

#include "state.h"

namespace sim {

// Globals are heap objects that are never destroyed: stream worker threads may
// still run while the process exits, and must not meet destroyed globals.
std::vector<Device*> g_devices;
std::atomic<bool> g_initialized{false};
std::atomic<bool> g_forked_child{false};
int g_driver_version = versions::kDefault;
std::atomic<bool> g_any_faults{false};
std::atomic<int> g_live[kLiveKinds];
std::atomic<unsigned long long> g_next_id{1};
__thread const char* t_api_fn __attribute__((tls_model("initial-exec"))) = nullptr;

static std::mutex& config_mu() {
    static auto* m = new std::mutex;
    return *m;
}

// ---------------------------------------------------------------- call sites
static std::mutex& sites_mu() {
    static auto* m = new std::mutex;
    return *m;
}
static std::unordered_map<std::string, CallSite*>& sites() {
    static auto* m = new std::unordered_map<std::string, CallSite*>;
    return *m;
}

CallSite* site_for(const char* name) {
    std::lock_guard<std::mutex> lk(sites_mu());
    auto& m = sites();
    auto it = m.find(name);
    if (it != m.end()) return it->second;
    auto* s = new CallSite;
    m.emplace(name, s);
    return s;
}

CUresult take_fault(CallSite* site) {
    std::lock_guard<std::mutex> lk(site->mu);
    CUresult fire = CUDA_SUCCESS;
    for (auto it = site->faults.begin(); it != site->faults.end();) {
        if (--it->first == 0) {
            if (fire == CUDA_SUCCESS) fire = it->second;
            it = site->faults.erase(it);
        } else {
            ++it;
        }
    }
    return fire;
}

// ---------------------------------------------------------------- signals
void Signal::arrive() {
    if (pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    std::lock_guard<std::mutex> lk(mu);
    when_ns.store(steady_now_ns(), std::memory_order_relaxed);
    done.store(true, std::memory_order_release);
    cv.notify_all();
}
void Signal::wait() {
    if (is_done()) return;
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [this] { return done.load(std::memory_order_acquire); });
}

// ---------------------------------------------------------------- hazards
static std::mutex& hazards_mu() {
    static auto* m = new std::mutex;
    return *m;
}
static std::vector<std::string>& hazards() {
    static auto* v = new std::vector<std::string>;
    return *v;
}
void add_hazard(const std::string& kind, const std::string& detail) {
    std::lock_guard<std::mutex> lk(hazards_mu());
    hazards().push_back(kind + ": " + detail);
}
void add_destroyed_hazard(SlabKind kind, uintptr_t handle, bool reused, const char* note) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s: %s handle 0x%llx was destroyed%s%s%s", t_api_fn ? t_api_fn : "(unknown function)",
             kSlabNames[kind], (unsigned long long)handle, reused ? ", its slot reused since" : "",
             note ? ", " : "", note ? note : "");
    add_hazard("destroyed_handle", buf);
}

bool note_destroyed_handle(SlabKind kind, size_t slot, uint32_t magic, const void* h) {
    // The same checks as as_object, without the generation: a slot of this
    // kind holding an object of this kind.
    const Slab& s = g_slabs[kind];
    size_t limit = s.committed.load(std::memory_order_acquire);
    uintptr_t v = reinterpret_cast<uintptr_t>(h);
    uintptr_t base = s.base.load(std::memory_order_relaxed);
    uintptr_t off = (v & kAddrMask) - base;
    if (off >= limit || (off & (slot - 1)) != 0) return false;
    const Object* o = reinterpret_cast<const Object*>(base + off);
    if (o->magic.load(std::memory_order_relaxed) != magic) return false;
    uintptr_t handle_gen = v >> kGenShift;  // bit 63 set: above the mask, never handed out
    uint32_t gen = o->gen.load(std::memory_order_relaxed);
    bool reused;
    if ((gen & kHandleGenMask) == handle_gen) {
        if (o->alive.load(std::memory_order_acquire)) return false;  // live: not this check's business
        reused = false;
    } else if (handle_gen <= kHandleGenMask && (gen > kHandleGenMask || handle_gen < gen)) {
        reused = true;  // a generation this slot handed out before
    } else {
        return false;   // a generation never handed out: forged
    }
    add_destroyed_hazard(kind, v, reused, nullptr);
    return true;
}

std::vector<std::string> hazards_snapshot() {
    std::lock_guard<std::mutex> lk(hazards_mu());
    return hazards();
}
void hazards_clear() {
    std::lock_guard<std::mutex> lk(hazards_mu());
    hazards().clear();
}
void for_each_site(const std::function<void(CallSite*)>& f) {
    std::lock_guard<std::mutex> lk(sites_mu());
    for (auto& kv : sites()) f(kv.second);
}

// ---------------------------------------------------------------- fork
// fork() copies only the calling thread: the child has none of the stream
// workers, so a queue with work in flight would never drain (a child's
// cuStreamSynchronize used to hang forever). The real driver is unusable in
// the child of an initialised process (NVIDIA's CUDA C++ guidelines, rule 1.6:
// any use of CUDA after fork() and before exec() is undefined); observed, every
// call there, cuInit included, fails with CUDA_ERROR_NOT_INITIALIZED (the
// "initialization error" of pycuda #137, tensorflow #57877, triton #10443). The
// simulator does the same: the child handler clears g_initialized, so every
// function that needs cuInit answers CUDA_ERROR_NOT_INITIALIZED before touching
// an object, and cuInit refuses. A fork before cuInit leaves a usable driver.
//
// The process-wide mutexes that such a child may still take (first call of a
// function: the call-site table; fault checks; hazards; configuration) are
// held across fork() so that none is copied locked by a thread that does not
// exist in the child.
static void fork_prepare() {
    config_mu().lock();
    sites_mu().lock();
    for (auto& kv : sites()) kv.second->mu.lock();
    hazards_mu().lock();
}
static void fork_release() {
    hazards_mu().unlock();
    for (auto& kv : sites()) kv.second->mu.unlock();
    sites_mu().unlock();
    config_mu().unlock();
}
static void fork_child() {
    fork_release();
    if (g_initialized.load(std::memory_order_relaxed)) {
        g_forked_child.store(true, std::memory_order_relaxed);
        g_initialized.store(false, std::memory_order_release);
    }
}
__attribute__((constructor)) static void register_fork_handlers() {
    pthread_atfork(fork_prepare, fork_release, fork_child);
}

// ---------------------------------------------------------------- thread state
ThreadState::~ThreadState() {
    // A thread that exits with a context current no longer has it current.
    if (!stack.empty() && stack.back().current() && stack.back().obj->kind == CtxKind::Green)
        stack.back().obj->top_count.fetch_sub(1, std::memory_order_relaxed);
    // Its per-thread streams end with it (nobody else can name them). Pinned
    // first: a reference on a slot whose generation moved on is dropped again.
    for (auto& p : per_thread_streams) {
        Stream* s = p.stream.obj;
        if (!try_ref(s)) continue;
        bool mine = p.stream.current();
        bool expected = true;
        if (mine && s->alive.compare_exchange_strong(expected, false)) retire_stream(s);
        unref_stream(s);
    }
}
ThreadState& tls() {
    thread_local ThreadState state;
    return state;
}

CUresult require_current(Context** out) {
    const CtxRef* r = current_ref();
    if (r == nullptr) return CUDA_ERROR_INVALID_CONTEXT;
    Context* c = r->obj;
    bool current = r->current();
    if (__builtin_expect(!current || !c->alive.load(std::memory_order_acquire), 0)) {
        // Destroyed while current on this thread: a use of a destroyed handle.
        add_destroyed_hazard(kSlabContext, r->handle(), !current, "the current context of this thread");
        return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    }
    if (!ctx_usable(c)) return CUDA_ERROR_CONTEXT_IS_DESTROYED;  // an inactive primary context
    *out = c;
    return CUDA_SUCCESS;
}

SmSet all_sms(int device) {
    SmSet s;
    for (int i = 0; i < g_devices[device]->sm_count; ++i) s.set(i);
    return s;
}

}  // namespace sim

using namespace sim;

// ---------------------------------------------------------------- configuration
SIM_EXPORT int greenres_sim_add_device(const char* name, int cc_major, int cc_minor, int sm_count,
                                       unsigned long long total_mem_bytes, int min_sm_partition,
                                       int sm_alignment) {
    std::lock_guard<std::mutex> lk(config_mu());
    if (g_initialized.load()) return CUDA_ERROR_ILLEGAL_STATE;
    if (name == nullptr || sm_count <= 0 || sm_count > kMaxSms || cc_major <= 0 || cc_minor < 0 ||
        min_sm_partition <= 0 || sm_alignment <= 0 || total_mem_bytes == 0)
        return CUDA_ERROR_INVALID_VALUE;
    auto* d = new Device;
    d->name = name;
    d->major = cc_major;
    d->minor = cc_minor;
    d->sm_count = sm_count;
    d->total_mem = total_mem_bytes;
    d->min_partition = min_sm_partition;
    d->alignment = sm_alignment;
    // A stable, recognisable UUID: "GRSIM" + ordinal.
    const char tag[] = "GRSIM-device";
    memcpy(d->uuid, tag, sizeof(tag) - 1);
    d->uuid[15] = (unsigned char)g_devices.size();
    g_devices.push_back(d);
    return 0;
}

// Locality domains of a configured device (13.4; 1 unless set). Each domain must have at
// least 2 SMs.
SIM_EXPORT int greenres_sim_set_locality_domains(int device, int count) {
    std::lock_guard<std::mutex> lk(config_mu());
    if (g_initialized.load()) return CUDA_ERROR_ILLEGAL_STATE;
    if (!valid_device(device) || count < 1 || count > 64 || g_devices[device]->sm_count / count < 2)
        return CUDA_ERROR_INVALID_VALUE;
    g_devices[device]->locality_domains = count;
    return 0;
}

SIM_EXPORT int greenres_sim_set_driver_version(int version) {
    std::lock_guard<std::mutex> lk(config_mu());
    if (g_initialized.load()) return CUDA_ERROR_ILLEGAL_STATE;
    if (version < versions::kGreenContexts || version > 99999) return CUDA_ERROR_INVALID_VALUE;
    g_driver_version = version;
    return 0;
}

SIM_EXPORT int greenres_sim_is_configured(void) { return g_devices.empty() ? 0 : 1; }
SIM_EXPORT int greenres_sim_is_initialized(void) { return g_initialized.load() ? 1 : 0; }
SIM_EXPORT int greenres_sim_driver_version(void) { return g_driver_version; }
SIM_EXPORT int greenres_sim_device_count(void) { return (int)g_devices.size(); }

// ---------------------------------------------------------------- init & version
SIM_EXPORT CUresult cuInit(unsigned int Flags) {
    SIM_ENTER("cuInit");
    if (Flags != 0) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> lk(config_mu());
    if (g_initialized.load()) return CUDA_SUCCESS;
    if (g_forked_child.load()) return CUDA_ERROR_NOT_INITIALIZED;  // see "fork" above
    // guess: a simulator with no device configured behaves like a machine whose
    // driver finds no GPU.
    if (g_devices.empty()) return CUDA_ERROR_NO_DEVICE;
    for (size_t i = 0; i < g_devices.size(); ++i) {
        auto* c = make_object<Context>();
        if (c == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
        c->kind = CtxKind::Primary;
        c->device = (int)i;
        c->id = next_id();
        g_devices[i]->primary = c;
    }
    g_initialized.store(true, std::memory_order_release);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuDriverGetVersion(int* driverVersion) {
    SIM_ENTER("cuDriverGetVersion");
    if (driverVersion == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = g_driver_version;
    return CUDA_SUCCESS;
}
