"""Error names and texts are a real driver's: greenres' DriverError carries them, so on the
simulator they must read as on a GPU. On a real driver (``GREENRES_TEST_REAL_DRIVER=1 -m
gpu``) the second test compares every code with the simulator's table (run in a child
process), so a text the simulator got wrong shows up in scripts/gpu-check."""

import json

import pytest
from cuda.bindings import driver as cu

from support.childprocess import run_python
from support.errortable import error_table

# Texts of the real driver seen in public reports (driver errors quoted by PyTorch, PyCUDA,
# TensorFlow and cuda-python issues), and cuda.h's CUDA_SUCCESS "no error".
KNOWN = {
    "CUDA_SUCCESS": "no error",
    "CUDA_ERROR_INVALID_VALUE": "invalid argument",
    "CUDA_ERROR_OUT_OF_MEMORY": "out of memory",
    "CUDA_ERROR_NOT_INITIALIZED": "initialization error",
    "CUDA_ERROR_NO_DEVICE": "no CUDA-capable device is detected",
    "CUDA_ERROR_INVALID_DEVICE": "invalid device ordinal",
    "CUDA_ERROR_INVALID_CONTEXT": "invalid device context",
    "CUDA_ERROR_INVALID_HANDLE": "invalid resource handle",
    "CUDA_ERROR_NOT_FOUND": "named symbol not found",
    "CUDA_ERROR_NOT_READY": "device not ready",
    "CUDA_ERROR_ILLEGAL_ADDRESS": "an illegal memory access was encountered",
    "CUDA_ERROR_LAUNCH_FAILED": "unspecified launch failure",
    "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED": "operation not permitted when stream is capturing",
    "CUDA_ERROR_UNKNOWN": "unknown error",
}
# The real driver's text for these is not known: the simulator gives cuda.h's sentence.
UNKNOWN_TEXT = {
    "CUDA_ERROR_MULTICAST_RESOURCE_FULL",
    "CUDA_ERROR_CONTEXT_ALREADY_CURRENT",
    "CUDA_ERROR_KEY_ROTATION",
}


def _table_of_the_simulator():
    return json.loads(
        run_python(
            "import json, greenres.sim as s; s.install('h100')\n"
            "from support.errortable import error_table; print(json.dumps(error_table()))",
            GREENRES_SIM=None,
        )
    )


@pytest.mark.gpu
def test_well_known_texts_are_the_real_drivers():
    for name, text in KNOWN.items():
        err, got = cu.cuGetErrorString(getattr(cu.CUresult, name))
        assert err == cu.CUresult.CUDA_SUCCESS and got.decode() == text, name


@pytest.mark.gpu
def test_every_name_and_text_matches_the_simulators():
    here, sim = error_table(), _table_of_the_simulator()
    for name, (got_name, text) in here.items():
        assert got_name == name
        if name in sim and name not in UNKNOWN_TEXT:
            assert sim[name] == [got_name, text], name
    assert set(KNOWN) <= set(sim)
