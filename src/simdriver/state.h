// Shared state of the simulated CUDA driver: object layouts, globals, and the
// small helpers every API file uses (call counting, fault checks, handle checks).
//
// Design rules (see docs/simulator.md):
//  - Handles are pointers to objects that begin with a magic number. Destroyed
//    objects are kept as tombstones (never freed), so a stale handle is detected
//    (alive == false) instead of reading freed memory, and worker threads can
//    finish with them safely. The simulator trades a little memory for that.
//  - No process-wide mutex on the hot path: the context stack is thread_local,
//    counters are relaxed atomics, objects carry their own mutexes.
#pragma once

#include <cuda.h>

#include <atomic>
#include <bitset>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#define SIM_EXPORT extern "C" __attribute__((visibility("default")))

namespace sim {

constexpr int kMaxSms = 256;
using SmSet = std::bitset<kMaxSms>;

// ---------------------------------------------------------------- call sites
// One CallSite per driver function base name ("cuCtxPushCurrent"): counts
// calls and holds armed faults.
// Cache-line aligned so that two hot counters never share a line (threads
// calling different functions do not bounce each other's counters).
struct alignas(64) CallSite {
    std::atomic<long long> count{0};
    std::string name;
    std::mutex mu;                                   // guards faults only
    std::vector<std::pair<long long, CUresult>> faults;  // (calls left before failing, error)
};
CallSite* site_for(const char* name);                // stable pointer, created on demand
extern std::atomic<bool> g_any_faults;
CUresult take_fault(CallSite* site);                 // slow path: consumes one call of each armed fault

// Entry of every API function: count the call, then (rarely) fire an injected
// fault before any side effect.
#define SIM_ENTER(NAME)                                                        \
    static ::sim::CallSite* const sim_site_ = ::sim::site_for(NAME);           \
    sim_site_->count.fetch_add(1, std::memory_order_relaxed);                  \
    if (__builtin_expect(::sim::g_any_faults.load(std::memory_order_relaxed), 0)) { \
        CUresult sim_fault_ = ::sim::take_fault(sim_site_);                    \
        if (sim_fault_ != CUDA_SUCCESS) return sim_fault_;                     \
    }

// Entry plus "cuInit must have been called".
#define SIM_ENTER_INIT(NAME)                                                   \
    SIM_ENTER(NAME)                                                            \
    if (__builtin_expect(!::sim::g_initialized.load(std::memory_order_acquire), 0)) \
        return CUDA_ERROR_NOT_INITIALIZED;

// ---------------------------------------------------------------- devices
struct Context;
struct Device {
    std::string name;
    int major = 0, minor = 0, sm_count = 0;
    unsigned long long total_mem = 0;
    int min_partition = 0, alignment = 0;
    unsigned char uuid[16] = {};
    Context* primary = nullptr;          // created at cuInit, one handle for the process
    std::atomic<unsigned long long> allocated{0};
};
extern std::vector<Device*> g_devices;    // fixed once cuInit succeeded
extern std::atomic<bool> g_initialized;
extern int g_driver_version;
inline bool valid_device(CUdevice d) { return d >= 0 && d < (int)g_devices.size(); }
SmSet all_sms(int device);

// ---------------------------------------------------------------- objects
enum Magic : uint32_t {
    kMagicContext = 0x53437478,   // "SCtx"
    kMagicGreen = 0x53477278,
    kMagicStream = 0x53537472,
    kMagicEvent = 0x53457674,
    kMagicGraph = 0x53477270,
    kMagicExec = 0x53457865,
    kMagicDesc = 0x53447363,
    kMagicNode = 0x534e6f64,
};

struct Object {
    explicit Object(uint32_t m) : magic(m) {}
    uint32_t magic;
    std::atomic<bool> alive{true};
};

// Checks a handle without trusting it too much: small integers are rejected
// before any dereference (garbage pointers are undefined behaviour in the real
// driver too).
template <class T>
inline T* as_object(const void* h, uint32_t magic) {
    if (reinterpret_cast<uintptr_t>(h) < 4096) return nullptr;
    T* p = static_cast<T*>(const_cast<void*>(h));
    if (p->magic != magic) return nullptr;
    return p;
}

// A one-shot completion flag with a timestamp; shared by events and waits.
// `pending` lets one signal wait for several stream markers (green-context
// record).
struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    std::atomic<bool> done{false};
    std::atomic<int> pending{1};
    std::atomic<long long> when_ns{0};   // steady_clock time of completion
    void arrive();        // one marker reached; sets done when all arrived
    void wait();
    bool is_done() const { return done.load(std::memory_order_acquire); }
};
inline long long steady_now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
using SignalPtr = std::shared_ptr<Signal>;

struct Stream;
struct GreenCtx;

enum class CtxKind { Primary, User, Green };
struct Context : Object {
    Context() : Object(kMagicContext) {}
    CtxKind kind = CtxKind::Primary;
    int device = 0;
    unsigned long long id = 0;
    unsigned int flags = 0;
    GreenCtx* green = nullptr;                 // for kind == Green
    std::atomic<int> primary_refs{0};          // for kind == Primary
    std::atomic<int> top_count{0};             // green only: threads that have it at the top of their stack
    std::mutex mu;                             // guards streams, legacy creation
    std::vector<Stream*> streams;              // every stream (user and internal) of this context
    std::atomic<Stream*> legacy{nullptr};      // the NULL / CU_STREAM_LEGACY stream, lazily made (set under mu)
};
// Usable: alive, and a primary context must be retained.
inline bool ctx_usable(Context* c) {
    if (!c->alive.load(std::memory_order_acquire)) return false;
    return c->kind != CtxKind::Primary || c->primary_refs.load(std::memory_order_acquire) > 0;
}
Context* checked_ctx(CUcontext h);           // magic only (may be dead)

struct GreenCtx : Object {
    GreenCtx() : Object(kMagicGreen) {}
    unsigned long long id = 0;
    int device = 0;
    SmSet sms;
    Context* ctx = nullptr;                    // what cuCtxFromGreenCtx returns
    std::mutex mu;                             // guards streams, waits
    std::vector<Stream*> streams;              // streams made with cuGreenCtxStreamCreate or while current
    std::vector<SignalPtr> future_waits;       // from cuGreenCtxWaitEvent, applied to streams made later
};

// ---------------------------------------------------------------- capture & graphs
struct Graph;
struct Node {
    uint32_t magic = kMagicNode;
    std::function<void()> op;
    std::vector<Node*> deps;
    unsigned long long green_id = 0;     // green ctx of the stream it was captured on (0 = none)
    Context* ctx = nullptr;              // context it runs in
    const char* kind = "";
};
struct Graph : Object {
    Graph() : Object(kMagicGraph) {}
    std::mutex mu;
    std::vector<Node*> nodes;
    bool user_visible = false;           // counted in live objects once handed to the user
};
struct GraphExec : Object {
    GraphExec() : Object(kMagicExec) {}
    std::vector<std::function<void()>> ops;   // topological order
};

enum CaptureStatus { kCapNone = 0, kCapActive = 1, kCapInvalidated = 2 };
struct Capture {
    unsigned long long id = 0;
    Graph* graph = nullptr;
    CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
    std::thread::id thread;
    Stream* origin = nullptr;
    std::atomic<int> status{kCapActive};
    std::mutex mu;                       // guards members, the streams' tails, graph nodes
    std::vector<Stream*> members;        // origin + joined streams
};

// ---------------------------------------------------------------- streams & events
using Op = std::function<void()>;
struct Stream : Object {
    Stream() : Object(kMagicStream) {}
    Context* ctx = nullptr;
    GreenCtx* green = nullptr;
    unsigned int flags = 0;
    int priority = 0;
    unsigned long long id = 0;
    bool internal = false;               // legacy / per-thread streams: not user objects
    bool is_legacy = false;
    std::atomic<bool> detached{false};
    // execution
    std::mutex mu;
    std::condition_variable cv;          // work arrived / work finished
    std::deque<Op> queue;
    // Written under mu only (by push_raw and the worker); read lock-free by idle().
    std::atomic<unsigned long long> submitted{0}, completed{0};
    bool worker_started = false, stopping = false, worker_done = false;
    // capture (pointer read lock-free on the hot path; tail guarded by capture->mu)
    std::atomic<Capture*> capture{nullptr};
    std::vector<Node*> tail;
    std::vector<CUgraphNode> tail_out;   // returned by cuStreamGetCaptureInfo
    // No operation queued or running. Lock-free: submitted is read first, so
    // completed == submitted means every op submitted before the call finished
    // (the acquire on completed makes their effects visible). Work that other
    // threads submit concurrently is unordered with this call anyway.
    bool idle() const {
        unsigned long long sub = submitted.load(std::memory_order_acquire);
        return completed.load(std::memory_order_acquire) == sub;
    }
};
struct Event : Object {
    Event() : Object(kMagicEvent) {}
    unsigned int flags = 0;
    int device = 0;
    std::mutex mu;
    SignalPtr last;                      // most recent record (null: never recorded)
    Capture* cap = nullptr;              // set when last recorded inside a capture
    std::vector<Node*> cap_nodes;
};

// ---------------------------------------------------------------- thread state
struct ThreadState {
    std::vector<Context*> stack;
    CUstreamCaptureMode capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
    std::vector<std::pair<Context*, Stream*>> per_thread_streams;
    ~ThreadState();
};
ThreadState& tls();
inline Context* current_ctx() {
    auto& s = tls().stack;
    return s.empty() ? nullptr : s.back();
}
// The current context, or an error code when none or it is dead.
CUresult require_current(Context** out);

// ---------------------------------------------------------------- engine (engine.cpp)
Stream* new_stream(Context* ctx, GreenCtx* g, unsigned flags, int prio, bool internal);
Stream* legacy_stream(Context* ctx);
Stream* per_thread_stream(Context* ctx);
// Resolves a stream handle (0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or a
// real stream). per_thread_null: the _ptsz variants treat 0 as per-thread.
CUresult resolve_stream(CUstream h, Stream** out, bool per_thread_null = false);
// Puts an operation on a stream, or into the graph when the stream captures.
CUresult submit(Stream* s, Op op, const char* kind, bool delayed);
// Enqueue a marker; returns a signal set when the stream reaches it.
SignalPtr marker(Stream* s);
void push_raw(Stream* s, Op op);
void unlink_stream(Stream* s);
void wait_idle(Stream* s);
bool has_pending(Stream* s);
// Fast path of event record: true when work submitted to s now would have
// nothing to wait for (s idle and not capturing, and for the legacy-stream
// implicit synchronisation its partners idle and not capturing).
bool record_completes_now(Stream* s);
// Makes the event's most recent record a completed one (timestamp now),
// without queueing anything. Reuses the event's last signal when nobody else
// holds it.
void complete_record_inline(Event* e);
void sleep_op_delay();
extern std::atomic<int> g_op_delay_us;

// capture helpers (api_capture.cpp)
void invalidate_capture(Capture* c);
// The calling thread is about to make a "potentially unsafe" call.
// Returns CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (and invalidates) if forbidden.
CUresult check_unsafe_call();
bool capture_add_node(Stream* s, Capture* c, Op op, const char* kind);

// ---------------------------------------------------------------- introspection
enum LiveKind { kLiveContext, kLivePrimary, kLiveGreen, kLiveStream, kLiveEvent, kLiveAlloc,
                kLiveGraph, kLiveExec, kLiveKinds };
extern std::atomic<int> g_live[kLiveKinds];
void add_hazard(const std::string& kind, const std::string& detail);

// ids
extern std::atomic<unsigned long long> g_next_id;
inline unsigned long long next_id() { return g_next_id.fetch_add(1, std::memory_order_relaxed); }

// memory (api_memory.cpp)
bool device_range_ok(CUdeviceptr p, size_t n);

}  // namespace sim

// Shared between the API files and proc_address.cpp (per-thread variants).
namespace sim {
Event* live_event(CUevent h);
CUresult capture_record_event(Stream* s, Capture* c, Event* e);
CUresult capture_wait_event(Stream* s, Capture* scap, Capture* ecap, const std::vector<Node*>& enodes, unsigned flags);
CUresult stream_get_priority(CUstream h, int* priority, bool pt);
CUresult stream_get_flags(CUstream h, unsigned int* flags, bool pt);
CUresult stream_get_id(CUstream h, unsigned long long* id, bool pt);
CUresult stream_get_device(CUstream h, CUdevice* dev, bool pt);
CUresult stream_get_ctx(CUstream h, CUcontext* pctx, bool pt);
CUresult stream_get_ctx_v2(CUstream h, CUcontext* pctx, CUgreenCtx* pgreen, bool pt);
CUresult stream_query(CUstream h, bool pt);
CUresult stream_synchronize(CUstream h, bool pt);
CUresult stream_wait_event(CUstream h, CUevent hEvent, unsigned int flags, bool pt);
CUresult event_record(CUevent hEvent, CUstream h, unsigned flags, bool pt, const char* name);
}  // namespace sim
