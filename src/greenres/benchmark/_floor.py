"""The C floor (``libgreenres_floor.so``, built with the package from ``floor.c``), loaded
with ctypes, its functions resolved through the loaded driver's ``cuGetProcAddress``."""

from __future__ import annotations

import ctypes
from pathlib import Path

__all__ = ["Floor", "checked"]

_LIBRARY = Path(__file__).resolve().parent / "libgreenres_floor.so"


def checked(value: float, what: str) -> float:
    """A floor loop's ns per iteration, or an error for its negative failure code."""
    if value < 0:
        code = int(-value)
        if code >= 1000:
            raise RuntimeError(f"{what}: the C-level entry answered status {code - 1000}")
        raise RuntimeError(f"{what}: a driver call failed with CUresult {code}")
    return value


def void_array(values) -> ctypes.Array:
    return (ctypes.c_void_p * len(values))(*values)


class Floor:
    """The floor's loops; create after the driver is loaded (greenres initialised it)."""

    def __init__(self, driver_version: int):
        vp, lg, i = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        pp = ctypes.POINTER(vp)
        lib = ctypes.CDLL(str(_LIBRARY))
        # The one function that needs the GIL (it calls into greenres with Python objects).
        with_gil = ctypes.PyDLL(str(_LIBRARY))
        signatures = {
            "floor_init": ([vp, i], i),
            "floor_enter_exit": ([vp, vp, vp, vp, vp, lg, i], ctypes.c_double),
            "floor_enter_exit_many": ([vp, pp, pp, i, vp, vp, lg], ctypes.c_double),
            "floor_handoff": ([vp, vp, vp, lg], ctypes.c_double),
            "floor_graph_launch": ([vp, vp, lg], ctypes.c_double),
            "floor_capi_enter_exit": ([vp, vp, vp, lg], ctypes.c_double),
            "floor_layout_create_close": (
                [i, i, ctypes.c_uint, i, lg, i, ctypes.c_uint],
                ctypes.c_double,
            ),
            "floor_threads": ([i, vp, pp, pp, pp, pp, pp, lg], ctypes.c_double),
        }
        for name, (args, result) in signatures.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, result
        self.capi_partition = with_gil.floor_capi_partition
        self.capi_partition.argtypes, self.capi_partition.restype = [vp, ctypes.py_object], vp
        # The libcuda.so.1 already loaded (the simulator's has that soname too).
        driver = ctypes.CDLL("libcuda.so.1")
        gpa = ctypes.cast(driver.cuGetProcAddress_v2, vp).value
        err = lib.floor_init(gpa, driver_version)
        if err:
            raise RuntimeError(f"floor_init: resolving the driver's functions failed ({err})")
        self.lib = lib

    def capi_table(self) -> int:
        """The address of greenres' C-level entry table (greenres_api.h)."""
        import greenres._driver  # noqa: F401  (the capsule lives in the extension)

        importer = ctypes.pythonapi.PyCapsule_Import
        importer.argtypes, importer.restype = [ctypes.c_char_p, ctypes.c_int], ctypes.c_void_p
        table = importer(b"greenres._driver._C_API", 0)
        if not table:
            raise RuntimeError("greenres._driver._C_API could not be imported")
        return table
