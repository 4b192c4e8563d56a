"""Every greenres call that takes a stream takes it in every form other libraries hand out:
a greenres Stream, an object with ``__cuda_stream__`` (cuda.core), an object with an int
``cuda_stream`` (PyTorch) or ``ptr`` (CuPy) attribute, a cuda.bindings ``CUstream`` and a
raw int. Each form is checked by what the call does, not only that it is accepted: the
stream is held behind a gate and the dependent stream must not finish until it opens."""

from __future__ import annotations

import time

import pytest
from cuda.bindings import driver as cu

import greenres
from greenres import nvtx

from support.rthelpers import copy, layout_of, memset, read, sync
from support.streamgate import Gate

pytestmark = pytest.mark.gpu

N = 1024
HOLD_S = 0.02  # how long a held stream's dependant must stay busy


class CoreLike:
    """cuda.core's form: ``__cuda_stream__()`` gives ``(version, handle)``."""

    def __init__(self, handle):
        self._handle = handle

    def __cuda_stream__(self):
        return (0, self._handle)


class TorchLike:
    """torch.cuda.Stream's form: ``cuda_stream`` is the CUstream as an int."""

    def __init__(self, handle):
        self.cuda_stream = handle


class CupyLike:
    """cupy.cuda.Stream's form: ``ptr`` is the CUstream as an int."""

    def __init__(self, handle):
        self.ptr = handle


def _handle(stream) -> int:
    return stream.handle if isinstance(stream, greenres.Stream) else int(stream)


FORMS = {
    "as given": lambda s: s,
    "__cuda_stream__": lambda s: CoreLike(_handle(s)),
    "cuda_stream": lambda s: TorchLike(_handle(s)),
    "ptr": lambda s: CupyLike(_handle(s)),
    "CUstream": lambda s: cu.CUstream(_handle(s)),
    "int": _handle,
}


@pytest.fixture(params=list(FORMS))
def form(request):
    return FORMS[request.param]


def not_ready(stream) -> bool:
    (err,) = cu.cuStreamQuery(cu.CUstream(_handle(stream)))
    return err == cu.CUresult.CUDA_ERROR_NOT_READY


def assert_ordered(memory, src, dst, order):
    """``order()`` must make ``dst`` wait for the work queued on ``src`` so far."""
    x, y = memory.alloc(N), memory.alloc(N)
    memset(y, 0, N, dst)
    sync(dst)
    with Gate(src) as gate:
        memset(x, 7, N, src)
        order()
        copy(y, x, N, dst)
        # dst must stay busy while src is held; without the wait its copy would be done
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline:
            assert not_ready(dst), "dst did not wait for src"
            time.sleep(0.002)
        gate.open()
    sync(dst)
    assert read(y, N) == bytes([7]) * N


@pytest.mark.parametrize("other", list(FORMS))
def test_handoff(memory, form, other):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        assert_ordered(memory, a, b, lambda: greenres.handoff(src=form(a), dst=FORMS[other](b)))


def test_handoff_from_and_to_a_foreign_stream(memory, caller_stream, form):
    with layout_of({"a": 16}) as layout:
        a = layout["a"].stream
        assert_ordered(memory, caller_stream, a, lambda: greenres.handoff(form(caller_stream), a))
        assert_ordered(memory, a, caller_stream, lambda: greenres.handoff(a, form(caller_stream)))


def test_enter_from_stream(memory, caller_stream, form):
    with layout_of({"a": 16}) as layout:
        part = layout["a"]
        entered = []

        def enter():
            entered.append(part.enter(from_stream=form(caller_stream)))

        assert_ordered(memory, caller_stream, part.stream, enter)
        part.exit()
        assert not part.entered


def test_event_record_and_wait(memory, form):
    with layout_of({"a": 16, "b": 16}) as layout, greenres.Event() as event:
        a, b = layout["a"].stream, layout["b"].stream

        def order():
            event.record(form(a))
            event.wait(form(b))

        assert_ordered(memory, a, b, order)


def test_stream_wait(memory, form):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        assert_ordered(memory, a, b, lambda: b.wait(form(a)))


def test_graph_capture_and_replay(memory, form):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        x, y = memory.alloc(N), memory.alloc(N)
        with greenres.Graph() as graph:
            with graph.capture(form(a)):
                copy(y, x, N, a)
            graph.instantiate()
            memset(y, 0, N, b)
            with Gate(b) as gate:
                memset(x, 5, N, b)
                graph.replay(form(b))  # queued on b: after b's memset
                assert not_ready(b)  # b itself is held: this is about the replay's data
                gate.open()
            sync(b)
            assert read(y, N) == bytes([5]) * N


def test_nvtx_device_ranges(form):
    with layout_of({"a": 16}) as layout:
        a = layout["a"].stream
        handle = nvtx.device_range_start("step", form(a))
        nvtx.device_range_end(handle, form(a))
        a.synchronize()


def test_cuda_stream_protocol_comes_before_the_attributes(memory):
    """An object with both (a torch stream has cuda_stream and, in new versions,
    __cuda_stream__) is read by the protocol."""
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        both = CoreLike(a.handle)
        both.cuda_stream = both.ptr = b.handle  # what the protocol does not say
        assert_ordered(memory, a, b, lambda: greenres.handoff(src=both, dst=b))


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (TorchLike(True), r"'src': cuda_stream of TorchLike must be an int stream handle"),
        (TorchLike(1.5), r"'src': cuda_stream of TorchLike must be an int stream handle"),
        (CupyLike(None), r"'src': ptr of CupyLike must be an int stream handle \(got None\)"),
        (CupyLike("0x10"), r"'src': ptr of CupyLike must be an int stream handle"),
        (object(), r"'src' must be a greenres\.Stream, an object with __cuda_stream__"),
    ],
)
def test_attributes_that_are_not_handles_are_refused(stream, message):
    with layout_of({"a": 16}) as layout:
        with pytest.raises(TypeError, match=message):
            greenres.handoff(src=stream, dst=layout["a"].stream)


def test_attribute_handles_are_range_checked():
    with layout_of({"a": 16}) as layout:
        with pytest.raises(ValueError, match=r"'src' must be a stream handle >= 0 \(got -1\)"):
            greenres.handoff(src=TorchLike(-1), dst=layout["a"].stream)
        with pytest.raises(ValueError, match=r"'src' must be a stream handle < 2\*\*64"):
            greenres.handoff(src=CupyLike(2**64), dst=layout["a"].stream)


def test_the_check_can_fail(memory):
    """assert_ordered is a real check: with nothing ordering the streams it fails."""
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"].stream, layout["b"].stream
        with pytest.raises(AssertionError, match="dst did not wait for src"):
            assert_ordered(memory, a, b, lambda: None)
        sync(a)
