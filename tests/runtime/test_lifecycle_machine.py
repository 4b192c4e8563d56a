"""The whole lifecycle as a hypothesis state machine (docs/style.md: "hypothesis stateful
testing"): layouts, partitions, enter/exit, streams, handoffs, events, graphs, modes and
driver faults, in any order, against a model of what must be alive.

After every step the simulator's live objects must be exactly what the model says, the
thread's current context must be the innermost entered partition's (or the baseline), no
hazard may be recorded and the partitions of one mode must hold disjoint SMs. Each step may
arm a fault (``CUDA_ERROR_OUT_OF_MEMORY``) on a driver function the operation calls (learned
with ``call_counts``): the operation must then raise DriverError naming that function and
change nothing, or succeed when the fault was not reached. Every fault point is armed.

The model lives in ``support/lifecycle_model.py``; the bugs the machine found each have a
deterministic reproducer in ``test_lifecycle_reproducers.py``.
"""

from __future__ import annotations

import pytest
from cuda.bindings import driver as cu
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

import greenres
from greenres import (
    ClosedError,
    DestroyError,
    DriverError,
    Event,
    Graph,
    GreenresError,
    Layout,
    ThreadOwnershipError,
    UsageError,
)

from support.lifecycle_model import (
    CALLS,
    EVENTS_PER_PARTITION,
    GRANULE,
    MAX_LAYOUTS,
    OOM,
    POOL_EVENT_CALLS,
    CaptureModel,
    EventModel,
    GraphModel,
    LayoutModel,
    PartitionModel,
    StreamModel,
    capture_mode,
    fence_events,
)
from support.rthelpers import SIM, current_context, memset, no_resource_warning, ok

pytestmark = [pytest.mark.sim_only, pytest.mark.gpu]

if SIM:
    import greenres.sim as sim

# ----------------------------------------------------------------------------- strategies


_names = st.text("abcdefghij", min_size=1, max_size=4)


@st.composite
def _mappings(draw):
    names = draw(st.lists(_names, min_size=1, max_size=3, unique=True))
    budget = 132
    mapping = {}
    for name in names:
        sms = draw(st.integers(1, 4)) * 8
        if sms > budget:
            break
        mapping[name] = sms
        budget -= sms
    return mapping or {"a": 8}


class LifecycleMachine(RuleBasedStateMachine):
    # Partitions (of every mode) go in the bundle when their layout is made; a rule about a
    # layout takes one of its partitions. Streams are drawn from the model (every stream
    # ever made, the closed ones too), so that few steps reach them.
    parts = Bundle("parts")
    events = Bundle("events")
    graphs = Bundle("graphs")

    def __init__(self):
        super().__init__()
        greenres.Device(0)  # cuInit
        sim.clear_faults()
        sim.clear_hazards()
        sim.set_op_delay_us(0)
        self.baseline = sim.live_objects()
        self.baseline_ctx = current_context()
        self.baseline_mode = capture_mode()
        self.baseline_is_primary = False
        if self.baseline_ctx:
            device = ok(cu.cuDeviceGet(0))
            primary = ok(cu.cuDevicePrimaryCtxRetain(device))
            self.baseline_is_primary = int(primary) == self.baseline_ctx
            ok(cu.cuDevicePrimaryCtxRelease(device))
        self.layout_models: list[LayoutModel] = []
        self.stream_models: list[StreamModel] = []
        self.event_models: list[EventModel] = []
        self.graph_models: list[GraphModel] = []
        # (partition, caller stream: a StreamModel, None or "legacy")
        self.stack: list[tuple[PartitionModel, object]] = []
        self.capture: CaptureModel | None = None
        self.learned: dict[str, dict[str, int]] = {}
        self.faults_hit = 0
        STATS["examples"] += 1

    # ------------------------------------------------------------------ fault plumbing

    def _counts(self, op):
        return sim.call_counts(*CALLS.get(op, ()))

    def _arm(self, data, op):
        """Maybe arm a fault on a function ``op`` was seen calling; returns (function,
        counts before) so that _learn can record what the operation called. The draws do
        not depend on what was learned (hypothesis replays them)."""
        before = self._counts(op)
        armed = data.draw(st.integers(0, 3), label="fault?") == 0
        which = data.draw(st.integers(0, 255), label="fault function")
        nth = data.draw(st.integers(1, 64), label="nth call")
        seen = self.learned.get(op, {})
        if armed and seen:
            function = sorted(seen)[which % len(seen)]
            nth = (nth - 1) % seen[function] + 1
            sim.inject_fault(function, OOM, nth=nth)
            self.armed_nth = nth
            return function, before
        return None, before

    def _learn(self, op, armed):
        function, before = armed
        sim.clear_faults()
        if function is not None:
            return
        after = self._counts(op)
        table = self.learned.setdefault(op, {})
        for f, n in after.items():
            if n - before[f] > 0:
                table[f] = max(table.get(f, 0), n - before[f])

    def _failed(self, armed, error):
        """The operation raised DriverError: it must be the armed fault."""
        function, _ = armed
        sim.clear_faults()
        assert function is not None, f"unexpected driver failure: {error}"
        self.faults_hit += 1
        assert error.function == function, (error.function, function, str(error))
        assert error.name == OOM, str(error)

    def _destroy_failed(self, armed, error, close):
        """``close()`` raised DestroyError for the armed destroy call: the object is closed
        anyway, and ``close()`` again (the fault gone) destroys what was left, which the
        live-objects invariant checks after the step."""
        assert isinstance(error, DestroyError), str(error)
        function, _ = armed
        self._failed(armed, error)
        assert [f.function for f in error.failures] == [function], str(error)
        close()

    # ------------------------------------------------------------------ capture model

    def _member(self, s):
        return self.capture is not None and s in self.capture.members

    def _handoff_effect(self, src, dst, members):
        """What ``dst`` waiting on an event recorded on ``src`` does to the capture:
        returns the new member set, or None when it would break the capture (isolation, or
        the legacy stream joining it: both the driver's rules, not greenres')."""
        if self.capture is None:
            return members
        src_in, dst_in = src in members, dst in members
        if src_in and not dst_in:
            if dst is None or dst == "legacy":
                return None
            return members | {dst}
        if dst_in and not src_in:
            return None
        return members

    def _apply(self, new_members):
        if self.capture is not None:
            self.capture.members = new_members

    # ------------------------------------------------------------------ layouts

    def _draw_plan(self, data):
        kind = data.draw(st.sampled_from(["mapping", "spec", "modal"]), label="plan kind")
        mechanism = data.draw(st.sampled_from(["auto", "groups", "structured"]))
        device = greenres.Device(0)
        try:
            if kind == "spec":
                from support.strategies import partition_specs

                spec = data.draw(partition_specs(max_partitions=3, small=True, backfill=None))
                return spec.plan(device, mechanism=mechanism)
            if kind == "modal":
                from support.strategies import modal_specs

                spec = data.draw(modal_specs(max_modes=3, max_partitions=3, small=True))
                return spec.plan(device, mechanism=mechanism)
        except (GreenresError, ValueError):
            pass  # a spec this device cannot hold: use a mapping instead
        return data.draw(_mappings(), label="mapping")

    @initialize(target=parts, data=st.data())
    def first_layout(self, data):
        return self.create_layout(data)

    @precondition(lambda self: sum(lm.open for lm in self.layout_models) < MAX_LAYOUTS)
    @rule(target=parts, data=st.data())
    def create_layout(self, data):
        plan = self._draw_plan(data)
        armed = self._arm(data, "create")
        try:
            layout = Layout.create(plan)
        except DriverError as e:
            self._failed(armed, e)
            return multiple()
        self._learn("create", armed)
        modes = {}
        lm = LayoutModel(layout, modes, layout.mode, modal=layout.mode is not None)
        for mode in layout.modes:
            plan_of_mode = plan if not lm.modal else plan[mode]
            if isinstance(plan, dict):
                plan_of_mode = layout.plan
            parts = []
            for obj, pp in zip(layout.mode_partitions(mode), plan_of_mode.partitions, strict=True):
                assert obj.name == pp.name and obj.sm_count == pp.sm_count
                pm = PartitionModel(obj, lm, mode, max(pp.streams, 1))
                streams = obj.streams
                assert len(streams) == pm.plan_streams
                pm.default = StreamModel(streams[0], pm, owned=False)
                # the plan's other streams can be closed early, like create_stream()'s
                pm.planned_extras = [StreamModel(s, pm, owned=True) for s in streams[1:]]
                self.stream_models.extend([pm.default, *pm.planned_extras])
                parts.append(pm)
            modes[mode] = parts
        self.layout_models.append(lm)
        return multiple(*lm.all_parts())

    @rule(part=parts)
    def look_up(self, part):
        layout = part.layout
        if not layout.open:
            with pytest.raises(ClosedError):
                layout.obj[part.obj.name]
            with pytest.raises(ClosedError):
                layout.obj.mode_partitions(part.mode)
            with pytest.raises(ClosedError):
                _ = part.obj.stream
            return
        assert layout.obj.mode_partitions(part.mode) == tuple(
            p.obj for p in layout.modes[part.mode]
        )
        if part.mode == layout.mode:
            assert layout.obj[part.obj.name] is part.obj
        assert part.obj.stream is part.default.obj
        # the plan's streams (those closed early are gone); create_stream()'s are not there
        assert part.obj.streams == tuple(
            s.obj for s in [part.default, *part.planned_extras] if not s.closed
        )

    def _close_refusal(self, lm):
        if any(pm.obj.entered for pm in lm.all_parts()):
            assert any(pm.layout is lm for pm, _ in self.stack)
            return ThreadOwnershipError
        if self.capture is not None and any(
            s.part.layout is lm for s in self.capture.members if isinstance(s, StreamModel)
        ):
            return UsageError
        return None

    @rule(part=parts, data=st.data())
    def close_layout(self, part, data):
        layout = part.layout
        if not layout.open:
            layout.obj.close()  # idempotent
            assert layout.obj.closed
            return
        # A stream of this layout that an entered partition (of another layout) returns
        # to on exit: closing it would make that exit wait on a destroyed stream.
        if any(isinstance(f, StreamModel) and f.part.layout is layout for _, f in self.stack):
            return
        refusal = self._close_refusal(layout)
        armed = self._arm(data, "close_layout")
        if refusal is not None:
            try:
                with pytest.raises(refusal):
                    layout.obj.close()
            except DriverError as e:
                self._failed(armed, e)
            sim.clear_faults()
            assert not layout.obj.closed
            return
        try:
            layout.obj.close()
        except DestroyError as e:
            self._destroy_failed(armed, e, layout.obj.close)
        except DriverError as e:
            self._failed(armed, e)
            assert not layout.obj.closed
            return
        else:
            self._learn("close_layout", armed)
        layout.open = False
        assert layout.obj.closed
        for gm in self.graph_models:
            if gm.layout is layout and not gm.closed:
                gm.orphaned = True
                gm.graph_held = gm.exec_held = False
        with pytest.raises(ClosedError):
            len(layout.obj)

    @rule(part=parts, data=st.data())
    def switch(self, part, data):
        layout = part.layout
        # a layout without modes is drawn None (its .mode) or an unknown name: both refused
        mode = data.draw(st.sampled_from([*layout.modes, "no such mode"]), label="mode")
        if not layout.open:
            with pytest.raises(ClosedError):
                layout.obj.switch(mode)
            return
        if not layout.modal:
            with pytest.raises(KeyError, match="has no modes"):
                layout.obj.switch(mode)
            return
        if mode not in layout.modes:
            with pytest.raises(KeyError, match="no mode"):
                layout.obj.switch(mode)
            return
        if mode == layout.mode:
            assert layout.obj.switch(mode) == tuple(p.obj for p in layout.modes[mode])
            return
        old, new = layout.modes[layout.mode], layout.modes[mode]
        if any(pm.obj.entered for pm in old):
            with pytest.raises(ThreadOwnershipError, match="exit it before switching"):
                layout.obj.switch(mode)
            return
        members = self._switch_effect(old, new)
        if members is None:
            return  # the fence would cross the capture boundary (the driver refuses)
        # A partition's other live streams join its default stream through the layout's
        # pool before its fence is recorded: the first such handoff makes the pool's event,
        # after one fence record (cuEventRecord) per old partition before it.
        with_extras = [len(q.live_streams()) > 1 for q in old]
        records_before_pool = with_extras.index(True) if any(with_extras) else None
        armed = self._arm(data, "switch")
        try:
            got = layout.obj.switch(mode)
        except DriverError as e:
            self._failed(armed, e)
            assert layout.obj.mode == layout.mode
            if records_before_pool is not None and not (
                e.function in POOL_EVENT_CALLS
                or (e.function == "cuEventRecord" and self.armed_nth <= records_before_pool)
            ):
                layout.pool_events = 1
            # a partial fence may have forked streams into a capture: end it conservatively
            if self.capture is not None and members != self.capture.members:
                self._abandon_capture()
            return
        self._learn("switch", armed)
        self._apply(members)
        if records_before_pool is not None:
            layout.pool_events = 1
        layout.mode = mode
        assert got == tuple(p.obj for p in new)
        assert layout.obj.mode == mode

    def _switch_effect(self, old, new):
        if self.capture is None:
            return set()
        members = set(self.capture.members)
        fence_in_capture = {}
        for q in old:
            for s in q.live_streams()[1:]:
                members = self._handoff_effect(s, q.default, members)
                if members is None:
                    return None
            fence_in_capture[q] = q.default in members
        for p in new:
            for t in p.live_streams():
                for q in old:
                    src = q.default if fence_in_capture[q] else "outside"
                    members = self._handoff_effect(src, t, members)
                    if members is None:
                        return None
        return members

    # ------------------------------------------------------------------ enter / exit

    @rule(part=parts, data=st.data())
    def enter(self, part, data):
        use_from = data.draw(st.booleans(), label="from_stream?")
        if not part.layout.open:
            with pytest.raises(ClosedError):
                part.obj.enter()
            return
        if len(self.stack) >= 64:
            with pytest.raises(UsageError, match="at most 64"):
                part.obj.enter()
            return
        if use_from:
            live_streams = [s for s in self.stream_models if s.alive]
            caller = data.draw(st.sampled_from(live_streams), label="from_stream")
        elif self.stack:
            caller = self.stack[-1][0].default
        elif self.baseline_is_primary:
            caller = "legacy"  # the primary context's legacy stream
        else:
            caller = None
        members = self.capture.members if self.capture else set()
        if caller is not None:
            members = self._handoff_effect(caller, part.default, members)
            if members is None:
                return
        armed = self._arm(data, "enter")
        try:
            if use_from:
                scope = part.obj.enter(from_stream=caller.obj)
                assert scope.partition is part.obj
            elif data.draw(st.booleans(), label="with-statement?"):
                assert part.obj.__enter__() is part.obj
            else:
                part.obj.enter()
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn("enter", armed)
        self._apply(members)
        self.stack.append((part, caller))
        assert part.obj.entered

    @rule(part=parts, data=st.data())
    def exit(self, part, data):
        how = data.draw(st.sampled_from(["exit", "__exit__"]), label="how")

        def call():
            if how == "exit":
                part.obj.exit()
            else:
                assert part.obj.__exit__(None, None, None) is False

        if not part.layout.open:
            with pytest.raises(ClosedError):
                call()
            return
        entered_here = [pm for pm, _ in self.stack]
        if part not in entered_here:
            with pytest.raises(ThreadOwnershipError, match="not entered on this thread"):
                call()
            return
        if self.stack[-1][0] is not part:
            with pytest.raises(UsageError, match="not the innermost"):
                call()
            return  # the invariants check that nothing changed
        caller = self.stack[-1][1]
        members = self.capture.members if self.capture else set()
        if caller is not None:
            members = self._handoff_effect(part.default, caller, members)
            if members is None:
                return
        armed = self._arm(data, "exit")
        try:
            call()
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn("exit", armed)
        self._apply(members)
        self.stack.pop()

    # ------------------------------------------------------------------ streams

    def _stream(self, data, label="stream"):
        return data.draw(st.sampled_from(self.stream_models), label=label)

    @rule(part=parts, priority=st.integers(-8, 3), data=st.data())
    def create_stream(self, part, priority, data):
        if not part.layout.open:
            with pytest.raises(ClosedError):
                part.obj.create_stream(priority)
            return
        armed = self._arm(data, "create_stream")
        try:
            obj = part.obj.create_stream(priority=priority)
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn("create_stream", armed)
        assert obj.priority == min(max(priority, -5), 0)  # the simulator's range is [-5, 0]
        assert obj.partition is part.obj
        sm = StreamModel(obj, part, owned=True)
        part.created.append(sm)
        self.stream_models.append(sm)

    @rule(data=st.data())
    def close_stream(self, data):
        stream = self._stream(data)
        if not stream.owned:
            with pytest.raises(ValueError, match="closed with its layout"):
                stream.obj.close()
            return
        if self._member(stream) or any(f is stream for _, f in self.stack):
            return  # closing a stream a capture or an exit still needs: user error
        if not stream.alive:
            stream.obj.close()  # idempotent
            stream.closed = True
            return
        armed = self._arm(data, "close_stream")
        try:
            stream.obj.close()
        except DestroyError as e:
            self._destroy_failed(armed, e, stream.obj.close)
        except DriverError as e:
            self._failed(armed, e)
            return
        else:
            self._learn("close_stream", armed)
        stream.closed = True
        assert stream.obj.closed
        with pytest.raises(ClosedError):
            _ = stream.obj.handle

    @rule(data=st.data())
    def handoff(self, data):
        src, dst = self._stream(data, "src"), self._stream(data, "dst")
        how = data.draw(st.sampled_from(["handoff", "wait", "raw"]), label="how")

        def call():
            if how == "handoff":
                greenres.handoff(src.obj, dst.obj)
            elif how == "wait":
                dst.obj.wait(src.obj)
            else:  # one side a raw int, the other the greenres Stream (the pool is used)
                greenres.handoff(src.obj, int(dst.obj))

        if not (src.alive and dst.alive):
            with pytest.raises(ClosedError):
                call()
            return
        members = self.capture.members if self.capture else set()
        members = self._handoff_effect(src, dst, members)
        if members is None:
            return
        # the pool of src's layout; Stream.wait: of the waiting stream's
        pool_owner = (dst if how == "wait" else src).part.layout
        armed = self._arm(data, "handoff")
        try:
            call()
        except DriverError as e:
            self._failed(armed, e)
            if e.function not in POOL_EVENT_CALLS:
                pool_owner.pool_events = 1
            return
        self._learn("handoff", armed)
        self._apply(members)
        pool_owner.pool_events = 1

    @rule(data=st.data())
    def synchronize_stream(self, data):
        stream = self._stream(data)
        if not stream.alive:
            with pytest.raises(ClosedError):
                stream.obj.synchronize()
            return
        if self._member(stream):
            return  # synchronizing a capturing stream is illegal (driver rule)
        armed = self._arm(data, "stream_sync")
        try:
            stream.obj.synchronize()
            assert stream.obj.query() is True
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn("stream_sync", armed)

    # ------------------------------------------------------------------ events

    @rule(target=events, timing=st.booleans(), data=st.data())
    def create_event(self, timing, data):
        armed = self._arm(data, "event_create")
        try:
            obj = Event(timing=timing)
        except DriverError as e:
            self._failed(armed, e)
            return multiple()
        self._learn("event_create", armed)
        em = EventModel(obj)
        self.event_models.append(em)
        return em

    @rule(event=events, data=st.data())
    def record_event(self, event, data):
        stream = self._stream(data)
        if event.closed or not stream.alive:
            with pytest.raises(ClosedError):
                event.obj.record(stream.obj)
            return
        armed = self._arm(data, "event_record")
        try:
            assert event.obj.record(stream.obj) is event.obj
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn("event_record", armed)
        event.recorded_in_capture = self._member(stream)

    @rule(event=events, data=st.data())
    def wait_event(self, event, data):
        stream = self._stream(data)
        if event.closed or not stream.alive:
            with pytest.raises(ClosedError):
                event.obj.wait(stream.obj)
            return
        members = self.capture.members if self.capture else set()
        if self.capture is not None:
            src = "captured" if event.recorded_in_capture else "outside"
            if event.recorded_in_capture:
                members = members | {"captured"}
            members = self._handoff_effect(src, stream, members)
            if members is None:
                return
            members = members - {"captured"}
        armed = self._arm(data, "event_wait")
        try:
            event.obj.wait(stream.obj)
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn("event_wait", armed)
        self._apply(members)

    @rule(event=events, data=st.data())
    def query_event(self, event, data):
        if event.closed:
            with pytest.raises(ClosedError):
                event.obj.query()
            return
        if event.recorded_in_capture:
            return  # querying an event recorded in a capture is illegal (driver rule)
        op = data.draw(st.sampled_from(["event_query", "event_sync"]))
        armed = self._arm(data, op)
        try:
            if op == "event_query":
                assert isinstance(event.obj.query(), bool)
            else:
                event.obj.synchronize()
                assert event.obj.query() is True
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn(op, armed)

    @rule(event=events, data=st.data())
    def close_event(self, event, data):
        if not event.closed:
            armed = self._arm(data, "event_close")
            try:
                event.obj.close()
            except DestroyError as e:
                self._destroy_failed(armed, e, event.obj.close)
            else:
                self._learn("event_close", armed)
        event.obj.close()
        event.closed = True
        with pytest.raises(ClosedError):
            _ = event.obj.handle

    # ------------------------------------------------------------------ graphs

    @initialize(target=graphs, keep=st.booleans())
    def first_graph(self, keep):
        """A graph from the start, so that captures (and what follows them) are common."""
        return self.create_graph(keep)

    @rule(target=graphs, keep=st.booleans())
    def create_graph(self, keep):
        gm = GraphModel(Graph(keep_graph=keep), keep)
        self.graph_models.append(gm)
        return gm

    @rule(graph=graphs, data=st.data())
    def capture_begin(self, graph, data):
        stream = self._stream(data)
        mode = data.draw(st.sampled_from(["thread_local", "global", "relaxed"]))
        if graph.closed or graph.orphaned:
            with pytest.raises(ClosedError):
                graph.obj.capture_begin(stream.obj, mode=mode)
            return
        if not stream.alive:  # the argument is checked first
            with pytest.raises(ClosedError):
                graph.obj.capture_begin(stream.obj, mode=mode)
            return
        if graph.state == "capturing":
            with pytest.raises(UsageError, match="already capturing"):
                graph.obj.capture_begin(stream.obj, mode=mode)
            return
        if graph.state != "empty":
            with pytest.raises(UsageError, match="holds a capture"):
                graph.obj.capture_begin(stream.obj, mode=mode)
            return
        if self.capture is not None:
            return  # one capture at a time keeps the model simple
        armed = self._arm(data, "capture_begin")
        try:
            graph.obj.capture_begin(stream.obj, mode=mode)
        except DriverError as e:
            self._failed(armed, e)
            assert not graph.obj.capturing
            return
        self._learn("capture_begin", armed)
        graph.state = "capturing"
        graph.origin = stream
        graph.layout = stream.part.layout
        self.capture = CaptureModel(graph, {stream})
        assert graph.obj.capturing

    @precondition(lambda self: self.capture is not None)
    @rule(nbytes=st.integers(1, 3 * GRANULE), data=st.data())
    def capture_work(self, nbytes, data):
        """Pool memory allocated during the capture, and a memset node on the origin."""
        gm = self.capture.graph
        armed = self._arm(data, "capture_alloc")
        try:
            buf = gm.obj.allocate(nbytes)
        except DriverError as e:
            self._failed(armed, e)
            # the graph's pool is made (retaining the primary context) on first use
            gm.has_pool = gm.has_pool or e.function != "cuDevicePrimaryCtxRetain"
            return
        self._learn("capture_alloc", armed)
        assert buf.nbytes == -(-nbytes // GRANULE) * GRANULE
        gm.has_pool = True
        gm.allocations += 1
        memset(buf.ptr, 7, buf.nbytes, gm.origin.obj)

    @precondition(lambda self: self.capture is not None)
    @rule(data=st.data())
    def capture_end(self, data):
        gm = self.capture.graph
        armed = self._arm(data, "capture_end")
        try:
            gm.obj.capture_end()
        except DriverError as e:
            self._failed(armed, e)
            assert gm.obj.capturing
            return
        self._learn("capture_end", armed)
        self.capture = None
        gm.state = "captured"
        gm.graph_held = True
        assert gm.obj.captured and not gm.obj.capturing

    def _abandon_capture(self):
        gm = self.capture.graph
        gm.obj.reset()
        self.capture = None
        gm.state = "empty"
        gm.graph_held = gm.exec_held = False
        gm.layout = None
        gm.origin = None

    @rule(graph=graphs, data=st.data())
    def instantiate(self, graph, data):
        if graph.closed or graph.orphaned:
            with pytest.raises(ClosedError):
                graph.obj.instantiate()
            return
        if graph.state == "capturing":
            with pytest.raises(UsageError, match="still capturing"):
                graph.obj.instantiate()
            return
        if graph.state == "empty":
            with pytest.raises(UsageError, match="nothing captured"):
                graph.obj.instantiate()
            return
        armed = self._arm(data, "instantiate")
        try:
            assert graph.obj.instantiate() is graph.obj
        except DriverError as e:
            self._failed(armed, e)
            return
        self._learn("instantiate", armed)
        self._instantiated(graph)

    def _instantiated(self, graph):
        graph.state = "instantiated"
        graph.exec_held = True
        graph.graph_held = graph.keep
        assert (graph.obj.handle != 0) == graph.keep

    @rule(graph=graphs, data=st.data())
    def replay(self, graph, data):
        stream = None if data.draw(st.booleans(), label="default stream?") else self._stream(data)
        if graph.closed or graph.orphaned:
            with pytest.raises(ClosedError):
                graph.obj.replay(None if stream is None else stream.obj)
            return
        if stream is not None and not stream.alive:  # the argument is checked first
            with pytest.raises(ClosedError):
                graph.obj.replay(stream.obj)
            return  # and nothing changed (the invariants check it was not instantiated)
        if graph.state in ("empty", "capturing"):
            with pytest.raises(UsageError):
                graph.obj.replay(None if stream is None else stream.obj)
            return
        target = graph.origin if stream is None else stream
        if not target.alive:
            return  # (the default: a closed origin stream is the user's business)
        if self._member(target):
            return
        armed = self._arm(data, "replay")
        try:
            graph.obj.replay(None if stream is None else stream.obj)
        except DriverError as e:
            self._failed(armed, e)
            return  # a failed replay changes nothing: an instantiation it made is undone
        self._learn("replay", armed)
        self._instantiated(graph)
        # The pool's memory must outlive the replay's memset: wait for it here, as a user
        # must before closing the graph (cuMemFree does not wait for queued work).
        target.obj.synchronize()

    @rule(graph=graphs)
    def reset_graph(self, graph):
        if graph.closed:
            with pytest.raises(ClosedError):
                graph.obj.reset()
            return
        graph.obj.reset()
        if self.capture is not None and self.capture.graph is graph:
            self.capture = None
        graph.state = "empty"
        graph.orphaned = False
        graph.graph_held = graph.exec_held = False
        graph.layout = graph.origin = None
        assert not graph.obj.captured

    @rule(graph=graphs, data=st.data())
    def close_graph(self, graph, data):
        armed = self._arm(data, "close_graph")
        try:
            graph.obj.close()
        except DestroyError as e:
            self._destroy_failed(armed, e, graph.obj.close)
        else:
            self._learn("close_graph", armed)
        graph.obj.close()
        if self.capture is not None and self.capture.graph is graph:
            self.capture = None
        graph.closed = True
        graph.graph_held = graph.exec_held = False
        graph.allocations = 0
        graph.has_pool = False
        with pytest.raises(ClosedError):
            graph.obj.replay()

    # Rules that matter most get a second entry (hypothesis picks rules uniformly).

    @rule(part=parts, data=st.data())
    def enter_nested(self, part, data):
        self.enter(part, data)

    @rule(graph=graphs, data=st.data())
    def capture_begin_again(self, graph, data):
        self.capture_begin(graph, data)

    @rule(data=st.data())
    def handoff_again(self, data):
        self.handoff(data)

    # A graph reaches instantiate and replay (and their fault points) only after a capture
    # ended: these would otherwise be rare.

    @precondition(lambda self: self.capture is not None)
    @rule(data=st.data())
    def capture_end_again(self, data):
        self.capture_end(data)

    @rule(graph=graphs, data=st.data())
    def instantiate_again(self, graph, data):
        self.instantiate(graph, data)

    @rule(graph=graphs, data=st.data())
    def replay_again(self, graph, data):
        self.replay(graph, data)

    # ------------------------------------------------------------------ invariants

    @invariant()
    def live_objects_match_the_model(self):
        open_layouts = [lm for lm in self.layout_models if lm.open]
        parts = [pm for lm in open_layouts for pm in lm.all_parts()]
        base = self.baseline
        expected = {
            "green_context": base["green_context"] + len(parts),
            "stream": base["stream"]
            + len(parts)  # default streams
            + sum(1 for s in self.stream_models if s.owned and s.alive),
            "event": base["event"]
            + sum(lm.pool_events for lm in open_layouts)
            + EVENTS_PER_PARTITION * len(parts)
            + sum(fence_events(lm) for lm in open_layouts)
            + sum(not em.closed for em in self.event_models),
            "graph": base["graph"] + sum(gm.graph_held for gm in self.graph_models),
            "graph_exec": base["graph_exec"] + sum(gm.exec_held for gm in self.graph_models),
            "allocation": base["allocation"] + sum(gm.allocations for gm in self.graph_models),
            "context": base["context"],
        }
        needs_primary = (
            bool(open_layouts)
            or any(not em.closed for em in self.event_models)
            or any(gm.has_pool for gm in self.graph_models)
        )
        expected["primary_context"] = base["primary_context"] or int(needs_primary)
        got = sim.live_objects()
        assert {k: got[k] for k in expected} == expected

    @invariant()
    def context_stack_matches(self):
        want = self.stack[-1][0].obj.context_handle if self.stack else self.baseline_ctx
        assert current_context() == want
        for lm in self.layout_models:
            if not lm.open:
                continue
            for pm in lm.all_parts():
                assert pm.obj.entered == any(p is pm for p, _ in self.stack)

    @invariant()
    def thread_capture_mode_is_restored(self):
        assert capture_mode() == self.baseline_mode

    @invariant()
    def no_hazards(self):
        STATS["checks"] += 1
        assert sim.hazards() == []

    @invariant()
    def partitions_of_a_mode_are_disjoint(self):
        for lm in self.layout_models:
            if not lm.open:
                continue
            for parts in lm.modes.values():
                seen = set()
                for pm in parts:
                    sms = set(sim.green_context_sms(pm.obj.handle))
                    assert len(sms) == pm.obj.sm_count
                    assert not sms & seen
                    seen |= sms

    @invariant()
    def objects_agree_with_the_model(self):
        for lm in self.layout_models:
            assert lm.obj.closed == (not lm.open)
            if lm.open:
                assert lm.obj.mode == lm.mode
        for s in self.stream_models:
            assert s.obj.closed == (not s.alive)
        for gm in self.graph_models:
            assert gm.obj.closed == gm.closed
            assert gm.obj.capturing == (gm.state == "capturing" and not gm.closed)

    # ------------------------------------------------------------------ teardown

    def teardown(self):
        """End the capture, exit everything, close everything (each step even when an
        earlier one failed, so that a failing example does not leak into the next), then
        check that the driver is back at the baseline."""
        STATS["faults"] += self.faults_hit
        sim.clear_faults()
        steps = [
            gm.obj.reset for gm in self.graph_models if self.capture and gm is self.capture.graph
        ]
        steps += [pm.obj.exit for pm, _ in reversed(self.stack)]
        steps += [gm.obj.close for gm in self.graph_models]
        steps += [em.obj.close for em in self.event_models]
        steps += [s.obj.close for s in self.stream_models if s.owned]
        steps += [lm.obj.close for lm in self.layout_models]
        errors = []
        for step in steps:
            try:
                step()
            except Exception as e:
                errors.append(e)
        self.stack.clear()
        self.capture = None
        assert not errors, errors
        assert sim.live_objects() == self.baseline
        assert current_context() == self.baseline_ctx
        assert capture_mode() == self.baseline_mode
        assert sim.hazards() == []


STATS = {"examples": 0, "checks": 0, "faults": 0}

#: From the active profile: "ci" (40 examples) runs 40 x 40 steps in a few seconds,
#: "thorough" (2000) runs 2000 x 100.
_THOROUGH = settings.default.max_examples > 100
MACHINE_SETTINGS = settings(
    settings.default,
    max_examples=settings.default.max_examples,
    stateful_step_count=100 if _THOROUGH else 40,
)


@pytest.mark.skipif(not SIM, reason="needs the simulated driver")
def test_lifecycle_machine():
    for key in STATS:
        STATS[key] = 0
    with no_resource_warning():
        run_state_machine_as_test(LifecycleMachine, settings=MACHINE_SETTINGS)
    print(f"lifecycle machine: {STATS}")
