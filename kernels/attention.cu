// Causal grouped-query attention on the GPU (semantics in attention_cuda.h and attention.h), tiled
// in the manner of FlashAttention-2 with bf16 tensor-core products (mma.sync m16n8k16, fp32
// accumulation). No absl / fmt / spdlog here: fmt 9 does not compile under nvcc.
//
// Workspace (AttentionWorkspaceBytes; 256-byte aligned sections):
//   first_key int32 [B*T]            position of each token's document start within its sequence
//   delta     fp32  [B, Hq, T]       rowsum(dout * out), the backward's D_i
//   dq_acc    fp32  [B*T, Hq*D]      dq accumulated with atomicAdd by the key-tile blocks
//   dkv_acc   fp32  2 x [splits, B*T, Hkv*D]   only when the backward splits a GQA group (below)
//
// Forward: one block of 4 warps per (sequence, query head, 64-query tile); each warp owns 16 query
// rows. Q is loaded once into registers as mma A fragments; the block walks 64-key tiles of K and V
// (shared memory, cp.async) from the document start of its first query to its last query, computing
// S = Q K^T in registers, an online softmax in the log2 domain (fp32), and O += P V with P
// re-packed from the S accumulators as bf16 A fragments (no shared-memory round trip). Tiles that
// lie entirely inside every row's window skip the per-element mask; a warp whose 16 rows see none
// of a tile skips its products. lse = ln(sum exp(scaled scores)) is written per row.
//
// Backward (FA2 scheme): delta = rowsum(dout * out) first (one warp per row), then one block of 4
// warps per (sequence, kv head, group split, 64-key tile); warp w owns keys 16w..16w+15 of the tile
// and keeps their dK and dV in registers. The block loops over the query heads of its share of the
// GQA group and over the query tiles that can see its keys (from the tile's first key to the end
// of the document holding its last key); per query tile it recomputes S^T = K Q^T and
// P^T = exp(S^T * scale - lse), dP^T = V dO^T, dS^T = P^T (dP^T - delta) * scale, accumulates
// dV += P^T dO and dK += dS^T Q, and writes dS^T (bf16) to shared memory so that the block can form
// dQ = dS K for the query tile (warps split over query rows) and atomically add it to dq_acc. A
// last pass converts dq_acc to bf16. When the sequence-key-tile grid alone would leave the GPU
// idle, the GQA group of query heads is split over several blocks; each writes fp32 dK/dV partials
// to dkv_acc (plain stores, one writer per element) that a last pass sums into bf16 dk, dv:
// deterministic.
//
// Shared-memory rows are padded by 8 bf16 (16 bytes) so that the fragment loads (8 rows x 4
// consecutive words per warp) hit 32 distinct banks.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/attention_cuda.h"

namespace lorasweep {
namespace {

// ---- device primitives (PTX) -------------------------------------------------------------------

// d += a * b for one m16n8k16 tile: a is 16x16 bf16 (row-major fragments), b 16x8 bf16 (column
// fragments), d 16x8 fp32. Fragment layouts (PTX ISA, lane = 4 * group + tig):
//   a0: (row group, cols 2 tig, +1)   a1: (row group + 8, cols 2 tig, +1)
//   a2: (row group, cols 2 tig + 8, +9)   a3: (row group + 8, cols 2 tig + 8, +9)
//   b0: (rows 2 tig, +1, col group)   b1: (rows 2 tig + 8, +9, col group)
//   d0, d1: (row group, cols 2 tig, +1)   d2, d3: (row group + 8, cols 2 tig, +1)
// The element with the lower column (a) or row (b) index sits in the low 16 bits.
__device__ __forceinline__ void Mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// 16-byte asynchronous global -> shared copy (both addresses 16-byte aligned).
__device__ __forceinline__ void CpAsync16(void* smem_dst, const void* gmem_src) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src) : "memory");
}

__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ uint16_t* DynamicSmem() {
  extern __shared__ __align__(16) uint16_t attention_smem[];
  return attention_smem;
}

// ---- end of device primitives ------------------------------------------------------------------

constexpr int kThreads = 128;  // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kTileN = 64;  // keys per tile (both passes)
constexpr int kTileQ = 64;  // queries per forward block
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFullMask = 0xffffffffu;

// The backward's query rows per step: fewer at the larger head dims to keep dK, dV (D/2 floats each
// per thread) and the S, dP tiles within the register file.
template <int kD>
constexpr int BackwardTileQ() {
  return kD <= 64 ? 64 : 32;
}

template <int kD>
constexpr int64_t ForwardSmemBytes() {
  return int64_t{kTileQ + 2 * kTileN} * (kD + 8) * 2;
}

template <int kD>
constexpr int64_t BackwardSmemBytes() {
  constexpr int kM = BackwardTileQ<kD>();
  return int64_t{2 * kTileN + 2 * kM} * (kD + 8) * 2 + int64_t{kTileN} * (kM + 8) * 2 +
         int64_t{3} * kM * 4;
}

__device__ __forceinline__ uint32_t PackFloats(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t PackHalves(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

__device__ __forceinline__ uint32_t LoadWord(const uint16_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

__device__ __forceinline__ int MinInt(int a, int b) { return a < b ? a : b; }

// Copies rows [row0, row0 + kRows) of a [*, kD] slice (row stride src_stride elements) into shared
// rows of kD + 8 elements; rows at or past `rows_valid` become zeros (so that masked products stay
// finite). With `vec`, 16-byte cp.async copies (the caller commits and waits); otherwise plain
// 2-byte loads.
template <int kD, int kRows>
__device__ __forceinline__ void LoadRows(uint16_t* dst, const bf16* src, int64_t src_stride,
                                         int row0, int rows_valid, bool vec) {
  constexpr int kChunks = kD / 8;
  constexpr int kStride = kD + 8;
  const uint16_t* s16 = reinterpret_cast<const uint16_t*>(src);
  for (int c = threadIdx.x; c < kRows * kChunks; c += kThreads) {
    const int r = c / kChunks;
    const int col = (c % kChunks) * 8;
    const int row = row0 + r;
    uint16_t* d = dst + r * kStride + col;
    if (row < rows_valid) {
      const uint16_t* s = s16 + static_cast<int64_t>(row) * src_stride + col;
      if (vec) {
        CpAsync16(d, s);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) d[i] = s[i];
      }
    } else {
      *reinterpret_cast<uint4*>(d) = make_uint4(0, 0, 0, 0);
    }
  }
}

// ---- document starts ---------------------------------------------------------------------------

constexpr int kScanThreads = 256;

// first_key[b*T + t] = the last position s <= t of sequence b with doc_start (position 0 always
// counts): an inclusive max-scan of (doc_start[s] ? s : 0), one block per sequence.
__global__ void __launch_bounds__(kScanThreads)
    FirstKeyKernel(const uint8_t* __restrict__ doc_start, int T, int* __restrict__ first_key) {
  __shared__ int warp_max[kScanThreads / 32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * T;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  int carry = 0;
  for (int c0 = 0; c0 < T; c0 += kScanThreads) {
    const int t = c0 + static_cast<int>(threadIdx.x);
    int v = (t < T && doc_start[base + t] != 0) ? t : 0;
#pragma unroll
    for (int off = 1; off < 32; off *= 2) {
      const int o = __shfl_up_sync(kFullMask, v, off);
      if (lane >= off && o > v) v = o;
    }
    if (lane == 31) warp_max[warp] = v;
    __syncthreads();
    int before = carry;
    for (int w = 0; w < warp; ++w) before = warp_max[w] > before ? warp_max[w] : before;
    if (before > v) v = before;
    if (t < T) first_key[base + t] = v;
    for (int w = 0; w < kScanThreads / 32; ++w) carry = warp_max[w] > carry ? warp_max[w] : carry;
    __syncthreads();  // warp_max is rewritten by the next chunk
  }
}

// ---- forward -----------------------------------------------------------------------------------

struct ForwardParams {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const int* first_key;
  bf16* out;
  float* lse;
  int T, Hq, group;
  int64_t q_stride, kv_stride;
  float scale_log2;  // log2(e) / sqrt(D)
  bool vec;          // 16-byte aligned inputs: cp.async loads
};

template <int kD>
__global__ void __launch_bounds__(kThreads) AttentionForwardKernel(const ForwardParams p) {
  constexpr int kStride = kD + 8;
  constexpr int kDK = kD / 16;  // k-steps over the head dim
  constexpr int kDN = kD / 8;   // n-tiles over the head dim
  constexpr int kKN = kTileN / 8;
  uint16_t* qs = DynamicSmem();
  uint16_t* ks = qs + kTileQ * kStride;
  uint16_t* vs = ks + kTileN * kStride;

  const int T = p.T;
  const int b = blockIdx.x / p.Hq;
  const int h = blockIdx.x % p.Hq;
  const int q0 = (gridDim.y - 1 - blockIdx.y) * kTileQ;  // the longest tiles start first
  const int64_t tok0 = static_cast<int64_t>(b) * T;
  const bf16* qg = p.q + tok0 * p.q_stride + static_cast<int64_t>(h) * kD;
  const bf16* kg = p.k + tok0 * p.kv_stride + static_cast<int64_t>(h / p.group) * kD;
  const bf16* vg = p.v + tok0 * p.kv_stride + static_cast<int64_t>(h / p.group) * kD;
  const int* fk = p.first_key + tok0;

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int t4 = lane % 4;
  const int q_end = MinInt(T, q0 + kTileQ);
  const int k_begin = fk[q0];          // first_key is nondecreasing: the block's smallest
  const int fk_last = fk[q_end - 1];   // and largest document start
  const int w_first = q0 + warp * 16;  // this warp's rows
  const int w_last = MinInt(w_first + 15, T - 1);
  const int w_fk = w_first < T ? fk[w_first] : T;
  const int row0 = w_first + g;
  const int row1 = row0 + 8;
  // Keys a row may see: [lo, hi]; rows past T see none.
  const int lo0 = row0 < T ? fk[row0] : T;
  const int lo1 = row1 < T ? fk[row1] : T;
  const int hi0 = row0 < T ? row0 : -1;
  const int hi1 = row1 < T ? row1 : -1;

  LoadRows<kD, kTileQ>(qs, qg, p.q_stride, q0, T, p.vec);
  CpAsyncCommit();
  CpAsyncWait<0>();
  __syncthreads();
  uint32_t qf[kDK][4];
  {
    const uint16_t* q_lo = qs + (warp * 16 + g) * kStride + 2 * t4;
    const uint16_t* q_hi = q_lo + 8 * kStride;
#pragma unroll
    for (int kk = 0; kk < kDK; ++kk) {
      qf[kk][0] = LoadWord(q_lo + kk * 16);
      qf[kk][1] = LoadWord(q_hi + kk * 16);
      qf[kk][2] = LoadWord(q_lo + kk * 16 + 8);
      qf[kk][3] = LoadWord(q_hi + kk * 16 + 8);
    }
  }

  float o[kDN][4];
#pragma unroll
  for (int j = 0; j < kDN; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running maxima (log2 domain) of rows row0, row1
  float l0 = 0.0f, l1 = 0.0f;            // this thread's share of the running sums

  for (int n0 = k_begin; n0 < q_end; n0 += kTileN) {
    __syncthreads();  // everyone is done with the previous K and V
    LoadRows<kD, kTileN>(ks, kg, p.kv_stride, n0, T, p.vec);
    CpAsyncCommit();
    LoadRows<kD, kTileN>(vs, vg, p.kv_stride, n0, T, p.vec);
    CpAsyncCommit();
    CpAsyncWait<1>();  // K has landed (V may still be in flight)
    __syncthreads();

    // Whether any of the warp's rows sees any key of the tile (warp-uniform).
    const bool active = w_first < T && n0 <= w_last && n0 + kTileN - 1 >= w_fk;
    float s[kKN][4];
    if (active) {
#pragma unroll
      for (int j = 0; j < kKN; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kDK; ++kk) {
#pragma unroll
        for (int j = 0; j < kKN; ++j) {
          const uint16_t* kr = ks + (j * 8 + g) * kStride + kk * 16 + 2 * t4;
          Mma(s[j], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], LoadWord(kr), LoadWord(kr + 8));
        }
      }
      // Every key of the tile inside every row's window: no per-element mask (block-uniform).
      const bool full = n0 >= fk_last && n0 + kTileN - 1 <= q0 && q0 + kTileQ <= T;
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKN; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          float x = s[j][e] * p.scale_log2;
          if (!full) {
            const int key = n0 + j * 8 + 2 * t4 + (e & 1);
            const bool ok = e < 2 ? (key >= lo0 && key <= hi0) : (key >= lo1 && key <= hi1);
            if (!ok) x = -INFINITY;
          }
          s[j][e] = x;
        }
        mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
      }
      // The 4 lanes of a group hold one row's 64 keys between them.
      mx0 = fmaxf(mx0, __shfl_xor_sync(kFullMask, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(kFullMask, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(kFullMask, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(kFullMask, mx1, 2));
      const float new0 = fmaxf(m0, mx0);
      const float new1 = fmaxf(m1, mx1);
      // A row with no visible key so far keeps max -inf: subtract 0 instead (every p is 0).
      const float base0 = new0 == -INFINITY ? 0.0f : new0;
      const float base1 = new1 == -INFINITY ? 0.0f : new1;
      const float alpha0 = exp2f(m0 - base0);
      const float alpha1 = exp2f(m1 - base1);
      m0 = new0;
      m1 = new1;
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int j = 0; j < kKN; ++j) {
        s[j][0] = exp2f(s[j][0] - base0);
        s[j][1] = exp2f(s[j][1] - base0);
        s[j][2] = exp2f(s[j][2] - base1);
        s[j][3] = exp2f(s[j][3] - base1);
        sum0 += s[j][0] + s[j][1];
        sum1 += s[j][2] + s[j][3];
      }
      l0 = l0 * alpha0 + sum0;
      l1 = l1 * alpha1 + sum1;
#pragma unroll
      for (int j = 0; j < kDN; ++j) {
        o[j][0] *= alpha0;
        o[j][1] *= alpha0;
        o[j][2] *= alpha1;
        o[j][3] *= alpha1;
      }
    }

    CpAsyncWait<0>();  // V has landed
    __syncthreads();
    if (active) {
      // O += P V: the S accumulators of n-tiles 2kk, 2kk+1 are the A fragment of k-step kk.
#pragma unroll
      for (int kk = 0; kk < kTileN / 16; ++kk) {
        const uint32_t a0 = PackFloats(s[2 * kk][0], s[2 * kk][1]);
        const uint32_t a1 = PackFloats(s[2 * kk][2], s[2 * kk][3]);
        const uint32_t a2 = PackFloats(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        const uint32_t a3 = PackFloats(s[2 * kk + 1][2], s[2 * kk + 1][3]);
        const uint16_t* vr = vs + (kk * 16 + 2 * t4) * kStride + g;
#pragma unroll
        for (int j = 0; j < kDN; ++j) {
          const uint32_t b0 = PackHalves(vr[j * 8], vr[kStride + j * 8]);
          const uint32_t b1 = PackHalves(vr[8 * kStride + j * 8], vr[9 * kStride + j * 8]);
          Mma(o[j], a0, a1, a2, a3, b0, b1);
        }
      }
    }
  }

  l0 += __shfl_xor_sync(kFullMask, l0, 1);
  l0 += __shfl_xor_sync(kFullMask, l0, 2);
  l1 += __shfl_xor_sync(kFullMask, l1, 1);
  l1 += __shfl_xor_sync(kFullMask, l1, 2);
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f;
  const float inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  bf16* og = p.out + tok0 * p.q_stride + static_cast<int64_t>(h) * kD + 2 * t4;
  float* lse = p.lse + (static_cast<int64_t>(b) * p.Hq + h) * T;
  if (row0 < T) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(og + static_cast<int64_t>(row0) * p.q_stride);
#pragma unroll
    for (int j = 0; j < kDN; ++j) dst[j * 4] = PackFloats(o[j][0] * inv0, o[j][1] * inv0);
    if (t4 == 0) lse[row0] = (m0 + log2f(l0)) * kLn2;
  }
  if (row1 < T) {
    uint32_t* dst = reinterpret_cast<uint32_t*>(og + static_cast<int64_t>(row1) * p.q_stride);
#pragma unroll
    for (int j = 0; j < kDN; ++j) dst[j * 4] = PackFloats(o[j][2] * inv1, o[j][3] * inv1);
    if (t4 == 0) lse[row1] = (m1 + log2f(l1)) * kLn2;
  }
}

// ---- backward ----------------------------------------------------------------------------------

// delta[(b*Hq + h)*T + t] = sum_d dout * out over one (token, head) row; one warp per row.
__global__ void __launch_bounds__(256)
    DeltaKernel(const bf16* __restrict__ out, const bf16* __restrict__ dout, int64_t rows, int D,
                int T, int Hq, float* __restrict__ delta) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (r >= rows) return;  // warp-uniform
  const int lane = threadIdx.x % 32;
  const bf16* o = out + r * D;
  const bf16* d = dout + r * D;
  float sum = 0.0f;
  for (int i = lane; i < D; i += 32) sum += __bfloat162float(o[i]) * __bfloat162float(d[i]);
#pragma unroll
  for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(kFullMask, sum, off);
  if (lane == 0) {
    const int64_t tok = r / Hq;
    const int h = static_cast<int>(r % Hq);
    const int64_t b = tok / T;
    const int64_t t = tok % T;
    delta[(b * Hq + h) * T + t] = sum;
  }
}

struct BackwardParams {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  const bf16* dout;
  const float* lse;
  const float* delta;
  const int* first_key;
  float* dq_acc;
  bf16* dk;  // splits == 1
  bf16* dv;
  float* dk_acc;  // splits > 1: [splits, B*T, Hkv*D]
  float* dv_acc;
  int64_t acc_split_stride;  // B*T*Hkv*D
  int T, Hq, Hkv, group, splits;
  int64_t q_stride, kv_stride;
  float scale;       // 1 / sqrt(D)
  float scale_log2;  // log2(e) / sqrt(D)
  bool vec;
};

template <int kD>
__global__ void __launch_bounds__(kThreads) AttentionBackwardKernel(const BackwardParams p) {
  constexpr int kM = BackwardTileQ<kD>();
  constexpr int kStride = kD + 8;
  constexpr int kSStride = kM + 8;
  constexpr int kDK = kD / 16;
  constexpr int kDN = kD / 8;
  constexpr int kQN = kM / 8;                    // n-tiles over the query tile
  constexpr int kQK = kM / 16;                   // k-steps over the query tile
  constexpr int kRowTiles = kM / 16;             // dQ: 16-row tiles of the query tile ...
  constexpr int kColSplit = kWarps / kRowTiles;  // ... times column splits = the 4 warps
  constexpr int kQDN = kDN / kColSplit;          // dQ n-tiles per warp
  static_assert(kRowTiles * kColSplit == kWarps && kQDN * kColSplit == kDN, "dQ warp split");
  uint16_t* ks = DynamicSmem();
  uint16_t* vs = ks + kTileN * kStride;
  uint16_t* qs = vs + kTileN * kStride;
  uint16_t* dos = qs + kM * kStride;
  uint16_t* dss = dos + kM * kStride;  // dS^T [key][query], scaled, bf16
  float* lse_s = reinterpret_cast<float*>(dss + kTileN * kSStride);  // lse * log2(e)
  float* delta_s = lse_s + kM;
  int* fk_s = reinterpret_cast<int*>(delta_s + kM);

  const int T = p.T;
  const int per_seq = p.Hkv * p.splits;
  const int b = blockIdx.x / per_seq;
  const int kvh = (blockIdx.x % per_seq) / p.splits;
  const int split = blockIdx.x % p.splits;
  const int heads = p.group / p.splits;
  const int n0 = blockIdx.y * kTileN;  // the longest tiles (first keys) start first
  const int64_t tok0 = static_cast<int64_t>(b) * T;
  const int* fk = p.first_key + tok0;

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int t4 = lane % 4;

  // Queries that can see a key of the tile: [n0, q_stop), q_stop = the end of the document that
  // holds the tile's last key (the first position whose document starts after it).
  const int n_last = MinInt(n0 + kTileN, T) - 1;
  int q_stop = T;
  {
    int lo = n_last + 1;
    while (lo < q_stop) {
      const int mid = lo + (q_stop - lo) / 2;
      if (fk[mid] > n_last) {
        q_stop = mid;
      } else {
        lo = mid + 1;
      }
    }
  }

  const bf16* kg = p.k + tok0 * p.kv_stride + static_cast<int64_t>(kvh) * kD;
  const bf16* vg = p.v + tok0 * p.kv_stride + static_cast<int64_t>(kvh) * kD;
  LoadRows<kD, kTileN>(ks, kg, p.kv_stride, n0, T, p.vec);
  LoadRows<kD, kTileN>(vs, vg, p.kv_stride, n0, T, p.vec);
  CpAsyncCommit();  // waited for with the first query tile's group

  const int w_key = n0 + warp * 16;  // this warp's first key
  const int key0 = w_key + g;        // the two key rows of this thread's accumulators
  const int key1 = key0 + 8;
  float dk[kDN][4], dv[kDN][4];
#pragma unroll
  for (int j = 0; j < kDN; ++j) {
    dk[j][0] = dk[j][1] = dk[j][2] = dk[j][3] = 0.0f;
    dv[j][0] = dv[j][1] = dv[j][2] = dv[j][3] = 0.0f;
  }

  const int rt = warp % kRowTiles;  // dQ rows and columns of this warp
  const int jd0 = (warp / kRowTiles) * kQDN;

  for (int hi = 0; hi < heads; ++hi) {
    const int h = kvh * p.group + split * heads + hi;
    const int64_t head_off = tok0 * p.q_stride + static_cast<int64_t>(h) * kD;
    const bf16* qg = p.q + head_off;
    const bf16* dog = p.dout + head_off;
    float* dqg = p.dq_acc + head_off;
    const float* lse_h = p.lse + (static_cast<int64_t>(b) * p.Hq + h) * T;
    const float* delta_h = p.delta + (static_cast<int64_t>(b) * p.Hq + h) * T;

    for (int m0 = n0; m0 < q_stop; m0 += kM) {
      // No barrier needed before these writes: every warp has passed the previous step's "dS^T
      // complete" barrier, so nobody reads Q, dO, lse, delta or fk_s of that step any more (its
      // dQ phase reads only dS^T and K), and dS^T is rewritten only after the next barrier.
      LoadRows<kD, kM>(qs, qg, p.q_stride, m0, T, p.vec);
      LoadRows<kD, kM>(dos, dog, p.q_stride, m0, T, p.vec);
      CpAsyncCommit();
      for (int i = threadIdx.x; i < kM; i += kThreads) {
        const int row = m0 + i;
        const bool real = row < T;
        lse_s[i] = real ? lse_h[row] * kLog2e : 0.0f;
        delta_s[i] = real ? delta_h[row] : 0.0f;
        fk_s[i] = real ? fk[row] : T;  // past T: after every key, so masked
      }
      CpAsyncWait<0>();
      __syncthreads();

      // Every (key, query) pair of the tiles valid: no per-element mask (block-uniform).
      const bool full = m0 + kM <= T && n0 + kTileN - 1 <= m0 && fk_s[kM - 1] <= n0;
      // Whether any query of the tile sees any of the warp's 16 keys (warp-uniform).
      const bool active = w_key < T && w_key <= m0 + kM - 1 && w_key + 15 >= fk_s[0];
      float st[kQN][4], dpt[kQN][4];  // S^T then P^T; dP^T then dS^T (keys x queries)
#pragma unroll
      for (int j = 0; j < kQN; ++j) {
        st[j][0] = st[j][1] = st[j][2] = st[j][3] = 0.0f;
        dpt[j][0] = dpt[j][1] = dpt[j][2] = dpt[j][3] = 0.0f;
      }
      if (active) {
        // S^T = K_w Q^T and dP^T = V_w dO^T (A: the warp's key rows; B: query rows as columns).
        const uint16_t* k_lo = ks + (warp * 16 + g) * kStride + 2 * t4;
        const uint16_t* v_lo = vs + (warp * 16 + g) * kStride + 2 * t4;
#pragma unroll
        for (int kk = 0; kk < kDK; ++kk) {
          const int c = kk * 16;
          const uint32_t ka0 = LoadWord(k_lo + c), ka1 = LoadWord(k_lo + 8 * kStride + c);
          const uint32_t ka2 = LoadWord(k_lo + c + 8), ka3 = LoadWord(k_lo + 8 * kStride + c + 8);
          const uint32_t va0 = LoadWord(v_lo + c), va1 = LoadWord(v_lo + 8 * kStride + c);
          const uint32_t va2 = LoadWord(v_lo + c + 8), va3 = LoadWord(v_lo + 8 * kStride + c + 8);
#pragma unroll
          for (int j = 0; j < kQN; ++j) {
            const uint16_t* qr = qs + (j * 8 + g) * kStride + c + 2 * t4;
            const uint16_t* dor = dos + (j * 8 + g) * kStride + c + 2 * t4;
            Mma(st[j], ka0, ka1, ka2, ka3, LoadWord(qr), LoadWord(qr + 8));
            Mma(dpt[j], va0, va1, va2, va3, LoadWord(dor), LoadWord(dor + 8));
          }
        }
        // P^T = exp(S^T scale - lse), dS^T = P^T (dP^T - delta) scale, per element.
#pragma unroll
        for (int j = 0; j < kQN; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int ql = j * 8 + 2 * t4 + (e & 1);
            const int key = e < 2 ? key0 : key1;
            const int query = m0 + ql;
            const bool ok = full || (query < T && key <= query && key >= fk_s[ql]);
            const float pv = ok ? exp2f(st[j][e] * p.scale_log2 - lse_s[ql]) : 0.0f;
            st[j][e] = pv;
            dpt[j][e] = pv * (dpt[j][e] - delta_s[ql]) * p.scale;
          }
        }
      }
      // dS^T to shared memory (zeros from inactive warps) for dQ.
      {
        uint16_t* d_lo = dss + (warp * 16 + g) * kSStride + 2 * t4;
#pragma unroll
        for (int j = 0; j < kQN; ++j) {
          *reinterpret_cast<uint32_t*>(d_lo + j * 8) = PackFloats(dpt[j][0], dpt[j][1]);
          *reinterpret_cast<uint32_t*>(d_lo + 8 * kSStride + j * 8) =
              PackFloats(dpt[j][2], dpt[j][3]);
        }
      }
      if (active) {
        // dV += P^T dO and dK += dS^T Q: the accumulators of n-tiles 2kq, 2kq+1 are the A
        // fragment of k-step kq (queries); B: dO / Q rows (queries) x head-dim columns.
#pragma unroll
        for (int kq = 0; kq < kQK; ++kq) {
          const uint32_t pa0 = PackFloats(st[2 * kq][0], st[2 * kq][1]);
          const uint32_t pa1 = PackFloats(st[2 * kq][2], st[2 * kq][3]);
          const uint32_t pa2 = PackFloats(st[2 * kq + 1][0], st[2 * kq + 1][1]);
          const uint32_t pa3 = PackFloats(st[2 * kq + 1][2], st[2 * kq + 1][3]);
          const uint32_t sa0 = PackFloats(dpt[2 * kq][0], dpt[2 * kq][1]);
          const uint32_t sa1 = PackFloats(dpt[2 * kq][2], dpt[2 * kq][3]);
          const uint32_t sa2 = PackFloats(dpt[2 * kq + 1][0], dpt[2 * kq + 1][1]);
          const uint32_t sa3 = PackFloats(dpt[2 * kq + 1][2], dpt[2 * kq + 1][3]);
          const uint16_t* dor = dos + (kq * 16 + 2 * t4) * kStride + g;
          const uint16_t* qr = qs + (kq * 16 + 2 * t4) * kStride + g;
#pragma unroll
          for (int j = 0; j < kDN; ++j) {
            const int c = j * 8;
            Mma(dv[j], pa0, pa1, pa2, pa3, PackHalves(dor[c], dor[kStride + c]),
                PackHalves(dor[8 * kStride + c], dor[9 * kStride + c]));
            Mma(dk[j], sa0, sa1, sa2, sa3, PackHalves(qr[c], qr[kStride + c]),
                PackHalves(qr[8 * kStride + c], qr[9 * kStride + c]));
          }
        }
      }
      __syncthreads();  // dS^T complete

      // dQ rows rt*16.. of the query tile, columns jd0*8.. : dS (queries x keys) K (keys x D).
      {
        float dq[kQDN][4];
#pragma unroll
        for (int j = 0; j < kQDN; ++j) dq[j][0] = dq[j][1] = dq[j][2] = dq[j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < kTileN / 16; ++kk) {
          const uint16_t* sr = dss + (kk * 16 + 2 * t4) * kSStride + rt * 16 + g;
          const uint32_t a0 = PackHalves(sr[0], sr[kSStride]);
          const uint32_t a1 = PackHalves(sr[8], sr[kSStride + 8]);
          const uint32_t a2 = PackHalves(sr[8 * kSStride], sr[9 * kSStride]);
          const uint32_t a3 = PackHalves(sr[8 * kSStride + 8], sr[9 * kSStride + 8]);
          const uint16_t* kr = ks + (kk * 16 + 2 * t4) * kStride + g;
#pragma unroll
          for (int j = 0; j < kQDN; ++j) {
            const int c = (jd0 + j) * 8;
            Mma(dq[j], a0, a1, a2, a3, PackHalves(kr[c], kr[kStride + c]),
                PackHalves(kr[8 * kStride + c], kr[9 * kStride + c]));
          }
        }
        const int qrow0 = m0 + rt * 16 + g;
        const int qrow1 = qrow0 + 8;
        if (qrow0 < T) {
          float* dst = dqg + static_cast<int64_t>(qrow0) * p.q_stride + jd0 * 8 + 2 * t4;
#pragma unroll
          for (int j = 0; j < kQDN; ++j) {
            atomicAdd(dst + j * 8, dq[j][0]);
            atomicAdd(dst + j * 8 + 1, dq[j][1]);
          }
        }
        if (qrow1 < T) {
          float* dst = dqg + static_cast<int64_t>(qrow1) * p.q_stride + jd0 * 8 + 2 * t4;
#pragma unroll
          for (int j = 0; j < kQDN; ++j) {
            atomicAdd(dst + j * 8, dq[j][2]);
            atomicAdd(dst + j * 8 + 1, dq[j][3]);
          }
        }
      }
    }
  }

  // dK, dV rows of this warp: bf16 directly, or this split's fp32 partials.
  const int64_t col = static_cast<int64_t>(kvh) * kD + 2 * t4;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int key = half == 0 ? key0 : key1;
    if (key >= T) continue;
    const int64_t off = (tok0 + key) * p.kv_stride + col;
    if (p.splits == 1) {
      uint32_t* dkr = reinterpret_cast<uint32_t*>(p.dk + off);
      uint32_t* dvr = reinterpret_cast<uint32_t*>(p.dv + off);
#pragma unroll
      for (int j = 0; j < kDN; ++j) {
        dkr[j * 4] = PackFloats(dk[j][2 * half], dk[j][2 * half + 1]);
        dvr[j * 4] = PackFloats(dv[j][2 * half], dv[j][2 * half + 1]);
      }
    } else {
      float2* dkr = reinterpret_cast<float2*>(p.dk_acc + split * p.acc_split_stride + off);
      float2* dvr = reinterpret_cast<float2*>(p.dv_acc + split * p.acc_split_stride + off);
#pragma unroll
      for (int j = 0; j < kDN; ++j) {
        dkr[j * 4] = make_float2(dk[j][2 * half], dk[j][2 * half + 1]);
        dvr[j * 4] = make_float2(dv[j][2 * half], dv[j][2 * half + 1]);
      }
    }
  }
}

// out[i] = bf16(sum over s < splits of acc[s * n + i]), two elements per thread step (n even).
__global__ void __launch_bounds__(256)
    SumToBf16Kernel(const float* __restrict__ acc, int splits, int64_t n, bf16* __restrict__ out) {
  const int64_t pairs = n / 2;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float2 sum = reinterpret_cast<const float2*>(acc)[i];
    for (int s = 1; s < splits; ++s) {
      const float2 x = reinterpret_cast<const float2*>(acc + s * n)[i];
      sum.x += x.x;
      sum.y += x.y;
    }
    reinterpret_cast<uint32_t*>(out)[i] = PackFloats(sum.x, sum.y);
  }
}

// ---- host side ---------------------------------------------------------------------------------

constexpr int64_t kAlign = 256;
// Backward blocks below which a GQA group is split over more blocks (a few waves of ~132 SMs).
constexpr int64_t kTargetBlocks = 528;
constexpr int64_t kMaxT = int64_t{65535} * kTileN;  // grid.y holds the tiles

int64_t AlignUp(int64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

int64_t TileCount(int64_t T, int64_t tile) { return (T + tile - 1) / tile; }

// How many blocks share one kv head's group of query heads in the backward (a divisor of group).
int64_t GroupSplits(int64_t B, int64_t T, int64_t Hq, int64_t Hkv) {
  const int64_t group = Hq / Hkv;
  const int64_t base = B * Hkv * TileCount(T, kTileN);
  for (int64_t s = 1; s < group; ++s) {
    if (group % s == 0 && base * s >= kTargetBlocks) return s;
  }
  return group;
}

struct Layout {
  int64_t first_key = 0, delta = 0, dq = 0, dkv = 0, total = 0;
  int64_t splits = 1;
};

Layout WorkspaceLayout(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D) {
  Layout l;
  l.splits = GroupSplits(B, T, Hq, Hkv);
  int64_t at = 0;
  l.first_key = at;
  at += AlignUp(B * T * 4);
  l.delta = at;
  at += AlignUp(B * Hq * T * 4);
  l.dq = at;
  at += AlignUp(B * T * Hq * D * 4);
  l.dkv = at;
  if (l.splits > 1) at += 2 * AlignUp(l.splits * B * T * Hkv * D * 4);
  l.total = at;
  return l;
}

bool ShapeOk(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D) {
  return B >= 0 && T >= 0 && T <= kMaxT && Hkv > 0 && Hq >= Hkv && Hq % Hkv == 0 &&
         B * Hq <= INT32_MAX && AttentionCudaSupportsHeadDim(D);
}

bool Aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

int GridFor(int64_t items, int per_block) {
  const int64_t blocks = (items + per_block - 1) / per_block;
  return static_cast<int>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

template <int kD>
cudaError_t LaunchForward(const ForwardParams& p, int64_t B, int64_t T, cudaStream_t stream) {
  constexpr int64_t kSmem = ForwardSmemBytes<kD>();
  if (kSmem > 48 * 1024) {
    if (cudaError_t e = cudaFuncSetAttribute(AttentionForwardKernel<kD>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
        e != cudaSuccess) {
      return e;
    }
  }
  const dim3 grid(static_cast<unsigned>(B * p.Hq), static_cast<unsigned>(TileCount(T, kTileQ)));
  AttentionForwardKernel<kD><<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

template <int kD>
cudaError_t LaunchBackward(const BackwardParams& p, int64_t B, int64_t T, cudaStream_t stream) {
  constexpr int64_t kSmem = BackwardSmemBytes<kD>();
  if (kSmem > 48 * 1024) {
    if (cudaError_t e = cudaFuncSetAttribute(AttentionBackwardKernel<kD>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
        e != cudaSuccess) {
      return e;
    }
  }
  const dim3 grid(static_cast<unsigned>(B * p.Hkv * p.splits),
                  static_cast<unsigned>(TileCount(T, kTileN)));
  AttentionBackwardKernel<kD><<<grid, kThreads, kSmem, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

bool AttentionCudaSupportsHeadDim(int64_t D) { return D == 32 || D == 64 || D == 96 || D == 128; }

int64_t AttentionWorkspaceBytes(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D) {
  if (!ShapeOk(B, T, Hq, Hkv, D)) return 0;
  return WorkspaceLayout(B, T, Hq, Hkv, D).total;
}

cudaError_t AttentionForwardCuda(const bf16* q, const bf16* k, const bf16* v,
                                 const uint8_t* doc_start, int64_t B, int64_t T, int64_t Hq,
                                 int64_t Hkv, int64_t D, void* workspace, bf16* out, float* lse,
                                 cudaStream_t stream) {
  if (!ShapeOk(B, T, Hq, Hkv, D)) return cudaErrorInvalidValue;
  if (B == 0 || T == 0) return cudaSuccess;
  if (q == nullptr || k == nullptr || v == nullptr || doc_start == nullptr ||
      workspace == nullptr || out == nullptr || lse == nullptr) {
    return cudaErrorInvalidValue;
  }
  // bf16 pairs are read and written as 32-bit words.
  if (!Aligned(q, 4) || !Aligned(k, 4) || !Aligned(v, 4) || !Aligned(out, 4) ||
      !Aligned(workspace, 16)) {
    return cudaErrorInvalidValue;
  }
  const Layout layout = WorkspaceLayout(B, T, Hq, Hkv, D);
  char* ws = static_cast<char*>(workspace);
  int* first_key = reinterpret_cast<int*>(ws + layout.first_key);
  FirstKeyKernel<<<static_cast<unsigned>(B), kScanThreads, 0, stream>>>(
      doc_start, static_cast<int>(T), first_key);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;

  ForwardParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.first_key = first_key;
  p.out = out;
  p.lse = lse;
  p.T = static_cast<int>(T);
  p.Hq = static_cast<int>(Hq);
  p.group = static_cast<int>(Hq / Hkv);
  p.q_stride = Hq * D;
  p.kv_stride = Hkv * D;
  p.scale_log2 = kLog2e / sqrtf(static_cast<float>(D));
  p.vec = Aligned(q, 16) && Aligned(k, 16) && Aligned(v, 16);
  switch (D) {
    case 32:
      return LaunchForward<32>(p, B, T, stream);
    case 64:
      return LaunchForward<64>(p, B, T, stream);
    case 96:
      return LaunchForward<96>(p, B, T, stream);
    default:
      return LaunchForward<128>(p, B, T, stream);
  }
}

cudaError_t AttentionBackwardCuda(const bf16* q, const bf16* k, const bf16* v,
                                  const uint8_t* doc_start, const bf16* out, const bf16* dout,
                                  const float* lse, int64_t B, int64_t T, int64_t Hq, int64_t Hkv,
                                  int64_t D, void* workspace, bf16* dq, bf16* dk, bf16* dv,
                                  cudaStream_t stream) {
  if (!ShapeOk(B, T, Hq, Hkv, D)) return cudaErrorInvalidValue;
  if (B == 0 || T == 0) return cudaSuccess;
  if (q == nullptr || k == nullptr || v == nullptr || doc_start == nullptr || out == nullptr ||
      dout == nullptr || lse == nullptr || workspace == nullptr || dq == nullptr || dk == nullptr ||
      dv == nullptr) {
    return cudaErrorInvalidValue;
  }
  if (!Aligned(q, 4) || !Aligned(k, 4) || !Aligned(v, 4) || !Aligned(dout, 4) || !Aligned(dq, 4) ||
      !Aligned(dk, 4) || !Aligned(dv, 4) || !Aligned(workspace, 16)) {
    return cudaErrorInvalidValue;
  }
  const Layout layout = WorkspaceLayout(B, T, Hq, Hkv, D);
  char* ws = static_cast<char*>(workspace);
  int* first_key = reinterpret_cast<int*>(ws + layout.first_key);
  float* delta = reinterpret_cast<float*>(ws + layout.delta);
  float* dq_acc = reinterpret_cast<float*>(ws + layout.dq);
  const int64_t q_elems = B * T * Hq * D;
  const int64_t kv_elems = B * T * Hkv * D;

  FirstKeyKernel<<<static_cast<unsigned>(B), kScanThreads, 0, stream>>>(
      doc_start, static_cast<int>(T), first_key);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  const int64_t rows = B * T * Hq;
  DeltaKernel<<<static_cast<unsigned>((rows + 7) / 8), 256, 0, stream>>>(
      out, dout, rows, static_cast<int>(D), static_cast<int>(T), static_cast<int>(Hq), delta);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  if (cudaError_t e = cudaMemsetAsync(dq_acc, 0, q_elems * sizeof(float), stream);
      e != cudaSuccess) {
    return e;
  }

  BackwardParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.dout = dout;
  p.lse = lse;
  p.delta = delta;
  p.first_key = first_key;
  p.dq_acc = dq_acc;
  p.dk = dk;
  p.dv = dv;
  p.dk_acc = reinterpret_cast<float*>(ws + layout.dkv);
  p.dv_acc = p.dk_acc + layout.splits * kv_elems;
  p.acc_split_stride = kv_elems;
  p.T = static_cast<int>(T);
  p.Hq = static_cast<int>(Hq);
  p.Hkv = static_cast<int>(Hkv);
  p.group = static_cast<int>(Hq / Hkv);
  p.splits = static_cast<int>(layout.splits);
  p.q_stride = Hq * D;
  p.kv_stride = Hkv * D;
  p.scale = 1.0f / sqrtf(static_cast<float>(D));
  p.scale_log2 = kLog2e * p.scale;
  p.vec = Aligned(q, 16) && Aligned(k, 16) && Aligned(v, 16) && Aligned(dout, 16);
  cudaError_t e;
  switch (D) {
    case 32:
      e = LaunchBackward<32>(p, B, T, stream);
      break;
    case 64:
      e = LaunchBackward<64>(p, B, T, stream);
      break;
    case 96:
      e = LaunchBackward<96>(p, B, T, stream);
      break;
    default:
      e = LaunchBackward<128>(p, B, T, stream);
      break;
  }
  if (e != cudaSuccess) return e;

  SumToBf16Kernel<<<GridFor(q_elems / 2, 256), 256, 0, stream>>>(dq_acc, 1, q_elems, dq);
  if (e = cudaGetLastError(); e != cudaSuccess) return e;
  if (layout.splits > 1) {
    const int splits = static_cast<int>(layout.splits);
    SumToBf16Kernel<<<GridFor(kv_elems / 2, 256), 256, 0, stream>>>(p.dk_acc, splits, kv_elems, dk);
    if (e = cudaGetLastError(); e != cudaSuccess) return e;
    SumToBf16Kernel<<<GridFor(kv_elems / 2, 256), 256, 0, stream>>>(p.dv_acc, splits, kv_elems, dv);
    e = cudaGetLastError();
  }
  return e;
}

}  // namespace lorasweep
