# Included by _driver.pyx (one extension module; one file per concept).
# The C-level entry (include/greenres_api.h): the nogil hot paths, exported through the
# PyCapsule greenres._driver._C_API for C, C++ and Cython callers (greenres/api.pxd).

from cpython.pycapsule cimport PyCapsule_New

cdef extern from "greenres_api.h":
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
    enum:
        GREENRES_API_VERSION
        GREENRES_LAYOUT_CLOSING


cdef inline int _capi_result(int code, Failure* failure, greenres_error* error) noexcept nogil:
    if error != NULL:
        error.code = code
        error.cuda_error = <int>failure.error if code == DRIVER_FAILED else 0
        error.function = failure.function if code == DRIVER_FAILED else NULL
    return code


cdef greenres_partition* _capi_partition(object green_context) except NULL:
    if not isinstance(green_context, GreenContext):
        raise TypeError(
            f"greenres C API: expected a greenres.GreenContext (got {green_context!r})")
    # Also of a closed layout: the functions answer GREENRES_LAYOUT_CLOSED for it.
    return <greenres_partition*>(<GreenContext>green_context)._s


cdef void* _capi_stream(greenres_partition* partition) noexcept nogil:
    return (<PartState*>partition).stream


cdef int _capi_enter(greenres_partition* partition, void* from_stream, int resolve,
                     greenres_error* error) noexcept nogil:
    cdef Failure failure
    cdef int code = enter_partition(<PartState*>partition, <cydriver.CUstream>from_stream,
                                    resolve != 0, False, &failure)
    if code == ADMIT_WAIT:
        code = GREENRES_LAYOUT_CLOSING
    return _capi_result(code, &failure, error)


cdef int _capi_exit(greenres_partition* partition, greenres_error* error) noexcept nogil:
    cdef Failure failure
    cdef StackRepair repair
    cdef void* unpinned = NULL
    cdef int code = exit_partition(<PartState*>partition, &failure, &repair, &unpinned)
    if unpinned != NULL:  # entered from Python: drop the reference that pinned it
        with gil:
            _unpin(unpinned)
    return _capi_result(code, &failure, error)


cdef int _capi_handoff(greenres_partition* partition, void* src, void* dst,
                       greenres_error* error) noexcept nogil:
    cdef PartState* s = <PartState*>partition
    cdef Failure failure
    cdef int code, admitted = greenres_begin(s.gate, &s.inflight)
    if admitted != 1:
        return _capi_result(GREENRES_LAYOUT_CLOSING if admitted == -1 else ADMIT_CLOSED, &failure,
                            error)
    # (no NVTX mark: the streams are raw handles here, of any partition or none)
    code = pooled_handoff(s.pool, <cydriver.CUstream>src, <cydriver.CUstream>dst, NULL,
                          &failure)
    greenres_end(&s.inflight)
    return _capi_result(code, &failure, error)


cdef greenres_api _C_API_TABLE


cdef object _make_capi():
    _C_API_TABLE.version = GREENRES_API_VERSION
    _C_API_TABLE.size = sizeof(greenres_api)
    _C_API_TABLE.partition = _capi_partition
    _C_API_TABLE.stream = _capi_stream
    _C_API_TABLE.enter = _capi_enter
    _C_API_TABLE.exit = _capi_exit
    _C_API_TABLE.handoff = _capi_handoff
    return PyCapsule_New(<void*>&_C_API_TABLE, b"greenres._driver._C_API", NULL)


_C_API = _make_capi()
