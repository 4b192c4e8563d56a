"""The model of the lifecycle state machine (tests/runtime/test_lifecycle_machine.py): what
the machine believes is alive, one class per kind of greenres object, and the driver calls
each operation may make (where it arms faults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cuda.bindings import driver as cu

from greenres import Event, Graph, Layout

from support.rthelpers import ok

__all__ = [
    "CALLS",
    "DESTROY_CALLS",
    "EVENTS_PER_PARTITION",
    "GRANULE",
    "MAX_LAYOUTS",
    "OOM",
    "POOL_EVENT_CALLS",
    "CaptureModel",
    "EventModel",
    "GraphModel",
    "LayoutModel",
    "PartitionModel",
    "StreamModel",
    "capture_mode",
    "fence_events",
]

OOM = "CUDA_ERROR_OUT_OF_MEMORY"
# A layout's handoff pool makes a slot's event at the slot's first handoff: one thread (the
# machine's) claims one slot, so a layout holds one pool event once a handoff through its
# pool got past these calls (push the primary context, create the event).
POOL_EVENT_CALLS = ("cuCtxPushCurrent", "cuEventCreate")
EVENTS_PER_PARTITION = 2  # enter and exit events of every partition (all modes)


def fence_events(layout) -> int:
    """Layout.switch's fence events: one per partition of a layout with modes to switch
    between (a layout of one mode never switches, and makes none)."""
    return len(layout.all_parts()) if len(layout.modes) > 1 else 0


MAX_LAYOUTS = 3
GRANULE = 512

#: The calls that destroy or release what greenres made. When one fails, close() raises
#: DestroyError, has closed the object, and another close() destroys what is left.
DESTROY_CALLS = [
    "cuStreamDestroy",
    "cuEventDestroy",
    "cuGraphExecDestroy",
    "cuGraphDestroy",
    "cuGreenCtxDestroy",
    "cuMemFree",
    "cuDevicePrimaryCtxRelease",
]

#: Driver functions each operation may call (what call_counts is asked about); the machine
#: learns which of them an operation really calls, and how often, before arming a fault.
CALLS = {
    "create": [
        "cuDevicePrimaryCtxRetain",
        "cuCtxPushCurrent",
        "cuCtxPopCurrent",
        "cuEventCreate",
        "cuDevSmResourceSplitByCount",
        "cuDevSmResourceSplit",
        "cuDevResourceGenerateDesc",
        "cuGreenCtxCreate",
        "cuCtxFromGreenCtx",
        "cuGreenCtxGetDevResource",
        "cuGreenCtxStreamCreate",
        "cuStreamGetPriority",
    ],
    "close_layout": ["cuStreamIsCapturing", *DESTROY_CALLS],
    "enter": ["cuCtxGetCurrent", "cuEventRecord", "cuCtxPushCurrent", "cuStreamWaitEvent"],
    "exit": ["cuEventRecord", "cuCtxPopCurrent", "cuStreamWaitEvent"],
    "close_stream": ["cuStreamIsCapturing", "cuStreamDestroy"],
    "event_close": ["cuEventDestroy", "cuDevicePrimaryCtxRelease"],
    "close_graph": [
        "cuStreamEndCapture",
        "cuStreamIsCapturing",
        "cuThreadExchangeStreamCaptureMode",
        *DESTROY_CALLS,
    ],
    "capture_end": ["cuStreamEndCapture"],
    "create_stream": ["cuGreenCtxStreamCreate", "cuStreamGetPriority"],
    "handoff": ["cuEventRecord", "cuStreamWaitEvent"],
    "switch": ["cuEventRecord", "cuStreamWaitEvent"],
    "event_create": [
        "cuDevicePrimaryCtxRetain",
        "cuCtxPushCurrent",
        "cuEventCreate",
        "cuCtxPopCurrent",
    ],
    "event_record": ["cuEventRecord"],
    "event_wait": ["cuStreamWaitEvent"],
    "event_query": ["cuEventQuery"],
    "event_sync": ["cuEventSynchronize"],
    "stream_sync": ["cuStreamSynchronize", "cuStreamQuery"],
    "capture_begin": ["cuStreamBeginCapture"],
    "capture_alloc": [
        "cuDevicePrimaryCtxRetain",
        "cuCtxPushCurrent",
        "cuThreadExchangeStreamCaptureMode",
        "cuMemAlloc",
        "cuCtxPopCurrent",
    ],
    "instantiate": ["cuGraphInstantiateWithFlags", "cuGraphDestroy"],
    "replay": ["cuGraphInstantiateWithFlags", "cuGraphDestroy", "cuGraphLaunch"],
}


class _Short:
    """Short reprs in hypothesis' reports (it pretty-prints dataclasses field by field)."""

    def _repr_pretty_(self, printer, cycle):
        printer.text(repr(self))


@dataclass(eq=False)
class LayoutModel(_Short):
    """A layout."""

    obj: Layout
    modes: dict  # mode name -> [PartitionModel]
    mode: object
    modal: bool
    open: bool = True
    pool_events: int = 0  # made by handoffs through its pool (see POOL_EVENT_CALLS)

    def __repr__(self):
        return f"LayoutModel({self.obj!r})"

    def all_parts(self):
        return [p for parts in self.modes.values() for p in parts]


@dataclass(eq=False)
class PartitionModel(_Short):
    """A partition (of any mode)."""

    obj: object
    layout: LayoutModel
    mode: object
    plan_streams: int
    default: StreamModel = None
    planned_extras: list = field(default_factory=list)
    created: list = field(default_factory=list)  # create_stream() streams (open or closed)

    def __repr__(self):
        return f"PartitionModel({self.obj!r}, mode={self.mode!r})"

    def live_streams(self):
        """Default stream first, then the other live ones (plan extras, created)."""
        extras = [s for s in self.planned_extras + self.created if not s.closed]
        return [self.default, *extras]


@dataclass(eq=False)
class StreamModel(_Short):
    """A stream."""

    obj: object
    part: PartitionModel
    owned: bool
    closed: bool = False

    def __repr__(self):
        return f"StreamModel({self.obj!r}, owned={self.owned})"

    @property
    def alive(self):
        return not self.closed and self.part.layout.open


@dataclass(eq=False)
class EventModel(_Short):
    """A user event."""

    obj: Event
    closed: bool = False
    recorded_in_capture: bool = False  # its last record was captured

    def __repr__(self):
        return f"EventModel(timing={self.obj.timing}, closed={self.closed})"


@dataclass(eq=False)
class GraphModel(_Short):
    """A graph."""

    obj: Graph
    keep: bool
    state: str = "empty"  # empty, capturing, captured, instantiated
    closed: bool = False
    orphaned: bool = False
    graph_held: bool = False
    exec_held: bool = False
    origin: StreamModel = None
    layout: LayoutModel = None  # the layout whose stream it was captured on (until reset)
    allocations: int = 0  # blocks of the graph's own pool
    has_pool: bool = False

    def __repr__(self):
        return f"GraphModel({self.obj!r})"


@dataclass(eq=False)
class CaptureModel(_Short):
    graph: GraphModel
    members: set  # SMs in the capture (the origin and the streams forked into it)


def capture_mode():
    """This thread's capture mode (cuThreadExchangeStreamCaptureMode, put back at once)."""
    relaxed = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED
    old = ok(cu.cuThreadExchangeStreamCaptureMode(relaxed))
    ok(cu.cuThreadExchangeStreamCaptureMode(old))
    return old
