"""Bogus handles: every function taking a CUstream, CUevent, CUcontext, CUgreenCtx, CUgraph,
CUgraphExec, CUdevResourceDesc, CUuserObject, CUmemoryPool, CUmodule or CUfunction answers an error for a handle that is not a live object of
the right kind (garbage integers, pointers into or next to objects, forged object headers,
destroyed objects, stale handles whose slot holds a newer object since, objects of another
kind), never a crash. A destroyed or stale handle also records the hazard destroyed_handle
naming the function and the kind (and, for a stale one, that the slot was reused); garbage
records none. The newer object in a reused slot is untouched by calls with the stale handle.

Each family runs in a child process (a segfault fails the test, naming the call that
crashed, instead of killing pytest). The child calls the simulator's exported C functions
through ctypes, so the test does not depend on what a cuda-bindings version wraps.

Expected errors: the one cuda.h documents for the function. CUstream/CUevent:
CUDA_ERROR_INVALID_HANDLE (the enum's own doc names CUstream and CUevent). CUcontext and
CUgreenCtx: CUDA_ERROR_INVALID_CONTEXT, except where cuda.h documents
CUDA_ERROR_CONTEXT_IS_DESTROYED for a destroyed green context (cuGreenCtxDestroy,
cuGreenCtxGetId). CUgraph, CUgraphExec, CUdevResourceDesc, CUuserObject and CUmemoryPool:
CUDA_ERROR_INVALID_VALUE (the only error cuda.h lists for them). CUmodule and CUfunction:
CUDA_ERROR_INVALID_HANDLE.
"""
# ruff: noqa: E501  (the child scripts below are tables of calls, one per line)

import functools
import json
import re

import pytest

from support import childprocess
from support.simhelpers import run_python

pytestmark = pytest.mark.sim_only

INVALID_VALUE = 1
INVALID_CONTEXT = 201
INVALID_HANDLE = 400
CONTEXT_IS_DESTROYED = 709

# The child: sets up live and destroyed objects of every kind, then runs FAMILY's calls
# with every bad handle, printing "START <case>" before each call (the last one names a
# crash) and one JSON result line after it.
CHILD = r"""
import ctypes, json, sys
import greenres.sim as sim
sim.install("h100")
L = ctypes.CDLL(str(sim.LIBRARY_PATH))
FAMILY = sys.argv[1]
P = ctypes.c_void_p
U = ctypes.c_uint
SM = 1  # CU_DEV_RESOURCE_TYPE_SM

def ok(r, what):
    if r != 0:
        raise SystemExit(f"setup: {what} failed with {r}")

def new(fn, *args):
    out = P()
    ok(getattr(L, fn)(ctypes.byref(out), *args), fn)
    return out.value

ok(L.cuInit(0), "cuInit")
primary = new("cuDevicePrimaryCtxRetain", 0)
ok(L.cuCtxPushCurrent_v2(P(primary)), "push")

def stream():
    return new("cuStreamCreate", U(1))

def event():
    return new("cuEventCreate", U(0))

res = ctypes.create_string_buffer(144)
ok(L.cuDeviceGetDevResource(0, res, SM), "cuDeviceGetDevResource")
def desc():
    return new("cuDevResourceGenerateDesc", res, U(1))
def green():
    return new("cuGreenCtxCreate", P(desc()), 0, U(1))  # CU_GREEN_CTX_DEFAULT_STREAM

live = dict(stream=stream(), event=event(), green=green(), desc=desc())
live["green_ctx"] = new("cuCtxFromGreenCtx", P(live["green"]))
live["graph"] = new("cuGraphCreate", U(0))
live["exec"] = new("cuGraphInstantiateWithFlags", P(live["graph"]), ctypes.c_ulonglong(0))
live["context"] = new("cuCtxCreate_v2", U(0), 0)
ok(L.cuCtxPopCurrent_v2(None), "pop")  # the user context stays alive, not current
dptr = ctypes.c_ulonglong()
ok(L.cuMemAlloc_v2(ctypes.byref(dptr), ctypes.c_size_t(64)), "cuMemAlloc")
dptr = dptr.value

destroy_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
destroy_fn = destroy_t(lambda _: None)
def user():
    return new("cuUserObjectCreate", None, destroy_fn, U(1), U(1))
pool_props = ctypes.create_string_buffer(256)
ctypes.memmove(pool_props, (ctypes.c_int * 4)(1, 0, 1, 0), 16)  # PINNED, no handles, device 0
def pool():
    return new("cuMemPoolCreate", pool_props)
PTX = b".version 8.0\n.target sm_90\n.address_size 64\n.visible .entry k() { ret; }\n"
def module():
    return new("cuModuleLoadData", PTX)
function_module = {}
def function():
    m = module()
    f = new("cuModuleGetFunction", P(m), b"k")
    function_module[f] = m
    return f
live["user"], live["pool"], live["module"] = user(), pool(), module()
live["function"] = new("cuModuleGetFunction", P(live["module"]), b"k")

# Stale handles: an object destroyed, then objects of its kind made (and destroyed) until one
# lands in the same slot (same address bits, a newer generation). The newer one stays alive.
MASK = (1 << 48) - 1
def stale(make, destroy, limit=4000):
    first = make()
    destroy(first)
    for _ in range(limit):
        h = make()
        if h & MASK == first & MASK:
            assert h != first, "a reused slot must give a new handle"
            return first, h
        destroy(h)
    raise SystemExit(f"setup: no slot was reused after {limit} objects")

def user_ctx():
    c = new("cuCtxCreate_v2", U(0), 0)
    ok(L.cuCtxPopCurrent_v2(None), "pop")
    return c

stale_of, newer = {}, {}
stale_of["stream"], newer["stream"] = stale(stream, lambda h: ok(L.cuStreamDestroy_v2(P(h)), "destroy stream"))
stale_of["event"], newer["event"] = stale(event, lambda h: ok(L.cuEventDestroy_v2(P(h)), "destroy event"))
stale_of["context"], newer["context"] = stale(user_ctx, lambda h: ok(L.cuCtxDestroy_v2(P(h)), "destroy ctx"))
stale_of["green"], newer["green"] = stale(green, lambda h: ok(L.cuGreenCtxDestroy(P(h)), "destroy green"))
stale_of["graph"], newer["graph"] = stale(lambda: new("cuGraphCreate", U(0)),
                                          lambda h: ok(L.cuGraphDestroy(P(h)), "destroy graph"))
stale_of["exec"], newer["exec"] = stale(
    lambda: new("cuGraphInstantiateWithFlags", P(live["graph"]), ctypes.c_ulonglong(0)),
    lambda h: ok(L.cuGraphExecDestroy(P(h)), "destroy exec"))
stale_of["user"], newer["user"] = stale(user, lambda h: ok(L.cuUserObjectRelease(P(h), U(1)), "release user"))
stale_of["pool"], newer["pool"] = stale(pool, lambda h: ok(L.cuMemPoolDestroy(P(h)), "destroy pool"))
stale_of["module"], newer["module"] = stale(module, lambda h: ok(L.cuModuleUnload(P(h)), "unload"))
stale_of["function"], newer["function"] = stale(
    function, lambda h: ok(L.cuModuleUnload(P(function_module[h])), "unload"))

dead = {}
dead["stream"] = stream(); ok(L.cuStreamDestroy_v2(P(dead["stream"])), "destroy stream")
dead["event"] = event(); ok(L.cuEventDestroy_v2(P(dead["event"])), "destroy event")
g = green(); dead["green_ctx"] = new("cuCtxFromGreenCtx", P(g))
ok(L.cuGreenCtxDestroy(P(g)), "destroy green"); dead["green"] = g
c = new("cuCtxCreate_v2", U(0), 0); ok(L.cuCtxPopCurrent_v2(None), "pop")
ok(L.cuCtxDestroy_v2(P(c)), "destroy ctx"); dead["context"] = c
gr = new("cuGraphCreate", U(0)); ok(L.cuGraphDestroy(P(gr)), "destroy graph"); dead["graph"] = gr
gr = new("cuGraphCreate", U(0)); ex = new("cuGraphInstantiateWithFlags", P(gr), ctypes.c_ulonglong(0))
ok(L.cuGraphExecDestroy(P(ex)), "destroy exec"); dead["exec"] = ex
dead["user"] = user(); ok(L.cuUserObjectRelease(P(dead["user"]), U(1)), "release user")
dead["pool"] = pool(); ok(L.cuMemPoolDestroy(P(dead["pool"])), "destroy pool")
dead["module"] = module(); ok(L.cuModuleUnload(P(dead["module"])), "unload")
dead["function"] = function(); ok(L.cuModuleUnload(P(function_module[dead["function"]])), "unload")
# A live stream of a destroyed user context: destroyed with its context.
c = new("cuCtxCreate_v2", U(0), 0); orphan = stream(); ok(L.cuCtxPopCurrent_v2(None), "pop")
ok(L.cuCtxDestroy_v2(P(c)), "destroy ctx")

# Forged objects: heap memory that starts like a simulator object (its kind's magic, alive).
MAGIC = dict(context=0x53437478, green=0x53477278, stream=0x53537472, event=0x53457674,
             graph=0x53477270, exec=0x53457865, desc=0x53447363, user=0x5355736f,
             pool=0x53506f6c, module=0x534d6f64, function=0x5346756e)
forged_bufs = {}
def forged(kind):
    buf = (ctypes.c_uint32 * 1024)(*([MAGIC[kind], 1] * 512))
    forged_bufs[kind] = buf
    return ctypes.addressof(buf)

def garbage(kind):
    out = {
        "int 12345": 12345, "int 3": 3, "int 4097": 4097,
        "unmapped 0xdead0000": 0xDEAD0000, "all ones": 2**64 - 1,
        "kernel half 0xffff800000000000": 0xFFFF800000000000,
        "top of user space": 0x7FFFFFFFF000,
        "inside a live object (+8)": live[kind] + 8,
        "inside a live object (+16)": live[kind] + 16,
        "live object - 8": live[kind] - 8,
        "forged header": forged(MAGIC_KIND.get(kind, kind)),
        "python object": id(object()),
    }
    return out
MAGIC_KIND = {"green_ctx": "context"}

hostfn_t = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
hostfn = hostfn_t(lambda _: None)
host = ctypes.create_string_buffer(64)
f = ctypes.c_float()
i = ctypes.c_int()
u = ctypes.c_uint()
ull = ctypes.c_ulonglong()
p1, p2 = P(), P()
sz = ctypes.c_size_t()
rbuf = ctypes.create_string_buffer(144)
S, E, G = P(live["stream"]), P(live["event"]), P(live["green"])
X = P(live["exec"])
UO, F = P(live["user"]), P(live["function"])
instantiate_params = ctypes.create_string_buffer(32)
loc = (ctypes.c_int * 2)(1, 0)  # CU_MEM_LOCATION_TYPE_DEVICE, device 0
B = ctypes.byref

def proc(name):
    # The per-thread-default-stream variant (cuGetProcAddress_v2 flag 2).
    fn, st = P(), ctypes.c_int()
    ok(L.cuGetProcAddress_v2(name.encode(), B(fn), 13000, ctypes.c_ulonglong(2), B(st)), name)
    return fn.value

ptsz = {n: ctypes.CFUNCTYPE(ctypes.c_int, *t)(proc(n)) for n, t in {
    "cuStreamQuery": [P], "cuStreamSynchronize": [P], "cuEventRecord": [P, P],
    "cuStreamWaitEvent": [P, P, U], "cuLaunchHostFunc": [P, hostfn_t, P],
    "cuGraphLaunch": [P, P]}.items()}

# family -> (handle kind, {function: (call(h), error for bad, error for destroyed)})
IH, IC, IV, CD = 400, 201, 1, 709
FAMILIES = {
    "stream": ("stream", {
        "cuStreamGetPriority": (lambda h: L.cuStreamGetPriority(h, B(i)), IH, IH),
        "cuStreamGetFlags": (lambda h: L.cuStreamGetFlags(h, B(u)), IH, IH),
        "cuStreamGetId": (lambda h: L.cuStreamGetId(h, B(ull)), IH, IH),
        "cuStreamGetDevice": (lambda h: L.cuStreamGetDevice(h, B(i)), IH, IH),
        "cuStreamGetCtx": (lambda h: L.cuStreamGetCtx(h, B(p1)), IH, IH),
        "cuStreamGetCtx_v2": (lambda h: L.cuStreamGetCtx_v2(h, B(p1), B(p2)), IH, IH),
        "cuStreamGetGreenCtx": (lambda h: L.cuStreamGetGreenCtx(h, B(p1)), IH, IH),
        "cuStreamQuery": (lambda h: L.cuStreamQuery(h), IH, IH),
        "cuStreamSynchronize": (lambda h: L.cuStreamSynchronize(h), IH, IH),
        "cuStreamWaitEvent": (lambda h: L.cuStreamWaitEvent(h, E, U(0)), IH, IH),
        "cuEventRecord": (lambda h: L.cuEventRecord(E, h), IH, IH),
        "cuEventRecordWithFlags": (lambda h: L.cuEventRecordWithFlags(E, h, U(0)), IH, IH),
        "cuStreamDestroy_v2": (lambda h: L.cuStreamDestroy_v2(h), IH, IH),
        "cuStreamBeginCapture_v2": (lambda h: L.cuStreamBeginCapture_v2(h, 0), IH, IH),
        "cuStreamEndCapture": (lambda h: L.cuStreamEndCapture(h, B(p1)), IH, IH),
        "cuStreamIsCapturing": (lambda h: L.cuStreamIsCapturing(h, B(i)), IH, IH),
        "cuStreamGetCaptureInfo_v3": (lambda h: L.cuStreamGetCaptureInfo_v3(h, B(i), None, None, None, None, None), IH, IH),
        "cuMemsetD8Async": (lambda h: L.cuMemsetD8Async(ctypes.c_ulonglong(dptr), ctypes.c_ubyte(0), ctypes.c_size_t(16), h), IH, IH),
        "cuMemsetD32Async": (lambda h: L.cuMemsetD32Async(ctypes.c_ulonglong(dptr), U(0), ctypes.c_size_t(4), h), IH, IH),
        "cuMemcpyHtoDAsync_v2": (lambda h: L.cuMemcpyHtoDAsync_v2(ctypes.c_ulonglong(dptr), host, ctypes.c_size_t(16), h), IH, IH),
        "cuMemcpyDtoHAsync_v2": (lambda h: L.cuMemcpyDtoHAsync_v2(host, ctypes.c_ulonglong(dptr), ctypes.c_size_t(16), h), IH, IH),
        "cuMemcpyDtoDAsync_v2": (lambda h: L.cuMemcpyDtoDAsync_v2(ctypes.c_ulonglong(dptr), ctypes.c_ulonglong(dptr + 32), ctypes.c_size_t(16), h), IH, IH),
        "cuMemcpyAsync": (lambda h: L.cuMemcpyAsync(ctypes.c_ulonglong(dptr), ctypes.c_ulonglong(dptr + 32), ctypes.c_size_t(16), h), IH, IH),
        "cuLaunchHostFunc": (lambda h: L.cuLaunchHostFunc(h, hostfn, None), IH, IH),
        "cuLaunchHostFunc_v2": (lambda h: L.cuLaunchHostFunc_v2(h, hostfn, None, U(0)), IH, IH),
        "cuGraphLaunch": (lambda h: L.cuGraphLaunch(X, h), IH, IH),
        "cuGraphUpload": (lambda h: L.cuGraphUpload(X, h), IH, IH),
        "cuStreamQuery_ptsz": (lambda h: ptsz["cuStreamQuery"](h), IH, IH),
        "cuStreamSynchronize_ptsz": (lambda h: ptsz["cuStreamSynchronize"](h), IH, IH),
        "cuEventRecord_ptsz": (lambda h: ptsz["cuEventRecord"](E, h), IH, IH),
        "cuStreamWaitEvent_ptsz": (lambda h: ptsz["cuStreamWaitEvent"](h, E, 0), IH, IH),
        "cuLaunchHostFunc_ptsz": (lambda h: ptsz["cuLaunchHostFunc"](h, hostfn, None), IH, IH),
        "cuGraphLaunch_ptsz": (lambda h: ptsz["cuGraphLaunch"](X, h), IH, IH),
        "cuMemAllocAsync": (lambda h: L.cuMemAllocAsync(B(ull), ctypes.c_size_t(64), h), IH, IH),
        "cuMemFreeAsync": (lambda h: L.cuMemFreeAsync(ctypes.c_ulonglong(dptr), h), IH, IH),
        "cuStreamGetDevResource": (lambda h: L.cuStreamGetDevResource(h, rbuf, SM), IH, IH),
        "cuLaunchKernel": (lambda h: L.cuLaunchKernel(F, U(1), U(1), U(1), U(1), U(1), U(1), U(0), h, None, None), IH, IH),
    }),
    "event": ("event", {
        "cuEventRecord": (lambda h: L.cuEventRecord(h, S), IH, IH),
        "cuEventRecordWithFlags": (lambda h: L.cuEventRecordWithFlags(h, S, U(0)), IH, IH),
        "cuEventRecord (legacy stream)": (lambda h: L.cuEventRecord(h, None), IH, IH),
        "cuStreamWaitEvent": (lambda h: L.cuStreamWaitEvent(S, h, U(0)), IH, IH),
        "cuEventQuery": (lambda h: L.cuEventQuery(h), IH, IH),
        "cuEventSynchronize": (lambda h: L.cuEventSynchronize(h), IH, IH),
        "cuEventElapsedTime (start)": (lambda h: L.cuEventElapsedTime(B(f), h, E), IH, IH),
        "cuEventElapsedTime (end)": (lambda h: L.cuEventElapsedTime(B(f), E, h), IH, IH),
        "cuEventElapsedTime_v2": (lambda h: L.cuEventElapsedTime_v2(B(f), h, E), IH, IH),
        "cuEventDestroy_v2": (lambda h: L.cuEventDestroy_v2(h), IH, IH),
        "cuGreenCtxRecordEvent": (lambda h: L.cuGreenCtxRecordEvent(G, h), IH, IH),
        "cuGreenCtxWaitEvent": (lambda h: L.cuGreenCtxWaitEvent(G, h), IH, IH),
        "cuEventRecord_ptsz": (lambda h: ptsz["cuEventRecord"](h, None), IH, IH),
        "cuStreamWaitEvent_ptsz": (lambda h: ptsz["cuStreamWaitEvent"](None, h, 0), IH, IH),
    }),
    "context": ("context", {
        "cuCtxPushCurrent_v2": (lambda h: L.cuCtxPushCurrent_v2(h), IC, IC),
        "cuCtxSetCurrent": (lambda h: L.cuCtxSetCurrent(h), IC, IC),
        "cuCtxGetDevice_v2": (lambda h: L.cuCtxGetDevice_v2(B(i), h), IC, IC),
        "cuCtxSynchronize_v2": (lambda h: L.cuCtxSynchronize_v2(h), IC, IC),
        "cuCtxGetId": (lambda h: L.cuCtxGetId(h, B(ull)), IC, IC),
        "cuCtxGetApiVersion": (lambda h: L.cuCtxGetApiVersion(h, B(u)), IC, IC),
        "cuCtxGetDevResource": (lambda h: L.cuCtxGetDevResource(h, rbuf, SM), IC, IC),
        "cuCtxDestroy_v2": (lambda h: L.cuCtxDestroy_v2(h), IC, IC),
    }),
    "green": ("green", {
        "cuCtxFromGreenCtx": (lambda h: L.cuCtxFromGreenCtx(B(p1), h), IC, IC),
        "cuGreenCtxGetId": (lambda h: L.cuGreenCtxGetId(h, B(ull)), IC, CD),
        "cuGreenCtxStreamCreate": (lambda h: L.cuGreenCtxStreamCreate(B(p1), h, U(1), 0), IC, IC),
        "cuGreenCtxRecordEvent": (lambda h: L.cuGreenCtxRecordEvent(h, E), IC, IC),
        "cuGreenCtxWaitEvent": (lambda h: L.cuGreenCtxWaitEvent(h, E), IC, IC),
        "cuGreenCtxGetDevResource": (lambda h: L.cuGreenCtxGetDevResource(h, rbuf, SM), IC, IC),
        "cuGreenCtxDestroy": (lambda h: L.cuGreenCtxDestroy(h), IC, CD),
    }),
    "graph": ("graph", {
        "cuGraphGetNodes": (lambda h: L.cuGraphGetNodes(h, None, B(sz)), IV, IV),
        "cuGraphInstantiateWithFlags": (lambda h: L.cuGraphInstantiateWithFlags(B(p1), h, ctypes.c_ulonglong(0)), IV, IV),
        "cuGraphRetainUserObject": (lambda h: L.cuGraphRetainUserObject(h, UO, U(1), U(0)), IV, IV),
        "cuGraphReleaseUserObject": (lambda h: L.cuGraphReleaseUserObject(h, UO, U(1)), IV, IV),
        "cuGraphAddEmptyNode": (lambda h: L.cuGraphAddEmptyNode(B(p1), h, None, ctypes.c_size_t(0)), IV, IV),
        "cuGraphGetId": (lambda h: L.cuGraphGetId(h, B(u)), IV, IV),
        "cuGraphInstantiateWithParams": (lambda h: L.cuGraphInstantiateWithParams(B(p1), h, instantiate_params), IV, IV),
        "cuGraphDestroy": (lambda h: L.cuGraphDestroy(h), IV, IV),
    }),
    "exec": ("exec", {
        "cuGraphLaunch": (lambda h: L.cuGraphLaunch(h, S), IV, IV),
        "cuGraphUpload": (lambda h: L.cuGraphUpload(h, S), IV, IV),
        "cuGraphExecGetId": (lambda h: L.cuGraphExecGetId(h, B(u)), IV, IV),
        "cuGraphExecDestroy": (lambda h: L.cuGraphExecDestroy(h), IV, IV),
    }),
    "desc": ("desc", {
        "cuGreenCtxCreate": (lambda h: L.cuGreenCtxCreate(B(p1), h, 0, U(1)), IV, None),
    }),
    "user": ("user", {
        "cuUserObjectRetain": (lambda h: L.cuUserObjectRetain(h, U(1)), IV, IV),
        "cuUserObjectRelease": (lambda h: L.cuUserObjectRelease(h, U(1)), IV, IV),
        "cuGraphRetainUserObject": (lambda h: L.cuGraphRetainUserObject(P(live["graph"]), h, U(1), U(0)), IV, IV),
        "cuGraphReleaseUserObject": (lambda h: L.cuGraphReleaseUserObject(P(live["graph"]), h, U(1)), IV, IV),
    }),
    "pool": ("pool", {
        "cuMemPoolGetAttribute": (lambda h: L.cuMemPoolGetAttribute(h, 1, B(i)), IV, IV),
        "cuMemPoolSetAttribute": (lambda h: L.cuMemPoolSetAttribute(h, 1, B(i)), IV, IV),
        "cuMemPoolTrimTo": (lambda h: L.cuMemPoolTrimTo(h, ctypes.c_size_t(0)), IV, IV),
        "cuMemPoolGetAccess": (lambda h: L.cuMemPoolGetAccess(B(i), h, loc), IV, IV),
        "cuMemPoolSetAccess": (lambda h: L.cuMemPoolSetAccess(h, None, ctypes.c_size_t(0)), IV, IV),
        "cuMemAllocFromPoolAsync": (lambda h: L.cuMemAllocFromPoolAsync(B(ull), ctypes.c_size_t(64), h, S), IV, IV),
        "cuDeviceSetMemPool": (lambda h: L.cuDeviceSetMemPool(0, h), IV, IV),
        "cuMemPoolDestroy": (lambda h: L.cuMemPoolDestroy(h), IV, IV),
    }),
    "module": ("module", {
        "cuModuleGetFunction": (lambda h: L.cuModuleGetFunction(B(p1), h, b"k"), IH, IH),
        "cuModuleUnload": (lambda h: L.cuModuleUnload(h), IH, IH),
    }),
    "function": ("function", {
        "cuFuncGetName": (lambda h: L.cuFuncGetName(B(p1), h), IH, IH),
        "cuFuncGetAttribute": (lambda h: L.cuFuncGetAttribute(B(i), 0, h), IH, IH),
        "cuLaunchKernel": (lambda h: L.cuLaunchKernel(h, U(1), U(1), U(1), U(1), U(1), U(1), U(0), S, None, None), IH, IH),
    }),
}
OTHER_KINDS = ["stream", "event", "context", "green", "green_ctx", "graph", "exec", "desc",
               "user", "pool", "module", "function"]
# A green context's CUcontext is a context: a right kind for "context", a wrong one for "green".
WRONG = {k: [o for o in OTHER_KINDS if o != k and not (k == "context" and o == "green_ctx")]
         for k in FAMILIES}

kind, calls = FAMILIES[FAMILY]
cases = [(f"garbage: {n}", h, "bad") for n, h in garbage(kind).items()]
if kind not in ("stream", "context", "green"):  # NULL means something for these
    cases.append(("garbage: NULL", 0, "bad"))
cases += [(f"wrong kind: {o}", live[o], "bad") for o in WRONG[kind]]
if kind in dead:
    cases.append(("destroyed", dead[kind], "dead"))
if kind in stale_of:
    cases.append(("stale: slot reused by a newer object", stale_of[kind], "stale"))
if kind == "context":
    cases.append(("destroyed: context of a destroyed green ctx", dead["green_ctx"], "dead"))
if kind == "stream":
    cases.append(("destroyed: stream of a destroyed context", orphan, "dead"))

for fn, (call, bad, destroyed) in calls.items():
    for case, h, how in cases:
        if fn == "cuStreamDestroy_v2" and h == orphan:
            continue  # allowed: the cleanup of a stream whose context is gone (checked below)
        want = bad if how == "bad" else destroyed
        print("START", fn, "|", case, flush=True)
        sim.clear_hazards()
        got = call(P(h))
        hazards = [x for x in sim.hazards() if x.startswith("destroyed_handle")]
        print(json.dumps(dict(fn=fn, case=case, how=how, got=got, want=want, hazards=hazards)), flush=True)

if FAMILY == "stream":
    ok(L.cuStreamDestroy_v2(P(orphan)), "destroy the stream of a destroyed context")
# The live objects still work after all that.
ok(L.cuEventRecord(E, S), "record on the live stream")
ok(L.cuStreamWaitEvent(S, E, U(0)), "wait on the live stream")
ok(L.cuStreamSynchronize(S), "sync the live stream")
ok(L.cuGreenCtxRecordEvent(G, E), "green record")
ok(L.cuGreenCtxWaitEvent(G, E), "green wait")
# The newer objects in reused slots were not touched by the calls with their stale handles.
ok(L.cuStreamQuery(P(newer["stream"])), "query the newer stream")
ok(L.cuEventQuery(P(newer["event"])), "query the newer event")
ok(L.cuCtxGetId(P(newer["context"]), B(ull)), "the newer context")
ok(L.cuGreenCtxGetId(P(newer["green"]), B(ull)), "the newer green context")
ok(L.cuGraphGetNodes(P(newer["graph"]), None, B(sz)), "the newer graph")
ok(L.cuGraphLaunch(P(newer["exec"]), S), "launch the newer exec")
ok(L.cuUserObjectRetain(P(newer["user"]), U(1)), "the newer user object")
ok(L.cuMemPoolTrimTo(P(newer["pool"]), ctypes.c_size_t(0)), "the newer pool")
ok(L.cuModuleGetFunction(B(p1), P(newer["module"]), b"k"), "the newer module")
ok(L.cuFuncGetName(B(p1), P(newer["function"])), "the newer function")
ok(L.cuStreamSynchronize(S), "sync the live stream")
print("DONE", flush=True)
"""


@functools.cache
def run_family(family):
    done = childprocess.run_child(["-c", CHILD, family], GREENRES_SIM=None)
    out = done.stdout.splitlines()
    if done.returncode != 0 or not out or out[-1] != "DONE":
        started = [line for line in out if line.startswith("START ")]
        last = started[-1][6:] if started else "(setup)"
        pytest.fail(f"child exited with {done.returncode} during {last}\n{done.stderr[-3000:]}")
    return tuple(json.loads(line) for line in out if line.startswith("{"))


FAMILIES = [
    "stream",
    "event",
    "context",
    "green",
    "graph",
    "exec",
    "desc",
    "user",
    "pool",
    "module",
    "function",
]
# The kind a destroyed_handle hazard names for the handles of each family.
KIND_NAME = {
    "stream": "stream",
    "event": "event",
    "context": "context",
    "green": "green context",
    "graph": "graph",
    "exec": "graph exec",
    "user": "user object",
    "pool": "memory pool",
    "module": "module",
    "function": "function",
}


def base_name(fn):
    """The function a hazard names: the table's entry without its ABI suffix and note."""
    return re.sub(r"(_v\d+)?(_ptsz)?( \(.*\))?$", "", fn)


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_handles_give_the_documented_error(family):
    results = run_family(family)
    assert results
    wrong = [r for r in results if r["got"] != r["want"]]
    assert not wrong, "\n".join(
        f"{r['fn']} | {r['case']}: got {r['got']}, want {r['want']}" for r in wrong
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_destroyed_and_stale_handles_are_recorded_garbage_is_not(family):
    results = run_family(family)
    wrong = []
    for r in results:
        hazards = r["hazards"]
        if r["how"] == "bad":
            if hazards:
                wrong.append(f"{r['fn']} | {r['case']}: garbage recorded {hazards}")
            continue
        want = f"destroyed_handle: {base_name(r['fn'])}: "
        if len(hazards) != 1 or not hazards[0].startswith(want):
            wrong.append(f"{r['fn']} | {r['case']}: want one hazard {want!r}..., got {hazards}")
            continue
        kind = "context" if "green ctx" in r["case"] else KIND_NAME[family]
        if f" {kind} handle 0x" not in hazards[0]:
            wrong.append(f"{r['fn']} | {r['case']}: {hazards[0]!r} does not name a {kind} handle")
        reused = "its slot reused since" in hazards[0]
        if reused != (r["how"] == "stale"):
            wrong.append(f"{r['fn']} | {r['case']}: {hazards[0]!r}: slot reuse misreported")
        if "destroyed context" in r["case"] and "with its context" not in hazards[0]:
            wrong.append(f"{r['fn']} | {r['case']}: {hazards[0]!r} does not say how")
    assert not wrong, "\n".join(wrong)


SPECIAL_STREAMS = r"""
import ctypes
import greenres.sim as sim
sim.install("h100")
L = ctypes.CDLL(str(sim.LIBRARY_PATH))
P, U = ctypes.c_void_p, ctypes.c_uint
ctx, e = P(), P()
assert L.cuInit(0) == 0
assert L.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0
assert L.cuCtxPushCurrent_v2(ctx) == 0
assert L.cuEventCreate(ctypes.byref(e), U(0)) == 0
for h in (0, 1, 2):  # NULL, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD
    assert L.cuEventRecord(e, P(h)) == 0, h
    assert L.cuStreamWaitEvent(P(h), e, U(0)) == 0, h
    assert L.cuStreamQuery(P(h)) == 0, h
    assert L.cuStreamSynchronize(P(h)) == 0, h
    assert L.cuStreamDestroy_v2(P(h)) == 400, h  # not user streams
print("OK")
"""


def test_special_stream_handles_stay_valid():
    out = run_python(SPECIAL_STREAMS)
    assert out.strip().endswith("OK")


HANDOFF = r"""
import greenres.sim as sim
sim.install("h100")
import greenres
from cuda.bindings import driver as cu
assert cu.cuInit(0)[0] == 0
err, ctx = cu.cuDevicePrimaryCtxRetain(0)
assert cu.cuCtxPushCurrent(ctx)[0] == 0
err, s = cu.cuStreamCreate(1)
err, e = cu.cuEventCreate(0)
for src, dst in ((12345, int(s)), (int(s), 12345), (int(e), int(s)), (0xDEAD0000, int(s))):
    try:
        greenres.handoff(src, dst)
    except Exception as exc:
        print(type(exc).__name__)
    else:
        print("no error")
print("DONE")
"""


def test_handoff_with_a_bogus_stream_raises_instead_of_crashing():
    """The audit's reproducer: greenres.handoff(12345, s) used to segfault in cuEventRecord."""
    out = run_python(HANDOFF)
    lines = out.split()
    assert lines[-1] == "DONE"
    assert "no error" not in lines, out
