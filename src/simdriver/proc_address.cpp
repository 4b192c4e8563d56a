// cuGetProcAddress: how cuda-bindings (and greenres) find every function.
//
// The table lists, for each simulated function name, every ABI variant that
// cudaTypedefs.h defines (PFN_<name>_v<version>). Each entry is type-checked
// against its PFN typedef at compile time (pfn<T>(f) only accepts a function
// of exactly that type). Variants the simulator does not implement (mostly
// the 32-bit v1 ABIs) are listed with a null function so that the version
// rule can still pick them, and then answer "not found" rather than hand out a
// function of the wrong ABI.
//
// Rule: among the variants with version <= min(requested, driver version),
// the highest wins. None -> CUDA_ERROR_NOT_FOUND with
// CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT; unknown name (or a variant
// that is not simulated) -> CUDA_ERROR_NOT_FOUND with SYMBOL_NOT_FOUND.
// With CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM the _ptsz/_ptds variants
// are preferred: they are the same functions with a NULL stream meaning the
// per-thread stream.
#include <cudaTypedefs.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "state.h"

#undef cuGetProcAddress
#undef cuDeviceGetUuid
#undef cuEventElapsedTime

using namespace sim;

// Functions defined in other files without a cuda.h prototype (old ABIs and
// per-thread forms).
extern "C" CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice dev);
extern "C" CUresult cuCtxCreate_v2(CUcontext* pctx, unsigned int flags, CUdevice dev);
extern "C" CUresult cuStreamGetCaptureInfo_v2(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g,
                                              const CUgraphNode** d, size_t* n);
// cudaTypedefs.h defines these old-ABI typedefs only for the driver's own build.
typedef CUresult(CUDAAPI* PFN_cuStreamBeginCapture_v10000)(CUstream hStream);
typedef CUresult(CUDAAPI* PFN_cuStreamBeginCapture_v10000_ptsz)(CUstream hStream);
typedef CUresult(CUDAAPI* PFN_cuGraphInstantiate_v10000)(CUgraphExec* phGraphExec, CUgraph hGraph,
                                                          CUgraphNode* phErrorNode, char* logBuffer, size_t bufferSize);
typedef PFN_cuGraphInstantiate_v10000 PFN_cuGraphInstantiate_v11000;
extern "C" CUresult cuEventElapsedTime(float* ms, CUevent a, CUevent b);
namespace sim {
CUresult begin_capture_v1(CUstream h);
CUresult begin_capture_v1_ptsz(CUstream h);
CUresult begin_capture_ptsz(CUstream h, CUstreamCaptureMode mode);
CUresult end_capture_ptsz(CUstream h, CUgraph* g);
CUresult is_capturing_ptsz(CUstream h, CUstreamCaptureStatus* st);
CUresult capture_info_v1(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id);
CUresult capture_info_v1_ptsz(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id);
CUresult capture_info_v2_ptsz(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g, const CUgraphNode** d, size_t* n);
CUresult capture_info_v3_ptsz(CUstream h, CUstreamCaptureStatus* st, cuuint64_t* id, CUgraph* g, const CUgraphNode** d,
                              const CUgraphEdgeData** e, size_t* n);
CUresult graph_instantiate_v1(CUgraphExec* phExec, CUgraph hGraph, CUgraphNode* errNode, char* log, size_t n);
CUresult graph_add_kernel_node_v1(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n,
                                  const CUDA_KERNEL_NODE_PARAMS_v1* p);
CUresult graph_kernel_node_get_params_v1(CUgraphNode h, CUDA_KERNEL_NODE_PARAMS_v1* p);
CUresult graph_kernel_node_set_params_v1(CUgraphNode h, const CUDA_KERNEL_NODE_PARAMS_v1* p);
CUresult graph_get_edges_v1(CUgraph g, CUgraphNode* from, CUgraphNode* to, size_t* count);
CUresult node_get_dependencies_v1(CUgraphNode h, CUgraphNode* out, size_t* count);
CUresult node_get_dependents_v1(CUgraphNode h, CUgraphNode* out, size_t* count);
CUresult graph_add_dependencies_v1(CUgraph g, const CUgraphNode* from, const CUgraphNode* to, size_t n);
CUresult graph_remove_dependencies_v1(CUgraph g, const CUgraphNode* from, const CUgraphNode* to, size_t n);
CUresult graph_add_node_v1(CUgraphNode* out, CUgraph g, const CUgraphNode* deps, size_t n, CUgraphNodeParams* p);
CUresult graph_node_set_params_v1(CUgraphNode h, CUgraphNodeParams* p);
CUresult graph_exec_update_v1(CUgraphExec e, CUgraph g, CUgraphNode* err, CUgraphExecUpdateResult* result);
CUresult begin_capture_to_graph_ptsz(CUstream h, CUgraph g, const CUgraphNode* deps, const CUgraphEdgeData* edges,
                                     size_t n, CUstreamCaptureMode mode);
CUresult update_capture_deps_v1(CUstream h, CUgraphNode* deps, size_t n, unsigned int flags);
CUresult update_capture_deps_v1_ptsz(CUstream h, CUgraphNode* deps, size_t n, unsigned int flags);
CUresult update_capture_deps_ptsz(CUstream h, CUgraphNode* deps, const CUgraphEdgeData* edges, size_t n,
                                  unsigned int flags);
CUresult graph_launch_ptsz(CUgraphExec e, CUstream h);
CUresult graph_instantiate_params_ptsz(CUgraphExec* phExec, CUgraph hGraph, CUDA_GRAPH_INSTANTIATE_PARAMS* params);
CUresult memAllocAsync_ptsz(CUdeviceptr* dptr, size_t bytesize, CUstream h);
CUresult memAllocFromPoolAsync_ptsz(CUdeviceptr* dptr, size_t bytesize, CUmemoryPool pool, CUstream h);
CUresult memFreeAsync_ptsz(CUdeviceptr dptr, CUstream h);
CUresult launchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                           unsigned int by, unsigned int bz, unsigned int shared, CUstream h, void** params,
                           void** extra);
CUresult launchKernelEx_ptsz(const CUlaunchConfig* config, CUfunction f, void** params, void** extra);
CUresult graph_upload_ptsz(CUgraphExec e, CUstream h);
CUresult memsetD8_ptds(CUdeviceptr d, unsigned char v, size_t n);
CUresult memsetD32_ptds(CUdeviceptr d, unsigned int v, size_t n);
CUresult memcpyHtoD_ptds(CUdeviceptr d, const void* s, size_t n);
CUresult memcpyDtoH_ptds(void* d, CUdeviceptr s, size_t n);
CUresult memcpyDtoD_ptds(CUdeviceptr d, CUdeviceptr s, size_t n);
CUresult memcpy_ptds(CUdeviceptr d, CUdeviceptr s, size_t n);
CUresult memsetD8Async_ptsz(CUdeviceptr d, unsigned char v, size_t n, CUstream h);
CUresult memsetD32Async_ptsz(CUdeviceptr d, unsigned int v, size_t n, CUstream h);
CUresult memcpyHtoDAsync_ptsz(CUdeviceptr d, const void* s, size_t n, CUstream h);
CUresult memcpyDtoHAsync_ptsz(void* d, CUdeviceptr s, size_t n, CUstream h);
CUresult memcpyDtoDAsync_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream h);
CUresult memcpyAsync_ptsz(CUdeviceptr d, CUdeviceptr s, size_t n, CUstream h);
CUresult launchHostFunc_ptsz(CUstream h, CUhostFn fn, void* data);
CUresult launchHostFunc_v2_ptsz(CUstream h, CUhostFn fn, void* data, unsigned int mode);

// Per-thread forms of the stream functions.
static CUresult pt_get_priority(CUstream h, int* p) { return stream_get_priority(h, p, true); }
static CUresult pt_get_flags(CUstream h, unsigned int* f) { return stream_get_flags(h, f, true); }
static CUresult pt_get_id(CUstream h, unsigned long long* id) { return stream_get_id(h, id, true); }
static CUresult pt_get_device(CUstream h, CUdevice* d) { return stream_get_device(h, d, true); }
static CUresult pt_get_ctx(CUstream h, CUcontext* c) { return stream_get_ctx(h, c, true); }
static CUresult pt_get_ctx_v2(CUstream h, CUcontext* c, CUgreenCtx* g) { return stream_get_ctx_v2(h, c, g, true); }
static CUresult pt_query(CUstream h) { return stream_query(h, true); }
static CUresult pt_synchronize(CUstream h) { return stream_synchronize(h, true); }
static CUresult pt_wait_event(CUstream h, CUevent e, unsigned int f) { return stream_wait_event(h, e, f, true); }
static CUresult pt_event_record(CUevent e, CUstream h) {
    SIM_ENTER_INIT("cuEventRecord");
    return event_record(e, h, 0, true);
}
static CUresult pt_event_record_flags(CUevent e, CUstream h, unsigned int f) {
    SIM_ENTER_INIT("cuEventRecordWithFlags");
    return event_record(e, h, f, true);
}
}  // namespace sim

extern "C" CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags,
                                        CUdriverProcAddressQueryResult* symbolStatus);
extern "C" CUresult cuGetProcAddress(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags);
extern "C" CUresult cuGetExportTable(const void** ppExportTable, const CUuuid* pExportTableId);

namespace {

struct Entry {
    const char* name;
    int version;
    void* fn;        // null: a variant that exists in CUDA but is not simulated
    bool per_thread; // a _ptsz / _ptds variant
};

template <class PFN>
constexpr void* pfn(PFN f) {
    return reinterpret_cast<void*>(f);
}

#define V(NAME, VER, FN) {#NAME, VER, pfn<PFN_##NAME##_v##VER>(FN), false}
#define N(NAME, VER) {#NAME, VER, nullptr, false}
#define PZ(NAME, VER, FN) {#NAME, VER, pfn<PFN_##NAME##_v##VER##_ptsz>(FN), true}
#define PD(NAME, VER, FN) {#NAME, VER, pfn<PFN_##NAME##_v##VER##_ptds>(FN), true}

const Entry kTable[] = {
    // init, version, errors, proc address
    V(cuInit, 2000, &cuInit),
    V(cuDriverGetVersion, 2020, &cuDriverGetVersion),
    V(cuGetErrorName, 6000, &cuGetErrorName),
    V(cuGetErrorString, 6000, &cuGetErrorString),
    V(cuGetProcAddress, 11030, &cuGetProcAddress),
    V(cuGetProcAddress, 12000, &cuGetProcAddress_v2),
    V(cuGetExportTable, 3000, &cuGetExportTable),
    // devices
    V(cuDeviceGet, 2000, &cuDeviceGet),
    V(cuDeviceGetCount, 2000, &cuDeviceGetCount),
    V(cuDeviceGetName, 2000, &cuDeviceGetName),
    V(cuDeviceGetUuid, 9020, &cuDeviceGetUuid),
    V(cuDeviceGetUuid, 11040, &cuDeviceGetUuid_v2),
    V(cuDeviceGetAttribute, 2000, &cuDeviceGetAttribute),
    N(cuDeviceTotalMem, 2000),
    V(cuDeviceTotalMem, 3020, &cuDeviceTotalMem_v2),
    V(cuDeviceGetPCIBusId, 4010, &cuDeviceGetPCIBusId),
    V(cuDeviceCanAccessPeer, 4000, &cuDeviceCanAccessPeer),
    // primary contexts
    V(cuDevicePrimaryCtxRetain, 7000, &cuDevicePrimaryCtxRetain),
    N(cuDevicePrimaryCtxRelease, 7000),
    V(cuDevicePrimaryCtxRelease, 11000, &cuDevicePrimaryCtxRelease_v2),
    V(cuDevicePrimaryCtxGetState, 7000, &cuDevicePrimaryCtxGetState),
    N(cuDevicePrimaryCtxReset, 7000),
    V(cuDevicePrimaryCtxReset, 11000, &cuDevicePrimaryCtxReset_v2),
    N(cuDevicePrimaryCtxSetFlags, 7000),
    V(cuDevicePrimaryCtxSetFlags, 11000, &cuDevicePrimaryCtxSetFlags_v2),
    // contexts
    N(cuCtxCreate, 2000),
    V(cuCtxCreate, 3020, &cuCtxCreate_v2),
    N(cuCtxCreate, 11040),
    V(cuCtxCreate, 12050, &cuCtxCreate_v4),
    N(cuCtxDestroy, 2000),
    V(cuCtxDestroy, 4000, &cuCtxDestroy_v2),
    N(cuCtxPushCurrent, 2000),
    V(cuCtxPushCurrent, 4000, &cuCtxPushCurrent_v2),
    N(cuCtxPopCurrent, 2000),
    V(cuCtxPopCurrent, 4000, &cuCtxPopCurrent_v2),
    V(cuCtxSetCurrent, 4000, &cuCtxSetCurrent),
    V(cuCtxGetCurrent, 4000, &cuCtxGetCurrent),
    V(cuCtxGetDevice, 2000, &cuCtxGetDevice),
    V(cuCtxGetDevice, 13000, &cuCtxGetDevice_v2),
    V(cuCtxSynchronize, 2000, &cuCtxSynchronize),
    V(cuCtxSynchronize, 13000, &cuCtxSynchronize_v2),
    V(cuCtxGetId, 12000, &cuCtxGetId),
    V(cuCtxGetApiVersion, 3020, &cuCtxGetApiVersion),
    V(cuCtxGetFlags, 7000, &cuCtxGetFlags),
    V(cuCtxGetStreamPriorityRange, 5050, &cuCtxGetStreamPriorityRange),
    V(cuCtxGetDevResource, 12040, &cuCtxGetDevResource),
    // resources and green contexts
    V(cuDeviceGetDevResource, 12040, &cuDeviceGetDevResource),
    V(cuGreenCtxGetDevResource, 12040, &cuGreenCtxGetDevResource),
    V(cuDevSmResourceSplitByCount, 12040, &cuDevSmResourceSplitByCount),
    V(cuDevSmResourceSplit, 13010, &cuDevSmResourceSplit),
    V(cuDevResourceGenerateDesc, 12040, &cuDevResourceGenerateDesc),
    V(cuGreenCtxCreate, 12040, &cuGreenCtxCreate),
    V(cuGreenCtxDestroy, 12040, &cuGreenCtxDestroy),
    V(cuCtxFromGreenCtx, 12040, &cuCtxFromGreenCtx),
    V(cuGreenCtxRecordEvent, 12040, &cuGreenCtxRecordEvent),
    V(cuGreenCtxWaitEvent, 12040, &cuGreenCtxWaitEvent),
    V(cuStreamGetGreenCtx, 12040, &cuStreamGetGreenCtx),
    V(cuStreamGetDevResource, 13010, &cuStreamGetDevResource),
    V(cuGreenCtxStreamCreate, 12050, &cuGreenCtxStreamCreate),
    V(cuGreenCtxGetId, 12090, &cuGreenCtxGetId),
    // streams
    V(cuStreamCreate, 2000, &cuStreamCreate),
    V(cuStreamCreateWithPriority, 5050, &cuStreamCreateWithPriority),
    V(cuStreamGetPriority, 5050, &cuStreamGetPriority),
    PZ(cuStreamGetPriority, 7000, &pt_get_priority),
    V(cuStreamGetFlags, 5050, &cuStreamGetFlags),
    PZ(cuStreamGetFlags, 7000, &pt_get_flags),
    V(cuStreamGetId, 12000, &cuStreamGetId),
    PZ(cuStreamGetId, 12000, &pt_get_id),
    V(cuStreamGetDevice, 12080, &cuStreamGetDevice),
    PZ(cuStreamGetDevice, 12080, &pt_get_device),
    V(cuStreamGetCtx, 9020, &cuStreamGetCtx),
    PZ(cuStreamGetCtx, 9020, &pt_get_ctx),
    V(cuStreamGetCtx, 12050, &cuStreamGetCtx_v2),
    PZ(cuStreamGetCtx, 12050, &pt_get_ctx_v2),
    N(cuStreamDestroy, 2000),
    V(cuStreamDestroy, 4000, &cuStreamDestroy_v2),
    V(cuStreamQuery, 2000, &cuStreamQuery),
    PZ(cuStreamQuery, 7000, &pt_query),
    V(cuStreamSynchronize, 2000, &cuStreamSynchronize),
    PZ(cuStreamSynchronize, 7000, &pt_synchronize),
    V(cuStreamWaitEvent, 3020, &cuStreamWaitEvent),
    PZ(cuStreamWaitEvent, 7000, &pt_wait_event),
    // events
    V(cuEventCreate, 2000, &cuEventCreate),
    V(cuEventRecord, 2000, &cuEventRecord),
    PZ(cuEventRecord, 7000, &pt_event_record),
    V(cuEventRecordWithFlags, 11010, &cuEventRecordWithFlags),
    PZ(cuEventRecordWithFlags, 11010, &pt_event_record_flags),
    V(cuEventQuery, 2000, &cuEventQuery),
    V(cuEventSynchronize, 2000, &cuEventSynchronize),
    V(cuEventElapsedTime, 2000, &cuEventElapsedTime),
    V(cuEventElapsedTime, 12080, &cuEventElapsedTime_v2),
    N(cuEventDestroy, 2000),
    V(cuEventDestroy, 4000, &cuEventDestroy_v2),
    // memory
    N(cuMemAlloc, 2000),
    V(cuMemAlloc, 3020, &cuMemAlloc_v2),
    N(cuMemFree, 2000),
    V(cuMemFree, 3020, &cuMemFree_v2),
    N(cuMemAllocHost, 2000),
    V(cuMemAllocHost, 3020, &cuMemAllocHost_v2),
    V(cuPointerGetAttribute, 4000, &cuPointerGetAttribute),
    V(cuMemFreeHost, 2000, &cuMemFreeHost),
    N(cuMemGetInfo, 2000),
    V(cuMemGetInfo, 3020, &cuMemGetInfo_v2),
    N(cuMemsetD8, 2000),
    V(cuMemsetD8, 3020, &cuMemsetD8_v2),
    PD(cuMemsetD8, 7000, &memsetD8_ptds),
    N(cuMemsetD32, 2000),
    V(cuMemsetD32, 3020, &cuMemsetD32_v2),
    PD(cuMemsetD32, 7000, &memsetD32_ptds),
    V(cuMemsetD8Async, 3020, &cuMemsetD8Async),
    PZ(cuMemsetD8Async, 7000, &memsetD8Async_ptsz),
    V(cuMemsetD32Async, 3020, &cuMemsetD32Async),
    PZ(cuMemsetD32Async, 7000, &memsetD32Async_ptsz),
    N(cuMemcpyHtoD, 2000),
    V(cuMemcpyHtoD, 3020, &cuMemcpyHtoD_v2),
    PD(cuMemcpyHtoD, 7000, &memcpyHtoD_ptds),
    N(cuMemcpyDtoH, 2000),
    V(cuMemcpyDtoH, 3020, &cuMemcpyDtoH_v2),
    PD(cuMemcpyDtoH, 7000, &memcpyDtoH_ptds),
    N(cuMemcpyDtoD, 2000),
    V(cuMemcpyDtoD, 3020, &cuMemcpyDtoD_v2),
    PD(cuMemcpyDtoD, 7000, &memcpyDtoD_ptds),
    V(cuMemcpy, 4000, &cuMemcpy),
    PD(cuMemcpy, 7000, &memcpy_ptds),
    N(cuMemcpyHtoDAsync, 2000),
    V(cuMemcpyHtoDAsync, 3020, &cuMemcpyHtoDAsync_v2),
    PZ(cuMemcpyHtoDAsync, 7000, &memcpyHtoDAsync_ptsz),
    N(cuMemcpyDtoHAsync, 2000),
    V(cuMemcpyDtoHAsync, 3020, &cuMemcpyDtoHAsync_v2),
    PZ(cuMemcpyDtoHAsync, 7000, &memcpyDtoHAsync_ptsz),
    N(cuMemcpyDtoDAsync, 3000),
    V(cuMemcpyDtoDAsync, 3020, &cuMemcpyDtoDAsync_v2),
    PZ(cuMemcpyDtoDAsync, 7000, &memcpyDtoDAsync_ptsz),
    V(cuMemcpyAsync, 4000, &cuMemcpyAsync),
    PZ(cuMemcpyAsync, 7000, &memcpyAsync_ptsz),
    V(cuLaunchHostFunc, 10000, &cuLaunchHostFunc),
    PZ(cuLaunchHostFunc, 10000, &launchHostFunc_ptsz),
    V(cuLaunchHostFunc, 13010, &cuLaunchHostFunc_v2),
    PZ(cuLaunchHostFunc, 13010, &launchHostFunc_v2_ptsz),
    // capture
    V(cuStreamBeginCapture, 10000, &begin_capture_v1),
    PZ(cuStreamBeginCapture, 10000, &begin_capture_v1_ptsz),
    V(cuStreamBeginCapture, 10010, &cuStreamBeginCapture_v2),
    PZ(cuStreamBeginCapture, 10010, &begin_capture_ptsz),
    V(cuStreamEndCapture, 10000, &cuStreamEndCapture),
    PZ(cuStreamEndCapture, 10000, &end_capture_ptsz),
    V(cuStreamIsCapturing, 10000, &cuStreamIsCapturing),
    PZ(cuStreamIsCapturing, 10000, &is_capturing_ptsz),
    V(cuStreamGetCaptureInfo, 10010, &capture_info_v1),
    PZ(cuStreamGetCaptureInfo, 10010, &capture_info_v1_ptsz),
    V(cuStreamGetCaptureInfo, 11030, &cuStreamGetCaptureInfo_v2),
    PZ(cuStreamGetCaptureInfo, 11030, &capture_info_v2_ptsz),
    V(cuStreamGetCaptureInfo, 12030, &cuStreamGetCaptureInfo_v3),
    PZ(cuStreamGetCaptureInfo, 12030, &capture_info_v3_ptsz),
    V(cuThreadExchangeStreamCaptureMode, 10010, &cuThreadExchangeStreamCaptureMode),
    // graphs
    V(cuGraphCreate, 10000, &cuGraphCreate),
    V(cuGraphDestroy, 10000, &cuGraphDestroy),
    V(cuGraphGetNodes, 10000, &cuGraphGetNodes),
    V(cuGraphInstantiate, 10000, &graph_instantiate_v1),
    V(cuGraphInstantiate, 11000, &graph_instantiate_v1),
    V(cuGraphInstantiateWithFlags, 11040, &cuGraphInstantiateWithFlags),
    V(cuGraphLaunch, 10000, &cuGraphLaunch),
    PZ(cuGraphLaunch, 10000, &graph_launch_ptsz),
    V(cuGraphUpload, 11010, &cuGraphUpload),
    PZ(cuGraphUpload, 11010, &graph_upload_ptsz),
    V(cuGraphExecDestroy, 10000, &cuGraphExecDestroy),
    V(cuGraphInstantiateWithParams, 12000, &cuGraphInstantiateWithParams),
    PZ(cuGraphInstantiateWithParams, 12000, &graph_instantiate_params_ptsz),
    V(cuGraphAddEmptyNode, 10000, &cuGraphAddEmptyNode),
    // graphs by node (api_graph_nodes.cpp, api_graph_edges.cpp, api_graphs.cpp, api_graph_exec.cpp)
    V(cuGraphAddKernelNode, 10000, &graph_add_kernel_node_v1),
    V(cuGraphAddKernelNode, 12000, &cuGraphAddKernelNode_v2),
    V(cuGraphKernelNodeGetParams, 10000, &graph_kernel_node_get_params_v1),
    V(cuGraphKernelNodeGetParams, 12000, &cuGraphKernelNodeGetParams_v2),
    V(cuGraphKernelNodeSetParams, 10000, &graph_kernel_node_set_params_v1),
    V(cuGraphKernelNodeSetParams, 12000, &cuGraphKernelNodeSetParams_v2),
    V(cuGraphAddMemsetNode, 10000, &cuGraphAddMemsetNode),
    V(cuGraphMemsetNodeGetParams, 10000, &cuGraphMemsetNodeGetParams),
    V(cuGraphMemsetNodeSetParams, 10000, &cuGraphMemsetNodeSetParams),
    V(cuGraphAddMemcpyNode, 10000, &cuGraphAddMemcpyNode),
    V(cuGraphMemcpyNodeGetParams, 10000, &cuGraphMemcpyNodeGetParams),
    V(cuGraphMemcpyNodeSetParams, 10000, &cuGraphMemcpyNodeSetParams),
    V(cuGraphAddHostNode, 10000, &cuGraphAddHostNode),
    V(cuGraphHostNodeGetParams, 10000, &cuGraphHostNodeGetParams),
    V(cuGraphHostNodeSetParams, 10000, &cuGraphHostNodeSetParams),
    V(cuGraphAddChildGraphNode, 10000, &cuGraphAddChildGraphNode),
    V(cuGraphChildGraphNodeGetGraph, 10000, &cuGraphChildGraphNodeGetGraph),
    V(cuGraphAddEventRecordNode, 11010, &cuGraphAddEventRecordNode),
    V(cuGraphEventRecordNodeGetEvent, 11010, &cuGraphEventRecordNodeGetEvent),
    V(cuGraphEventRecordNodeSetEvent, 11010, &cuGraphEventRecordNodeSetEvent),
    V(cuGraphAddEventWaitNode, 11010, &cuGraphAddEventWaitNode),
    V(cuGraphEventWaitNodeGetEvent, 11010, &cuGraphEventWaitNodeGetEvent),
    V(cuGraphEventWaitNodeSetEvent, 11010, &cuGraphEventWaitNodeSetEvent),
    V(cuGraphAddMemAllocNode, 11040, &cuGraphAddMemAllocNode),
    V(cuGraphMemAllocNodeGetParams, 11040, &cuGraphMemAllocNodeGetParams),
    V(cuGraphAddMemFreeNode, 11040, &cuGraphAddMemFreeNode),
    V(cuGraphMemFreeNodeGetParams, 11040, &cuGraphMemFreeNodeGetParams),
    V(cuGraphAddNode, 12020, &graph_add_node_v1),
    V(cuGraphAddNode, 12030, &cuGraphAddNode_v2),
    V(cuGraphAddNode, 13040, &cuGraphAddNode_v2),
    V(cuGraphNodeSetParams, 12020, &graph_node_set_params_v1),
    V(cuGraphNodeSetParams, 13040, &cuGraphNodeSetParams_v2),
    V(cuGraphNodeGetParams, 13020, &cuGraphNodeGetParams),
    V(cuGraphExecNodeSetParams, 12020, &cuGraphExecNodeSetParams),
    V(cuGraphNodeGetType, 10000, &cuGraphNodeGetType),
    V(cuGraphNodeGetContainingGraph, 13010, &cuGraphNodeGetContainingGraph),
    V(cuGraphNodeGetLocalId, 13010, &cuGraphNodeGetLocalId),
    V(cuGraphNodeGetToolsId, 13010, &cuGraphNodeGetToolsId),
    V(cuGraphGetRootNodes, 10000, &cuGraphGetRootNodes),
    V(cuGraphGetEdges, 10000, &graph_get_edges_v1),
    V(cuGraphGetEdges, 12030, &cuGraphGetEdges_v2),
    V(cuGraphNodeGetDependencies, 10000, &node_get_dependencies_v1),
    V(cuGraphNodeGetDependencies, 12030, &cuGraphNodeGetDependencies_v2),
    V(cuGraphNodeGetDependentNodes, 10000, &node_get_dependents_v1),
    V(cuGraphNodeGetDependentNodes, 12030, &cuGraphNodeGetDependentNodes_v2),
    V(cuGraphAddDependencies, 10000, &graph_add_dependencies_v1),
    V(cuGraphAddDependencies, 12030, &cuGraphAddDependencies_v2),
    V(cuGraphRemoveDependencies, 10000, &graph_remove_dependencies_v1),
    V(cuGraphRemoveDependencies, 12030, &cuGraphRemoveDependencies_v2),
    V(cuGraphDestroyNode, 10000, &cuGraphDestroyNode),
    V(cuGraphClone, 10000, &cuGraphClone),
    V(cuGraphNodeFindInClone, 10000, &cuGraphNodeFindInClone),
    V(cuGraphDebugDotPrint, 11030, &cuGraphDebugDotPrint),
    V(cuGraphConditionalHandleCreate, 12030, &cuGraphConditionalHandleCreate),
    V(cuGraphExecGetFlags, 12000, &cuGraphExecGetFlags),
    V(cuGraphExecUpdate, 10020, &graph_exec_update_v1),
    V(cuGraphExecUpdate, 12000, &cuGraphExecUpdate_v2),
    V(cuGraphExecKernelNodeSetParams, 12000, &cuGraphExecKernelNodeSetParams_v2),
    N(cuGraphExecKernelNodeSetParams, 10010),
    V(cuGraphExecMemsetNodeSetParams, 10020, &cuGraphExecMemsetNodeSetParams),
    V(cuGraphExecMemcpyNodeSetParams, 10020, &cuGraphExecMemcpyNodeSetParams),
    V(cuGraphExecHostNodeSetParams, 10020, &cuGraphExecHostNodeSetParams),
    V(cuGraphExecChildGraphNodeSetParams, 11010, &cuGraphExecChildGraphNodeSetParams),
    V(cuGraphExecEventRecordNodeSetEvent, 11010, &cuGraphExecEventRecordNodeSetEvent),
    V(cuGraphExecEventWaitNodeSetEvent, 11010, &cuGraphExecEventWaitNodeSetEvent),
    V(cuGraphNodeSetEnabled, 11060, &cuGraphNodeSetEnabled),
    V(cuGraphNodeGetEnabled, 11060, &cuGraphNodeGetEnabled),
    V(cuStreamBeginCaptureToGraph, 12030, &cuStreamBeginCaptureToGraph),
    PZ(cuStreamBeginCaptureToGraph, 12030, &begin_capture_to_graph_ptsz),
    V(cuStreamUpdateCaptureDependencies, 11030, &update_capture_deps_v1),
    PZ(cuStreamUpdateCaptureDependencies, 11030, &update_capture_deps_v1_ptsz),
    V(cuStreamUpdateCaptureDependencies, 12030, &cuStreamUpdateCaptureDependencies_v2),
    PZ(cuStreamUpdateCaptureDependencies, 12030, &update_capture_deps_ptsz),
    V(cuGraphGetId, 13010, &cuGraphGetId),
    V(cuGraphExecGetId, 13010, &cuGraphExecGetId),
    // memory pools and stream-ordered allocation
    V(cuDeviceGetDefaultMemPool, 11020, &cuDeviceGetDefaultMemPool),
    V(cuDeviceGetMemPool, 11020, &cuDeviceGetMemPool),
    V(cuDeviceSetMemPool, 11020, &cuDeviceSetMemPool),
    V(cuMemPoolCreate, 11020, &cuMemPoolCreate),
    V(cuMemPoolDestroy, 11020, &cuMemPoolDestroy),
    V(cuMemPoolGetAttribute, 11020, &cuMemPoolGetAttribute),
    V(cuMemPoolSetAttribute, 11020, &cuMemPoolSetAttribute),
    V(cuMemPoolTrimTo, 11020, &cuMemPoolTrimTo),
    V(cuMemPoolSetAccess, 11020, &cuMemPoolSetAccess),
    V(cuMemPoolGetAccess, 11020, &cuMemPoolGetAccess),
    V(cuMemAllocAsync, 11020, &cuMemAllocAsync),
    PZ(cuMemAllocAsync, 11020, &memAllocAsync_ptsz),
    V(cuMemAllocFromPoolAsync, 11020, &cuMemAllocFromPoolAsync),
    PZ(cuMemAllocFromPoolAsync, 11020, &memAllocFromPoolAsync_ptsz),
    V(cuMemFreeAsync, 11020, &cuMemFreeAsync),
    PZ(cuMemFreeAsync, 11020, &memFreeAsync_ptsz),
    // modules, libraries, kernels (host models)
    V(cuModuleLoad, 2000, &cuModuleLoad),
    V(cuModuleLoadData, 2000, &cuModuleLoadData),
    V(cuModuleLoadDataEx, 2010, &cuModuleLoadDataEx),
    V(cuModuleUnload, 2000, &cuModuleUnload),
    V(cuModuleGetFunction, 2000, &cuModuleGetFunction),
    V(cuFuncGetName, 12030, &cuFuncGetName),
    V(cuFuncGetAttribute, 2020, &cuFuncGetAttribute),
    V(cuLibraryLoadData, 12000, &cuLibraryLoadData),
    V(cuLibraryLoadFromFile, 12000, &cuLibraryLoadFromFile),
    V(cuLibraryUnload, 12000, &cuLibraryUnload),
    V(cuLibraryGetKernel, 12000, &cuLibraryGetKernel),
    V(cuKernelGetFunction, 12000, &cuKernelGetFunction),
    V(cuKernelGetName, 12030, &cuKernelGetName),
    V(cuKernelGetParamInfo, 12040, &cuKernelGetParamInfo),
    V(cuFuncGetParamInfo, 12040, &cuFuncGetParamInfo),
    V(cuKernelGetAttribute, 12000, &cuKernelGetAttribute),
    V(cuLaunchKernel, 4000, &cuLaunchKernel),
    PZ(cuLaunchKernel, 7000, &launchKernel_ptsz),
    V(cuLaunchKernelEx, 11060, &cuLaunchKernelEx),
    PZ(cuLaunchKernelEx, 11060, &launchKernelEx_ptsz),
    // user objects
    V(cuUserObjectCreate, 11030, &cuUserObjectCreate),
    V(cuUserObjectRetain, 11030, &cuUserObjectRetain),
    V(cuUserObjectRelease, 11030, &cuUserObjectRelease),
    V(cuGraphRetainUserObject, 11030, &cuGraphRetainUserObject),
    V(cuGraphReleaseUserObject, 11030, &cuGraphReleaseUserObject),
};

CUresult lookup(const char* symbol, void** out, int version, cuuint64_t flags, CUdriverProcAddressQueryResult* status) {
    if (symbol == nullptr || out == nullptr) return CUDA_ERROR_INVALID_VALUE;
    const cuuint64_t known = CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    if (flags & ~known) return CUDA_ERROR_INVALID_VALUE;
    *out = nullptr;
    int limit = version < g_driver_version ? version : g_driver_version;
    bool per_thread = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    const Entry* best = nullptr;
    const Entry* best_pt = nullptr;
    bool known_name = false;
    for (const Entry& e : kTable) {
        if (strcmp(e.name, symbol) != 0) continue;
        known_name = true;
        if (e.version > limit) continue;
        const Entry*& slot = e.per_thread ? best_pt : best;
        if (slot == nullptr || e.version > slot->version) slot = &e;
    }
    // A per-thread variant only replaces a default variant of the same ABI
    // generation (its version is at least the default one's).
    if (per_thread && best_pt != nullptr && (best == nullptr || best_pt->version >= best->version)) best = best_pt;
    CUdriverProcAddressQueryResult st;
    CUresult r;
    if (best != nullptr && best->fn != nullptr) {
        *out = best->fn;
        st = CU_GET_PROC_ADDRESS_SUCCESS;
        r = CUDA_SUCCESS;
    } else {
        st = (known_name && best == nullptr) ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
                                             : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        r = CUDA_ERROR_NOT_FOUND;
    }
    if (status != nullptr) *status = st;
    static const bool trace = getenv("GREENRES_SIM_TRACE") != nullptr;
    if (trace) fprintf(stderr, "[greenres.sim] cuGetProcAddress(%s, %d, flags=%llu) -> %s\n", symbol, version,
                       (unsigned long long)flags, r == CUDA_SUCCESS ? "ok" : (st == CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT ? "version not sufficient" : "not found"));
    return r;
}

}  // namespace

SIM_EXPORT CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags,
                                        CUdriverProcAddressQueryResult* symbolStatus) {
    SIM_ENTER("cuGetProcAddress");
    return lookup(symbol, pfn, cudaVersion, flags, symbolStatus);
}

SIM_EXPORT CUresult cuGetProcAddress(const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags) {
    SIM_ENTER("cuGetProcAddress");
    return lookup(symbol, pfn, cudaVersion, flags, nullptr);
}

// The private tables of function pointers that NVIDIA's own libraries (the
// CUDA runtime, NVRTC, cuBLAS...) fetch by UUID. The simulator has none, but
// the symbol must exist: NVRTC dlsym()s it from whatever libcuda.so.1 is
// loaded and calls it without checking for NULL, so a missing symbol was a
// segfault. guess: cuda.h declares the function without documenting it; an
// unknown id answers CUDA_ERROR_NOT_FOUND ("a named symbol was not found",
// what cuGetProcAddress answers for an unknown name) with the out-pointer
// cleared, so a caller that reads it without checking the result reads NULL,
// never stale memory. Needs no cuInit: the runtime asks before initialising.
SIM_EXPORT CUresult cuGetExportTable(const void** ppExportTable, const CUuuid* pExportTableId) {
    SIM_ENTER("cuGetExportTable");
    if (ppExportTable == nullptr) return CUDA_ERROR_INVALID_VALUE;
    *ppExportTable = nullptr;
    if (pExportTableId == nullptr) return CUDA_ERROR_INVALID_VALUE;
    return CUDA_ERROR_NOT_FOUND;
}

// The names the simulator answers, for tests and documentation.
SIM_EXPORT int greenres_sim_function_count(void) { return (int)(sizeof kTable / sizeof kTable[0]); }
SIM_EXPORT const char* greenres_sim_function_entry(int i, int* version, int* implemented, int* per_thread) {
    if (i < 0 || i >= greenres_sim_function_count()) return nullptr;
    const Entry& e = kTable[i];
    if (version) *version = e.version;
    if (implemented) *implemented = e.fn != nullptr;
    if (per_thread) *per_thread = e.per_thread;
    return e.name;
}
