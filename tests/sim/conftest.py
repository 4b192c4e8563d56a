"""Simulator tests: one process-wide simulated machine (2 x H100, driver 13.1) and a
current primary context per test. Skipped entirely on a real GPU run.
"""

import os

import pytest

if os.environ.get("GREENRES_TEST_REAL_DRIVER") == "1":
    collect_ignore_glob = ["test_*.py"]
else:
    import greenres.sim as sim

    from support.simhelpers import check, driver

    @pytest.fixture(scope="session", autouse=True)
    def _init():
        check(driver.cuInit(0))

    @pytest.fixture(autouse=True)
    def _no_destroyed_handles():
        """Correct use passes no destroyed handle: a test that leaves a destroyed_handle hazard
        behind fails. Tests that pass destroyed handles on purpose take theirs with
        support.simhelpers.take_destroyed_handle_hazards()."""
        sim.clear_hazards()
        yield
        left = [h for h in sim.hazards() if h.startswith("destroyed_handle")]
        sim.clear_hazards()
        if left:
            pytest.fail(f"the test passed destroyed handles to the driver: {left}")

    @pytest.fixture
    def ctx():
        """The primary context of device 0, retained and current for the test; released after."""
        dev = check(driver.cuDeviceGet(0))
        primary = check(driver.cuDevicePrimaryCtxRetain(dev))
        check(driver.cuCtxPushCurrent(primary))
        yield primary
        sim.set_op_delay_us(0)
        sim.clear_faults()
        # Pop and release even when the synchronisation fails, so that one broken test does
        # not leave its context current (and the primary context retained) for the next ones.
        try:
            err = driver.cuCtxSynchronize()[0]
        finally:
            check(driver.cuCtxPopCurrent())
            check(driver.cuDevicePrimaryCtxRelease(dev))
        if err == driver.CUresult.CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED:
            pytest.fail(
                "the test left a stream capture in progress (cuCtxSynchronize: "
                "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED); end every capture it begins"
            )
        check((err,))
