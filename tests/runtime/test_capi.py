"""The C-level entry (include/greenres_api.h, greenres/api.pxd), used from a C extension and
a Cython extension built here: enter and exit with no Python in the loop, with the same
rules as from Python (thread ownership, order, context stack, closed layouts, a mix of
Python and C enters), and handoff through the layout's event pool."""

from __future__ import annotations

import threading

import pytest

import greenres
from greenres import Layout

from support.capi_build import build_c_extension, build_cython_extension
from support.rthelpers import copy, current_context, layout_of, memset, read, sync

pytestmark = pytest.mark.gpu

OK, OWNED_ELSEWHERE, NOT_OWNER, OUT_OF_ORDER = 0, 1, 2, 3
CLOSED = 8


@pytest.fixture(scope="module")
def capi():
    return build_c_extension()


def test_enter_and_exit_from_c(capi):
    with layout_of({"a": 16, "b": 16}) as layout:
        before = current_context()
        a, b = layout["a"], layout["b"]
        assert capi.stream(a) == a.stream.handle
        assert capi.enter(a, b.stream.handle, 0) == (OK, 0, None)
        assert a.entered and current_context() == a.context_handle
        assert greenres.current_partition() is None  # not referenced: entered from C
        assert capi.exit(a) == (OK, 0, None)
        assert not a.entered and current_context() == before


def test_the_rules_hold_from_c(capi):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        assert capi.exit(a)[0] == NOT_OWNER
        assert capi.enter(a, 0, 1)[0] == OK
        assert capi.enter(b, 0, 1)[0] == OK  # nested: b after a's stream
        assert capi.exit(a)[0] == OUT_OF_ORDER
        result = []
        t = threading.Thread(target=lambda: result.append(capi.enter(a, 0, 1)[0]))
        t.start()
        t.join()
        assert result == [OWNED_ELSEWHERE]
        with pytest.raises(greenres.ThreadOwnershipError):
            layout.close()  # entered from C is entered
        assert capi.exit(b)[0] == OK and capi.exit(a)[0] == OK
    assert capi.enter(a, 0, 1)[0] == CLOSED
    assert capi.stream(a) == 0  # destroyed with the layout


def test_python_and_c_enters_mix(capi):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        with a:  # entered from Python, nested from C and exited from C
            assert capi.enter(b, 0, 1)[0] == OK
            assert capi.exit(b)[0] == OK
        a.enter()
        assert capi.exit(a)[0] == OK  # drops the reference Python's enter took
        assert not a.entered and greenres.current_partition() is None


def test_the_c_loop_keeps_the_data_ordered(capi, memory):
    """Work queued on the caller's stream before the C enter is visible in the partition,
    and the caller waits for the partition's work after the C exit."""
    with layout_of({"a": 16}) as layout:
        a = layout["a"]
        src, dst = memory.alloc(1 << 16), memory.alloc(1 << 16)
        import cuda.bindings.driver as cu

        from support.rthelpers import ok

        caller = ok(cu.cuStreamCreate(cu.CUstream_flags.CU_STREAM_NON_BLOCKING.value))
        try:
            memset(src, 7, 1 << 16, caller)
            assert capi.enter(a, int(caller), 0)[0] == OK
            copy(dst, src, 1 << 16, a.stream)
            assert capi.exit(a)[0] == OK
            memset(src, 0, 1 << 16, caller)  # after the copy: the exit ordered it
            sync(caller)
            assert read(dst, 1 << 16) == bytes([7]) * (1 << 16)
        finally:
            ok(cu.cuStreamDestroy(caller))


def test_handoff_from_c(capi):
    with layout_of({"a": 16, "b": 16}) as layout:
        a, b = layout["a"], layout["b"]
        assert capi.handoff(a, a.stream.handle, b.stream.handle)[0] == OK
        b.stream.synchronize()


def test_cycles_in_a_c_loop(capi):
    with layout_of({"a": 16, "b": 16}) as layout:
        ns = capi.cycles(layout["a"], layout["b"].stream.handle, 1000)
        assert ns > 0 and not layout["a"].entered


def test_a_bad_object_is_a_type_error(capi):
    with pytest.raises(TypeError, match=r"expected a greenres\.GreenContext"):
        capi.enter(object(), 0, 1)


def test_the_cython_declarations_work():
    cy = build_cython_extension()
    with layout_of({"a": 16, "b": 16}) as layout:
        assert cy.cycles(layout["a"], layout["b"].stream.handle, 100) == OK
        assert not layout["a"].entered


def test_the_header_and_pxd_are_installed():
    import importlib.resources
    from pathlib import Path

    assert (Path(greenres.get_include()) / "greenres_api.h").is_file()
    assert importlib.resources.files("greenres").joinpath("api.pxd").is_file()


def test_layout_closed_under_a_c_user_after_exit(capi):
    layout = Layout.create({"a": 16})
    a = layout["a"]
    assert capi.enter(a, 0, 1)[0] == OK
    assert capi.exit(a)[0] == OK
    layout.close()
    assert capi.exit(a)[0] == CLOSED
