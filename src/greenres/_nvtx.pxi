# Included by _driver.pyx (one extension module; one file per concept).
# NVTX: the seed's range API (greenres.nvtx re-exports it) and the annotations of a
# layout's partitions (their names, categories and colours, and the attributes the nogil
# hot paths emit). Device ranges, fired in stream order, are in _nvtx_device.pxi.

import threading as _threading
import zlib as _zlib

from cpython.unicode cimport PyUnicode_AsWideCharString
from cpython.mem cimport PyMem_Free


# A palette of distinct colours (ARGB) a partition's name picks from, the same in every
# process (crc32 of the name, not Python's salted hash).
_PALETTE = (
    0xFF4E79A7, 0xFFF28E2B, 0xFFE15759, 0xFF76B7B2, 0xFF59A14F, 0xFFEDC948,
    0xFFB07AA1, 0xFFFF9DA7, 0xFF9C755F, 0xFFBAB0AC, 0xFF1F77B4, 0xFF2CA02C,
)
_COLORS = {
    "blue": 0xFF1F77B4, "orange": 0xFFFF7F0E, "green": 0xFF2CA02C, "red": 0xFFD62728,
    "purple": 0xFF9467BD, "brown": 0xFF8C564B, "pink": 0xFFE377C2, "gray": 0xFF7F7F7F,
    "grey": 0xFF7F7F7F, "olive": 0xFFBCBD22, "cyan": 0xFF17BECF, "yellow": 0xFFFFFF00,
    "black": 0xFF000000, "white": 0xFFFFFFFF,
}


def stable_color(str name):
    """The ARGB colour greenres gives ``name`` in the profiler (the same in every process)."""
    return _PALETTE[_zlib.crc32(name.encode("utf-8")) % len(_PALETTE)]


cdef object _nvtx_lock = _threading.Lock()
cdef dict _domains = {}          # name -> handle (as int)
cdef dict _categories = {}       # (domain name, category name) -> id
cdef dict _next_category = {}    # domain name -> next free id


cdef nvtxDomainHandle_t _domain_of(object name) except? NULL:
    """The NVTX domain of ``name`` (None: the default domain, NULL)."""
    cdef nvtxDomainHandle_t handle
    if name is None:
        return NULL
    if not isinstance(name, str) or not name:
        raise TypeError(f"'domain' must be a non-empty str or None (got {name!r})")
    with _nvtx_lock:
        found = _domains.get(name)
        if found is None:
            handle = nvtxDomainCreateA(name.encode("utf-8"))
            _domains[name] = <uintptr_t>handle
            return handle
    return <nvtxDomainHandle_t><uintptr_t>found


cdef nvtxDomainHandle_t _greenres_domain() except? NULL:
    """The runtime's own domain ("greenres"), created on first use."""
    global greenres_nvtx_domain
    if greenres_nvtx_domain == NULL:
        greenres_nvtx_domain = _domain_of("greenres")
    return greenres_nvtx_domain


cdef unsigned int _category_id(object domain_name, nvtxDomainHandle_t domain,
                               object category) except? 0:
    """A category as an id: an int as given, a str named in its domain on first use."""
    cdef Py_ssize_t size
    cdef wchar_t* wide
    if _is_index(category):
        value = category.__index__()
        if not 0 <= value < 2**32:
            raise ValueError(f"'category' must be in [0, 2**32) (got {value!r})")
        return value
    if not isinstance(category, str) or not category:
        raise TypeError(f"'category' must be an int, a non-empty str or None (got {category!r})")
    key = (domain_name, category)
    with _nvtx_lock:
        found = _categories.get(key)
        if found is not None:
            return found
        number = _next_category.get(domain_name, 1)
        _next_category[domain_name] = number + 1
        _categories[key] = number
    if category.isascii():
        nvtxDomainNameCategoryA(domain, number, category.encode("ascii"))
    else:
        wide = PyUnicode_AsWideCharString(category, &size)
        try:
            nvtxDomainNameCategoryW(domain, number, wide)
        finally:
            PyMem_Free(wide)
    return number


cdef unsigned int _color_of(object color) except? 0:
    if isinstance(color, str):
        try:
            return _COLORS[color.lower()]
        except KeyError:
            raise ValueError(
                f"'color' must be an ARGB int or one of {', '.join(sorted(_COLORS))} "
                f"(got {color!r})") from None
    if not _is_index(color):
        raise TypeError(f"'color' must be an ARGB int, a colour name or None (got {color!r})")
    value = color.__index__()
    if not 0 <= value < 2**32:
        raise ValueError(f"'color' must be an ARGB int in [0, 2**32) (got {value!r})")
    if value <= 0xFFFFFF:
        value |= 0xFF000000  # 0xRRGGBB: opaque
    return value


cdef class _Message:
    """An NVTX event's attributes and the text they point at (kept alive by this object):
    ASCII as bytes, anything else as a wide string."""

    cdef nvtxEventAttributes_t attr
    cdef bytes ascii
    cdef wchar_t* wide
    cdef Py_ssize_t wide_length
    cdef object domain_name
    cdef nvtxDomainHandle_t domain

    def __cinit__(self):
        self.wide = NULL

    def __dealloc__(self):
        if self.wide != NULL:
            PyMem_Free(self.wide)

    cdef int set(self, object message, object domain, object category,
                 object color) except -1:
        if not isinstance(message, str):
            raise TypeError(f"'msg' must be a str (got {message!r})")
        self.domain_name = domain
        self.domain = _domain_of(domain)
        greenres_nvtx_attr_init(&self.attr)
        if message.isascii():
            self.ascii = message.encode("ascii")
            greenres_nvtx_attr_ascii(&self.attr, self.ascii)
        else:
            self.wide = PyUnicode_AsWideCharString(message, &self.wide_length)
            greenres_nvtx_attr_wide(&self.attr, self.wide)
        if category is not None:
            greenres_nvtx_attr_category(&self.attr,
                                        _category_id(domain, self.domain, category))
        if color is not None:
            greenres_nvtx_attr_color(&self.attr, _color_of(color))
        return 0


cdef _Message _message(object message, object domain, object category, object color):
    cdef _Message m = _Message.__new__(_Message)
    m.set(message, domain, category, color)
    return m


# ----------------------------------------------------------------------------- the seed's API

cdef object _depths = _threading.local()   # per thread: {domain name: ranges pushed}
cdef dict _started = {}                    # range_start handle -> (domain handle, range id)
cdef object _next_handle = iter(range(1, 2**63))


cdef dict _thread_depths():
    try:
        return _depths.by_domain
    except AttributeError:
        _depths.by_domain = {}
        return _depths.by_domain


def range_push(msg, *, domain=None, category=None, color=None):
    """Start a nested range on this thread (``torch.cuda.nvtx.range_push``); returns the
    zero-based depth of the range started. ``domain``: an NVTX domain name (None: the
    default domain); ``category``: an id or a name; ``color``: ARGB or a colour name."""
    cdef _Message m = _message(msg, domain, category, color)
    depths = _thread_depths()
    depth = depths.get(domain, 0)
    nvtxDomainRangePushEx(m.domain, &m.attr)
    depths[domain] = depth + 1
    return depth


def range_pop(*, domain=None):
    """End the innermost range this thread pushed (in ``domain``); returns the zero-based
    depth of the range ended.

    Raises:
        UsageError: when this thread has no range pushed in that domain.
    """
    cdef nvtxDomainHandle_t handle = _domain_of(domain)
    depths = _thread_depths()
    depth = depths.get(domain, 0)
    if depth == 0:
        where = "" if domain is None else f" in domain {domain!r}"
        raise UsageError(f"range_pop: no range was pushed on this thread{where}")
    nvtxDomainRangePop(handle)
    depths[domain] = depth - 1
    return depth - 1


def range_start(msg, *, domain=None, category=None, color=None):
    """Start a range that may end on another thread (``torch.cuda.nvtx.range_start``);
    returns its handle (an int) for :func:`range_end`."""
    cdef _Message m = _message(msg, domain, category, color)
    cdef nvtxRangeId_t range_id = nvtxDomainRangeStartEx(m.domain, &m.attr)
    with _nvtx_lock:
        handle = next(_next_handle)
        _started[handle] = (<uintptr_t>m.domain, range_id)
    return handle


def range_end(handle):
    """End the range :func:`range_start` returned ``handle`` for (on any thread).

    Raises:
        TypeError: for a handle that is not an int.
        UsageError: for a handle ended already, or not made by range_start.
    """
    if not _is_index(handle):
        raise TypeError(f"'handle' must be an int from range_start (got {handle!r})")
    with _nvtx_lock:
        found = _started.pop(handle.__index__(), None)
    if found is None:
        raise UsageError(
            f"range_end: range {handle!r} was ended already, or was not started by range_start")
    domain, range_id = found
    nvtxDomainRangeEnd(<nvtxDomainHandle_t><uintptr_t>domain, range_id)


def mark(msg, *, domain=None, category=None, color=None):
    """An instantaneous event (``torch.cuda.nvtx.mark``)."""
    cdef _Message m = _message(msg, domain, category, color)
    nvtxDomainMarkEx(m.domain, &m.attr)


# ----------------------------------------------------------------------------- partitions


cdef int _nvtx_name(object text, nvtxStringHandle_t* out) except -1:
    cdef Py_ssize_t size
    cdef wchar_t* wide
    if text.isascii():
        out[0] = nvtxDomainRegisterStringA(greenres_nvtx_domain, text.encode("ascii"))
    else:
        wide = PyUnicode_AsWideCharString(text, &size)
        try:
            out[0] = nvtxDomainRegisterStringW(greenres_nvtx_domain, wide)
        finally:
            PyMem_Free(wide)
    return 0


cdef int _nvtx_event(nvtxEventAttributes_t* attr, object text, object category,
                     object color) except -1:
    """Attributes of a registered message in the greenres domain."""
    cdef nvtxStringHandle_t handle = NULL
    greenres_nvtx_attr_init(attr)
    _nvtx_name(text, &handle)
    greenres_nvtx_attr_registered(attr, handle)
    if category is not None:
        greenres_nvtx_attr_category(attr, _category_id("greenres", greenres_nvtx_domain,
                                                       category))
    if color is not None:
        greenres_nvtx_attr_color(attr, color)
    return 0


cdef int _nvtx_name_stream(cydriver.CUstream stream, object text) except -1:
    cdef Py_ssize_t size
    cdef wchar_t* wide
    if text.isascii():
        nvtxNameCuStreamA(stream, text.encode("ascii"))
    else:
        wide = PyUnicode_AsWideCharString(text, &size)
        try:
            nvtxNameCuStreamW(stream, wide)
        finally:
            PyMem_Free(wide)
    return 0


cdef int _nvtx_name_context(cydriver.CUcontext context, object text) except -1:
    cdef Py_ssize_t size
    cdef wchar_t* wide
    if text.isascii():
        nvtxNameCuContextA(context, text.encode("ascii"))
    else:
        wide = PyUnicode_AsWideCharString(text, &size)
        try:
            nvtxNameCuContextW(context, wide)
        finally:
            PyMem_Free(wide)
    return 0


cdef int _nvtx_annotate_partitions(_LayoutCore core, list parts) except -1:
    """Name the layout's green contexts and streams, and build the attributes the hot paths
    emit: the enter/exit range of each partition and its handoff marks."""
    cdef GreenContext part, other
    cdef PartState* s
    cdef int i, j, n = core.count
    _greenres_domain()
    for i in range(n):
        part = <GreenContext>parts[i]
        s = part._s
        s.nvtx_handoff = <nvtxEventAttributes_t*>calloc(n + 2, sizeof(nvtxEventAttributes_t))
        if s.nvtx_handoff == NULL:
            raise MemoryError()
        color = stable_color(part.name)
        _nvtx_event(&s.nvtx_range, f"{part.name} ({part.sm_count} SMs)", part.name, color)
        for j in range(n):
            other = <GreenContext>parts[j]
            _nvtx_event(&s.nvtx_handoff[j], f"handoff {part.name} -> {other.name}",
                        part.name, color)
        _nvtx_event(&s.nvtx_handoff[n], f"handoff {part.name} -> (another stream)",
                    part.name, color)
        _nvtx_event(&s.nvtx_handoff[n + 1], f"handoff (another stream) -> {part.name}",
                    part.name, color)
        prefix = f"{core.layout_name()}/{part.name}"
        _nvtx_name_context(s.ctx, prefix)
        for k, stream in enumerate(part.streams):
            _nvtx_name_stream((<Stream>stream)._handle, f"{prefix}/stream{k}")
            (<Stream>stream)._number = k
        part._next_stream_number = len(part.streams)
        s.nvtx = 1
    return 0


cdef const nvtxEventAttributes_t* _handoff_mark(object src, object dst):
    """The mark of a handoff from ``src`` to ``dst`` (NULL when neither side belongs to an
    annotated layout)."""
    cdef Stream one, two
    if isinstance(src, Stream):
        one = <Stream>src
        if not one._s.nvtx:
            return NULL
        if isinstance(dst, Stream) and (<Stream>dst)._core is one._core:
            return &one._s.nvtx_handoff[(<Stream>dst).partition._index]
        return &one._s.nvtx_handoff[one._core.count]
    if isinstance(dst, Stream):
        two = <Stream>dst
        if two._s.nvtx:
            return &two._s.nvtx_handoff[two._core.count + 1]
    return NULL


cdef object _nvtx_mark_message(object text):
    """A mark's message in the greenres domain; emit it with _nvtx_mark_cached, which builds
    nothing (a Graph keeps its replay mark's)."""
    return _message(text, "greenres", None, None)


cdef void _nvtx_mark_cached(object message) noexcept:
    cdef _Message m = <_Message>message
    nvtxDomainMarkEx(m.domain, &m.attr)


cdef int _nvtx_mark_text(object text) except -1:
    """A mark of the runtime in the greenres domain (layout events: rare, not on a hot
    path, so the message is built each time)."""
    _nvtx_mark_cached(_nvtx_mark_message(text))
    return 0


cdef nvtxRangeId_t _nvtx_start_text(object text, object category) except? 0:
    cdef _Message m = _message(text, "greenres", category, None)
    return nvtxDomainRangeStartEx(m.domain, &m.attr)
