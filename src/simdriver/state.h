// Shared state of the simulated CUDA driver: object layouts, globals, and the
// small helpers every API file uses (call counting, fault checks, handle checks).
//
// Design rules (see docs/simulator.md):
//  - Handles name objects that live in per-kind slabs (arena.cpp): one
//    address range reserved up front per kind of handle, carved into
//    power-of-two slots. A handle is the object's address with the slot's
//    generation in its top bits. It is checked by range + slot alignment before
//    anything is read, then by the kind's magic number and the generation in
//    the object header, so garbage integers, pointers into the middle of
//    objects, handles of another kind and stale handles (of a destroyed object,
//    even once its slot holds a newer one) are rejected without dereferencing
//    arbitrary memory. Slots are reused once their object is destroyed and
//    nothing inside the simulator still refers to it (Object::refs), after a
//    quarantine; slots always hold an object of their kind (type-stable), so a
//    check that races with a reuse reads a live header, never unmapped memory.
//  - No process-wide mutex on the hot path: the context stack is thread_local,
//    counters are relaxed atomics, objects carry their own mutexes.
#pragma once

#include <cuda.h>

#include <algorithm>
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
#include <unordered_set>
#include <vector>

#include "versions.h"

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

// The API function the calling thread is in (its base name), for hazards that
// name it. Initial-exec TLS: one store per call, no __tls_get_addr.
extern __thread const char* t_api_fn __attribute__((tls_model("initial-exec")));

// Entry of every API function: count the call, then (rarely) fire an injected
// fault before any side effect.
#define SIM_ENTER(NAME)                                                        \
    static ::sim::CallSite* const sim_site_ = ::sim::site_for(NAME);           \
    ::sim::t_api_fn = NAME;                                                    \
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
struct MemPool;
struct Device {
    std::string name;
    int major = 0, minor = 0, sm_count = 0;
    unsigned long long total_mem = 0;
    int min_partition = 0, alignment = 0;
    // Locality domains (13.4): SM ids are laid out domain by domain, `sm_count /
    // locality_domains` each; the last domain also has the leftover SMs (supplemental SMs,
    // beyond CU_DEVICE_ATTRIBUTE_LOCALITY_DOMAIN_MULTIPROCESSOR_COUNT).
    int locality_domains = 1;
    int domain_sm_count() const { return sm_count / locality_domains; }
    int domain_of(int sm) const { return std::min(sm / domain_sm_count(), locality_domains - 1); }
    unsigned char uuid[16] = {};
    Context* primary = nullptr;          // created at cuInit, one handle for the process
    std::atomic<unsigned long long> allocated{0};
    std::mutex pool_mu;                  // guards the pools below (api_pools.cpp)
    MemPool* default_pool = nullptr;     // made on first use, never destroyed
    MemPool* current_pool = nullptr;     // cuDeviceSetMemPool; null: the default pool
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
    kMagicUser = 0x5355736f,      // "SUso"
    kMagicPool = 0x53506f6c,      // "SPol"
    kMagicModule = 0x534d6f64,    // "SMod"
    kMagicFunction = 0x5346756e,  // "SFun"
};

struct Object {
    Object(uint32_t m, uint32_t g) : magic(m), gen(g) {}
    std::atomic<uint32_t> magic;         // atomic: a garbage handle may race with construction
    std::atomic<uint32_t> gen;           // how often the slot was reused; part of every handle
    std::atomic<bool> alive{true};
    // Lifetime references: the slot is reclaimed when this drops to zero (never
    // before the object is destroyed: its owner holds one). Who holds them is
    // per kind (see engine.cpp): a stream holds one on itself for its owner,
    // one for its worker thread and one per snapshot being walked; a user or
    // green context one for its owner and one per stream of it. Events, graphs
    // and graph execs have no internal holders: destroy reclaims them.
    std::atomic<int> refs{1};
};

// A handle: the object's address (bits 0..47, below any user-space address on
// x86-64 and 48-bit arm64) with the low 15 bits of the slot's generation in bits
// 48..62. Bit 63 stays clear, so handles are positive as int64 too.
constexpr unsigned kGenShift = 48;
constexpr uintptr_t kAddrMask = (uintptr_t(1) << kGenShift) - 1;
constexpr uint32_t kHandleGenMask = 0x7FFF;
inline uintptr_t handle_bits(const Object* o) {
    return reinterpret_cast<uintptr_t>(o) | (uintptr_t(o->gen.load(std::memory_order_relaxed) & kHandleGenMask) << kGenShift);
}
template <class H>
inline H handle_of(const Object* o) {
    return o == nullptr ? nullptr : reinterpret_cast<H>(handle_bits(o));
}
// A reference that may outlive its object (the context stack, the per-thread
// streams): valid while the slot's generation is still the one recorded.
template <class T>
struct WeakRef {
    T* obj = nullptr;
    uint32_t gen = 0;
    WeakRef() = default;
    explicit WeakRef(T* o) : obj(o), gen(o ? o->gen.load(std::memory_order_relaxed) : 0) {}
    bool current() const { return obj != nullptr && obj->gen.load(std::memory_order_relaxed) == gen; }
    uintptr_t handle() const { return obj == nullptr ? 0 : reinterpret_cast<uintptr_t>(obj) | (uintptr_t(gen & kHandleGenMask) << kGenShift); }
};
// Takes a lifetime reference unless the count already reached zero (the object
// is being reclaimed).
inline bool try_ref(Object* o) {
    int n = o->refs.load(std::memory_order_relaxed);
    while (n > 0)
        if (o->refs.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
    return false;
}
// Drops one; true when it was the last (the caller reclaims).
inline bool drop_ref(Object* o) { return o->refs.fetch_sub(1, std::memory_order_acq_rel) == 1; }

// ---------------------------------------------------------------- handle arena (arena.cpp)
// Every object a handle can name lives in the slab of its kind. A slab is one
// address range reserved (PROT_NONE) on first use and made readable in chunks
// as it fills; slots are a power of two bytes. A reclaimed slot waits in a
// FIFO quarantine and is reused only when more than kQuarantine slots wait
// (arena.cpp). What a handle check reads (base, committed) changes only when a
// slab grows, so the hot path loads two read-mostly words, takes no lock and
// touches no shared counter.
enum SlabKind { kSlabContext, kSlabGreen, kSlabStream, kSlabEvent, kSlabGraph, kSlabExec, kSlabDesc, kSlabUser,
                kSlabPool, kSlabModule, kSlabFunction, kSlabKinds };
struct alignas(64) Slab {
    std::atomic<size_t> committed{0};    // bytes from base that are mapped (zero-filled past the last slot)
    std::atomic<uintptr_t> base{0};      // 0 until the first allocation
};
extern Slab g_slabs[kSlabKinds];
// A slot of `slot` bytes, or nullptr when the slab is exhausted. *reused: the
// slot held an object of this kind before (still constructed: the caller
// destroys it); else it is zero-filled.
void* slab_alloc(SlabKind kind, size_t slot, bool* reused);
// Hands a slot back (its object destroyed and no longer referenced).
void slab_free(SlabKind kind, void* p);
extern const char* const kSlabNames[kSlabKinds];   // "stream", "green context", ...

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

// The object a handle names, or nullptr: the address part of `h` must be the
// start of a slot of T's slab (range and alignment checked before any read)
// holding a T (magic) of the handle's generation. A destroyed object whose
// slot was not reused yet is returned too: callers check `alive`. The old
// special values (NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD) are never
// inside a slab.
template <class T>
inline T* as_object(const void* h) {
    const Slab& s = g_slabs[T::kSlab];
    size_t limit = s.committed.load(std::memory_order_acquire);
    uintptr_t v = reinterpret_cast<uintptr_t>(h);
    uintptr_t base = s.base.load(std::memory_order_relaxed);
    uintptr_t off = (v & kAddrMask) - base;
    if (__builtin_expect(off >= limit || (off & (slot_size<T>() - 1)) != 0, 0)) return nullptr;
    T* p = reinterpret_cast<T*>(base + off);
    if (__builtin_expect(p->magic.load(std::memory_order_relaxed) != T::kMagic, 0)) return nullptr;
    if (__builtin_expect((p->gen.load(std::memory_order_relaxed) & kHandleGenMask) != (v >> kGenShift), 0))
        return nullptr;
    return p;
}

// Cold path of a failed handle check: when `h` names a destroyed object of
// this kind (not reused yet, or stale: its slot holds a newer object) records
// the hazard destroyed_handle naming the API function and returns true;
// garbage, forged or wrong-kind handles record nothing (false).
bool note_destroyed_handle(SlabKind kind, size_t slot, uint32_t magic, const void* h);
// The hazard for an object already found destroyed (e.g. the current context);
// `note` (may be null) says how.
void add_destroyed_hazard(SlabKind kind, uintptr_t handle, bool reused, const char* note);

// The live T a handle names, or nullptr (recording destroyed_handle when it
// names a destroyed one; *destroyed tells which). The hot path is the inline
// check; failures take the cold path.
template <class T>
inline T* live_object(const void* h, bool* destroyed = nullptr) {
    T* p = as_object<T>(h);
    if (__builtin_expect(p != nullptr && p->alive.load(std::memory_order_acquire), 1)) return p;
    bool d = note_destroyed_handle(T::kSlab, slot_size<T>(), T::kMagic, h);
    if (destroyed != nullptr) *destroyed = d;
    return nullptr;
}

// Constructs a T in a slot of its slab: a fresh one, or one whose object was
// reclaimed (destroyed here, its generation carried on plus one); nullptr when
// the slab is exhausted (callers answer CUDA_ERROR_OUT_OF_MEMORY).
template <class T>
inline T* make_object() {
    bool reused = false;
    void* p = slab_alloc(T::kSlab, slot_size<T>(), &reused);
    if (p == nullptr) return nullptr;
    uint32_t gen = 0;
    if (reused) {
        T* old = static_cast<T*>(p);
        gen = old->gen.load(std::memory_order_relaxed) + 1;
        old->~T();
    }
    return new (p) T(gen);
}
// Hands a destroyed, unreferenced object's slot back for reuse.
template <class T>
inline void reclaim_object(T* p) {
    p->alive.store(false, std::memory_order_release);
    slab_free(T::kSlab, p);
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
    explicit Context(uint32_t gen) : Object(kMagicContext, gen) {}
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
// What holds a context alive for its streams: the user context itself, the
// green context of a green context's CUcontext; nullptr for primary contexts
// (never reclaimed).
Object* ctx_owner(Context* c);
// Drops a lifetime reference on a user or green context; the last reclaims.
void unref_ctx_owner(Object* owner);

struct GreenCtx : Object {
    // Reclaimed with its CUcontext (ctx) when the last stream of it is gone.
    explicit GreenCtx(uint32_t gen) : Object(kMagicGreen, gen) {}
    static constexpr SlabKind kSlab = kSlabGreen;
    static constexpr uint32_t kMagic = kMagicGreen;
    unsigned long long id = 0;
    int device = 0;
    SmSet sms;
    // Its workqueue configuration (13.1): from the descriptor; the default when unset.
    bool wq_set = false;
    unsigned wq_limit = 0;
    int wq_scope = 0;
    Context* ctx = nullptr;                    // what cuCtxFromGreenCtx returns
    std::mutex mu;                             // guards streams, waits
    std::vector<Stream*> streams;              // streams made with cuGreenCtxStreamCreate or while current
    std::vector<SignalPtr> future_waits;       // from cuGreenCtxWaitEvent, applied to streams made later
};

// ---------------------------------------------------------------- user objects (api_user_objects.cpp)
// A user object: a destructor and its argument, run on the simulator's
// destructor thread when the last reference (the callers' and the graphs')
// goes. Reclaimed then: a handle used after that is a destroyed handle.
struct UserObject : Object {
    explicit UserObject(uint32_t gen) : Object(kMagicUser, gen) {}
    static constexpr SlabKind kSlab = kSlabUser;
    static constexpr uint32_t kMagic = kMagicUser;
    void* ptr = nullptr;
    CUhostFn destroy = nullptr;
    std::atomic<long long> count{0};     // references of callers and graphs together
};
// Adds `n` references (the caller made sure the object is live).
void user_object_retain(UserObject* u, unsigned n);
// Drops `n` references; false (nothing changed) when fewer are held. The last
// one queues the destructor and reclaims the object.
bool user_object_release(UserObject* u, unsigned n);
// References a graph or a graph exec owns: one entry per object. Dropped when
// the set is destroyed, so an exec's set that a queued launch shares is
// released when the last launch of it has run.
struct UserRefs {
    std::vector<std::pair<UserObject*, unsigned>> held;
    UserRefs() = default;
    UserRefs(const UserRefs&) = delete;
    UserRefs& operator=(const UserRefs&) = delete;
    ~UserRefs() { release_all(); }
    void add(UserObject* u, unsigned n);
    // Takes references of its own to every object `other` holds (retained again).
    void retain_all_of(const UserRefs& other);
    bool remove(UserObject* u, unsigned n);   // false: the set holds fewer than n
    void release_all();
};
using UserRefsPtr = std::shared_ptr<UserRefs>;

// ---------------------------------------------------------------- capture & graphs
using Op = std::function<void()>;
struct Graph;
struct NodeSpec;  // graph_nodes.h: what a node was made with (its type and parameters)
// A node's identity, never reused: a node handle is the node's address, which
// the allocator hands out again after the node is destroyed.
inline unsigned long long next_node_uid() {
    static std::atomic<unsigned long long> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
}
struct Node {
    const unsigned long long uid = next_node_uid();
    CUgraphNodeType type = CU_GRAPH_NODE_TYPE_EMPTY;
    Op op;                               // what it runs (not used for child graph and conditional nodes)
    std::vector<Node*> deps;
    unsigned long long green_id = 0;     // green ctx of the stream it was captured on (0 = none)
    Graph* graph = nullptr;              // the graph it belongs to
    unsigned local_id = 0;               // cuGraphNodeGetLocalId: its number in its graph
    unsigned long long cloned_from = 0;  // cuGraphNodeFindInClone: the uid of the node this one copies
    std::shared_ptr<NodeSpec> spec;      // its parameters; null for a captured op with none to report
    std::vector<CUgraph> body_handles;   // a conditional node's bodies, as cuda.h's phGraph_out hands them out
};
// cuGraphGetId / cuGraphExecGetId: one sequence for graphs and execs (api_graphs.cpp).
unsigned next_graph_id();
// Appends a node to a graph and gives it its id (caller holds g->mu).
void add_node_locked(Graph* g, Node* n);
struct Graph : Object {
    explicit Graph(uint32_t gen) : Object(kMagicGraph, gen), id(next_graph_id()) {}
    unsigned id;
    // Nodes are freed with the slot (when it is reused): a racing reader of a
    // destroyed graph never meets freed nodes.
    ~Graph() {
        for (Node* n : nodes) delete n;
        for (Node* n : destroyed_nodes) delete n;
    }
    static constexpr SlabKind kSlab = kSlabGraph;
    static constexpr uint32_t kMagic = kMagicGraph;
    std::mutex mu;
    std::vector<Node*> nodes;
    std::vector<Node*> destroyed_nodes;  // by cuGraphDestroyNode (guarded by mu); freed with the slot
    unsigned next_local_id = 0;          // guarded by mu
    UserRefs user_refs;                  // guarded by mu; released by the destroy (or discard)
    bool user_visible = false;           // counted in live objects once handed to the user
    // A child graph's copy or a conditional node's body: the node owns it (the
    // user may add nodes to it, never destroy it); it ends with the node.
    Node* owner = nullptr;
    // The capture adding nodes to it until cuStreamEndCapture (guarded by mu):
    // its streams' tails point at nodes of it, so neither the graph nor a node
    // of it may be destroyed meanwhile.
    struct Capture* capturing = nullptr;
};
// Ends a graph (cuGraphDestroy, or a capture's graph that never reaches the
// user): marks it dead under its mutex (so cuGraphRetainUserObject cannot add
// to it after), releases its user objects, ends the graphs its nodes own,
// frees its slot.
void end_graph(Graph* g);
// One node of an instantiated graph: `key` is the graph node it was made from
// (never dereferenced: the graph may be gone; matched by uid).
struct ExecNode {
    const Node* key = nullptr;
    unsigned long long key_uid = 0;
    unsigned long long origin_uid = 0;        // after cuGraphExecUpdate: the node it was first made from
    CUgraphNodeType type = CU_GRAPH_NODE_TYPE_EMPTY;
    Op op;
    // Event record and wait nodes act at the launch (a record is pending from
    // then on, a wait waits for the record that was the event's last then).
    CUevent event = nullptr;
    bool enabled = true;                      // cuGraphNodeSetEnabled
};
struct GraphExec : Object {
    explicit GraphExec(uint32_t gen) : Object(kMagicExec, gen), id(next_graph_id()) {}
    unsigned id;
    static constexpr SlabKind kSlab = kSlabExec;
    static constexpr uint32_t kMagic = kMagicExec;
    // In a topological order; guarded by mu (launches copy it, node updates change it).
    std::mutex mu;
    std::vector<ExecNode> nodes;
    UserRefsPtr user_refs;                    // the graph's references, retained again at instantiate
    unsigned long long flags = 0;             // cuGraphExecGetFlags
    std::vector<CUgraphConditionalHandle> handles;  // of its conditional nodes: set at each launch
    std::vector<std::vector<size_t>> shape;   // per node, its dependencies' positions (cuGraphExecUpdate)
    // cuda.h (cuGraphLaunch): "Each launch is ordered behind ... any previous
    // launches of hGraphExec": the previous launch's completion (guarded by mu).
    SignalPtr last_launch;
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
    bool into_user_graph = false;        // cuStreamBeginCaptureToGraph: the graph is the caller's
    // not checked for joins: its nodes from before the capture, and those a
    // SET of cuStreamUpdateCaptureDependencies took out of a stream's set
    std::unordered_set<const Node*> prior;
};

// ---------------------------------------------------------------- streams & events
struct Stream : Object {
    explicit Stream(uint32_t gen) : Object(kMagicStream, gen) {}
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
    explicit Event(uint32_t gen) : Object(kMagicEvent, gen) {}
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
// Entries of the context stack and the per-thread streams are weak: the
// context may be destroyed (and its slot reused) while a thread still has it
// on its stack, which then reads as a destroyed context, never as the newer one.
using CtxRef = WeakRef<Context>;
struct PerThreadStream {
    CtxRef ctx;
    WeakRef<Stream> stream;
};
struct ThreadState {
    std::vector<CtxRef> stack;
    CUstreamCaptureMode capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
    std::vector<PerThreadStream> per_thread_streams;
    ~ThreadState();
};
ThreadState& tls();
// The top of the calling thread's stack (nullptr when empty); may be stale.
inline const CtxRef* current_ref() {
    auto& s = tls().stack;
    return s.empty() ? nullptr : &s.back();
}
// The current context, or an error code when none (INVALID_CONTEXT) or it is
// destroyed (CONTEXT_IS_DESTROYED, recording destroyed_handle) or an inactive
// primary context (CONTEXT_IS_DESTROYED).
CUresult require_current(Context** out);
// A CUcontext argument: INVALID_CONTEXT unless a live context (api_contexts.cpp).
CUresult check_settable(CUcontext h, Context** out);

// ---------------------------------------------------------------- engine (engine.cpp)
// The three return nullptr when the stream slab is exhausted (or the context
// is being reclaimed).
Stream* new_stream(Context* ctx, GreenCtx* g, unsigned flags, int prio, bool internal);
// Stream priorities, like real devices since Volta: 0 (lowest) .. -5 (highest);
// cuda.h clamps a requested priority to this range.
constexpr int kLeastPriority = 0;
constexpr int kGreatestPriority = -5;
inline int clamp_priority(int p) { return std::max(kGreatestPriority, std::min(kLeastPriority, p)); }
Stream* legacy_stream(Context* ctx);
// Ends a stream (cuStreamDestroy, or an internal stream of a context being
// destroyed or of an exiting thread): alive becomes false, its capture is
// invalidated and left, the worker stops after the queued work. The caller won
// the alive true -> false exchange.
void retire_stream(Stream* s);
// Lifetime references of a stream (see Object::refs); the last reclaims it.
void unref_stream(Stream* s);
// The streams of a context or green context, each pinned (a lifetime
// reference) so that none is reclaimed while the caller walks them.
struct StreamSnapshot {
    std::vector<Stream*> streams;
    StreamSnapshot() = default;
    StreamSnapshot(const StreamSnapshot&) = delete;
    StreamSnapshot& operator=(const StreamSnapshot&) = delete;
    ~StreamSnapshot() {
        for (Stream* s : streams) unref_stream(s);
    }
    // Appends the pinnable streams of `list` (which `mu` guards) not yet taken.
    void take(std::mutex& mu, const std::vector<Stream*>& list);
};
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
// `spec` (may be null: an empty node) describes the operation to a capture.
CUresult submit(Stream* s, Op op, bool delayed, const NodeSpec* spec = nullptr);
// Enqueue a marker; returns a signal set when the stream reaches it.
SignalPtr marker(Stream* s);
void push_raw(Stream* s, Op op);
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
// A stream that is retired while it captures leaves it (the capture no longer
// refers to the stream); the origin stream also invalidates it.
void leave_capture(Stream* s, Capture* c);
// The calling thread is about to make a "potentially unsafe" call.
// Returns CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (and invalidates) if forbidden.
CUresult check_unsafe_call();
// `spec` (may be null) says what the captured operation was: its node's type and parameters.
bool capture_add_node(Stream* s, Capture* c, Op op, const NodeSpec* spec);

// ---------------------------------------------------------------- introspection
enum LiveKind { kLiveContext, kLivePrimary, kLiveGreen, kLiveStream, kLiveEvent, kLiveAlloc,
                kLiveGraph, kLiveExec, kLiveUser, kLivePool, kLiveModule, kLiveKinds };
extern std::atomic<int> g_live[kLiveKinds];
void add_hazard(const std::string& kind, const std::string& detail);

// ids
extern std::atomic<unsigned long long> g_next_id;
inline unsigned long long next_id() { return g_next_id.fetch_add(1, std::memory_order_relaxed); }

// memory (api_memory.cpp)
bool device_range_ok(CUdeviceptr p, size_t n);
struct MemPool;
size_t round_alloc(size_t n);                  // the unit allocations are made and accounted in
// Backing memory for a pool allocation (the pool accounted for it already).
CUresult pool_alloc_memory(MemPool* pool, size_t bytesize, CUdeviceptr* out);
// `p` is the start of a live device allocation.
bool is_device_alloc(CUdeviceptr p);
// cuMemFree's work, for any device allocation (stream-ordered ones included).
CUresult free_device_memory(CUdeviceptr p);
// A pool allocation of `rounded` bytes was freed (api_pools.cpp).
void pool_released(MemPool* pool, size_t rounded);

}  // namespace sim

// Shared between the API files and proc_address.cpp (per-thread variants).
namespace sim {
inline Event* live_event(CUevent h) { return live_object<Event>(h); }
// A live green context, or nullptr for a bogus, destroyed or wrong-kind handle.
inline GreenCtx* live_green(CUgreenCtx h) { return live_object<GreenCtx>(h); }
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
