// The CUDA side of lora_kernel.h: one launch per LoRA target, 1,024 threads a block, fp32 accumulation.
//
// - lora_add_decode8 (decode steps on fp16 slots of a rank that is a multiple of 8: every pipeline-built base):
//   grid (tiles of 1,024 columns, batch rows). Each block computes its row's x·A (8 ranks per 16-byte load of A,
//   the partial sums met by warp shuffles and one shared-memory pass), then adds (x·A)·B to its columns.
// - prompts of more than one tile of 8 tokens (outside CUDA graph capture, where the prefill runs): two kernels
//   over a stream-ordered scratch buffer. lora_xa_mma (fp16, K and rank multiples of 16: every pipeline-built
//   base) computes x·A on tensor cores into the scratch (fp32), lora_xa on CUDA cores otherwise;
//   lora_expand adds (x·A)·B to y over a grid of 16 tokens x 256 columns, so every SM streams y.
// - lora_add_prompt (short prompts, and every other case): one block per tile of 8 tokens of a row; x·A once for
//   the tile (thread = rank lane x k group), kept in shared memory, then a loop over all columns.
// Slot ranks up to kMaxRank (256); `rank_used` bounds the ranks read.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "lora_kernel.h"

namespace studio_lora {
namespace {

constexpr int kThreads = 1024;
constexpr int kRanks = 16;                 // ranks per chunk
constexpr int kGroups = kThreads / kRanks;  // k groups (64)
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }

// The decode kernel for fp16 slots whose rank is a multiple of 8 (every pipeline-built slot): one token per row,
// A read 16 bytes (8 ranks) at a time. A chunk of up to 64 ranks is `octs` octets (1, 2, 4 or 8, a power of two
// at least the octets in use); thread (oct = tid % octs, kg = tid / octs) sums over k = kg, kg + 1024 / octs, ...,
// so a rank-16 adapter on K = 3,072 takes 6 loads of 16 bytes per thread instead of 48 of 2 bytes. The kernel is
// latency-bound (a few microseconds, 64 launches a step), so loads are issued in batches before their use: y and
// the first 16 ranks of B at the start (they do not depend on x·A), A in batches of kBatch per thread.
constexpr int kBatch = 4;

// x·A of one decode row for the ranks r0 .. r0 + rn (rn <= 64) with A rank-first ([R, K]: each rank's row is
// contiguous, so the ranks in use are one contiguous block however large the slot rank). Warps take (rank, part of
// K) pairs, 32 / rn parts per rank when rn < 32; lanes read 8 k (16 bytes of A and of x) at a time; a warp's sum
// meets the others in t[r] by a shared-memory atomic. t (64 entries) is zeroed here; entries >= rn stay zero.
__device__ __forceinline__ void decode_xa_rank_first(const __half* __restrict__ xb, const __half* __restrict__ Ab,
                                                     const Shape& s, int64_t r0, int rn, float* t) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  if (tid < 64) t[tid] = 0.f;
  __syncthreads();
  const int parts = rn >= 32 ? 1 : 32 / rn;
  const int64_t octs = s.K / 8;
  for (int p = warp; p < rn * parts; p += kWarps) {
    const int r = p / parts, part = p % parts;
    const int64_t o0 = octs * part / parts, o1 = octs * (part + 1) / parts;
    const __half* ar = Ab + (r0 + r) * s.K;
    float acc = 0.f;
    for (int64_t o = o0 + lane; o < o1; o += 32 * kBatch) {
      uint4 ra[kBatch], rx[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const int64_t oo = o + 32 * i;
        const bool in = oo < o1;
        ra[i] = in ? *reinterpret_cast<const uint4*>(ar + oo * 8) : make_uint4(0, 0, 0, 0);
        rx[i] = in ? *reinterpret_cast<const uint4*>(xb + oo * 8) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int i = 0; i < kBatch; ++i) {
        const __half2* ha = reinterpret_cast<const __half2*>(&ra[i]);
        const __half2* hx = reinterpret_cast<const __half2*>(&rx[i]);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float2 fa = __half22float2(ha[j]), fx = __half22float2(hx[j]);
          acc += fa.x * fx.x + fa.y * fx.y;
        }
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) atomicAdd(&t[r], acc);
  }
}

template <bool AT>
__global__ void __launch_bounds__(kThreads) lora_add_decode8(const __half* __restrict__ y, const __half* __restrict__ x,
                                                            const __half* __restrict__ A, const __half* __restrict__ B,
                                                            __half* __restrict__ out, Shape s,
                                                            const int32_t* __restrict__ rank_used) {
  __shared__ float red[kWarps][64];
  __shared__ float t[64];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int64_t b = blockIdx.y;
  int64_t rk = s.R;
  if (rank_used != nullptr) {
    const int64_t v = *rank_used;
    rk = v < 0 ? s.R : (v < s.R ? v : s.R);
  }
  const __half* Ab = A + (s.a_per_row ? b : 0) * s.K * s.R;
  const __half* Bb = B + (s.b_per_row ? b : 0) * s.R * s.N;
  const __half* xb = x + b * s.K;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kThreads + tid;
  const bool col = n < s.N;
  const float yv = col ? __half2float(y[b * s.N + n]) : 0.f;
  float b0[16];  // B's first 16 ranks for this column, loaded before x·A is known
  const int64_t r16 = rk < 16 ? rk : 16;
#pragma unroll
  for (int j = 0; j < 16; ++j) b0[j] = (col && j < r16) ? __half2float(Bb[j * s.N + n]) : 0.f;
  float u = 0.f;
  for (int64_t r0 = 0; r0 < rk; r0 += 64) {
    const int64_t rn = rk - r0 < 64 ? rk - r0 : 64;
    if constexpr (AT) {
      decode_xa_rank_first(xb, Ab, s, r0, static_cast<int>(rn), t);
    } else {
    const int used = static_cast<int>((rn + 7) / 8);
    const int octs = used <= 1 ? 1 : used <= 2 ? 2 : used <= 4 ? 4 : 8;
    const int oct = tid % octs;
    const int64_t groups = kThreads / octs;
    float acc[8];
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] = 0.f;
    if (oct < used) {
      const __half* ap = Ab + r0 + oct * 8;
      for (int64_t k0 = tid / octs; k0 < s.K; k0 += kBatch * groups) {
        uint4 raw[kBatch];
        float xv[kBatch];
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
          const int64_t k = k0 + i * groups;
          const bool in = k < s.K;
          raw[i] = in ? *reinterpret_cast<const uint4*>(ap + k * s.R) : make_uint4(0, 0, 0, 0);
          xv[i] = in ? __half2float(xb[k]) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < kBatch; ++i) {
          const __half2* h = reinterpret_cast<const __half2*>(&raw[i]);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(h[j]);
            acc[2 * j] += xv[i] * f.x;
            acc[2 * j + 1] += xv[i] * f.y;
          }
        }
      }
    }
    for (int off = octs; off < 32; off <<= 1) {
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], off);
    }
    if (lane < octs) {
#pragma unroll
      for (int j = 0; j < 8; ++j) red[warp][lane * 8 + j] = acc[j];
    }
    __syncthreads();
    if (tid < 64) {  // every entry written: the expand below reads t[0..15] whatever the ranks in use
      float v = 0.f;
      if (tid < octs * 8) {
#pragma unroll 8
        for (int w = 0; w < kWarps; ++w) v += red[w][tid];
      }
      t[tid] = tid < rn ? v : 0.f;  // ranks at or past rank_used count as zero
    }
    }  // (the K-first x·A)
    __syncthreads();
    if (col) {
      int64_t j = 0;
      if (r0 == 0) {
#pragma unroll
        for (int i = 0; i < 16; ++i) u += t[i] * b0[i];  // (t and b0 are zero past the ranks in use)
        j = 16;
      }
      for (; j < rn; j += 16) {
        float bv[16];
#pragma unroll
        for (int i = 0; i < 16; ++i) bv[i] = j + i < rn ? __half2float(Bb[(r0 + j + i) * s.N + n]) : 0.f;
#pragma unroll
        for (int i = 0; i < 16; ++i) u += t[j + i < 64 ? j + i : 63] * bv[i];
      }
    }
    __syncthreads();
  }
  if (col) out[b * s.N + n] = __float2half_rn(yv + u);
}

// STUDIO_LORA_KERNEL (for bench/lora_gemm.py and the serving harness's lever rows): "scalar", the single prompt kernel
// for every call, decode steps too; "tile", the single prompt kernel for prompts (not the two-kernel path); "simt",
// the two-kernel path's x·A on CUDA cores (lora_xa) where it would use tensor cores (lora_xa_mma); "expand1", its
// one-column expand kernel (lora_expand) where it would use the two-column one (lora_expand_h2, fp16 with an even
// N: 1.17 against 1.82 ms per 64 targets of a 1,025-token prompt on an H100, 2026-12-07). A
// cluster-of-8 variant of the decode kernel (x·A split over 8 blocks, partial sums met in distributed shared memory)
// was measured on an H100 and removed: 0.54 / 0.63 ms per 64 targets against 0.42 / 0.48 for this one
// (bench/NOTES.md, 2026-12-07).
int kernel_choice() {
  static const int v = [] {
    const char* e = std::getenv("STUDIO_LORA_KERNEL");
    if (e == nullptr) return 0;
    return std::strcmp(e, "scalar") == 0 ? 1 : std::strcmp(e, "tile") == 0 ? 2 : std::strcmp(e, "simt") == 0 ? 3
           : std::strcmp(e, "expand1") == 0 ? 4 : 0;
  }();
  return v;
}

bool decode8_ok(const void* x, const void* A, const Shape& s) {
  if (kernel_choice() == 1 || s.S != 1 || reinterpret_cast<uintptr_t>(A) % 16 != 0) return false;
  return s.a_rank_first ? s.K % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 : s.R % 8 == 0;
}

// The prompt kernel: one block per tile of kTile tokens of one row, x·A computed once for the tile (into shared
// memory, all ranks in use), then every column of the row: out = y + (x·A)·B, B read once per column for the
// tile's tokens. (The generic kernel recomputes x·A for every tile of 1,024 columns: 9 times over for a qkv
// projection, which made a 1,024-token prompt 13 ms slower than the MatMul chain on an H100.) It also serves
// decode steps the decode kernel does not take, as one block per row.
constexpr int kTile = 8;
constexpr int kMaxRank = 256;  // shared memory for x·A: kTile x kMaxRank floats (higher slot ranks are refused)

__device__ __forceinline__ int64_t ranks_in_use(const Shape& s, const int32_t* rank_used) {
  if (rank_used == nullptr) return s.R;
  const int64_t v = *rank_used;
  return v < 0 ? s.R : (v < s.R ? v : s.R);
}

// u[m] += t_r[m] * bv for M tokens, t_r one rank's row of x·A in shared memory (16-byte aligned): one shared-memory
// load per 4 products (a load per product made the column loops bound on shared memory).
template <int M>
__device__ __forceinline__ void add_rank(float* u, const float* t_r, float bv) {
  const float4* tq = reinterpret_cast<const float4*>(t_r);
#pragma unroll
  for (int q = 0; q < M / 4; ++q) {
    const float4 v = tq[q];
    u[4 * q] += v.x * bv;
    u[4 * q + 1] += v.y * bv;
    u[4 * q + 2] += v.z * bv;
    u[4 * q + 3] += v.w * bv;
  }
}

// x·A for the `ms` (<= kTile) tokens at xb (rows of K), ranks below rk, into t[r][m] (r < rk); every thread of the
// block takes part, as rank lane (16) x k group (64). A K-first ([K, R]): lanes along ranks (tid % 16), two k groups
// a warp, met by one shuffle. A rank-first ([R, K]): lanes along k (a warp reads 32 consecutive k of one rank), warp
// = rank lane (warp % 16) x k half (warp / 16), met by a full warp shuffle. Then shared memory across warps.
template <typename T>
__device__ __forceinline__ void tile_xa(const T* __restrict__ xb, const T* __restrict__ Ab, const Shape& s,
                                        int64_t rk, int ms, float (*red)[kTile][kRanks], float (*t)[kTile]) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const bool at = s.a_rank_first;
  const int lane_r = at ? warp % kRanks : tid % kRanks;
  const int kg = at ? lane + 32 * (warp / kRanks) : tid / kRanks;
  for (int64_t r0 = 0; r0 < rk; r0 += kRanks) {
    const int64_t r = r0 + lane_r;
    float acc[kTile];
#pragma unroll
    for (int m = 0; m < kTile; ++m) acc[m] = 0.f;
    if (r < rk) {
#pragma unroll 2
      for (int64_t k = kg; k < s.K; k += kGroups) {
        const float a = to_f(at ? Ab[r * s.K + k] : Ab[k * s.R + r]);
#pragma unroll
        for (int m = 0; m < kTile; ++m)
          if (m < ms) acc[m] += to_f(xb[m * s.K + k]) * a;
      }
    }
    for (int off = 16; off >= (at ? 1 : 16); off >>= 1) {
#pragma unroll
      for (int m = 0; m < kTile; ++m) acc[m] += __shfl_xor_sync(0xffffffffu, acc[m], off);
    }
    if (at ? lane == 0 : lane < kRanks) {
#pragma unroll
      for (int m = 0; m < kTile; ++m) red[warp][m][at ? 0 : lane] = acc[m];
    }
    __syncthreads();
    if (tid < kTile * kRanks) {
      const int m = tid / kRanks, rr = tid % kRanks;
      float v = 0.f;
      if (at) {
        v = red[rr][m][0] + red[rr + kRanks][m][0];
      } else {
#pragma unroll 8
        for (int w = 0; w < kWarps; ++w) v += red[w][m][rr];
      }
      if (r0 + rr < kMaxRank) t[r0 + rr][m] = r0 + rr < rk ? v : 0.f;
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) lora_add_prompt(const T* __restrict__ y, const T* __restrict__ x,
                                                           const T* __restrict__ A, const T* __restrict__ B,
                                                           T* __restrict__ out, Shape s,
                                                           const int32_t* __restrict__ rank_used) {
  __shared__ float red[kWarps][kTile][kRanks];
  __shared__ __align__(16) float t[kMaxRank][kTile];  // rank-major: one rank's kTile values are two float4 loads
  const int tid = threadIdx.x;
  const int64_t tiles = (s.S + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / tiles;
  const int64_t s0 = (blockIdx.x % tiles) * kTile;
  const int ms = static_cast<int>(s.S - s0 < kTile ? s.S - s0 : kTile);
  const int64_t rk = ranks_in_use(s, rank_used);
  const T* Ab = A + (s.a_per_row ? b : 0) * s.K * s.R;
  const T* Bb = B + (s.b_per_row ? b : 0) * s.R * s.N;
  tile_xa(x + (b * s.S + s0) * s.K, Ab, s, rk, ms, red, t);
  // (every load of a column is issued before its first use: a loop that waits on each B load in turn made this
  // part 2.5x slower than the MatMul chain for a 1,025-token prompt on the H100)
  for (int64_t n = tid; n < s.N; n += kThreads) {
    T yv[kTile];  // loaded first, with B: a y load after each store waited on the previous one
#pragma unroll
    for (int m = 0; m < kTile; ++m) yv[m] = m < ms ? y[(b * s.S + s0 + m) * s.N + n] : from_f<T>(0.f);
    float u[kTile];
#pragma unroll
    for (int m = 0; m < kTile; ++m) u[m] = 0.f;
    for (int64_t j0 = 0; j0 < rk; j0 += 16) {
      float bv[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) bv[i] = j0 + i < rk ? to_f(Bb[(j0 + i) * s.N + n]) : 0.f;
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const int64_t j = j0 + i < kMaxRank ? j0 + i : kMaxRank - 1;  // (bv is 0 past rk; t is set up to rk)
        add_rank<kTile>(u, t[j], bv[i]);
      }
    }
#pragma unroll
    for (int m = 0; m < kTile; ++m) {
      if (m < ms) out[(b * s.S + s0 + m) * s.N + n] = from_f<T>(to_f(yv[m]) + u[m]);
    }
  }
}

template <typename T>
cudaError_t launch_prompt(const void* y, const void* x, const void* A, const void* B, void* out, const Shape& s,
                          const int32_t* rank_used, cudaStream_t stream) {
  const int64_t blocks = s.rows * ((s.S + kTile - 1) / kTile);
  lora_add_prompt<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(y), static_cast<const T*>(x), static_cast<const T*>(A), static_cast<const T*>(B),
      static_cast<T*>(out), s, rank_used);
  return cudaGetLastError();
}

// The two-kernel prompt path. lora_xa: the x·A of one tile of kTile tokens into xa [rows * S, R] (fp32, ranks below
// rank_used). lora_expand: out = y + xa·B for kExpTok tokens x kExpCols columns a block, the tile's x·A in shared
// memory and B read once per tile (the single prompt kernel streams all of y through 129 blocks for a 1,025-token
// prompt, one per SM at most).
constexpr int kExpTok = 16, kExpCols = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) lora_xa(const T* __restrict__ x, const T* __restrict__ A,
                                                   float* __restrict__ xa, Shape s,
                                                   const int32_t* __restrict__ rank_used) {
  __shared__ float red[kWarps][kTile][kRanks];
  __shared__ __align__(16) float t[kMaxRank][kTile];
  const int64_t tiles = (s.S + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / tiles;
  const int64_t s0 = (blockIdx.x % tiles) * kTile;
  const int ms = static_cast<int>(s.S - s0 < kTile ? s.S - s0 : kTile);
  const int64_t rk = ranks_in_use(s, rank_used);
  tile_xa(x + (b * s.S + s0) * s.K, A + (s.a_per_row ? b : 0) * s.K * s.R, s, rk, ms, red, t);
  for (int64_t i = threadIdx.x; i < ms * rk; i += kThreads) {
    const int64_t m = i / rk, r = i % rk;
    xa[(b * s.S + s0 + m) * s.R + r] = t[r][m];
  }
}

template <typename T>
__global__ void __launch_bounds__(kExpCols) lora_expand(const T* __restrict__ y, const float* __restrict__ xa,
                                                       const T* __restrict__ B, T* __restrict__ out, Shape s,
                                                       const int32_t* __restrict__ rank_used) {
  __shared__ __align__(16) float t[kMaxRank][kExpTok];  // rank-major: float4 loads along the tokens
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.z, s0 = static_cast<int64_t>(blockIdx.y) * kExpTok;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kExpCols + tid;
  const int ms = static_cast<int>(s.S - s0 < kExpTok ? s.S - s0 : kExpTok);
  const int64_t rk = ranks_in_use(s, rank_used);
  const int64_t rk16 = (rk + 15) / 16 * 16;  // t is filled (zeros past rk) to a multiple of 16 ranks
  const bool col = n < s.N;
  const T* Bb = B + (s.b_per_row ? b : 0) * s.R * s.N;
  // y and B's first 16 ranks are loaded before anything waits (they depend on nothing computed here): a loop that
  // loaded each y after the previous store made this kernel 5x slower than reading y at full bandwidth (H100)
  T yv[kExpTok];
#pragma unroll
  for (int m = 0; m < kExpTok; ++m) yv[m] = col && m < ms ? y[(b * s.S + s0 + m) * s.N + n] : from_f<T>(0.f);
  float b0[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) b0[i] = col && i < rk ? to_f(Bb[i * s.N + n]) : 0.f;
  for (int64_t i = tid; i < kExpTok * rk16; i += kExpCols) {
    const int64_t r = i / kExpTok, m = i % kExpTok;
    t[r][m] = m < ms && r < rk ? xa[(b * s.S + s0 + m) * s.R + r] : 0.f;
  }
  __syncthreads();
  if (!col || rk == 0) {
    if (col) {
#pragma unroll
      for (int m = 0; m < kExpTok; ++m)
        if (m < ms) out[(b * s.S + s0 + m) * s.N + n] = yv[m];
    }
    return;
  }
  float u[kExpTok];
#pragma unroll
  for (int m = 0; m < kExpTok; ++m) u[m] = 0.f;
  for (int64_t j0 = 0; j0 < rk; j0 += 16) {
    float bv[16];
    if (j0 == 0) {
#pragma unroll
      for (int i = 0; i < 16; ++i) bv[i] = b0[i];
    } else {
#pragma unroll
      for (int i = 0; i < 16; ++i) bv[i] = j0 + i < rk ? to_f(Bb[(j0 + i) * s.N + n]) : 0.f;
    }
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      add_rank<kExpTok>(u, t[j0 + i], bv[i]);  // (j0 + i < rk16 <= kMaxRank)
    }
  }
#pragma unroll
  for (int m = 0; m < kExpTok; ++m) {
    if (m < ms) out[(b * s.S + s0 + m) * s.N + n] = from_f<T>(to_f(yv[m]) + u[m]);
  }
}

// lora_expand for fp16 with an even N (the default there; STUDIO_LORA_KERNEL=expand1: the one-column kernel): each
// thread takes two adjacent columns (half2 loads and stores: 128 bytes a warp instruction instead of 64), the block
// 512 columns. Per 64 targets of a 1,025-token prompt on an H100 (bench/lora_gemm.py, 2026-12-07): 1.17 ms, against
// 1.82 for the one-column kernel and 0.63 for a plain Add that streams y; the relative error is the same (4.6e-4).
__global__ void __launch_bounds__(kExpCols) lora_expand_h2(const __half* __restrict__ y, const float* __restrict__ xa,
                                                          const __half* __restrict__ B, __half* __restrict__ out,
                                                          Shape s, const int32_t* __restrict__ rank_used) {
  __shared__ __align__(16) float t[kMaxRank][kExpTok];
  const int tid = threadIdx.x;
  const int64_t b = blockIdx.z, s0 = static_cast<int64_t>(blockIdx.y) * kExpTok;
  const int64_t n2 = static_cast<int64_t>(blockIdx.x) * kExpCols + tid, N2 = s.N / 2;  // column pairs
  const int ms = static_cast<int>(s.S - s0 < kExpTok ? s.S - s0 : kExpTok);
  const int64_t rk = ranks_in_use(s, rank_used);
  const int64_t rk16 = (rk + 15) / 16 * 16;
  const bool col = n2 < N2;
  const __half2* y2 = reinterpret_cast<const __half2*>(y);
  const __half2* B2 = reinterpret_cast<const __half2*>(B + (s.b_per_row ? b : 0) * s.R * s.N);
  __half2* o2 = reinterpret_cast<__half2*>(out);
  __half2 yv[kExpTok];  // loaded before anything waits
#pragma unroll
  for (int m = 0; m < kExpTok; ++m)
    yv[m] = col && m < ms ? y2[(b * s.S + s0 + m) * N2 + n2] : __float2half2_rn(0.f);
  for (int64_t i = tid; i < kExpTok * rk16; i += kExpCols) {
    const int64_t r = i / kExpTok, m = i % kExpTok;
    t[r][m] = m < ms && r < rk ? xa[(b * s.S + s0 + m) * s.R + r] : 0.f;
  }
  __syncthreads();
  if (!col) return;
  float u0[kExpTok], u1[kExpTok];
#pragma unroll
  for (int m = 0; m < kExpTok; ++m) u0[m] = u1[m] = 0.f;
  for (int64_t j0 = 0; j0 < rk; j0 += 16) {
    float2 bv[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) bv[i] = j0 + i < rk ? __half22float2(B2[(j0 + i) * N2 + n2]) : make_float2(0.f, 0.f);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      const float4* tj = reinterpret_cast<const float4*>(t[j0 + i]);
#pragma unroll
      for (int q = 0; q < kExpTok / 4; ++q) {
        const float4 v = tj[q];
        u0[4 * q] += v.x * bv[i].x;
        u1[4 * q] += v.x * bv[i].y;
        u0[4 * q + 1] += v.y * bv[i].x;
        u1[4 * q + 1] += v.y * bv[i].y;
        u0[4 * q + 2] += v.z * bv[i].x;
        u1[4 * q + 2] += v.z * bv[i].y;
        u0[4 * q + 3] += v.w * bv[i].x;
        u1[4 * q + 3] += v.w * bv[i].y;
      }
    }
  }
#pragma unroll
  for (int m = 0; m < kExpTok; ++m) {
    if (m < ms) {
      const float2 f = __half22float2(yv[m]);
      o2[(b * s.S + s0 + m) * N2 + n2] = __floats2half2_rn(f.x + u0[m], f.y + u1[m]);
    }
  }
}

bool expand_h2_ok(const void* y, const void* B, const void* out, const Shape& s) {
  return kernel_choice() != 4 && s.N % 2 == 0 && reinterpret_cast<uintptr_t>(y) % 4 == 0 &&
         reinterpret_cast<uintptr_t>(B) % 4 == 0 && reinterpret_cast<uintptr_t>(out) % 4 == 0;
}

// The x·A of the two-kernel path on tensor cores (fp16 in, fp32 accumulation; WMMA 16x16x16), for fp16 with K and
// the slot rank multiples of 16: a block is 4 warps over one tile of 16 tokens and one of `ksplit` slices of K;
// each warp takes a 16-rank fragment of A and every (4 / fragments)-th step of 16 k of the slice, kNb steps per
// batch of loads, and adds its 16 x 16 partial products into xa (zeroed first) by atomics. The x tile goes through
// shared memory, so tokens past the prompt's end read as zeros. The SIMT lora_xa above serves everything else.
constexpr int kNb = 4;

template <bool AT>
__global__ void __launch_bounds__(128) lora_xa_mma(const __half* __restrict__ x, const __half* __restrict__ A,
                                                  float* __restrict__ xa, Shape s,
                                                  const int32_t* __restrict__ rank_used, int ksplit) {
  using namespace nvcuda;
  using BLayout = typename std::conditional<AT, wmma::col_major, wmma::row_major>::type;
  __shared__ __align__(32) __half xs[4][kNb][16 * 16];
  __shared__ __align__(32) float cs[4][16 * 16];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t tiles = (s.S + 15) / 16;
  const int64_t b = blockIdx.x / tiles, s0 = (blockIdx.x % tiles) * 16;
  const int ms = static_cast<int>(s.S - s0 < 16 ? s.S - s0 : 16);
  const int64_t rk = ranks_in_use(s, rank_used);
  const int64_t ksteps = s.K / 16, per = (ksteps + ksplit - 1) / ksplit;
  const int64_t k0 = blockIdx.y * per, k1 = k0 + per < ksteps ? k0 + per : ksteps;
  const __half* xb = x + (b * s.S + s0) * s.K;
  const __half* Ab = A + (s.a_per_row ? b : 0) * s.K * s.R;
  const int xr = lane / 2, xc = (lane % 2) * 8;  // this lane's 8 halves of a 16 x 16 x tile
  const int64_t frags = (rk + 15) / 16;
  for (int64_t f0 = 0; f0 < frags; f0 += 4) {
    const int nf = static_cast<int>(frags - f0 < 4 ? frags - f0 : 4);
    const int phases = 4 / nf, f = warp % nf, ph = warp / nf;
    if (ph >= phases) continue;  // (3 fragments: one warp idle)
    const int64_t r0 = (f0 + f) * 16;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
    for (int64_t ks = k0 + ph; ks < k1; ks += kNb * phases) {
      uint4 v[kNb];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, BLayout> fb[kNb];
#pragma unroll
      for (int i = 0; i < kNb; ++i) {  // every load of the batch first
        const int64_t k = (ks + i * phases) * 16;
        const bool in = ks + i * phases < k1;
        v[i] = in && xr < ms ? *reinterpret_cast<const uint4*>(xb + xr * s.K + k + xc) : make_uint4(0, 0, 0, 0);
        if (in) {
          if constexpr (AT) wmma::load_matrix_sync(fb[i], Ab + r0 * s.K + k, static_cast<unsigned>(s.K));
          else wmma::load_matrix_sync(fb[i], Ab + k * s.R + r0, static_cast<unsigned>(s.R));
        }
      }
#pragma unroll
      for (int i = 0; i < kNb; ++i) *reinterpret_cast<uint4*>(&xs[warp][i][xr * 16 + xc]) = v[i];
      __syncwarp();
#pragma unroll
      for (int i = 0; i < kNb; ++i) {
        if (ks + i * phases < k1) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
          wmma::load_matrix_sync(fa, xs[warp][i], 16);
          wmma::mma_sync(acc, fa, fb[i], acc);
        }
      }
      __syncwarp();
    }
    wmma::store_matrix_sync(cs[warp], acc, 16, wmma::mem_row_major);
    __syncwarp();
    for (int i = lane; i < 256; i += 32) {
      const int m = i / 16;
      const int64_t r = r0 + i % 16;
      if (m < ms && r < rk) atomicAdd(&xa[(b * s.S + s0 + m) * s.R + r], cs[warp][i]);
    }
    __syncwarp();
  }
}

bool mma_ok(const void* x, const void* A, const Shape& s) {
  return kernel_choice() != 3 && s.K % 16 == 0 && s.R % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(A) % 32 == 0;
}

int sm_count() {
  static const int v = [] {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      cudaGetLastError();
      return 132;
    }
    return n;
  }();
  return v;
}

// The scratch comes from the device's stream-ordered pool (cudaMallocAsync), freed on the stream after the expand.
// Not under graph capture (the engine's prefill runs outside it; a decode step is one token and never comes here):
// there the single prompt kernel serves. Returns false when the two-kernel path was not taken (nothing launched).
template <typename T>
bool launch_prompt_split(const void* y, const void* x, const void* A, const void* B, void* out, const Shape& s,
                         const int32_t* rank_used, cudaStream_t stream, cudaError_t* err) {
  if (kernel_choice() == 1 || kernel_choice() == 2 || s.S <= kTile || s.R == 0) return false;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone) {
    cudaGetLastError();
    return false;
  }
  static bool pool_set[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) == cudaSuccess && dev >= 0 && dev < 64 && !pool_set[dev]) {
    // keep up to 64 MiB in the pool across synchronizations: one scratch per target, 64 targets a prefill
    cudaMemPool_t pool;
    uint64_t keep = 64ull << 20;
    if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess)
      cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    pool_set[dev] = true;
  }
  float* xa = nullptr;
  if (cudaMallocAsync(reinterpret_cast<void**>(&xa), static_cast<size_t>(s.rows * s.S * s.R) * sizeof(float),
                      stream) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  const size_t bytes = static_cast<size_t>(s.rows * s.S * s.R) * sizeof(float);
  if constexpr (std::is_same<T, __half>::value) {
    if (mma_ok(x, A, s)) {
      const int64_t tiles = s.rows * ((s.S + 15) / 16), ksteps = s.K / 16;
      // about two blocks per SM, and at least kNb steps of 16 k per slice
      int64_t ksplit = (2 * sm_count() + tiles - 1) / tiles;
      ksplit = ksplit < 1 ? 1 : ksplit > ksteps / kNb ? (ksteps / kNb > 0 ? ksteps / kNb : 1) : ksplit;
      cudaMemsetAsync(xa, 0, bytes, stream);
      dim3 g(static_cast<unsigned>(tiles), static_cast<unsigned>(ksplit));
      auto kernel = s.a_rank_first ? lora_xa_mma<true> : lora_xa_mma<false>;
      kernel<<<g, 128, 0, stream>>>(static_cast<const __half*>(x), static_cast<const __half*>(A), xa, s, rank_used,
                                    static_cast<int>(ksplit));
    }
  }
  if (!(std::is_same<T, __half>::value && mma_ok(x, A, s))) {
    const int64_t tiles = s.rows * ((s.S + kTile - 1) / kTile);
    lora_xa<T><<<static_cast<unsigned>(tiles), kThreads, 0, stream>>>(static_cast<const T*>(x),
                                                                     static_cast<const T*>(A), xa, s, rank_used);
  }
  const unsigned tok_tiles = static_cast<unsigned>((s.S + kExpTok - 1) / kExpTok);
  if (std::is_same<T, __half>::value && expand_h2_ok(y, B, out, s)) {
    dim3 grid(static_cast<unsigned>((s.N / 2 + kExpCols - 1) / kExpCols), tok_tiles, static_cast<unsigned>(s.rows));
    lora_expand_h2<<<grid, kExpCols, 0, stream>>>(static_cast<const __half*>(y), xa, static_cast<const __half*>(B),
                                                 static_cast<__half*>(out), s, rank_used);
  } else {
    dim3 grid(static_cast<unsigned>((s.N + kExpCols - 1) / kExpCols), tok_tiles, static_cast<unsigned>(s.rows));
    lora_expand<T><<<grid, kExpCols, 0, stream>>>(static_cast<const T*>(y), xa, static_cast<const T*>(B),
                                                 static_cast<T*>(out), s, rank_used);
  }
  *err = cudaGetLastError();
  cudaFreeAsync(xa, stream);
  return true;
}

}  // namespace

int lora_add_cuda(int dtype, const void* y, const void* x, const void* A, const void* B, void* out, const Shape& s,
                  const int32_t* rank_used, void* stream) {
  if (s.rows == 0 || s.S == 0 || s.N == 0) return 0;
  if (s.R > kMaxRank) return static_cast<int>(cudaErrorInvalidValue);  // (lora_op.cc says why first)
  auto st = static_cast<cudaStream_t>(stream);
  if (s.R == 0 && s.S > 1 && (dtype == 10 || dtype == 1)) {  // a base-only prompt (rank-0 binding): out = y
    const size_t bytes = static_cast<size_t>(s.rows * s.S * s.N) * (dtype == 10 ? 2 : 4);
    return static_cast<int>(cudaMemcpyAsync(out, y, bytes, cudaMemcpyDeviceToDevice, st));
  }
  if (dtype == 10 && decode8_ok(x, A, s)) {
    dim3 grid(static_cast<unsigned>((s.N + kThreads - 1) / kThreads), static_cast<unsigned>(s.rows));
    auto kernel = s.a_rank_first ? lora_add_decode8<true> : lora_add_decode8<false>;
    kernel<<<grid, kThreads, 0, st>>>(static_cast<const __half*>(y), static_cast<const __half*>(x),
                                      static_cast<const __half*>(A), static_cast<const __half*>(B),
                                      static_cast<__half*>(out), s, rank_used);
    return static_cast<int>(cudaGetLastError());
  }
  // prompts, and decode steps the decode kernel does not take (a rank not a multiple of 8, float32)
  cudaError_t e = cudaSuccess;
  if (dtype == 10 && launch_prompt_split<__half>(y, x, A, B, out, s, rank_used, st, &e)) return static_cast<int>(e);
  if (dtype == 1 && launch_prompt_split<float>(y, x, A, B, out, s, rank_used, st, &e)) return static_cast<int>(e);
  e = dtype == 10 ? launch_prompt<__half>(y, x, A, B, out, s, rank_used, st)
                  : dtype == 1 ? launch_prompt<float>(y, x, A, B, out, s, rank_used, st)
                               : cudaErrorInvalidValue;
  return static_cast<int>(e);
}

}  // namespace studio_lora
