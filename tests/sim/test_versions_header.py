"""The simulator's feature gates (src/simdriver/versions.h) are greenres.cuda_versions'
numbers: a version changed on one side only would make the simulator and the planner
disagree about what a driver can do."""

import re
from pathlib import Path

import greenres.cuda_versions as versions
import greenres.sim as sim

HEADER = Path(__file__).resolve().parents[2] / "src" / "simdriver" / "versions.h"
NAMES = {
    "kGreenContexts": versions.GREEN_CONTEXTS,
    "kWorkqueues": versions.WORKQUEUES,
    "kLocalityDomains": versions.LOCALITY_DOMAINS,
    "kDefault": sim.DEFAULT_DRIVER_VERSION,
}


def test_the_simulators_version_gates_are_greenres_versions():
    found = dict(re.findall(r"constexpr int (k\w+) = (\d+);", HEADER.read_text()))
    assert {name: int(value) for name, value in found.items()} == NAMES
