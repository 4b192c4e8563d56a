"""The error names and texts of the driver this process runs on (for the error-text tests)."""

from cuda.bindings import driver as cu

__all__ = ["error_table"]


def error_table():
    """{CUresult name: [cuGetErrorName, cuGetErrorString]} for every code the driver knows."""
    out = {}
    for code in cu.CUresult:
        err, name = cu.cuGetErrorName(code)
        err2, text = cu.cuGetErrorString(code)
        if err == cu.CUresult.CUDA_SUCCESS and err2 == cu.CUresult.CUDA_SUCCESS:
            out[code.name] = [name.decode(), text.decode()]
    return out
