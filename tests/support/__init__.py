"""Helpers shared by greenres' tests, imported by name (``from support.rthelpers import
...``): the pytest configuration puts ``tests/`` on the path (``pythonpath`` in
pyproject.toml), so ``python -m pytest`` from the repository root finds them.

* ``childprocess``: run Python in a fresh process (another simulated machine).
* ``hypothesis_profiles``: the ``ci`` and ``thorough`` settings profiles.
* ``strategies``: hypothesis strategies for specs, facts, schemas.
* ``streamgate``: hold a stream on a host function until the test opens a gate.
* ``rthelpers``: runtime-test helpers (memory, layouts, leak checks).
* ``simhelpers``: simulator-test helpers (cuda.bindings calls checked).
* ``plan_driver_checks``: plan == driver checks, also run as a script in children.
"""
