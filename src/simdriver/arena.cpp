// The handle arena: one slab per kind of handle (see state.h). A slab reserves
// an address range up front with no access (costs address space, not memory),
// and makes it readable and writable in chunks as slots are handed out. A
// handle check (as_object) only reads inside [base, base + committed), which
// is always mapped, so a stale or garbage handle never reads unmapped memory.
//
// Slots are reused. A slot comes back (slab_free) once its object is destroyed
// and nothing inside the simulator refers to it any more (Object::refs: a
// stream's worker has finished with it, no snapshot walks it, a context has no
// streams left); it then waits in a FIFO quarantine and is handed out again
// only when more than kQuarantine slots wait. The generation in every handle
// tells a stale handle from the slot's newer object; the quarantine (a) keeps
// a slot's generation from wrapping (15 bits in a handle) until it was reused
// 2^15 times, i.e. after at least 2^15 * (kQuarantine + 1) creations of its
// kind, and (b) gives a thread that checked a handle just before another
// thread destroyed its object (a caller's race, undefined on a real driver
// too) ample time to finish before the slot is rebuilt under it.
#include <sys/mman.h>

#include <algorithm>
#include <deque>

#include "kernels.h"
#include "pools.h"
#include "resources.h"

namespace sim {

Slab g_slabs[kSlabKinds];
const char* const kSlabNames[kSlabKinds] = {
    "context", "green context", "stream", "event", "graph", "graph exec", "resource descriptor", "user object",
    "memory pool", "module", "function",
};

namespace {

// Address space reserved per kind: room for programs that keep millions of
// streams or events alive at once; slots are reused, so churn costs nothing.
// Halved until the reservation succeeds (RLIMIT_AS), down to kMinReserve.
constexpr size_t kGiB = size_t(1) << 30;
constexpr size_t kReserve[kSlabKinds] = {
    1 * kGiB,  // contexts
    1 * kGiB,  // green contexts
    4 * kGiB,  // streams (512-byte slots: 8M streams)
    4 * kGiB,  // events (128-byte slots: 32M events)
    1 * kGiB,  // graphs
    1 * kGiB,  // graph execs
    1 * kGiB,  // resource descriptors
    1 * kGiB,  // user objects
    1 * kGiB,  // memory pools
    1 * kGiB,  // modules and libraries
    1 * kGiB,  // functions and kernels
};
constexpr size_t kMinReserve = size_t(16) << 20;
constexpr size_t kChunk = size_t(256) << 10;  // made accessible at a time
constexpr size_t kQuarantine = 1024;          // reclaimed slots that wait before one is reused

// Allocation state, apart from the read-mostly Slab words the hot path reads.
struct SlabAlloc {
    std::mutex mu;
    uintptr_t map = 0;    // the reservation; base = map + color
    size_t reserved = 0;  // bytes reserved from map
    size_t mapped = 0;    // bytes from map made readable and writable
    size_t color = 0;
    size_t used = 0;      // bytes handed out from base (slots carved)
    bool failed = false;  // the reservation failed: every allocation fails
    std::deque<void*> free_slots;  // reclaimed, oldest first
    unsigned long long reuses = 0;
};
SlabAlloc g_alloc[kSlabKinds];

bool reserve(Slab& s, SlabAlloc& a, SlabKind kind) {
    for (size_t size = kReserve[kind]; size >= kMinReserve; size /= 2) {
        void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) continue;
        // Handles keep the generation above bit 47: the slab must lie below it.
        if (((reinterpret_cast<uintptr_t>(p) + size) & ~kAddrMask) != 0) {
            munmap(p, size);
            break;
        }
        // Each kind starts at another offset within a page (a multiple of 64
        // bytes): objects of different kinds that one call touches (a stream,
        // an event, a context) then do not share their low 12 address bits,
        // which costs 4K-aliasing stalls between their loads and stores.
        size_t color = (size_t(kind) * 9 % 64) * 64;
        a.map = reinterpret_cast<uintptr_t>(p);
        a.reserved = size;
        a.color = color;
        s.base.store(a.map + color, std::memory_order_relaxed);
        return true;
    }
    a.failed = true;
    return false;
}

}  // namespace

void* slab_alloc(SlabKind kind, size_t slot, bool* reused) {
    Slab& s = g_slabs[kind];
    SlabAlloc& a = g_alloc[kind];
    std::lock_guard<std::mutex> lk(a.mu);
    *reused = false;
    if (a.free_slots.size() > kQuarantine) {
        void* p = a.free_slots.front();
        a.free_slots.pop_front();
        ++a.reuses;
        *reused = true;
        return p;
    }
    if (a.failed) return nullptr;
    if (a.reserved == 0 && !reserve(s, a, kind)) return nullptr;
    uintptr_t base = s.base.load(std::memory_order_relaxed);
    while (a.color + a.used + slot > a.mapped) {
        size_t grow = std::min(kChunk, a.reserved - a.mapped);
        if (grow == 0) return nullptr;  // exhausted
        if (mprotect(reinterpret_cast<void*>(a.map + a.mapped), grow, PROT_READ | PROT_WRITE) != 0) return nullptr;
        a.mapped += grow;
        // Release: a reader that sees the new limit sees the base and the mapping.
        s.committed.store(a.mapped - a.color, std::memory_order_release);
    }
    void* p = reinterpret_cast<void*>(base + a.used);
    a.used += slot;
    return p;
}

void slab_free(SlabKind kind, void* p) {
    SlabAlloc& a = g_alloc[kind];
    std::lock_guard<std::mutex> lk(a.mu);
    a.free_slots.push_back(p);
}

}  // namespace sim

using namespace sim;

// Introspection (greenres.sim.arena_stats): per kind, the slots carved so far,
// those waiting for reuse (reclaimed, in quarantine), how many reuses happened
// and the bytes made accessible. -1 for an unknown kind.
SIM_EXPORT int greenres_sim_arena_stats(int kind, const char** name, unsigned long long* slots,
                                        unsigned long long* free_slots, unsigned long long* reuses,
                                        unsigned long long* mapped_bytes) {
    if (kind < 0 || kind >= kSlabKinds) return -1;
    static const size_t kSlot[kSlabKinds] = {
        slot_size<Context>(), slot_size<GreenCtx>(), slot_size<Stream>(), slot_size<Event>(),
        slot_size<Graph>(),   slot_size<GraphExec>(), slot_size<Desc>(), slot_size<UserObject>(), slot_size<MemPool>(), slot_size<Module>(), slot_size<Function>(),
    };
    SlabAlloc& a = g_alloc[kind];
    std::lock_guard<std::mutex> lk(a.mu);
    if (name) *name = kSlabNames[kind];
    if (slots) *slots = a.used / kSlot[kind];
    if (free_slots) *free_slots = a.free_slots.size();
    if (reuses) *reuses = a.reuses;
    if (mapped_bytes) *mapped_bytes = a.mapped;
    return 0;
}
