"""NVTX seen for real: every test runs in a fresh process with the recording injection
library (support/nvtx_recorder.c) loaded by NVTX, and checks what a profiler would be told:
the seed's range API (names, nesting, depths, threads, decorator, exceptions), device
ranges firing in stream order and at every graph replay, and the runtime's annotations of
partitions (names of streams and green contexts, enter/exit ranges with categories and
colours, handoff, switch, capture, replay, create and close), emitted from the runtime's C
code, and nothing at all when annotation is off."""

from __future__ import annotations

import pytest

from support.nvtx_recording import run_recorded

pytestmark = pytest.mark.sim_only


def kinds(events, *, domain=None):
    return [(e["kind"], e["message"]) for e in events if domain is None or e["domain"] == domain]


def test_push_pop_nest_and_return_depths():
    out = run_recorded(
        """
        from greenres import nvtx
        depths = [nvtx.range_push("outer"), nvtx.range_push("inner"), nvtx.range_pop(),
                  nvtx.range_pop()]
        print(json.dumps({"depths": depths, "events": events()}))
        """
    )
    assert out["depths"] == [0, 1, 1, 0]
    assert kinds(out["events"]) == [
        ("push", "outer"),
        ("push", "inner"),
        ("pop", None),
        ("pop", None),
    ]
    assert {e["domain"] for e in out["events"]} == {"(default)"}
    assert [e["depth"] for e in out["events"]] == [0, 1, 1, 0]


def test_unicode_domains_categories_and_colors():
    out = run_recorded(
        """
        from greenres import nvtx
        nvtx.range_push("décodage ✓ 𝛑", domain="serving", category="steps", color="red")
        nvtx.range_pop(domain="serving")
        nvtx.mark("point", category=7, color=0x00FF00)
        print(json.dumps(events()))
        """
    )
    domain, category, push, pop, mark = out
    assert domain["kind"] == "domain" and domain["message"] == "serving"
    assert category["kind"] == "category" and category["message"] == "steps"
    assert push["message"] == "décodage ✓ 𝛑" and push["domain"] == "serving"
    assert push["category"] == category["category"] and push["color"] == 0xFFD62728
    assert pop["kind"] == "pop" and pop["domain"] == "serving"
    assert mark["kind"] == "mark" and mark["category"] == 7 and mark["color"] == 0xFF00FF00


def test_start_and_end_on_another_thread():
    out = run_recorded(
        """
        import threading
        from greenres import nvtx
        handle = nvtx.range_start("across threads")
        t = threading.Thread(target=nvtx.range_end, args=(handle,))
        t.start(); t.join()
        print(json.dumps(events()))
        """
    )
    start, end = out
    assert start["kind"] == "start" and end["kind"] == "end"
    assert start["range"] == end["range"] and start["thread"] != end["thread"]


def test_range_as_context_manager_and_decorator_pops_on_exceptions():
    out = run_recorded(
        """
        from greenres import nvtx

        @nvtx.range("step {} of {n}", 1, n=3)
        def step():
            raise ValueError("inside")

        try:
            step()
        except ValueError:
            pass
        with nvtx.range("block"):
            pass
        with nvtx.range("{{literal}}"):  # formatted with no arguments too, as the seed does
            pass
        print(json.dumps(events()))
        """
    )
    assert kinds(out) == [
        ("push", "step 1 of 3"), ("pop", None), ("push", "block"), ("pop", None),
        ("push", "{literal}"), ("pop", None),
    ]  # fmt: skip


def test_misuse_is_a_clear_error():
    out = run_recorded(
        """
        from greenres import nvtx, UsageError
        errors = []
        for call in (lambda: nvtx.range_pop(), lambda: nvtx.range_push(b"bytes"),
                     lambda: nvtx.range_end(nvtx.range_start("x")) or nvtx.range_end(1),
                     lambda: nvtx.mark(3), lambda: nvtx.range_push("x", color="mauve"),
                     lambda: nvtx.range_push("x", category=-1), lambda: nvtx.range(5)):
            try:
                call()
            except (UsageError, TypeError, ValueError) as e:
                errors.append(f"{type(e).__name__}: {e}")
        print(json.dumps(errors))
        """
    )
    assert out == [
        "UsageError: range_pop: no range was pushed on this thread",
        "TypeError: 'msg' must be a str (got b'bytes')",
        "UsageError: range_end: range 1 was ended already, or was not started by range_start",
        "TypeError: 'msg' must be a str (got 3)",
        "ValueError: 'color' must be an ARGB int or one of black, blue, brown, cyan, gray, "
        "green, grey, olive, orange, pink, purple, red, white, yellow (got 'mauve')",
        "ValueError: 'category' must be in [0, 2**32) (got -1)",
        "TypeError: 'msg' must be a str (got 5)",
    ]


_PARTITIONS = """
import threading
import greenres as gr
from greenres import nvtx
layout = gr.Layout.create({"decode": 64, "prefill": 32}, nvtx=True, name="serve")
decode, prefill = layout["decode"], layout["prefill"]
extra = decode.create_stream()
with decode:
    with prefill:
        pass
gr.handoff(decode.stream, prefill.stream)
gr.handoff(decode.stream, extra)
t = threading.Thread(target=lambda: decode.__enter__() and decode.__exit__(None, None, None))
t.start(); t.join()
graph = gr.Graph(name="step")
with graph.capture(decode.stream):
    pass
graph.replay()
graph.replay()
graph.reset()
with graph.capture(prefill.stream):
    pass
graph.replay()
decode.stream.synchronize()
prefill.stream.synchronize()
graph.close()
names = {"decode": decode.context_handle, "prefill": prefill.context_handle,
         "stream": decode.stream.handle, "extra": extra.handle}
layout.close()
print(json.dumps({"names": names, "events": events(), "thread": threading.get_native_id()}))
"""


def test_partitions_are_named_and_their_events_are_in_the_greenres_domain():
    out = run_recorded(_PARTITIONS)
    events, names = out["events"], out["names"]
    named = {(e["kind"], e["handle"]): e["message"] for e in events if e["kind"].startswith("name")}
    assert named[("name_context", names["decode"])] == "serve/decode"
    assert named[("name_context", names["prefill"])] == "serve/prefill"
    assert named[("name_stream", names["stream"])] == "serve/decode/stream0"
    assert named[("name_stream", names["extra"])] == "serve/decode/stream1"
    ours = [e for e in events if e["domain"] == "greenres" and e["kind"] != "category"]
    sequence = [(e["kind"], e["message"]) for e in ours if e["kind"] != "domain"]
    assert sequence == [
        ("start", "create serve (2 partitions)"),
        ("end", None),
        ("push", "decode (64 SMs)"),
        ("push", "prefill (32 SMs)"),
        ("pop", None),
        ("pop", None),
        ("mark", "handoff decode -> prefill"),
        ("mark", "handoff decode -> decode"),
        ("push", "decode (64 SMs)"),
        ("pop", None),
        ("start", "capture step on decode"),
        ("end", None),
        ("mark", "replay step (decode)"),
        ("mark", "replay step (decode)"),
        ("start", "capture step on prefill"),
        ("end", None),
        ("mark", "replay step (prefill)"),  # a recapture elsewhere is named anew
        ("mark", "close serve"),
    ]
    categories = {e["message"]: e["category"] for e in events if e["kind"] == "category"}
    pushes = [e for e in ours if e["kind"] == "push"]
    assert pushes[0]["category"] == categories["decode"] != categories["prefill"]
    assert pushes[0]["color"] == pushes[2]["color"] != 0
    main, other = pushes[0]["thread"], pushes[2]["thread"]
    assert main == out["thread"] and other != main  # the second enter was on the thread


def test_switch_is_a_mark_naming_both_modes():
    out = run_recorded(
        """
        import greenres as gr
        from greenres import ModalSpec, Partition, PartitionSpec
        spec = ModalSpec(modes={"x": PartitionSpec([Partition("a", sms=16)]),
                                "y": PartitionSpec([Partition("b", sms=32)])}, default="x")
        with gr.Layout.create(spec.plan(gr.Device(0)), nvtx=True, name="m") as layout:
            layout.switch("y")
        print(json.dumps(events()))
        """
    )
    assert ("mark", "switch m: x -> y") in kinds(out, domain="greenres")


def test_nothing_is_emitted_when_annotation_is_off():
    out = run_recorded(
        """
        import greenres as gr
        with gr.Layout.create({"a": 16, "b": 16}) as layout:
            with layout["a"]:
                gr.handoff(layout["a"].stream, layout["b"].stream)
        print(json.dumps(events()))
        """
    )
    assert out == []


def test_configure_and_the_environment_turn_it_on():
    code = """
        import greenres as gr
        {setup}
        with gr.Layout.create({{"a": 16}}) as layout:
            assert layout.nvtx
            with layout["a"]:
                pass
        print(json.dumps(events()))
    """
    by_call = run_recorded(code.format(setup="gr.configure(nvtx=True)"))
    by_env = run_recorded(code.format(setup="pass"), GREENRES_NVTX="1")
    assert ("push", "a (16 SMs)") in kinds(by_call) and ("push", "a (16 SMs)") in kinds(by_env)


def test_device_ranges_fire_when_the_stream_gets_there():
    out = run_recorded(
        """
        import greenres as gr
        from greenres import nvtx
        from support.streamgate import Gate
        with gr.Layout.create({"a": 16}) as layout:
            stream = layout["a"].stream
            gate = Gate(stream)            # the stream waits on a host function
            handle = nvtx.device_range_start("on device", stream)
            nvtx.device_range_end(handle, stream)
            before = [e["kind"] for e in events()]
            gate.open()
            stream.synchronize()
            after = events()
        print(json.dumps({"before": before, "after": after}))
        """
    )
    assert out["before"] == []
    start, end = out["after"]
    assert (start["kind"], start["message"], end["kind"]) == ("start", "on device", "end")
    assert start["range"] == end["range"]


def test_device_ranges_fire_at_every_replay():
    out = run_recorded(
        """
        import greenres as gr
        from greenres import nvtx
        with gr.Layout.create({"a": 16}) as layout:
            stream = layout["a"].stream
            graph = gr.Graph()
            with graph.capture(stream):
                handle = nvtx.device_range_start("captured", stream)
                nvtx.device_range_end(handle, stream)
            del handle                       # the graph keeps what its nodes need
            for _ in range(3):
                graph.replay()
            stream.synchronize()
            graph.close()
        print(json.dumps(events()))
        """
    )
    assert kinds(out) == [("start", "captured"), ("end", None)] * 3


def test_a_device_range_never_ended_is_closed_when_its_handle_goes():
    out = run_recorded(
        """
        import gc
        import greenres as gr
        from greenres import nvtx
        with gr.Layout.create({"a": 16}) as layout:
            stream = layout["a"].stream
            handle = nvtx.device_range_start("left open", stream)
            stream.synchronize()
            del handle
            gc.collect()
        print(json.dumps(events()))
        """
    )
    assert kinds(out) == [("start", "left open"), ("end", None)]


def test_a_captured_start_with_no_end_leaves_no_range_open():
    """Each replay's start ends the range the replay before it started, and destroying
    the graph ends the last: a profiler never shows a range open for good."""
    out = run_recorded(
        """
        import greenres as gr
        import greenres.sim as sim
        from greenres import nvtx
        with gr.Layout.create({"a": 16}) as layout:
            stream = layout["a"].stream
            graph = gr.Graph()
            with graph.capture(stream):
                nvtx.device_range_start("no end", stream)
            for _ in range(3):
                graph.replay()
            stream.synchronize()
            graph.close()
            sim.wait_user_object_destructors()
        print(json.dumps(events()))
        """
    )
    assert kinds(out) == [("start", "no end"), ("end", None)] * 3
    starts = [e["range"] for e in out if e["kind"] == "start"]
    ends = [e["range"] for e in out if e["kind"] == "end"]
    assert starts == ends


def test_a_failed_capture_ends_its_range():
    out = run_recorded(
        """
        import greenres as gr
        with gr.Layout.create({"a": 16}, name="L", nvtx=True) as layout:
            stream = layout["a"].stream
            graph = gr.Graph(name="g")
            try:
                with graph.capture(stream):
                    stream.synchronize()   # refused in a capture, which it invalidates
            except gr.DriverError:
                pass
            assert not graph.capturing
            graph.close()
        print(json.dumps(events()))
        """
    )
    started = [e["range"] for e in out if e["kind"] == "start" and "capture" in e["message"]]
    ended = {e["range"] for e in out if e["kind"] == "end"}
    assert started and set(started) <= ended, out


def test_a_device_range_on_the_null_stream_needs_a_current_context():
    out = run_recorded(
        """
        import greenres as gr
        from greenres import nvtx
        gr.Device(0)
        messages = []
        for stream in (0, 1, 2):
            try:
                nvtx.device_range_start("x", stream)
            except gr.UsageError as error:
                messages.append(str(error))
        print(json.dumps(messages))
        """
    )
    assert len(out) == 3 and all("needs a current context" in m for m in out), out
    assert "the NULL stream" in out[0] and "the legacy stream" in out[1]
