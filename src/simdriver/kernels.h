// Modules, libraries and kernels run by host models (api_kernels.cpp): object
// layouts, and the C ABI of a model (also described in docs/simulator.md).
#pragma once

#include <utility>

#include <string>
#include <vector>

#include "state.h"

extern "C" {
// What a model is given for one launch. `params` points at copies of the
// arguments, made when the launch was queued (one pointer per parameter, sizes
// as registered); `sm_ids` are the SMs of the context the launch runs in.
struct greenres_sim_launch {
    const char* kernel;
    unsigned grid[3];
    unsigned block[3];
    unsigned shared_mem;
    void** params;
    int nparams;
    int device;
    const int* sm_ids;
    int sm_count;
    unsigned long long green_ctx_id;  // 0 outside a green context
};
typedef void (*greenres_sim_kernel_fn)(const greenres_sim_launch* launch, void* user);
}

namespace sim {

struct Function;
// A CUmodule, or a CUlibrary (is_library): the entry names read from its image.
struct Module : Object {
    explicit Module(uint32_t gen) : Object(kMagicModule, gen) {}
    static constexpr SlabKind kSlab = kSlabModule;
    static constexpr uint32_t kMagic = kMagicModule;
    bool is_library = false;
    std::vector<Function*> functions;   // fixed at load
};
// A CUfunction, or a CUkernel (is_kernel): an entry of a module or library.
struct Function : Object {
    explicit Function(uint32_t gen) : Object(kMagicFunction, gen) {}
    static constexpr SlabKind kSlab = kSlabFunction;
    static constexpr uint32_t kMagic = kMagicFunction;
    bool is_kernel = false;
    Module* module = nullptr;
    std::string name;
    Function* function_of_kernel = nullptr;  // a kernel's CUfunction (cuKernelGetFunction)
    // (offset, size) of each parameter in the device-side layout, read from a PTX entry's
    // parameter list; params_known false for a cubin (its .nv.info is not read).
    std::vector<std::pair<size_t, size_t>> params;
    bool params_known = false;
};

}  // namespace sim
