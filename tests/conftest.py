"""Test-session setup shared by every test folder.

By default the whole session runs against greenres' simulated driver with two H100s
(``GREENRES_SIM=2xh100``, installed when greenres is first imported). To run the
GPU-meaningful tests on a real GPU: ``GREENRES_TEST_REAL_DRIVER=1 pytest -m gpu``; tests
marked ``sim_only`` (they read the simulator's introspection) are then skipped.
"""

import os

import pytest

REAL_DRIVER = os.environ.get("GREENRES_TEST_REAL_DRIVER") == "1"

if not REAL_DRIVER:
    os.environ.setdefault("GREENRES_SIM", "2xh100")

from support import hypothesis_profiles  # noqa: E402,F401  (loads the chosen profile)


def pytest_collection_modifyitems(config, items):
    if not REAL_DRIVER:
        return
    skip = pytest.mark.skip(reason="reads the simulated driver's introspection")
    for item in items:
        if "sim_only" in item.keywords:
            item.add_marker(skip)
