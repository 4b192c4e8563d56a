"""Hypothesis settings profiles for the test suite.

* ``ci`` (the default): few examples, no deadline, so tests/declarative runs in well under
  20 seconds.
* ``thorough``: many examples, for a nightly run or before a release.

Choose with ``GREENRES_HYPOTHESIS_PROFILE=thorough``. tests/conftest.py imports this module.
"""

import os

from hypothesis import HealthCheck, settings

__all__ = ["PROFILE"]

settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("thorough", settings.get_profile("ci"), max_examples=2000)

#: The profile loaded for this run.
PROFILE = os.environ.get("GREENRES_HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
