"""The exception classes of greenres.

Every class subclasses :class:`GreenresError` and the built-in that fits the failure, so
callers can catch either ``greenres.GreenresError`` or the usual ``ValueError`` /
``RuntimeError`` / ``NotImplementedError``.
"""

from __future__ import annotations

__all__ = [
    "ClosedError",
    "ContextStackWarning",
    "DestroyError",
    "DriverError",
    "DriverTooOldError",
    "FormError",
    "GreenresError",
    "LayoutMismatchError",
    "PlanError",
    "SpecError",
    "ThreadOwnershipError",
    "UsageError",
]


class GreenresError(Exception):
    """Base class of every error greenres raises on purpose."""


class DriverError(GreenresError, RuntimeError):
    """A CUDA driver call failed.

    Attributes:
        function: the driver function that failed, e.g. ``"cuGreenCtxCreate"``.
        code: the ``CUresult`` as an int.
        name: the CUDA error name, e.g. ``"CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION"``.
        description: the driver's text for the error.
    """

    def __init__(self, function: str, code: int, name: str, description: str) -> None:
        self.function = function
        self.code = code
        self.name = name
        self.description = description
        super().__init__(f"{function} failed: {name}: {description}")

    def __reduce__(self):
        return (type(self), (self.function, self.code, self.name, self.description))


class DestroyError(DriverError):
    """``close()`` destroyed everything it could, but some driver handles could not be
    destroyed: each failed call is in :attr:`failures` (a :class:`DriverError` each), and
    its handle is still alive. The object is closed (it cannot be used); calling
    ``close()`` again retries the failed calls, in the same order.

    ``function``, ``code``, ``name`` and ``description`` are those of the first failure.

    Attributes:
        what: the object that was closed, e.g. ``"greenres.Layout"``.
        failures: every failed destroy call, in the order they were made.
    """

    def __init__(self, what: str, failures: tuple[DriverError, ...] | list[DriverError]) -> None:
        failures = tuple(failures)
        if not failures:
            raise ValueError("DestroyError needs at least one failure")
        first = failures[0]
        self.what = what
        self.failures = failures
        super().__init__(first.function, first.code, first.name, first.description)
        calls = "; ".join(str(f) for f in failures)
        count = len(failures)
        self.args = (
            f"closing {what}: {count} destroy call{'s' if count != 1 else ''} failed and "
            f"{'their handles are' if count != 1 else 'its handle is'} still alive (close() "
            f"again retries): {calls}",
        )

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self):
        return (type(self), (self.what, self.failures))


class DriverTooOldError(GreenresError, NotImplementedError):
    """A feature needs a newer CUDA driver or newer cuda-bindings than the ones loaded."""


class SpecError(GreenresError, ValueError):
    """A partition spec, isolation schema or spec file is invalid."""


class FormError(GreenresError, RuntimeError):
    """A user context form of an isolation key (``greenres.isolation.register_form``)
    raised, or returned data that is not JSON-ready. The message names the form; the
    form's own exception is the ``__cause__``."""


class PlanError(GreenresError, ValueError):
    """A valid spec cannot be planned on the given device."""


class LayoutMismatchError(PlanError):
    """The ranks of a job planned different layouts (:mod:`greenres.distributed`). Raised
    on every rank; the message names the ranks of each plan and what differs.

    Attributes:
        fingerprints: each rank's plan fingerprint, in rank order.
        ranks: the ranks of each distinct plan, first the plan of rank 0.
    """

    def __init__(self, message: str, *, fingerprints=(), ranks=()) -> None:
        super().__init__(message)
        self.fingerprints = list(fingerprints)
        self.ranks = [list(r) for r in ranks]

    def __reduce__(self):  # picklable (multiprocessing, torch's elastic error files)
        return (_rebuild_mismatch, (str(self), self.fingerprints, self.ranks))


def _rebuild_mismatch(message, fingerprints, ranks):
    return LayoutMismatchError(message, fingerprints=fingerprints, ranks=ranks)


class ClosedError(GreenresError, ValueError):
    """An object was used after ``close()`` (like I/O on a closed file)."""


class ContextStackWarning(GreenresError, RuntimeWarning):
    """A partition's exit found this thread's context stack changed by the code inside the
    partition (a context pushed and not popped, the partition's context replaced with
    ``cuCtxSetCurrent`` or popped) and put it back as it was at enter. The warning says
    what it undid; the exit itself succeeded."""


class UsageError(GreenresError, RuntimeError):
    """An operation was called in a state that does not allow it (exiting partitions out
    of order, ending a capture that was never begun, closing a layout while one of its
    streams is capturing, ...). The object is unchanged and still usable."""


class ThreadOwnershipError(UsageError):
    """A partition was entered on one thread while current on another, or exited (popped)
    on a thread that did not enter (set) it. The driver does no locking, so greenres
    refuses. A :class:`UsageError`: ``except UsageError`` catches every misuse."""
