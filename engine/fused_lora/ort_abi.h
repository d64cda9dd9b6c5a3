// ort_abi.h -- hand-written, minimal description of the ONNX Runtime C ABI
// needed to build a custom-operator shared library without the official
// onnxruntime headers.
//
// Written independently from the layout facts of ONNX Runtime's public C API
// (microsoft/onnxruntime include/onnxruntime/core/session/onnxruntime_c_api.h).
// Sources consulted (stored public copies, read-only):
//   * the newest stored copy of that header, ORT_API_VERSION 30 (comment-stripped
//     copy; exact commit unknown, index id 70143657410), used for the slot count
//     and for OrtCustomOp;
//   * a commented copy with ORT_API_VERSION 24 (index id 15150328331), OrtCustomOp;
//   * microsoft/onnxruntime onnxruntime/core/session/onnxruntime_c_api.cc
//     (v1.11 era), whose table `ort_api_1_to_10` and static_asserts
//     (ReleaseCustomOpDomain==101, ReleaseModelMetadata==118,
//      AddFreeDimensionOverrideByName==124, ReleaseAvailableProviders==126,
//      SetGlobalSpinControl==149, ReleaseArenaCfg==157, GetCurrentGpuDeviceId==161,
//      CreateSessionFromArrayWithPrepackedWeightsContainer==169) were used as a
//      second, independent count;
//   * onnxruntime/core/session/custom_ops.cc (how `OrtCustomOp::version` gates
//     which members ORT reads).
// Verified at run time against onnxruntime 1.31.1 (CPU wheel), see
// /tmp/abi_check in the report that came with this file.
//
// Platform: Linux x86-64 / aarch64 only. ORT_API_CALL is empty there (it is
// __stdcall only on 32-bit Windows), so every function pointer below is a plain
// C-calling-convention pointer.
//
// OrtApi is append-only: a slot index, once shipped, never moves. Every member
// of `struct OrtApi` is exactly one pointer-sized slot, whether it is written as
// ORT_API2_STATUS(Name, ...), ORT_CLASS_RELEASE(X) (-> one `ReleaseX` slot),
// ORT_API_T(ret, Name, ...) or a spelled-out function pointer.

#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Opaque handle types (never dereferenced by us).
// ---------------------------------------------------------------------------
typedef struct OrtStatus OrtStatus;
typedef struct OrtApi OrtApi;  // table of function pointers, see OrtApiSlot
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtCustomOpDomain OrtCustomOpDomain;
typedef struct OrtKernelInfo OrtKernelInfo;
typedef struct OrtKernelContext OrtKernelContext;
typedef struct OrtValue OrtValue;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtShapeInferContext OrtShapeInferContext;
typedef struct OrtMemoryInfo OrtMemoryInfo;

// ---------------------------------------------------------------------------
// Enums (values are ABI; listed explicitly).
// ---------------------------------------------------------------------------

// Tensor element types (mirror onnx TensorProto.DataType for 0..23).
typedef enum ONNXTensorElementDataType {
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED = 0,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT = 1,    // float
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 = 2,    // uint8_t
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8 = 3,     // int8_t
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16 = 4,   // uint16_t
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16 = 5,    // int16_t
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 = 6,    // int32_t
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 = 7,    // int64_t
  ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING = 8,   // std::string inside ORT
  ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL = 9,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 = 10,  // IEEE half
  ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE = 11,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32 = 12,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64 = 13,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_COMPLEX64 = 14,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_COMPLEX128 = 15,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16 = 16,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FN = 17,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E4M3FNUZ = 18,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E5M2 = 19,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT8E5M2FNUZ = 20,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT4 = 21,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_INT4 = 22,
  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT4E2M1 = 23,
  // 24.. (UINT2, INT2, FLOAT8E8M0 in the API-30 header) deliberately omitted:
  // not needed here, and their order was not cross-checked.
} ONNXTensorElementDataType;

// Status codes. In newer ORT this enum lives in onnxruntime_error_code.h.
typedef enum OrtErrorCode {
  ORT_OK = 0,
  ORT_FAIL = 1,
  ORT_INVALID_ARGUMENT = 2,
  ORT_NO_SUCHFILE = 3,
  ORT_NO_MODEL = 4,
  ORT_ENGINE_ERROR = 5,
  ORT_RUNTIME_EXCEPTION = 6,
  ORT_INVALID_PROTOBUF = 7,
  ORT_MODEL_LOADED = 8,
  ORT_NOT_IMPLEMENTED = 9,
  ORT_INVALID_GRAPH = 10,
  ORT_EP_FAIL = 11,
  ORT_MODEL_LOAD_CANCELED = 12,
  ORT_MODEL_REQUIRES_COMPILATION = 13,
  ORT_NOT_FOUND = 14,
  ORT_DEVICE_RESET = 15,  // newest; present in the API-30 header
} OrtErrorCode;

// Per-input / per-output arity kind of a custom op.
typedef enum OrtCustomOpInputOutputCharacteristic {
  INPUT_OUTPUT_REQUIRED = 0,
  INPUT_OUTPUT_OPTIONAL = 1,
  INPUT_OUTPUT_VARIADIC = 2,
} OrtCustomOpInputOutputCharacteristic;

// Where an input should live (returned by OrtCustomOp::GetInputMemoryType).
typedef enum OrtMemType {
  OrtMemTypeCPUInput = -2,   // non-CPU EP wants this input in CPU memory
  OrtMemTypeCPUOutput = -1,  // CPU-accessible output of a non-CPU EP
  OrtMemTypeCPU = -1,        // alias of OrtMemTypeCPUOutput
  OrtMemTypeDefault = 0,     // the EP's default device memory (GPU for CUDA EP)
} OrtMemType;

// ---------------------------------------------------------------------------
// Entry points.
// ---------------------------------------------------------------------------

// OrtApiBase: exactly two function pointers, in this order.
//   GetApi(v)         -> the OrtApi table, or NULL if v is larger than the
//                        runtime's own ORT_API_VERSION (it also prints a line to
//                        stderr in that case). All supported v return the same
//                        append-only table in current releases.
//   GetVersionString() -> e.g. "1.31.1".
typedef struct OrtApiBase {
  const OrtApi* (*GetApi)(uint32_t version);
  const char* (*GetVersionString)(void);
} OrtApiBase;

// The symbol ORT looks up (dlsym "RegisterCustomOps") in a library passed to
// SessionOptions.register_custom_ops_library / RegisterCustomOpsLibrary(_V2).
// Return NULL on success, or a status made with OrtApi::CreateStatus.
// Define it in exactly one translation unit with
//   extern "C" ORT_ABI_EXPORT OrtStatus* RegisterCustomOps(OrtSessionOptions* options,
//                                                          const OrtApiBase* api_base) { ... }
typedef OrtStatus* (*RegisterCustomOpsFn)(OrtSessionOptions* options, const OrtApiBase* api_base);

#define ORT_ABI_EXPORT __attribute__((visibility("default")))

// ---------------------------------------------------------------------------
// struct OrtCustomOp -- filled in by the op author, read by ORT.
// Member order is ABI. `version` is followed by 4 bytes of padding on LP64.
// "since N" = the OrtCustomOp::version value from which ORT reads the member.
// ---------------------------------------------------------------------------
typedef struct OrtCustomOp {
  uint32_t version;  // see "How ORT uses version" below; must be <= runtime ORT_API_VERSION

  // ---- since 1 (always read; must be non-null unless noted) ----
  // Legacy kernel factory; used only when CreateKernelV2 is not used (see
  // below), otherwise it may be NULL.
  void* (*CreateKernel)(const struct OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info);
  const char* (*GetName)(const struct OrtCustomOp* op);
  // NULL return value => CPUExecutionProvider; "CUDAExecutionProvider" for GPU ops.
  const char* (*GetExecutionProviderType)(const struct OrtCustomOp* op);
  ONNXTensorElementDataType (*GetInputType)(const struct OrtCustomOp* op, size_t index);
  size_t (*GetInputTypeCount)(const struct OrtCustomOp* op);
  ONNXTensorElementDataType (*GetOutputType)(const struct OrtCustomOp* op, size_t index);
  size_t (*GetOutputTypeCount)(const struct OrtCustomOp* op);
  // Legacy compute; used only when KernelComputeV2 is not used (may then be NULL).
  void (*KernelCompute)(void* op_kernel, OrtKernelContext* context);
  void (*KernelDestroy)(void* op_kernel);  // called when ORT drops the kernel; must be non-null

  // ---- since 8 ----  (ORT's IsCompatible() calls these even for version < 8,
  //                      so always provide them)
  OrtCustomOpInputOutputCharacteristic (*GetInputCharacteristic)(const struct OrtCustomOp* op, size_t index);
  OrtCustomOpInputOutputCharacteristic (*GetOutputCharacteristic)(const struct OrtCustomOp* op, size_t index);

  // ---- since 13 (read when version > 12, then must be non-null) ----
  OrtMemType (*GetInputMemoryType)(const struct OrtCustomOp* op, size_t index);

  // ---- since 14 (read only for an input/output declared VARIADIC) ----
  int (*GetVariadicInputMinArity)(const struct OrtCustomOp* op);
  int (*GetVariadicInputHomogeneity)(const struct OrtCustomOp* op);  // nonzero = same type
  int (*GetVariadicOutputMinArity)(const struct OrtCustomOp* op);
  int (*GetVariadicOutputHomogeneity)(const struct OrtCustomOp* op);

  // ---- since 16 (NULL allowed: ORT falls back to CreateKernel / KernelCompute) ----
  // Returns NULL status on success and stores the kernel state in *kernel.
  OrtStatus* (*CreateKernelV2)(const struct OrtCustomOp* op, const OrtApi* api, const OrtKernelInfo* info,
                               void** kernel);
  // Returned non-NULL status becomes the error of the Run() call.
  OrtStatus* (*KernelComputeV2)(void* op_kernel, OrtKernelContext* context);

  // ---- since 17 (NULL allowed) ----
  OrtStatus* (*InferOutputShapeFn)(const struct OrtCustomOp* op, OrtShapeInferContext* ctx);
  int (*GetStartVersion)(const struct OrtCustomOp* op);  // NULL => opset 1
  int (*GetEndVersion)(const struct OrtCustomOp* op);    // NULL => open-ended

  // ---- since 18 (NULL allowed; ORT 1.31.1 calls it for version >= 18 only) ----
  // Allocate and fill two int arrays of the returned length: output
  // (*output_index)[i] may reuse the buffer of input (*input_index)[i]. ORT hands
  // both arrays back to ReleaseMayInplace, which must free them.
  size_t (*GetMayInplace)(int** input_index, int** output_index);
  void (*ReleaseMayInplace)(int* input_index, int* output_index);

  // ---- read from version 18 on as well (NULL allowed) ----  same contract as
  // GetMayInplace, but output i *aliases* input i.
  size_t (*GetAliasMap)(int** input_index, int** output_index);
  void (*ReleaseAliasMap)(int* input_index, int* output_index);
  // Last member as of the API-30 header. ORT 1.31.1 reads nothing past this
  // member even with version 31/32 (checked with a guard page).
} OrtCustomOp;

// How ORT (custom_ops.cc) uses OrtCustomOp::version (each line also observed
// with onnxruntime 1.31.1, whose own ORT_API_VERSION is 31):
//   * Older runtimes throw "Unsupported version" when version > their
//     ORT_API_VERSION and hand GetApi(version) to CreateKernel(V2); 1.31.1
//     accepted 32 silently. Never exceed the oldest runtime you target.
//   * version >= 8  : Get{Input,Output}Characteristic drive optional inputs/outputs.
//   * version > 12  : GetInputMemoryType(op, i) is called for every input.
//   * version >= 14 : variadic inputs/outputs honoured (Get*MinArity/Homogeneity).
//   * version >= 16 : CreateKernelV2 used if non-NULL, else CreateKernel;
//                     KernelComputeV2 used if non-NULL, else KernelCompute.
//   * version >= 17 : GetStartVersion/GetEndVersion (each NULL-checked),
//                     InferOutputShapeFn (NULL-checked).
//   * version >= 18 : GetMayInplace and GetAliasMap (each NULL-checked; the
//                     matching Release* is called only after a non-zero return).
// Recommended: version = 16 with CreateKernelV2 + KernelComputeV2 and every later
// member NULL, or version = any value up to the runtime's (>= 16) with the same
// members filled and all other later members NULL.

// ---------------------------------------------------------------------------
// OrtApi as an opaque table of pointer-sized slots.
// ---------------------------------------------------------------------------
typedef void* OrtApiSlot;

#ifdef __cplusplus
}  // extern "C"
#endif

#ifdef __cplusplus
namespace ort_abi {

// Lowest OrtApi version that contains every slot listed here
// (KernelContext_GetGPUComputeStream arrived with version 10).
constexpr uint32_t kMinApiVersion = 10;
// API version of the header this file was derived from.
constexpr uint32_t kHeaderApiVersion = 30;
// Highest GetApi() version onnxruntime 1.31.1 accepts (GetApi(32) -> NULL).
constexpr uint32_t kOrt1_31ApiVersion = 31;

// Zero-based slot indices within struct OrtApi. Neighbours are given so that a
// reader holding the real header can cross-check quickly.
namespace idx {
constexpr size_t CreateStatus = 0;        // first member; 1 GetErrorCode
constexpr size_t CreateCustomOpDomain = 26;  // 25 SetInterOpNumThreads, 27 CustomOpDomain_Add
constexpr size_t CustomOpDomain_Add = 27;    // 26 CreateCustomOpDomain, 28 AddCustomOpDomain
constexpr size_t AddCustomOpDomain = 28;     // 27 CustomOpDomain_Add, 29 RegisterCustomOpsLibrary
constexpr size_t GetTensorMutableData = 51;  // 50 IsTensor, 52 FillStringTensor
constexpr size_t GetTensorElementType = 60;  // 59 SetDimensions, 61 GetDimensionsCount
constexpr size_t GetDimensionsCount = 61;    // 60 GetTensorElementType, 62 GetDimensions
constexpr size_t GetDimensions = 62;         // 61 GetDimensionsCount, 63 GetSymbolicDimensions
constexpr size_t GetTensorTypeAndShape = 65;       // 64 GetTensorShapeElementCount, 66 GetTypeInfo
constexpr size_t KernelContext_GetInputCount = 88;   // 87 KernelInfoGetAttribute_string, 89 GetOutputCount
constexpr size_t KernelContext_GetInput = 90;        // 89 GetOutputCount, 91 GetOutput
constexpr size_t KernelContext_GetOutput = 91;       // 90 GetInput, 92 ReleaseEnv
constexpr size_t ReleaseTensorTypeAndShapeInfo = 99;  // 98 ReleaseTypeInfo, 100 ReleaseSessionOptions
constexpr size_t KernelContext_GetGPUComputeStream = 193;  // API v10; 192 HasValue, 194 GetTensorMemoryInfo
}  // namespace idx

// Exact signatures of those slots (all const/non-const qualifiers as in ORT).
namespace fn {
using CreateStatus = OrtStatus* (*)(OrtErrorCode code, const char* msg);  // msg is copied
using CreateCustomOpDomain = OrtStatus* (*)(const char* domain, OrtCustomOpDomain** out);
using CustomOpDomain_Add = OrtStatus* (*)(OrtCustomOpDomain* domain, const OrtCustomOp* op);
using AddCustomOpDomain = OrtStatus* (*)(OrtSessionOptions* options, OrtCustomOpDomain* domain);
using KernelContext_GetInputCount = OrtStatus* (*)(const OrtKernelContext* ctx, size_t* out);
using KernelContext_GetInput = OrtStatus* (*)(const OrtKernelContext* ctx, size_t index, const OrtValue** out);
// Allocates (or returns) output `index` with the given shape.
using KernelContext_GetOutput = OrtStatus* (*)(OrtKernelContext* ctx, size_t index, const int64_t* dims,
                                                size_t dim_count, OrtValue** out);
// Result must be released with ReleaseTensorTypeAndShapeInfo.
using GetTensorTypeAndShape = OrtStatus* (*)(const OrtValue* value, OrtTensorTypeAndShapeInfo** out);
using GetTensorElementType = OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, ONNXTensorElementDataType* out);
using GetDimensionsCount = OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, size_t* out);
using GetDimensions = OrtStatus* (*)(const OrtTensorTypeAndShapeInfo* info, int64_t* dims, size_t dims_len);
using ReleaseTensorTypeAndShapeInfo = void (*)(OrtTensorTypeAndShapeInfo* info);
// Takes a non-const OrtValue*; for inputs, const_cast the pointer from GetInput.
using GetTensorMutableData = OrtStatus* (*)(OrtValue* value, void** out);
// *out = the EP's native stream (cudaStream_t for the CUDA EP). On the CPU EP
// (checked with 1.31.1) it returns a NULL (= OK) status and sets *out = NULL.
using KernelContext_GetGPUComputeStream = OrtStatus* (*)(const OrtKernelContext* ctx, void** out);
}  // namespace fn

// Fetch slot `i` of the table as function type F.
template <typename F>
inline F slot(const OrtApi* api, size_t i) {
  return reinterpret_cast<F>(reinterpret_cast<OrtApiSlot const*>(api)[i]);
}

// Convenience: all functions above resolved once.
struct Api {
  fn::CreateStatus CreateStatus = nullptr;
  fn::CreateCustomOpDomain CreateCustomOpDomain = nullptr;
  fn::CustomOpDomain_Add CustomOpDomain_Add = nullptr;
  fn::AddCustomOpDomain AddCustomOpDomain = nullptr;
  fn::KernelContext_GetInputCount KernelContext_GetInputCount = nullptr;
  fn::KernelContext_GetInput KernelContext_GetInput = nullptr;
  fn::KernelContext_GetOutput KernelContext_GetOutput = nullptr;
  fn::GetTensorTypeAndShape GetTensorTypeAndShape = nullptr;
  fn::GetTensorElementType GetTensorElementType = nullptr;
  fn::GetDimensionsCount GetDimensionsCount = nullptr;
  fn::GetDimensions GetDimensions = nullptr;
  fn::ReleaseTensorTypeAndShapeInfo ReleaseTensorTypeAndShapeInfo = nullptr;
  fn::GetTensorMutableData GetTensorMutableData = nullptr;
  fn::KernelContext_GetGPUComputeStream KernelContext_GetGPUComputeStream = nullptr;

  // Returns false if `api` is NULL (e.g. GetApi(v) with v too new).
  bool load(const OrtApi* api) {
    if (!api) return false;
    CreateStatus = slot<fn::CreateStatus>(api, idx::CreateStatus);
    CreateCustomOpDomain = slot<fn::CreateCustomOpDomain>(api, idx::CreateCustomOpDomain);
    CustomOpDomain_Add = slot<fn::CustomOpDomain_Add>(api, idx::CustomOpDomain_Add);
    AddCustomOpDomain = slot<fn::AddCustomOpDomain>(api, idx::AddCustomOpDomain);
    KernelContext_GetInputCount = slot<fn::KernelContext_GetInputCount>(api, idx::KernelContext_GetInputCount);
    KernelContext_GetInput = slot<fn::KernelContext_GetInput>(api, idx::KernelContext_GetInput);
    KernelContext_GetOutput = slot<fn::KernelContext_GetOutput>(api, idx::KernelContext_GetOutput);
    GetTensorTypeAndShape = slot<fn::GetTensorTypeAndShape>(api, idx::GetTensorTypeAndShape);
    GetTensorElementType = slot<fn::GetTensorElementType>(api, idx::GetTensorElementType);
    GetDimensionsCount = slot<fn::GetDimensionsCount>(api, idx::GetDimensionsCount);
    GetDimensions = slot<fn::GetDimensions>(api, idx::GetDimensions);
    ReleaseTensorTypeAndShapeInfo = slot<fn::ReleaseTensorTypeAndShapeInfo>(api, idx::ReleaseTensorTypeAndShapeInfo);
    GetTensorMutableData = slot<fn::GetTensorMutableData>(api, idx::GetTensorMutableData);
    KernelContext_GetGPUComputeStream =
        slot<fn::KernelContext_GetGPUComputeStream>(api, idx::KernelContext_GetGPUComputeStream);
    return true;
  }
};

}  // namespace ort_abi

// Layout sanity checks (LP64).
static_assert(sizeof(OrtApiBase) == 2 * sizeof(void*), "OrtApiBase is two pointers");
static_assert(offsetof(OrtCustomOp, CreateKernel) == sizeof(void*), "version is padded to pointer size");
static_assert(sizeof(OrtCustomOp) == 26 * sizeof(void*), "version + 25 function pointers");
#endif  // __cplusplus
