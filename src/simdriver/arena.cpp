// The handle arena: one slab per kind of handle (see state.h). A slab reserves
// an address range up front with no access (costs address space, not memory),
// and makes it readable and writable in chunks as slots are handed out. Slots
// are never freed or reused: a destroyed object stays as a tombstone, so a
// stale handle reads a dead object of the right kind, never unmapped memory or
// a newer object. A handle check (as_object) only reads inside [base, base +
// committed), which is always mapped.
#include <sys/mman.h>

#include <algorithm>

#include "resources.h"

namespace sim {

Slab g_slabs[kSlabKinds];

namespace {

// Address space reserved per kind. Streams and events are the objects
// programs make by the million (tombstones are never reused); the others are
// few. Halved until the reservation succeeds (RLIMIT_AS), down to kMinReserve.
constexpr size_t kGiB = size_t(1) << 30;
constexpr size_t kReserve[kSlabKinds] = {
    1 * kGiB,  // contexts
    1 * kGiB,  // green contexts
    4 * kGiB,  // streams (512-byte slots: 8M streams)
    4 * kGiB,  // events (128-byte slots: 32M events)
    1 * kGiB,  // graphs
    1 * kGiB,  // graph execs
    1 * kGiB,  // resource descriptors
};
constexpr size_t kMinReserve = size_t(16) << 20;
constexpr size_t kChunk = size_t(256) << 10;  // made accessible at a time

// Allocation state, apart from the read-mostly Slab words the hot path reads.
struct SlabAlloc {
    std::mutex mu;
    uintptr_t map = 0;    // the reservation; base = map + color
    size_t reserved = 0;  // bytes reserved from map
    size_t mapped = 0;    // bytes from map made readable and writable
    size_t color = 0;
    size_t used = 0;      // bytes handed out from base
    bool failed = false;  // the reservation failed: every allocation fails
};
SlabAlloc g_alloc[kSlabKinds];

bool reserve(Slab& s, SlabAlloc& a, SlabKind kind) {
    for (size_t size = kReserve[kind]; size >= kMinReserve; size /= 2) {
        void* p = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) continue;
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

void* slab_alloc(SlabKind kind, size_t slot) {
    Slab& s = g_slabs[kind];
    SlabAlloc& a = g_alloc[kind];
    std::lock_guard<std::mutex> lk(a.mu);
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

}  // namespace sim
