/* NVTX v3 (header-only, from the nvidia-nvtx wheel) for greenres._driver: event attributes
 * built in C, the "greenres" domain the runtime annotates partitions in, and device ranges
 * (ranges started and ended by host functions when a stream reaches them).
 *
 * With no tool attached, the first NVTX call looks for NVTX_INJECTION64_PATH once and
 * every call after that is a call through a pointer to an empty function.
 *
 * Include it from exactly one translation unit (greenres._driver), like greenres_runtime.h.
 */
#ifndef GREENRES_NVTX_H
#define GREENRES_NVTX_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include <cuda.h>
#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtCuda.h>

/* The domain of the runtime's own annotations; NULL until the first annotated layout (and
   NULL with no tool attached: NVTX accepts it everywhere). Written under the GIL once,
   read by nogil hot paths after that (the write happens-before any layout that reads it
   exists). */
static nvtxDomainHandle_t greenres_nvtx_domain = NULL;

static inline void greenres_nvtx_attr_init(nvtxEventAttributes_t* a) {
    memset(a, 0, sizeof(*a));
    a->version = NVTX_VERSION;
    a->size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
}
static inline void greenres_nvtx_attr_ascii(nvtxEventAttributes_t* a, const char* message) {
    a->messageType = NVTX_MESSAGE_TYPE_ASCII;
    a->message.ascii = message;
}
static inline void greenres_nvtx_attr_wide(nvtxEventAttributes_t* a, const wchar_t* message) {
    a->messageType = NVTX_MESSAGE_TYPE_UNICODE;
    a->message.unicode = message;
}
static inline void greenres_nvtx_attr_registered(nvtxEventAttributes_t* a,
                                                 nvtxStringHandle_t message) {
    a->messageType = NVTX_MESSAGE_TYPE_REGISTERED;
    a->message.registered = message;
}
static inline void greenres_nvtx_attr_color(nvtxEventAttributes_t* a, uint32_t argb) {
    a->colorType = NVTX_COLOR_ARGB;
    a->color = argb;
}
static inline void greenres_nvtx_attr_category(nvtxEventAttributes_t* a, uint32_t category) {
    a->category = category;
}

/* ------------------------------------------------------------------ device ranges
 *
 * A device range is started and ended by host functions enqueued on streams, so the range
 * covers the time between the stream reaching the start and (another or the same) stream
 * reaching the end. The state lives on the heap and is reference counted: one reference
 * for the Python handle, one for each host function queued outside a capture (dropped when
 * it ran), one for each graph a captured host function belongs to (dropped by the graph's
 * user object when the graph is destroyed: captured host functions run at every replay).
 */
typedef struct {
    long refs;                      /* atomic */
    int abandoned;                  /* atomic: the handle went before the range ended */
    int started;                    /* atomic: a start ran (and no end after it yet) */
    int captured;                   /* a start or end is in a graph (set under the GIL) */
    nvtxDomainHandle_t domain;
    nvtxEventAttributes_t attr;     /* its message points into `text` */
    nvtxRangeId_t id;               /* of the last start (atomic) */
    void* text;                     /* owned copy of the message */
} greenres_device_range;

static inline greenres_device_range* greenres_device_range_new(nvtxDomainHandle_t domain,
                                                               const nvtxEventAttributes_t* attr,
                                                               const void* text,
                                                               size_t text_bytes, int wide) {
    greenres_device_range* r = (greenres_device_range*)calloc(1, sizeof(*r));
    if (r == NULL) return NULL;
    r->text = malloc(text_bytes);
    if (r->text == NULL) {
        free(r);
        return NULL;
    }
    memcpy(r->text, text, text_bytes);
    r->refs = 1;
    r->domain = domain;
    r->attr = *attr;
    if (wide) greenres_nvtx_attr_wide(&r->attr, (const wchar_t*)r->text);
    else greenres_nvtx_attr_ascii(&r->attr, (const char*)r->text);
    return r;
}
static inline void greenres_device_range_retain(greenres_device_range* r) {
    __atomic_fetch_add(&r->refs, 1, __ATOMIC_RELAXED);
}
static inline void greenres_device_range_release(greenres_device_range* r) {
    if (__atomic_fetch_sub(&r->refs, 1, __ATOMIC_ACQ_REL) == 1) {
        free(r->text);
        free(r);
    }
}
static inline void greenres_device_range_do_end(greenres_device_range* r);
static inline void greenres_device_range_do_start(greenres_device_range* r) {
    if (__atomic_load_n(&r->abandoned, __ATOMIC_ACQUIRE)) return;
    /* A start while the last one was not ended (a captured start with no captured end,
       replayed): that range ends here, so no replay leaves one open for good. */
    greenres_device_range_do_end(r);
    nvtxRangeId_t id = nvtxDomainRangeStartEx(r->domain, &r->attr);
    __atomic_store_n(&r->id, id, __ATOMIC_RELEASE);
    __atomic_store_n(&r->started, 1, __ATOMIC_RELEASE);
}
static inline void greenres_device_range_do_end(greenres_device_range* r) {
    if (__atomic_exchange_n(&r->started, 0, __ATOMIC_ACQ_REL))
        nvtxDomainRangeEnd(r->domain, __atomic_load_n(&r->id, __ATOMIC_ACQUIRE));
}
/* Host functions (CUhostFn). The "_once" ones hold a reference they drop. */
static void CUDA_CB greenres_device_range_start_once(void* data) {
    greenres_device_range_do_start((greenres_device_range*)data);
    greenres_device_range_release((greenres_device_range*)data);
}
static void CUDA_CB greenres_device_range_end_once(void* data) {
    greenres_device_range_do_end((greenres_device_range*)data);
    greenres_device_range_release((greenres_device_range*)data);
}
static void CUDA_CB greenres_device_range_start_replayed(void* data) {
    greenres_device_range_do_start((greenres_device_range*)data);
}
static void CUDA_CB greenres_device_range_end_replayed(void* data) {
    greenres_device_range_do_end((greenres_device_range*)data);
}
/* The destructor of the user object a capture gives its graph (CUhostFn too), run when
   the graph is destroyed: the range its last replay started and nothing ended ends now. */
static void CUDA_CB greenres_device_range_graph_release(void* data) {
    greenres_device_range_do_end((greenres_device_range*)data);
    greenres_device_range_release((greenres_device_range*)data);
}
/* The handle was dropped. Outside graphs: a range started and never ended is ended now (a
   tool shows it closed, not open forever), and a start still queued will not start one.
   Captured ranges belong to their graphs: they go on firing at every replay. */
static inline void greenres_device_range_abandon(greenres_device_range* r) {
    if (!r->captured) {
        __atomic_store_n(&r->abandoned, 1, __ATOMIC_RELEASE);
        greenres_device_range_do_end(r);
    }
    greenres_device_range_release(r);
}

#endif /* GREENRES_NVTX_H */
