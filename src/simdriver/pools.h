// Memory pools (api_pools.cpp): the object layout, shared with arena.cpp's
// slot sizes and api_memory.cpp's accounting of stream-ordered allocations.
#pragma once

#include <utility>
#include <vector>

#include "state.h"

namespace sim {

// A pool accounts for memory: `used` is what live allocations from it take,
// `reserved` what it holds from the device (used plus freed memory it keeps,
// up to the release threshold). The backing host memory of each allocation is
// its own (api_memory.cpp), so a stream-ordered use after free is still seen.
struct MemPool : Object {
    explicit MemPool(uint32_t gen) : Object(kMagicPool, gen) {}
    static constexpr SlabKind kSlab = kSlabPool;
    static constexpr uint32_t kMagic = kMagicPool;
    int device = 0;
    bool is_default = false;
    std::mutex mu;  // guards everything below
    int reuse_follow_events = 1, reuse_opportunistic = 1, reuse_internal_deps = 1;
    unsigned long long release_threshold = 0, max_size = 0;
    unsigned long long reserved = 0, reserved_high = 0, used = 0, used_high = 0;
    long long outstanding = 0;  // allocations not freed yet
    bool destroyed = false;     // cuMemPoolDestroy: reclaimed once nothing is outstanding
    std::vector<std::pair<int, CUmemAccess_flags>> peer_access;  // devices other than its own
};

}  // namespace sim
