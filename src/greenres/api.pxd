# cython: language_level=3
# Cython declarations of greenres' C-level entry (include/greenres_api.h, which documents
# the rules). Build with include_dirs=[greenres.get_include()]:
#
#     from greenres.api cimport greenres_api, greenres_error, greenres_import_api, GREENRES_OK
#
#     cdef const greenres_api* api = greenres_import_api()
#     cdef greenres_partition* p = api.partition(part)      # keep `part` referenced
#     cdef greenres_error error
#     with nogil:
#         if api.enter(p, caller_stream, 0, &error) == GREENRES_OK:
#             ...
#             api.exit(p, &error)

cdef extern from "greenres_api.h":
    enum greenres_status:
        GREENRES_OK
        GREENRES_OWNED_ELSEWHERE
        GREENRES_NOT_OWNER
        GREENRES_OUT_OF_ORDER
        GREENRES_TOO_DEEP
        GREENRES_OTHER_DEVICE
        GREENRES_POOL_EXHAUSTED
        GREENRES_DRIVER_FAILED
        GREENRES_LAYOUT_CLOSED
        GREENRES_LAYOUT_CLOSING
    enum:
        GREENRES_API_VERSION

    ctypedef struct greenres_partition

    ctypedef struct greenres_error:
        int code
        int cuda_error
        const char* function

    ctypedef struct greenres_api:
        unsigned int version
        unsigned int size
        greenres_partition* (*partition)(object green_context) except NULL
        void* (*stream)(greenres_partition* partition) noexcept nogil
        int (*enter)(greenres_partition* partition, void* from_stream, int resolve,
                     greenres_error* error) noexcept nogil
        int (*exit)(greenres_partition* partition, greenres_error* error) noexcept nogil
        int (*handoff)(greenres_partition* partition, void* src, void* dst,
                       greenres_error* error) noexcept nogil

    const greenres_api* greenres_import_api() except NULL
