# cython: language_level=3
"""A Cython extension for greenres' tests: the C-level entry through ``cimport
greenres.api``, in a loop without the GIL."""

from greenres.api cimport GREENRES_OK, greenres_api, greenres_error, greenres_import_api
from greenres.api cimport greenres_partition
from libc.stdint cimport uintptr_t


def cycles(part, unsigned long long from_stream, long n):
    """Enter and exit ``part`` ``n`` times; returns the last status (0: all succeeded)."""
    cdef const greenres_api* api = greenres_import_api()
    cdef greenres_partition* p = api.partition(part)
    cdef greenres_error error
    cdef int code = GREENRES_OK
    cdef long i
    with nogil:
        for i in range(n):
            code = api.enter(p, <void*><uintptr_t>from_stream, 0, &error)
            if code != GREENRES_OK:
                break
            code = api.exit(p, &error)
            if code != GREENRES_OK:
                break
    return code
