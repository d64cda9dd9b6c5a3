// The onnxruntime custom op `studio.lora::LoraAdd` (engine/fused_lora/__init__.py says why and how it is used).
//
//   inputs : y [rows, S, N], x [rows, S, K], A [1|rows, K, R], B [1|rows, R, N]   (one element type T)
//            (`studio.lora::LoraAddAT`: the same with A rank-first, [1|rows, R, K])
//            rank_used (optional) int32 [1]: only ranks below it are read (the slots' zero padding is skipped)
//   output : y + (x·A)·B, [rows, S, N], T
//
// Built twice from this file: for the CPU execution provider with T = float (g++), and with STUDIO_LORA_CUDA for
// the CUDA execution provider with T = float16 (nvcc, with lora_kernel.cu). The CUDA kernel runs on the
// session's compute stream, so it is captured in onnxruntime's CUDA graphs like any other node. R = 0 (the
// rank-0 binding of a base-only step) copies y.
//
// Also exported: `studio_lora_add`, the same computation on raw pointers, for tests and bench/lora_gemm.py.
#include <cstdio>
#include <cstring>
#include <string>

#include "lora_kernel.h"
#include "ort_abi.h"

#if defined(STUDIO_LORA_CUDA)
#include <cuda_runtime.h>
#endif

#define STUDIO_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using studio_lora::Shape;

ort_abi::Api g_api;

#if defined(STUDIO_LORA_CUDA)
constexpr const char* kProvider = "CUDAExecutionProvider";
constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
#else
constexpr const char* kProvider = "CPUExecutionProvider";
constexpr ONNXTensorElementDataType kType = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
#endif

OrtStatus* fail(OrtErrorCode code, const std::string& msg) {
  return g_api.CreateStatus(code, ("studio.lora LoraAdd: " + msg).c_str());
}

#define RETURN_IF(expr)        \
  do {                         \
    OrtStatus* st_ = (expr);   \
    if (st_ != nullptr) return st_; \
  } while (0)

struct Tensor {
  const OrtValue* value = nullptr;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  int64_t dims[8] = {0};
  size_t rank = 0;
  void* data = nullptr;
};

OrtStatus* read(const OrtKernelContext* ctx, size_t i, Tensor* t) {
  RETURN_IF(g_api.KernelContext_GetInput(ctx, i, &t->value));
  if (t->value == nullptr) return nullptr;  // an omitted optional input
  OrtTensorTypeAndShapeInfo* info = nullptr;
  RETURN_IF(g_api.GetTensorTypeAndShape(t->value, &info));
  OrtStatus* st = g_api.GetTensorElementType(info, &t->type);
  if (st == nullptr) st = g_api.GetDimensionsCount(info, &t->rank);
  if (st == nullptr && t->rank > 8) st = fail(ORT_INVALID_ARGUMENT, "input of rank > 8");
  if (st == nullptr) st = g_api.GetDimensions(info, t->dims, t->rank);
  g_api.ReleaseTensorTypeAndShapeInfo(info);
  RETURN_IF(st);
  return g_api.GetTensorMutableData(const_cast<OrtValue*>(t->value), &t->data);
}

std::string dims_of(const Tensor& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.rank; ++i) s += (i ? ", " : "") + std::to_string(t.dims[i]);
  return s + "]";
}

// Checks the shapes (the op's contract above) and fills `s`.
OrtStatus* shape_of(const Tensor& y, const Tensor& x, const Tensor& a, const Tensor& b, bool at, Shape* s) {
  if (y.rank != 3 || x.rank != 3 || a.rank != 3 || b.rank != 3)
    return fail(ORT_INVALID_ARGUMENT, "y, x, A, B must be 3-D, got " + dims_of(y) + " " + dims_of(x) + " " +
                                          dims_of(a) + " " + dims_of(b));
  s->rows = y.dims[0];
  s->S = y.dims[1];
  s->N = y.dims[2];
  s->K = x.dims[2];
  s->a_rank_first = at;
  s->R = a.dims[at ? 1 : 2];
  const bool ok = x.dims[0] == s->rows && x.dims[1] == s->S && a.dims[at ? 2 : 1] == s->K && b.dims[1] == s->R &&
                  b.dims[2] == s->N && (a.dims[0] == s->rows || a.dims[0] == 1) &&
                  (b.dims[0] == s->rows || b.dims[0] == 1);
  if (!ok)
    return fail(ORT_INVALID_ARGUMENT, "shapes do not chain: y " + dims_of(y) + ", x " + dims_of(x) + ", A " +
                                          dims_of(a) + ", B " + dims_of(b));
  s->a_per_row = a.dims[0] == s->rows;
  s->b_per_row = b.dims[0] == s->rows;
  if (y.type != kType || x.type != kType || a.type != kType || b.type != kType)
    return fail(ORT_INVALID_ARGUMENT, "y, x, A, B must all be of the library's element type " +
                                          std::to_string(static_cast<int>(kType)));
  return nullptr;
}

extern OrtCustomOp g_op_at;

OrtStatus* compute(void* kernel, OrtKernelContext* ctx) {
  Tensor y, x, a, b, rank;
  RETURN_IF(read(ctx, 0, &y));
  RETURN_IF(read(ctx, 1, &x));
  RETURN_IF(read(ctx, 2, &a));
  RETURN_IF(read(ctx, 3, &b));
  size_t n_in = 0;
  RETURN_IF(g_api.KernelContext_GetInputCount(ctx, &n_in));
  if (n_in > 4) RETURN_IF(read(ctx, 4, &rank));
  if (y.value == nullptr || x.value == nullptr || a.value == nullptr || b.value == nullptr)
    return fail(ORT_INVALID_ARGUMENT, "y, x, A and B are required");
  Shape s;
  RETURN_IF(shape_of(y, x, a, b, kernel == &g_op_at, &s));
#if defined(STUDIO_LORA_CUDA)
  if (s.R > 256) return fail(ORT_INVALID_ARGUMENT, "slot rank " + std::to_string(s.R) + " over 256");
#endif
  if (rank.value != nullptr && (rank.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 || rank.rank != 1 || rank.dims[0] != 1))
    return fail(ORT_INVALID_ARGUMENT, "rank_used must be int32 [1], got " + dims_of(rank));
  OrtValue* out_v = nullptr;
  RETURN_IF(g_api.KernelContext_GetOutput(ctx, 0, y.dims, 3, &out_v));
  void* out = nullptr;
  RETURN_IF(g_api.GetTensorMutableData(out_v, &out));
  const auto* ru = static_cast<const int32_t*>(rank.value ? rank.data : nullptr);
#if defined(STUDIO_LORA_CUDA)
  void* stream = nullptr;
  RETURN_IF(g_api.KernelContext_GetGPUComputeStream(ctx, &stream));
  const int rc = studio_lora::lora_add_cuda(kType, y.data, x.data, a.data, b.data, out, s, ru, stream);
  if (rc != 0) return fail(ORT_EP_FAIL, std::string("CUDA launch failed: ") + cudaGetErrorString(static_cast<cudaError_t>(rc)));
#else
  studio_lora::lora_add_cpu(static_cast<const float*>(y.data), static_cast<const float*>(x.data),
                            static_cast<const float*>(a.data), static_cast<const float*>(b.data),
                            static_cast<float*>(out), s, ru ? *ru : -1);
#endif
  return nullptr;
}

// ---- the OrtCustomOp table (version 16: CreateKernelV2 / KernelComputeV2, nothing later)
OrtStatus* create_kernel(const OrtCustomOp* op, const OrtApi*, const OrtKernelInfo*, void** kernel) {
  *kernel = const_cast<OrtCustomOp*>(op);  // stateless: the op itself says which A layout
  return nullptr;
}
const char* op_name(const OrtCustomOp* op) { return op == &g_op_at ? "LoraAddAT" : "LoraAdd"; }
const char* op_provider(const OrtCustomOp*) { return kProvider; }
ONNXTensorElementDataType input_type(const OrtCustomOp*, size_t i) {
  return i == 4 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32 : kType;
}
size_t input_count(const OrtCustomOp*) { return 5; }
ONNXTensorElementDataType output_type(const OrtCustomOp*, size_t) { return kType; }
size_t output_count(const OrtCustomOp*) { return 1; }
void kernel_destroy(void*) {}
OrtCustomOpInputOutputCharacteristic input_char(const OrtCustomOp*, size_t i) {
  return i == 4 ? INPUT_OUTPUT_OPTIONAL : INPUT_OUTPUT_REQUIRED;
}
OrtCustomOpInputOutputCharacteristic output_char(const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; }
OrtMemType input_mem(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }  // all on the EP's device
int variadic_zero(const OrtCustomOp*) { return 0; }

OrtCustomOp make_op() {
  OrtCustomOp op;
  std::memset(&op, 0, sizeof(op));
  op.version = 16;
  op.GetName = op_name;
  op.GetExecutionProviderType = op_provider;
  op.GetInputType = input_type;
  op.GetInputTypeCount = input_count;
  op.GetOutputType = output_type;
  op.GetOutputTypeCount = output_count;
  op.KernelDestroy = kernel_destroy;
  op.GetInputCharacteristic = input_char;
  op.GetOutputCharacteristic = output_char;
  op.GetInputMemoryType = input_mem;
  op.GetVariadicInputMinArity = variadic_zero;
  op.GetVariadicInputHomogeneity = variadic_zero;
  op.GetVariadicOutputMinArity = variadic_zero;
  op.GetVariadicOutputHomogeneity = variadic_zero;
  op.CreateKernelV2 = create_kernel;
  op.KernelComputeV2 = compute;
  return op;
}

OrtCustomOp g_op = make_op();       // lives as long as the library: onnxruntime keeps pointers to it
OrtCustomOp g_op_at = make_op();    // LoraAddAT: A rank-first
OrtCustomOpDomain* g_domain = nullptr;  // never released (sessions reference it)

}  // namespace

STUDIO_EXPORT OrtStatus* RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  if (g_api.CreateStatus == nullptr && !g_api.load(base->GetApi(ort_abi::kMinApiVersion))) {
    std::fprintf(stderr, "studio.lora: onnxruntime offers no API version %u\n", ort_abi::kMinApiVersion);
    return nullptr;  // (no API to make a status with)
  }
  if (g_domain == nullptr) {
    RETURN_IF(g_api.CreateCustomOpDomain("studio.lora", &g_domain));
    RETURN_IF(g_api.CustomOpDomain_Add(g_domain, &g_op));
    RETURN_IF(g_api.CustomOpDomain_Add(g_domain, &g_op_at));
  }
  return g_api.AddCustomOpDomain(options, g_domain);
}

// The op's computation on raw pointers (no onnxruntime). dtype: 1 float (CPU library), 10 float16 (CUDA
// library); a_rank_first: A is [A_rows, R, K]; rank_used: an int32 on the op's device or null; stream: a
// cudaStream_t (0: the default stream).
// Returns 0, or an error code (CUDA's, or -1 for a dtype the library does not serve).
STUDIO_EXPORT int studio_lora_add(int dtype, const void* y, const void* x, const void* A, const void* B, void* out,
                                  int64_t rows, int64_t S, int64_t K, int64_t R, int64_t N, int a_per_row,
                                  int b_per_row, int a_rank_first, const int32_t* rank_used, void* stream) {
  Shape s{rows, S, K, R, N, a_per_row != 0, b_per_row != 0, a_rank_first != 0};
  if (dtype != kType) return -1;
#if defined(STUDIO_LORA_CUDA)
  return studio_lora::lora_add_cuda(dtype, y, x, A, B, out, s, rank_used, stream);
#else
  (void)stream;
  studio_lora::lora_add_cpu(static_cast<const float*>(y), static_cast<const float*>(x), static_cast<const float*>(A),
                            static_cast<const float*>(B), static_cast<float*>(out), s, rank_used ? *rank_used : -1);
  return 0;
#endif
}
