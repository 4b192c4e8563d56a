# Included by _driver.pyx (one extension module; one file per concept).
# Error checking of driver calls and argument checks of the public API.


cdef str _error_name(cydriver.CUresult err):
    cdef const char* text = NULL
    try:
        if cydriver.cuGetErrorName(err, &text) == cydriver.CUDA_SUCCESS and text != NULL:
            return text.decode()
    except Exception:  # a driver without cuGetErrorName: still report the code
        pass
    return f"CUresult({<int>err})"


cdef str _error_string(cydriver.CUresult err):
    cdef const char* text = NULL
    try:
        if cydriver.cuGetErrorString(err, &text) == cydriver.CUDA_SUCCESS and text != NULL:
            return text.decode()
    except Exception:
        pass
    return "unknown error"


cdef int _raise_driver_error(cydriver.CUresult err, const char* function) except -1:
    raise DriverError(function.decode(), <int>err, _error_name(err), _error_string(err))


cdef int check(cydriver.CUresult err, const char* function) except -1 nogil:
    """Raise DriverError for a failed driver call; takes the GIL only on failure."""
    if err == cydriver.CUDA_SUCCESS:
        return 0
    with gil:
        return _raise_driver_error(err, function)


# ----------------------------------------------------------------------------- arguments
# Validation at the public entry points, with messages that name the parameter, the rule
# and the value. Cython's own coercions ("an integer is required", bint accepting any
# object, int() of a float) are never relied on for user input.


cdef inline bint _is_index(object value):
    """An int or integer-like object (``__index__``), but not a bool."""
    return not isinstance(value, bool) and hasattr(type(value), "__index__")


def _require_int(str name, value):
    """``value`` as an int: ints and integer-like objects (``__index__``), never bools,
    floats or strings."""
    if not _is_index(value):
        raise TypeError(f"{name!r} must be an int (got {value!r})")
    return value.__index__()


def _require_bool(str name, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name!r} must be a bool (got {value!r})")
    return value


cdef Device _device_of(str name, object device):
    """A Device from a Device or an ordinal."""
    if isinstance(device, Device):
        return <Device>device
    if not _is_index(device):
        raise TypeError(
            f"{name!r} must be a device ordinal (int) or a greenres.Device (got {device!r})"
        )
    return Device(device.__index__())
