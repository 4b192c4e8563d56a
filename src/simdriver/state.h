// Shared state of the simulated CUDA driver: object layouts, globals, and the
// small helpers every API file uses (call counting, fault checks, handle checks).
//
// Design rules (see docs/simulator.md):
//  - Handles are pointers to objects that live in per-kind slabs (arena.cpp):
//    one address range reserved up front per kind of handle, carved into
//    power-of-two slots. A handle is checked by range + slot alignment before
//    anything is read, then by the kind's magic number in the object header, so
//    garbage integers, pointers into the middle of objects and handles of another
//    kind are rejected without dereferencing arbitrary memory. Destroyed objects
//    stay in their slot as tombstones (alive == false, never freed or reused),
//    so a stale handle is detected instead of reading freed memory, and worker
//    threads can finish with them safely. The simulator trades memory for that.
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
#include <new>
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
// This process is a fork() child of a process that had called cuInit: the
// driver is unusable here (g_initialized is false, cuInit fails; core.cpp).
extern std::atomic<bool> g_forked_child;
// cuInit made the primary contexts, in this process or in the parent of a fork.
inline bool primaries_made() {
    return g_initialized.load(std::memory_order_acquire) || g_forked_child.load(std::memory_order_acquire);
}
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
};

struct Object {
    explicit Object(uint32_t m) : magic(m) {}
    std::atomic<uint32_t> magic;         // atomic: a garbage handle may race with construction
    std::atomic<bool> alive{true};
};

// ---------------------------------------------------------------- handle arena (arena.cpp)
// Every object a handle can name lives in the slab of its kind. A slab is one
// address range reserved (PROT_NONE) on first use and made readable in chunks
// as it fills; slots are a power of two bytes, handed out in order, never
// freed or reused. What a handle check reads (base, committed) changes only
// when a slab grows, so the hot path loads two read-mostly words, takes no
// lock and touches no shared counter.
enum SlabKind { kSlabContext, kSlabGreen, kSlabStream, kSlabEvent, kSlabGraph, kSlabExec, kSlabDesc, kSlabKinds };
struct alignas(64) Slab {
    std::atomic<size_t> committed{0};    // bytes from base that are mapped (zero-filled past the last slot)
    std::atomic<uintptr_t> base{0};      // 0 until the first allocation
};
extern Slab g_slabs[kSlabKinds];
// A zeroed slot of `slot` bytes, or nullptr when the slab is exhausted.
void* slab_alloc(SlabKind kind, size_t slot);

constexpr size_t pow2_at_least(size_t n) {
    size_t p = 64;
    while (p < n) p <<= 1;
    return p;
}
template <class T>
constexpr size_t slot_size() {
    static_assert(alignof(T) <= 64, "slots are 64-byte aligned at least");
    return pow2_at_least(sizeof(T));
}

// The object a handle names, or nullptr: `h` must be the start of a slot of
// T's slab (range and alignment checked before any read) holding a T (magic).
// Destroyed objects are returned too (tombstones): callers check `alive`.
// The old special values (NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD) are
// never inside a slab.
template <class T>
inline T* as_object(const void* h) {
    const Slab& s = g_slabs[T::kSlab];
    size_t limit = s.committed.load(std::memory_order_acquire);
    uintptr_t off = reinterpret_cast<uintptr_t>(h) - s.base.load(std::memory_order_relaxed);
    if (__builtin_expect(off >= limit || (off & (slot_size<T>() - 1)) != 0, 0)) return nullptr;
    T* p = static_cast<T*>(const_cast<void*>(h));
    if (__builtin_expect(p->magic.load(std::memory_order_relaxed) != T::kMagic, 0)) return nullptr;
    return p;
}

// Constructs a T in a new slot of its slab; nullptr when the slab is exhausted
// (callers answer CUDA_ERROR_OUT_OF_MEMORY).
template <class T>
inline T* make_object() {
    void* p = slab_alloc(T::kSlab, slot_size<T>());
    return p ? new (p) T : nullptr;
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
    static constexpr SlabKind kSlab = kSlabContext;
    static constexpr uint32_t kMagic = kMagicContext;
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
// The Context a handle names (may be dead), or nullptr. Inline: the context
// stack calls are hot.
inline Context* checked_ctx(CUcontext h) { return as_object<Context>(h); }

struct GreenCtx : Object {
    GreenCtx() : Object(kMagicGreen) {}
    static constexpr SlabKind kSlab = kSlabGreen;
    static constexpr uint32_t kMagic = kMagicGreen;
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
    std::function<void()> op;
    std::vector<Node*> deps;
    unsigned long long green_id = 0;     // green ctx of the stream it was captured on (0 = none)
};
struct Graph : Object {
    Graph() : Object(kMagicGraph) {}
    static constexpr SlabKind kSlab = kSlabGraph;
    static constexpr uint32_t kMagic = kMagicGraph;
    std::mutex mu;
    std::vector<Node*> nodes;
    bool user_visible = false;           // counted in live objects once handed to the user
};
struct GraphExec : Object {
    GraphExec() : Object(kMagicExec) {}
    static constexpr SlabKind kSlab = kSlabExec;
    static constexpr uint32_t kMagic = kMagicExec;
    std::vector<std::function<void()>> ops;   // topological order
};

enum CaptureStatus { kCapActive = 1, kCapInvalidated = 2 };
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
    static constexpr SlabKind kSlab = kSlabStream;
    static constexpr uint32_t kMagic = kMagicStream;
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
    static constexpr SlabKind kSlab = kSlabEvent;
    static constexpr uint32_t kMagic = kMagicEvent;
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
// A CUcontext argument: INVALID_CONTEXT unless a live context (api_contexts.cpp).
CUresult check_settable(CUcontext h, Context** out);

// ---------------------------------------------------------------- engine (engine.cpp)
// The three return nullptr when the stream slab is exhausted.
Stream* new_stream(Context* ctx, GreenCtx* g, unsigned flags, int prio, bool internal);
// Stream priorities, like real devices since Volta: 0 (lowest) .. -5 (highest);
// cuda.h clamps a requested priority to this range.
constexpr int kLeastPriority = 0;
constexpr int kGreatestPriority = -5;
inline int clamp_priority(int p) { return std::max(kGreatestPriority, std::min(kLeastPriority, p)); }
Stream* legacy_stream(Context* ctx);
Stream* per_thread_stream(Context* ctx);
// Resolves a stream handle (0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or a
// real stream). per_thread_null: the _ptsz variants treat 0 as per-thread.
CUresult resolve_stream(CUstream h, Stream** out, bool per_thread_null = false);
// Declares `Stream* s` resolved from handle h, returning the error from the
// enclosing API function when h names no usable stream.
#define RESOLVE(h, s, pt)                                 \
    Stream* s;                                            \
    {                                                     \
        CUresult r_ = resolve_stream((h), &s, (pt));      \
        if (r_ != CUDA_SUCCESS) return r_;                \
    }
// Puts an operation on a stream, or into the graph when the stream captures.
CUresult submit(Stream* s, Op op, bool delayed);
// Enqueue a marker; returns a signal set when the stream reaches it.
SignalPtr marker(Stream* s);
void push_raw(Stream* s, Op op);
void unlink_stream(Stream* s);
void wait_idle(Stream* s);
// Fast path of event record: true when work submitted to s now would have
// nothing to wait for (s idle and not capturing, and for the legacy-stream
// implicit synchronisation its partners idle and not capturing).
bool record_completes_now(Stream* s);
// Makes the event's most recent record a completed one (timestamp now),
// without queueing anything. Reuses the event's last signal when nobody else
// holds it.
void complete_record_inline(Event* e);
// The event's last record becomes `sig` (a record outside any capture).
void set_last_record(Event* e, SignalPtr sig);
void sleep_op_delay();
extern std::atomic<int> g_op_delay_us;

// capture helpers (api_capture.cpp)
void invalidate_capture(Capture* c);
// The calling thread is about to make a "potentially unsafe" call.
// Returns CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (and invalidates) if forbidden.
CUresult check_unsafe_call();
bool capture_add_node(Stream* s, Capture* c, Op op);

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
// A live green context, or nullptr for a bogus, destroyed or wrong-kind handle.
inline GreenCtx* live_green(CUgreenCtx h) {
    GreenCtx* g = as_object<GreenCtx>(h);
    if (g == nullptr || !g->alive.load(std::memory_order_acquire)) return nullptr;
    return g;
}
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
CUresult event_record(CUevent hEvent, CUstream h, unsigned flags, bool pt);
}  // namespace sim
