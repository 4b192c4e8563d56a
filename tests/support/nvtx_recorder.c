/* An NVTX injection library for greenres' tests: NVTX loads it from NVTX_INJECTION64_PATH
 * at the first NVTX call of the process and calls InitializeInjectionNvtx2, which fills
 * NVTX's function tables with functions that record every event (kind, domain, category,
 * colour, message, thread, range id, named handle). Python reads the record back with
 * greenres_recorder_json() (ctypes), as NVIDIA's NVTX tests read theirs.
 *
 * Built by support/nvtx_recording.py with the NVTX v3 headers of the nvidia-nvtx wheel.
 */
#define NVTX_NO_IMPL
#include <nvtx3/nvToolsExt.h>
/* nvToolsExtCuda.h is not needed (nor cuda.h): the table ids and handle types of the CUDA
   naming calls are in nvtxTypes.h, which nvToolsExt.h includes. */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <wchar.h>

#define EXPORT __attribute__((visibility("default")))

typedef struct {
    char* name;
} recorder_domain;

typedef struct {
    char* text;
} recorder_string;

typedef struct {
    const char* kind;
    char* domain;
    uint32_t category;
    uint32_t color;
    char* message;
    long thread;
    uint64_t range;
    uintptr_t handle;
    int depth;
} recorder_event;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static recorder_event* events = NULL;
static size_t count = 0, capacity = 0;
static uint64_t next_range = 1;
static __thread int depth_default = 0;  /* per thread: the default domain's stack */

static char* copy(const char* s) {
    if (s == NULL) return NULL;
    size_t n = strlen(s);
    char* out = (char*)malloc(n + 1);
    memcpy(out, s, n + 1);
    return out;
}

/* wchar_t (UTF-32 on Linux) to UTF-8. */
static char* from_wide(const wchar_t* w) {
    if (w == NULL) return NULL;
    size_t n = wcslen(w);
    char* out = (char*)malloc(4 * n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)w[i];
        if (c < 0x80) {
            out[j++] = (char)c;
        } else if (c < 0x800) {
            out[j++] = (char)(0xC0 | (c >> 6));
            out[j++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[j++] = (char)(0xE0 | (c >> 12));
            out[j++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[j++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[j++] = (char)(0xF0 | (c >> 18));
            out[j++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[j++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[j++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[j] = 0;
    return out;
}

static char* domain_name(nvtxDomainHandle_t d) {
    return copy(d == NULL ? "(default)" : ((recorder_domain*)d)->name);
}

static char* message_of(const nvtxEventAttributes_t* a) {
    if (a == NULL) return NULL;
    switch (a->messageType) {
        case NVTX_MESSAGE_TYPE_ASCII: return copy(a->message.ascii);
        case NVTX_MESSAGE_TYPE_UNICODE: return from_wide(a->message.unicode);
        case NVTX_MESSAGE_TYPE_REGISTERED:
            return a->message.registered == NULL
                       ? NULL
                       : copy(((recorder_string*)(void*)a->message.registered)->text);
        default: return NULL;
    }
}

static void record(const char* kind, nvtxDomainHandle_t domain, const nvtxEventAttributes_t* a,
                   char* message, uint64_t range, uintptr_t handle, int depth) {
    recorder_event e;
    memset(&e, 0, sizeof(e));
    e.kind = kind;
    e.domain = domain_name(domain);
    e.message = message != NULL ? message : message_of(a);
    if (a != NULL) {
        e.category = a->category;
        e.color = a->colorType == NVTX_COLOR_ARGB ? a->color : 0;
    }
    e.thread = (long)syscall(SYS_gettid);
    e.range = range;
    e.handle = handle;
    e.depth = depth;
    pthread_mutex_lock(&mu);
    if (count == capacity) {
        capacity = capacity ? 2 * capacity : 256;
        events = (recorder_event*)realloc(events, capacity * sizeof(recorder_event));
    }
    events[count++] = e;
    pthread_mutex_unlock(&mu);
}

/* Per-thread stack depth of each domain: a small list per thread. */
typedef struct {
    nvtxDomainHandle_t domain;
    int depth;
} depth_slot;
static __thread depth_slot depths[64];
static __thread int ndepths = 0;
static int* depth_of(nvtxDomainHandle_t d) {
    if (d == NULL) return &depth_default;
    for (int i = 0; i < ndepths; i++)
        if (depths[i].domain == d) return &depths[i].depth;
    if (ndepths == 64) return &depth_default;
    depths[ndepths].domain = d;
    depths[ndepths].depth = 0;
    return &depths[ndepths++].depth;
}

/* ---- the functions NVTX calls ---- */

static void NVTX_API DomainMarkEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t* a) {
    record("mark", d, a, NULL, 0, 0, 0);
}
static nvtxRangeId_t NVTX_API DomainRangeStartEx(nvtxDomainHandle_t d,
                                                 const nvtxEventAttributes_t* a) {
    pthread_mutex_lock(&mu);
    uint64_t id = next_range++;
    pthread_mutex_unlock(&mu);
    record("start", d, a, NULL, id, 0, 0);
    return id;
}
static void NVTX_API DomainRangeEnd(nvtxDomainHandle_t d, nvtxRangeId_t id) {
    record("end", d, NULL, NULL, id, 0, 0);
}
static int NVTX_API DomainRangePushEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t* a) {
    int* depth = depth_of(d);
    int level = (*depth)++;
    record("push", d, a, NULL, 0, 0, level);
    return level;
}
static int NVTX_API DomainRangePop(nvtxDomainHandle_t d) {
    int* depth = depth_of(d);
    int level = *depth > 0 ? --(*depth) : -1;
    record("pop", d, NULL, NULL, 0, 0, level);
    return level;
}
static nvtxDomainHandle_t NVTX_API DomainCreateA(const char* name) {
    recorder_domain* d = (recorder_domain*)calloc(1, sizeof(*d));
    d->name = copy(name);
    record("domain", (nvtxDomainHandle_t)d, NULL, copy(name), 0, 0, 0);
    return (nvtxDomainHandle_t)d;
}
static nvtxDomainHandle_t NVTX_API DomainCreateW(const wchar_t* name) {
    recorder_domain* d = (recorder_domain*)calloc(1, sizeof(*d));
    d->name = from_wide(name);
    record("domain", (nvtxDomainHandle_t)d, NULL, copy(d->name), 0, 0, 0);
    return (nvtxDomainHandle_t)d;
}
static void NVTX_API DomainDestroy(nvtxDomainHandle_t d) { (void)d; }
static void name_category(nvtxDomainHandle_t d, uint32_t id, char* name) {
    nvtxEventAttributes_t a;
    memset(&a, 0, sizeof(a));
    a.category = id;
    record("category", d, &a, name, 0, 0, 0);
}
static void NVTX_API DomainNameCategoryA(nvtxDomainHandle_t d, uint32_t id, const char* name) {
    name_category(d, id, copy(name));
}
static void NVTX_API DomainNameCategoryW(nvtxDomainHandle_t d, uint32_t id, const wchar_t* name) {
    name_category(d, id, from_wide(name));
}
static nvtxStringHandle_t NVTX_API DomainRegisterStringA(nvtxDomainHandle_t d, const char* s) {
    (void)d;
    recorder_string* r = (recorder_string*)calloc(1, sizeof(*r));
    r->text = copy(s);
    return (nvtxStringHandle_t)(void*)r;
}
static nvtxStringHandle_t NVTX_API DomainRegisterStringW(nvtxDomainHandle_t d, const wchar_t* s) {
    (void)d;
    recorder_string* r = (recorder_string*)calloc(1, sizeof(*r));
    r->text = from_wide(s);
    return (nvtxStringHandle_t)(void*)r;
}
static void NVTX_API NameCuStreamA(nvtx_CUstream s, const char* name) {
    record("name_stream", NULL, NULL, copy(name), 0, (uintptr_t)s, 0);
}
static void NVTX_API NameCuStreamW(nvtx_CUstream s, const wchar_t* name) {
    record("name_stream", NULL, NULL, from_wide(name), 0, (uintptr_t)s, 0);
}
static void NVTX_API NameCuContextA(nvtx_CUcontext c, const char* name) {
    record("name_context", NULL, NULL, copy(name), 0, (uintptr_t)c, 0);
}
static void NVTX_API NameCuContextW(nvtx_CUcontext c, const wchar_t* name) {
    record("name_context", NULL, NULL, from_wide(name), 0, (uintptr_t)c, 0);
}

static void set(NvtxFunctionTable table, unsigned int size, unsigned int id, void* fn) {
    if (id < size && table[id] != NULL) *table[id] = (NvtxFunctionPointer)fn;
}

EXPORT int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get_export_table) {
    const NvtxExportTableCallbacks* callbacks =
        (const NvtxExportTableCallbacks*)get_export_table(NVTX_ETID_CALLBACKS);
    NvtxFunctionTable table = NULL;
    unsigned int size = 0;
    if (callbacks == NULL) return 0;
    if (callbacks->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &table, &size)) {
        set(table, size, NVTX_CBID_CORE2_DomainMarkEx, (void*)DomainMarkEx);
        set(table, size, NVTX_CBID_CORE2_DomainRangeStartEx, (void*)DomainRangeStartEx);
        set(table, size, NVTX_CBID_CORE2_DomainRangeEnd, (void*)DomainRangeEnd);
        set(table, size, NVTX_CBID_CORE2_DomainRangePushEx, (void*)DomainRangePushEx);
        set(table, size, NVTX_CBID_CORE2_DomainRangePop, (void*)DomainRangePop);
        set(table, size, NVTX_CBID_CORE2_DomainNameCategoryA, (void*)DomainNameCategoryA);
        set(table, size, NVTX_CBID_CORE2_DomainNameCategoryW, (void*)DomainNameCategoryW);
        set(table, size, NVTX_CBID_CORE2_DomainRegisterStringA, (void*)DomainRegisterStringA);
        set(table, size, NVTX_CBID_CORE2_DomainRegisterStringW, (void*)DomainRegisterStringW);
        set(table, size, NVTX_CBID_CORE2_DomainCreateA, (void*)DomainCreateA);
        set(table, size, NVTX_CBID_CORE2_DomainCreateW, (void*)DomainCreateW);
        set(table, size, NVTX_CBID_CORE2_DomainDestroy, (void*)DomainDestroy);
    }
    if (callbacks->GetModuleFunctionTable(NVTX_CB_MODULE_CUDA, &table, &size)) {
        set(table, size, NVTX_CBID_CUDA_NameCuStreamA, (void*)NameCuStreamA);
        set(table, size, NVTX_CBID_CUDA_NameCuStreamW, (void*)NameCuStreamW);
        set(table, size, NVTX_CBID_CUDA_NameCuContextA, (void*)NameCuContextA);
        set(table, size, NVTX_CBID_CUDA_NameCuContextW, (void*)NameCuContextW);
    }
    return 1;
}

/* ---- reading the record ---- */

static void put_string(FILE* f, const char* s) {
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

/* The events recorded so far as a JSON array (malloc'd; free with greenres_recorder_free). */
EXPORT char* greenres_recorder_json(void) {
    char* out = NULL;
    size_t size = 0;
    FILE* f = open_memstream(&out, &size);
    pthread_mutex_lock(&mu);
    fputc('[', f);
    for (size_t i = 0; i < count; i++) {
        recorder_event* e = &events[i];
        if (i) fputc(',', f);
        fprintf(f, "{\"kind\":\"%s\",\"domain\":", e->kind);
        put_string(f, e->domain);
        fprintf(f, ",\"category\":%u,\"color\":%u,\"message\":", e->category, e->color);
        put_string(f, e->message);
        fprintf(f, ",\"thread\":%ld,\"range\":%llu,\"handle\":%llu,\"depth\":%d}", e->thread,
                (unsigned long long)e->range, (unsigned long long)e->handle, e->depth);
    }
    fputc(']', f);
    pthread_mutex_unlock(&mu);
    fclose(f);
    return out;
}

EXPORT void greenres_recorder_free(char* json) { free(json); }

/* Forget what was recorded (domains and strings stay valid). */
EXPORT void greenres_recorder_clear(void) {
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < count; i++) {
        free(events[i].domain);
        free(events[i].message);
    }
    count = 0;
    pthread_mutex_unlock(&mu);
}
