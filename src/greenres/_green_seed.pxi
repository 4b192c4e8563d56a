# Included by _driver.pyx (one extension module; one file per concept).
# PyTorch's green contexts as written (torch.cuda.green_contexts, CUDAGreenContext.cpp):
# GreenContext.create makes a one-partition Layout, so the seed's API runs on the same
# split, lifecycle and enter/exit paths as greenres' own (docs/seeds.md).

import warnings

# The name of the one partition of a created green context's layout.
_CREATED_NAME = "green_context"
# Set by the first GreenContext.create; the second one warns (once) that splits can overlap.
cdef bint _created_one = False
cdef bint _warned_overlap = False


cdef int _primary_context_active(cydriver.CUdevice device) except -1:
    cdef unsigned int flags = 0
    cdef int active = 0
    check(cydriver.cuDevicePrimaryCtxGetState(device, &flags, &active),
          "cuDevicePrimaryCtxGetState")
    return active


def _create_green_context(num_sms, device_id):
    """GreenContext.create: the seed's guards, then a Layout of one partition."""
    global _created_one, _warned_overlap
    num_sms = _require_int("num_sms", num_sms)
    if num_sms < 1:
        raise ValueError(f"'num_sms' must be >= 1 (got {num_sms})")
    if device_id is not None:
        device_id = _require_int("device_id", device_id)
    _ensure_init()
    if driver_version() < TORCH_GREEN_CONTEXTS:
        raise _too_old("GreenContext.create (PyTorch's green contexts)", TORCH_GREEN_CONTEXTS)
    if device_id is not None:
        _require_device_ordinal("device_id", device_id)
    device = Device(_current_ordinal() if device_id is None else device_id)
    if not _primary_context_active(device._device):
        # as the seed: make one (the layout retains it while the green context lives)
        warnings.warn(
            f"GreenContext.create: device {device.ordinal} had no primary context; "
            "creating one", UserWarning, stacklevel=3)
    if _created_one and not _warned_overlap:
        _warned_overlap = True
        warnings.warn(
            "GreenContext.create makes a split of its own each call: green contexts from "
            "two calls can share SMs (docs/driver-facts.md). For disjoint partitions make "
            "them with one greenres.Layout.create({...})", UserWarning, stacklevel=3)
    layout = Layout.create({_CREATED_NAME: num_sms}, device)
    part = layout[_CREATED_NAME]
    (<GreenContext>part)._owned_layout = layout
    _created_one = True
    return part


cdef object _check_owned_open(GreenContext part):
    """``with GreenContext.create(n) as g:`` returns g (the block's end closes it)."""
    part._check_open()
    return part
