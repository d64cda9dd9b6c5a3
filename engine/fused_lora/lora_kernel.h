// The fused LoRA product of one target, for every row of a batch at once (BGMV, as in Punica / S-LoRA):
//
//   out[b, s, n] = y[b, s, n] + sum_r ( sum_k x[b, s, k] * A[b', k, r] ) * B[b', r, n]
//
// y [rows, S, N] is the base projection's output, x [rows, S, K] its input, A [A_rows, K, R] (or [A_rows, R, K]:
// rank-first, `a_rank_first`) and
// B [B_rows, R, N] the LoRA slots in the rows layout (row b of the batch reads row b of the slots; a slot with
// one row serves every row). Only ranks below `rank_used` (when given) are read: the serving slots are padded
// with zeros to the slot rank, and the zeros need not be multiplied.
//
// One kernel replaces onnxruntime's four for the same target (cuBLAS's split-K GEMM and its reduce for x·A, a
// GEMM for ·B, and the Add): on the 3.82 B model an adapter's 64 targets cost ~0.58 ms of a ~3.2 ms decode
// step as those 256 launches (bench/NOTES.md, 2026-12-07). Accumulation is in fp32 (x·A is not rounded to
// fp16 before ·B, unlike the MatMul chain), so results can differ from the chain in the last fp16 bit.
#pragma once
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <vector>

namespace studio_lora {

struct Shape {
  int64_t rows, S, K, R, N;   // batch rows, tokens per row, in features, slot rank, out features
  bool a_per_row, b_per_row;  // A / B have one row per batch row (else one row for all)
  bool a_rank_first = false;  // A is [A_rows, R, K] (the op LoraAddAT) rather than [A_rows, K, R]
};

// The CPU version: the reference the tests compare the GPU and the MatMul chain with, and what a CPU session
// runs. T is float (CPU builds are float32).
template <typename T>
void lora_add_cpu(const T* y, const T* x, const T* A, const T* B, T* out, const Shape& s, int rank_used) {
  const int64_t rk = rank_used < 0 || rank_used > s.R ? s.R : rank_used;
  std::vector<float> t(rk > 0 ? rk : 1), u(s.N > 0 ? s.N : 1);
  for (int64_t b = 0; b < s.rows; ++b) {
    const T* Ab = A + (s.a_per_row ? b : 0) * s.K * s.R;
    const T* Bb = B + (s.b_per_row ? b : 0) * s.R * s.N;
    for (int64_t i = 0; i < s.S; ++i) {
      const T* xi = x + (b * s.S + i) * s.K;
      const T* yi = y + (b * s.S + i) * s.N;
      T* oi = out + (b * s.S + i) * s.N;
      std::fill(t.begin(), t.end(), 0.f);
      std::fill(u.begin(), u.end(), 0.f);
      for (int64_t k = 0; k < s.K; ++k) {
        const float xv = static_cast<float>(xi[k]);
        if (s.a_rank_first) {
          for (int64_t r = 0; r < rk; ++r) t[r] += xv * static_cast<float>(Ab[r * s.K + k]);
        } else {
          const T* arow = Ab + k * s.R;
          for (int64_t r = 0; r < rk; ++r) t[r] += xv * static_cast<float>(arow[r]);
        }
      }
      for (int64_t r = 0; r < rk; ++r) {
        const T* brow = Bb + r * s.N;
        for (int64_t n = 0; n < s.N; ++n) u[n] += t[r] * static_cast<float>(brow[n]);
      }
      // the low-rank product first, then the base output: the order of the MatMul chain's Add
      for (int64_t n = 0; n < s.N; ++n) oi[n] = static_cast<T>(static_cast<float>(yi[n]) + u[n]);
    }
  }
}

// The CUDA version (lora_kernel.cu). dtype: 1 float, 10 float16 (ONNX element types). rank_used: a device
// pointer to one int32, or null. Returns a CUDA error code (0: launched).
int lora_add_cuda(int dtype, const void* y, const void* x, const void* A, const void* B, void* out, const Shape& s,
                  const int32_t* rank_used, void* stream);

}  // namespace studio_lora
