// Kernels, modelled on the host. Modules (cuModuleLoadData/Ex) and libraries
// (cuLibraryLoadData) load PTX text or an ELF cubin; their entry names are read
// from the image (PTX `.entry NAME`, cubin sections `.text.NAME`). A launch
// (cuLaunchKernel, cuLaunchKernelEx) is queued on its stream like any
// operation and runs the host model registered under the kernel's name
// (greenres_sim_register_kernel), on the stream's worker, in stream order, in
// a graph when the stream captures. A launch of a kernel without a model fails
// at the call (CUDA_ERROR_NOT_SUPPORTED), is counted and recorded as the hazard
// kernel_without_model: it never succeeds silently.
//
// Models are C function pointers taking a greenres_sim_launch (kernels.h);
// greenres.sim.register_kernel wraps Python callables in one (ctypes takes the
// GIL on the worker thread). A model declares its parameter sizes: the
// arguments are copied when the launch is queued, as the driver does.
//
// Not modelled: fatbins (CUDA_ERROR_NOT_SUPPORTED), `extra` launch buffers
// (NOT_SUPPORTED), cooperative launches (the device does not advertise them),
// linking, module globals, occupancy. Modules outlive the context that loaded
// them until cuModuleUnload (guess: a real driver unloads them with it).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "graph_nodes.h"
#include "kernels.h"

extern "C" int greenres_sim_set_conditional(unsigned long long handle, unsigned value);

using namespace sim;

namespace {

struct Model {
    greenres_sim_kernel_fn fn = nullptr;
    void* user = nullptr;
    std::vector<size_t> param_sizes;
};
std::shared_mutex& models_mu() {
    static auto* m = new std::shared_mutex;
    return *m;
}
std::unordered_map<std::string, Model>& models() {
    static auto* m = new std::unordered_map<std::string, Model>;
    return *m;
}
std::atomic<long long> g_unmodelled{0};

// The error code alone ("operation not supported on this system") does not say why: the
// first refused launch of each kernel also says so on stderr, once, naming the kernel.
void say_unmodelled_once(const std::string& name) {
    static auto* mu = new std::mutex;
    static auto* said = new std::unordered_set<std::string>;
    {
        std::lock_guard<std::mutex> lk(*mu);
        if (!said->insert(name).second) return;
    }
    fprintf(stderr,
            "greenres.sim: kernel '%s' has no host model, so its launches fail with "
            "CUDA_ERROR_NOT_SUPPORTED; register one with greenres.sim.register_kernel "
            "(docs/simulator.md, \"Kernels\")\n",
            name.c_str());
}

// ---- entry names from an image
bool is_ident(char c) { return isalnum((unsigned char)c) || c == '_' || c == '$'; }

// An entry of an image: its name and, from PTX, its parameters (offset, size).
struct Entry {
    std::string name;
    std::vector<std::pair<size_t, size_t>> params;
    bool params_known = false;
};

// The size in bytes of a PTX scalar type (.u32, .f64, .b8, .pred, ...); 0 if unknown.
size_t ptx_type_size(const char* t, size_t n) {
    if (n < 2) return 0;
    int bits = atoi(std::string(t + 1, n - 1).c_str());
    if (t[0] == 'u' || t[0] == 's' || t[0] == 'b' || t[0] == 'f') return bits > 0 && bits % 8 == 0 ? bits / 8 : 0;
    return 0;
}

// The parameter list "( .param .u64 dst, .param .align 8 .b8 s[16] )" after an entry name:
// each parameter's offset (aligned to .align, else its type's size) and size. False when
// the list cannot be read (then the parameters are unknown, as for a cubin).
bool ptx_params(const char* q, std::vector<std::pair<size_t, size_t>>* out) {
    while (isspace((unsigned char)*q)) ++q;
    if (*q != '(') return *q == '{' || *q == ';';  // no list: no parameters
    const char* end = strchr(q, ')');
    if (end == nullptr) return false;
    std::string list(q + 1, end);
    size_t offset = 0, pos = 0;
    while ((pos = list.find(".param", pos)) != std::string::npos) {
        size_t stop = list.find(',', pos);
        std::string one = list.substr(pos + 6, stop == std::string::npos ? std::string::npos : stop - pos - 6);
        pos = stop == std::string::npos ? list.size() : stop;
        size_t align = 0, size = 0, count = 1;
        const char* c = one.c_str();
        while (*c) {
            while (isspace((unsigned char)*c)) ++c;
            if (strncmp(c, ".align", 6) == 0) {
                c += 6;
                align = strtoul(c, const_cast<char**>(&c), 10);
            } else if (*c == '.') {
                const char* t = ++c;
                while (is_ident(*c)) ++c;
                size_t s = ptx_type_size(t, c - t);
                if (s) size = s;
            } else if (is_ident(*c)) {
                while (is_ident(*c)) ++c;
                if (*c == '[') count = strtoul(c + 1, const_cast<char**>(&c), 10);
                while (*c && *c != ',') ++c;
            } else {
                ++c;
            }
        }
        if (size == 0 || count == 0) return false;
        if (align == 0) align = size;
        offset = (offset + align - 1) / align * align;
        out->emplace_back(offset, size * count);
        offset += size * count;
    }
    return true;
}

bool ptx_entries(const char* text, std::vector<Entry>* out) {
    if (strstr(text, ".version") == nullptr || strstr(text, ".target") == nullptr) return false;
    for (const char* p = strstr(text, ".entry"); p != nullptr; p = strstr(p + 6, ".entry")) {
        const char* q = p + 6;
        if (!isspace((unsigned char)*q)) continue;
        while (isspace((unsigned char)*q)) ++q;
        const char* start = q;
        while (is_ident(*q)) ++q;
        if (q == start) continue;
        Entry e;
        e.name.assign(start, q);
        e.params_known = ptx_params(q, &e.params);
        if (!e.params_known) e.params.clear();
        out->push_back(std::move(e));
    }
    return true;
}

template <class T>
T read_at(const unsigned char* base, size_t off) {
    T v;
    memcpy(&v, base + off, sizeof v);
    return v;
}

// ELF64 little-endian cubin: every section named .text.NAME is an entry.
bool cubin_entries(const unsigned char* img, std::vector<Entry>* out) {
    if (img[4] != 2 || img[5] != 1) return false;  // ELFCLASS64, little-endian
    auto shoff = read_at<uint64_t>(img, 0x28);
    auto shentsize = read_at<uint16_t>(img, 0x3A);
    auto shnum = read_at<uint16_t>(img, 0x3C);
    auto shstrndx = read_at<uint16_t>(img, 0x3E);
    if (shoff == 0 || shentsize < 0x40 || shstrndx >= shnum) return false;
    auto strtab = read_at<uint64_t>(img, shoff + (size_t)shstrndx * shentsize + 0x18);
    for (unsigned i = 0; i < shnum; ++i) {
        auto name_off = read_at<uint32_t>(img, shoff + (size_t)i * shentsize);
        const char* name = reinterpret_cast<const char*>(img + strtab + name_off);
        if (strncmp(name, ".text.", 6) == 0 && name[6] != 0) out->push_back(Entry{name + 6, {}, false});
    }
    return true;
}

CUresult read_image(const void* image, std::vector<Entry>* names) {
    if (image == nullptr) return CUDA_ERROR_INVALID_VALUE;
    auto* img = static_cast<const unsigned char*>(image);
    if (memcmp(img, "\x7f" "ELF", 4) == 0) return cubin_entries(img, names) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_IMAGE;
    if (read_at<uint32_t>(img, 0) == 0xBA55ED50u) return CUDA_ERROR_NOT_SUPPORTED;  // a fatbin
    return ptx_entries(static_cast<const char*>(image), names) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_IMAGE;
}

Function* new_function(Module* m, const Entry& entry, bool is_kernel) {
    auto* f = make_object<Function>();
    if (f == nullptr) return nullptr;
    f->module = m;
    f->name = entry.name;
    f->params = entry.params;
    f->params_known = entry.params_known;
    f->is_kernel = is_kernel;
    return f;
}

void unload(Module* m) {
    for (Function* f : m->functions) {
        if (f->function_of_kernel != nullptr) reclaim_object(f->function_of_kernel);
        reclaim_object(f);
    }
    g_live[kLiveModule].fetch_sub(1, std::memory_order_relaxed);
    reclaim_object(m);
}

CUresult load(const void* image, bool library, Module** out) {
    std::vector<Entry> names;
    CUresult r = read_image(image, &names);
    if (r != CUDA_SUCCESS) return r;
    auto* m = make_object<Module>();
    if (m == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    m->is_library = library;
    g_live[kLiveModule].fetch_add(1, std::memory_order_relaxed);
    for (const auto& n : names) {
        Function* f = new_function(m, n, library);
        if (f == nullptr || (library && (f->function_of_kernel = new_function(m, n, false)) == nullptr)) {
            if (f != nullptr) m->functions.push_back(f);
            unload(m);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        m->functions.push_back(f);
    }
    *out = m;
    return CUDA_SUCCESS;
}

// The bytes of an image file (PTX or cubin), NUL-terminated as PTX text must be:
// CUDA_ERROR_FILE_NOT_FOUND when it cannot be read (cuda.h lists it for cuModuleLoad).
CUresult read_file(const char* path, std::string* out) {
    if (path == nullptr) return CUDA_ERROR_INVALID_VALUE;
    std::ifstream in(path, std::ios::binary);
    if (!in) return CUDA_ERROR_FILE_NOT_FOUND;
    out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) return CUDA_ERROR_FILE_NOT_FOUND;
    out->push_back('\0');
    return CUDA_SUCCESS;
}

Module* live_module(CUmodule h) {
    Module* m = live_object<Module>(h);
    return m != nullptr && !m->is_library ? m : nullptr;
}
Module* live_library(CUlibrary h) {
    Module* m = live_object<Module>(h);
    return m != nullptr && m->is_library ? m : nullptr;
}

Function* find(Module* m, const char* name) {
    for (Function* f : m->functions)
        if (f->name == name) return f;
    return nullptr;
}

}  // namespace

namespace sim {
// cuLaunchKernel takes a CUfunction, or a CUkernel cast to one (cuda.h, 12.0+).
Function* launchable(CUfunction h) { return live_object<Function>(h); }

CUresult kernel_op(Function* f, const unsigned grid[3], const unsigned block[3], unsigned shared, void** params,
                   void** extra, Context* ctx, GreenCtx* green, Op* out, NodeSpec* spec) {
    if (extra != nullptr) return params != nullptr ? CUDA_ERROR_INVALID_VALUE : CUDA_ERROR_NOT_SUPPORTED;
    for (int i = 0; i < 3; ++i)
        if (grid[i] == 0 || block[i] == 0) return CUDA_ERROR_INVALID_VALUE;
    if ((unsigned long long)block[0] * block[1] * block[2] > 1024 || block[2] > 64) return CUDA_ERROR_INVALID_VALUE;
    if (shared > 227 * 1024) return CUDA_ERROR_INVALID_VALUE;  // guess: Hopper's opt-in maximum
    Model model;
    {
        std::shared_lock<std::shared_mutex> lk(models_mu());
        auto it = models().find(f->name);
        if (it != models().end()) model = it->second;
    }
    if (model.fn == nullptr) {
        g_unmodelled.fetch_add(1, std::memory_order_relaxed);
        add_hazard("kernel_without_model", std::string(t_api_fn) + ": no host model is registered for kernel '" +
                                               f->name + "' (greenres.sim.register_kernel)");
        say_unmodelled_once(f->name);
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    if (!model.param_sizes.empty() && params == nullptr) return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < model.param_sizes.size(); ++i)
        if (params[i] == nullptr) return CUDA_ERROR_INVALID_VALUE;
    // The arguments are copied now: the caller's may be gone when the launch runs.
    NodeSpec local;
    NodeSpec& args = spec != nullptr ? *spec : local;
    args.set_args(model.param_sizes, params);
    auto storage = std::make_shared<std::vector<unsigned char>>(args.arg_bytes);
    std::vector<size_t> offsets = args.arg_offsets;
    SmSet sms = green != nullptr ? green->sms : all_sms(ctx->device);
    auto ids = std::make_shared<std::vector<int>>();
    for (int i = 0; i < kMaxSms; ++i)
        if (sms.test(i)) ids->push_back(i);
    greenres_sim_launch info{};
    memcpy(info.grid, grid, sizeof info.grid);
    memcpy(info.block, block, sizeof info.block);
    info.shared_mem = shared;
    info.nparams = (int)model.param_sizes.size();
    info.device = ctx->device;
    info.green_ctx_id = green != nullptr ? green->id : 0;
    auto name = std::make_shared<std::string>(f->name);
    if (spec != nullptr) {
        spec->type = CU_GRAPH_NODE_TYPE_KERNEL;
        spec->func = f->is_kernel ? f->function_of_kernel : f;
        spec->kern = f->is_kernel ? handle_of<CUkernel>(f) : nullptr;
        memcpy(spec->grid, grid, sizeof spec->grid);
        memcpy(spec->block, block, sizeof spec->block);
        spec->shared = shared;
        spec->ctx = handle_of<CUcontext>(ctx);
    }
    // Not mutable: one op may run on several workers at once (the launches of a
    // graph that embeds it), so each run fills a launch record of its own.
    *out = [model, storage, offsets, ids, info, name] {
        std::vector<void*> ptrs;
        for (size_t off : offsets) ptrs.push_back(storage->data() + off);
        greenres_sim_launch run = info;
        run.kernel = name->c_str();
        run.params = ptrs.empty() ? nullptr : ptrs.data();
        run.sm_ids = ids->data();
        run.sm_count = (int)ids->size();
        model.fn(&run, model.user);
    };
    return CUDA_SUCCESS;
}
}  // namespace sim

namespace {
CUresult launch(Function* f, const unsigned grid[3], const unsigned block[3], unsigned shared, CUstream h,
                void** params, void** extra, bool pt) {
    RESOLVE(h, s, pt);
    Op op;
    NodeSpec spec;
    CUresult r = kernel_op(f, grid, block, shared, params, extra, s->ctx, s->green, &op, &spec);
    if (r != CUDA_SUCCESS) return r;
    return submit(s, std::move(op), true, &spec);
}

CUresult launch_kernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                       unsigned shared, CUstream h, void** params, void** extra, bool pt) {
    Function* fn = launchable(f);
    if (fn == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
    return launch(fn, grid, block, shared, h, params, extra, pt);
}

CUresult launch_kernel_ex(const CUlaunchConfig* config, CUfunction f, void** params, void** extra, bool pt) {
    if (config == nullptr || (config->numAttrs > 0 && config->attrs == nullptr)) return CUDA_ERROR_INVALID_VALUE;
    Function* fn = launchable(f);
    if (fn == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    for (unsigned i = 0; i < config->numAttrs; ++i) {
        CUlaunchAttributeID id = config->attrs[i].id;
        // Cooperative launches are not modelled (the device does not advertise them).
        if (id == CU_LAUNCH_ATTRIBUTE_COOPERATIVE && config->attrs[i].value.cooperative != 0)
            return CUDA_ERROR_NOT_SUPPORTED;
        if ((int)id < 0 || (int)id > CU_LAUNCH_ATTRIBUTE_SHARED_MEMORY_MODE) return CUDA_ERROR_INVALID_VALUE;
    }
    const unsigned grid[3] = {config->gridDimX, config->gridDimY, config->gridDimZ};
    const unsigned block[3] = {config->blockDimX, config->blockDimY, config->blockDimZ};
    return launch(fn, grid, block, config->sharedMemBytes, config->hStream, params, extra, pt);
}

// ---- built-in models (docs/simulator.md, "Kernels")
// greenres_fill_u32(unsigned* dst, unsigned value, size_t count)
void fill_u32(const greenres_sim_launch* l, void*) {
    auto* dst = *static_cast<unsigned**>(l->params[0]);
    unsigned v = *static_cast<unsigned*>(l->params[1]);
    size_t n = *static_cast<size_t*>(l->params[2]);
    if (!device_range_ok((CUdeviceptr)dst, n * sizeof(unsigned))) {
        add_hazard("kernel_out_of_bounds", "greenres_fill_u32 would write outside its allocation");
        return;
    }
    for (size_t i = 0; i < n; ++i) dst[i] = v;
}
// greenres_spin_ns(unsigned long long ns): holds its stream that long.
void spin_ns(const greenres_sim_launch* l, void*) {
    std::this_thread::sleep_for(std::chrono::nanoseconds(*static_cast<unsigned long long*>(l->params[0])));
}
// greenres_set_conditional(CUgraphConditionalHandle handle, unsigned value): device
// code's cudaGraphSetConditional, for the graph launch that runs it.
void set_conditional(const greenres_sim_launch* l, void*) {
    unsigned long long h;
    unsigned v;
    memcpy(&h, l->params[0], sizeof h);
    memcpy(&v, l->params[1], sizeof v);
    if (greenres_sim_set_conditional(h, v) != 0)
        add_hazard("conditional_outside_launch", "greenres_set_conditional ran outside a graph launch with its handle");
}

// greenres_smid_probe(unsigned* out): out[block] = the SM id the block ran on
// (blocks are dealt round-robin over the context's SMs), like %smid.
void smid_probe(const greenres_sim_launch* l, void*) {
    auto* out = *static_cast<unsigned**>(l->params[0]);
    size_t blocks = (size_t)l->grid[0] * l->grid[1] * l->grid[2];
    if (!device_range_ok((CUdeviceptr)out, blocks * sizeof(unsigned))) {
        add_hazard("kernel_out_of_bounds", "greenres_smid_probe would write outside its allocation");
        return;
    }
    for (size_t b = 0; b < blocks; ++b) out[b] = (unsigned)l->sm_ids[b % (size_t)l->sm_count];
}

struct BuiltIns {
    BuiltIns() {
        models()["greenres_fill_u32"] = Model{fill_u32, nullptr, {sizeof(void*), sizeof(unsigned), sizeof(size_t)}};
        models()["greenres_spin_ns"] = Model{spin_ns, nullptr, {sizeof(unsigned long long)}};
        models()["greenres_smid_probe"] = Model{smid_probe, nullptr, {sizeof(void*)}};
        models()["greenres_set_conditional"] =
            Model{set_conditional, nullptr, {sizeof(unsigned long long), sizeof(unsigned)}};
    }
} g_builtins;

}  // namespace

// ---------------------------------------------------------------- modules
SIM_EXPORT CUresult cuModuleLoadData(CUmodule* module, const void* image) {
    SIM_ENTER_INIT("cuModuleLoadData");
    if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);  // a module belongs to a context
    if (r != CUDA_SUCCESS) return r;
    Module* m;
    r = load(image, false, &m);
    if (r != CUDA_SUCCESS) return r;
    *module = handle_of<CUmodule>(m);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuModuleLoadDataEx(CUmodule* module, const void* image, unsigned int numOptions,
                                       CUjit_option* options, void** optionValues) {
    SIM_ENTER_INIT("cuModuleLoadDataEx");
    if (numOptions > 0 && (options == nullptr || optionValues == nullptr)) return CUDA_ERROR_INVALID_VALUE;
    if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    Module* m;
    r = load(image, false, &m);  // JIT options change nothing on the host
    if (r != CUDA_SUCCESS) return r;
    *module = handle_of<CUmodule>(m);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuModuleLoad(CUmodule* module, const char* fname) {
    SIM_ENTER_INIT("cuModuleLoad");
    if (module == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    std::string image;
    r = read_file(fname, &image);
    if (r != CUDA_SUCCESS) return r;
    Module* m;
    r = load(image.data(), false, &m);  // the names are read: the bytes are not kept
    if (r != CUDA_SUCCESS) return r;
    *module = handle_of<CUmodule>(m);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuModuleUnload(CUmodule hmod) {
    SIM_ENTER_INIT("cuModuleUnload");
    Module* m = live_module(hmod);
    if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    bool expected = true;
    if (!m->alive.compare_exchange_strong(expected, false)) return CUDA_ERROR_INVALID_HANDLE;
    unload(m);  // queued launches hold what they need, not the module
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuModuleGetFunction(CUfunction* hfunc, CUmodule hmod, const char* name) {
    SIM_ENTER_INIT("cuModuleGetFunction");
    if (hfunc == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Module* m = live_module(hmod);
    if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    Function* f = find(m, name);
    if (f == nullptr) return CUDA_ERROR_NOT_FOUND;
    *hfunc = handle_of<CUfunction>(f);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuFuncGetName(const char** name, CUfunction hfunc) {
    SIM_ENTER_INIT("cuFuncGetName");
    if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Function* f = live_object<Function>(hfunc);
    if (f == nullptr || f->is_kernel) return CUDA_ERROR_INVALID_HANDLE;
    *name = f->name.c_str();
    return CUDA_SUCCESS;
}

// guess: typical values; the simulator compiles nothing.
static CUresult function_attribute(int* pi, CUfunction_attribute attrib, int device) {
    if (pi == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const Device& d = *g_devices[device];
    switch (attrib) {
        case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = 1024; break;
        case CU_FUNC_ATTRIBUTE_PTX_VERSION:
        case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *pi = d.major * 10 + d.minor; break;
        case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *pi = 48 * 1024; break;
        case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *pi = -1; break;
        default:
            if ((int)attrib < 0 || (int)attrib >= CU_FUNC_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
            *pi = 0;
    }
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuFuncGetAttribute(int* pi, CUfunction_attribute attrib, CUfunction hfunc) {
    SIM_ENTER_INIT("cuFuncGetAttribute");
    if (launchable(hfunc) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    Context* c;
    CUresult r = require_current(&c);
    if (r != CUDA_SUCCESS) return r;
    return function_attribute(pi, attrib, c->device);
}

// ---------------------------------------------------------------- libraries
SIM_EXPORT CUresult cuLibraryLoadData(CUlibrary* library, const void* code, CUjit_option* jitOptions,
                                      void** jitOptionsValues, unsigned int numJitOptions,
                                      CUlibraryOption* libraryOptions, void** libraryOptionValues,
                                      unsigned int numLibraryOptions) {
    SIM_ENTER_INIT("cuLibraryLoadData");
    if (library == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (numJitOptions > 0 && (jitOptions == nullptr || jitOptionsValues == nullptr)) return CUDA_ERROR_INVALID_VALUE;
    if (numLibraryOptions > 0 && (libraryOptions == nullptr || libraryOptionValues == nullptr))
        return CUDA_ERROR_INVALID_VALUE;
    Module* m;
    CUresult r = load(code, true, &m);  // context-independent (cuda.h)
    if (r != CUDA_SUCCESS) return r;
    *library = handle_of<CUlibrary>(m);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuLibraryLoadFromFile(CUlibrary* library, const char* fileName,
                                          CUjit_option* jitOptions, void** jitOptionsValues,
                                          unsigned int numJitOptions, CUlibraryOption* libraryOptions,
                                          void** libraryOptionValues, unsigned int numLibraryOptions) {
    SIM_ENTER_INIT("cuLibraryLoadFromFile");
    if (library == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (numJitOptions > 0 && (jitOptions == nullptr || jitOptionsValues == nullptr)) return CUDA_ERROR_INVALID_VALUE;
    if (numLibraryOptions > 0 && (libraryOptions == nullptr || libraryOptionValues == nullptr))
        return CUDA_ERROR_INVALID_VALUE;
    std::string image;
    CUresult r = read_file(fileName, &image);
    if (r != CUDA_SUCCESS) return r;
    Module* m;
    r = load(image.data(), true, &m);
    if (r != CUDA_SUCCESS) return r;
    *library = handle_of<CUlibrary>(m);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuLibraryUnload(CUlibrary library) {
    SIM_ENTER_INIT("cuLibraryUnload");
    Module* m = live_library(library);
    if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    bool expected = true;
    if (!m->alive.compare_exchange_strong(expected, false)) return CUDA_ERROR_INVALID_HANDLE;
    unload(m);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuLibraryGetKernel(CUkernel* pKernel, CUlibrary library, const char* name) {
    SIM_ENTER_INIT("cuLibraryGetKernel");
    if (pKernel == nullptr || name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Module* m = live_library(library);
    if (m == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    Function* k = find(m, name);
    if (k == nullptr) return CUDA_ERROR_NOT_FOUND;
    *pKernel = handle_of<CUkernel>(k);
    return CUDA_SUCCESS;
}

static Function* live_kernel(CUkernel h) {
    Function* k = live_object<Function>(h);
    return k != nullptr && k->is_kernel ? k : nullptr;
}

SIM_EXPORT CUresult cuKernelGetFunction(CUfunction* pFunc, CUkernel kernel) {
    SIM_ENTER_INIT("cuKernelGetFunction");
    if (pFunc == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Function* k = live_kernel(kernel);
    if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    Context* c;
    CUresult r = require_current(&c);  // the function of the kernel in the current context
    if (r != CUDA_SUCCESS) return r;
    *pFunc = handle_of<CUfunction>(k->function_of_kernel);
    return CUDA_SUCCESS;
}

SIM_EXPORT CUresult cuKernelGetName(const char** name, CUkernel kernel) {
    SIM_ENTER_INIT("cuKernelGetName");
    if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
    Function* k = live_kernel(kernel);
    if (k == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    *name = k->name.c_str();
    return CUDA_SUCCESS;
}

namespace {
// cuKernelGetParamInfo / cuFuncGetParamInfo: INVALID_VALUE for an index past the last
// parameter (cuda.h); NOT_SUPPORTED for an entry of a cubin, whose layout is not read.
CUresult param_info(const Function* f, size_t index, size_t* offset, size_t* size) {
    if (offset == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (!f->params_known) return CUDA_ERROR_NOT_SUPPORTED;
    if (index >= f->params.size()) return CUDA_ERROR_INVALID_VALUE;
    *offset = f->params[index].first;
    if (size != nullptr) *size = f->params[index].second;
    return CUDA_SUCCESS;
}
}  // namespace

SIM_EXPORT CUresult cuKernelGetParamInfo(CUkernel kernel, size_t paramIndex, size_t* paramOffset,
                                         size_t* paramSize) {
    SIM_ENTER_INIT("cuKernelGetParamInfo");
    Function* f = live_kernel(kernel);
    if (f == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return param_info(f, paramIndex, paramOffset, paramSize);
}

SIM_EXPORT CUresult cuFuncGetParamInfo(CUfunction func, size_t paramIndex, size_t* paramOffset,
                                       size_t* paramSize) {
    SIM_ENTER_INIT("cuFuncGetParamInfo");
    Function* f = launchable(func);
    if (f == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    return param_info(f, paramIndex, paramOffset, paramSize);
}

SIM_EXPORT CUresult cuKernelGetAttribute(int* pi, CUfunction_attribute attrib, CUkernel kernel, CUdevice dev) {
    SIM_ENTER_INIT("cuKernelGetAttribute");
    if (live_kernel(kernel) == nullptr) return CUDA_ERROR_INVALID_HANDLE;
    if (!valid_device(dev)) return CUDA_ERROR_INVALID_DEVICE;
    return function_attribute(pi, attrib, dev);
}

// ---------------------------------------------------------------- launches
SIM_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                   unsigned int by, unsigned int bz, unsigned int shared, CUstream h, void** params,
                                   void** extra) {
    SIM_ENTER_INIT("cuLaunchKernel");
    return launch_kernel(f, gx, gy, gz, bx, by, bz, shared, h, params, extra, false);
}

SIM_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig* config, CUfunction f, void** params, void** extra) {
    SIM_ENTER_INIT("cuLaunchKernelEx");
    return launch_kernel_ex(config, f, params, extra, false);
}

namespace sim {
CUresult launchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                           unsigned int by, unsigned int bz, unsigned int shared, CUstream h, void** params,
                           void** extra) {
    SIM_ENTER_INIT("cuLaunchKernel");
    return launch_kernel(f, gx, gy, gz, bx, by, bz, shared, h, params, extra, true);
}
CUresult launchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f, void** params, void** extra) {
    SIM_ENTER_INIT("cuLaunchKernelEx");
    return launch_kernel_ex(config, f, params, extra, true);
}
}  // namespace sim

// ---------------------------------------------------------------- models (greenres.sim)
// Registers (or replaces) the model of kernel `name`; fn NULL removes it.
// 0, or CUDA_ERROR_INVALID_VALUE for a bad name or sizes.
SIM_EXPORT int greenres_sim_register_kernel(const char* name, greenres_sim_kernel_fn fn, void* user,
                                            const size_t* param_sizes, int nparams) {
    if (name == nullptr || name[0] == 0 || nparams < 0 || (nparams > 0 && param_sizes == nullptr))
        return CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; i < nparams; ++i)
        if (param_sizes[i] == 0 || param_sizes[i] > 4096) return CUDA_ERROR_INVALID_VALUE;
    std::unique_lock<std::shared_mutex> lk(models_mu());
    if (fn == nullptr) {
        models().erase(name);
        return 0;
    }
    models()[name] = Model{fn, user, std::vector<size_t>(param_sizes, param_sizes + nparams)};
    return 0;
}

SIM_EXPORT long long greenres_sim_unmodelled_launches() { return g_unmodelled.load(); }

// A model that failed (a Python model that raised): the hazard kernel_model_failed, so a
// launch whose model did not run to the end never passes silently.
SIM_EXPORT void greenres_sim_model_failed(const char* kernel, const char* what) {
    sim::add_hazard("kernel_model_failed",
                    std::string(kernel ? kernel : "?") + ": " + (what ? what : "the model failed"));
}
