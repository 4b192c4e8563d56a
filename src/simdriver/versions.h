// The CUDA driver versions that gate what the simulator models, named once, as
// cuDriverGetVersion reports them (13010 is 13.1). They are greenres/cuda_versions.py's
// numbers (tests/sim/test_versions_header.py compares the two); the per-function ABI
// versions of proc_address.cpp's table are cudaTypedefs.h's, not feature gates.
#pragma once

namespace sim::versions {

constexpr int kGreenContexts = 12040;    // GREEN_CONTEXTS: the oldest driver simulated
constexpr int kWorkqueues = 13010;       // WORKQUEUES: the workqueue resource types
constexpr int kLocalityDomains = 13040;  // LOCALITY_DOMAINS: attributes, flags, descriptor rule
constexpr int kDefault = 13010;          // greenres.sim.DEFAULT_DRIVER_VERSION

}  // namespace sim::versions
