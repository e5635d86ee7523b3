// Cross-entropy rows on the GPU (see cross_entropy_cuda.h). No absl / fmt / spdlog here: fmt 9 does
// not compile under nvcc.
//
// One block per row. Pass 1 reads the row once with an online (max, sum-exp) pair per thread: a
// group of values first raises the running max to the group's max (rescaling the running sum by
// one exp), then adds exp(x - max) of each value, so each logit costs one exp. The pairs are merged
// across the block with warp shuffles and shared memory, all in fp32; the row's loss is formed in
// double from the merged pair. Pass 2 re-reads the row and writes bf16(grad_scale * (exp(x - max) /
// sum - onehot)), as the CPU reference computes it (exp(x - max) * (grad_scale / sum)).
//
// Rows whose length is a multiple of 4 with 16-byte aligned logits (and 8-byte aligned dlogits)
// take float4 loads and 8-byte bf16x4 stores, four float4 loads in flight per thread in pass 1;
// other shapes take the scalar path.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cross_entropy_cuda.h"

namespace lorasweep {
namespace {

constexpr int kMaxThreads = 512;
constexpr unsigned kFullMask = 0xffffffffu;

// A running softmax denominator: s = sum exp(x - m) over the values seen; m = -inf, s = 0 when
// none were.
struct MaxSum {
  float m;
  float s;
};

#define LS_HD __host__ __device__ __forceinline__
// Unrolling hints for device code only: g++ compiles these helpers for the host too and rejects
// an unknown #pragma under -Werror.
#ifdef __CUDA_ARCH__
#define LS_UNROLL _Pragma("unroll")
#define LS_UNROLL2 _Pragma("unroll 2")
#else
#define LS_UNROLL
#define LS_UNROLL2
#endif

LS_HD MaxSum Combine(MaxSum a, MaxSum b) {
  if (a.m < b.m) {
    const MaxSum t = a;
    a = b;
    b = t;
  }
  if (b.s == 0.0f) return a;  // also covers b empty (b.m = -inf) without exp(-inf - -inf)
  return {a.m, a.s + b.s * expf(b.m - a.m)};
}

// Adds kN values to the running pair: one rescale of the old sum, then one exp per value.
template <int kN>
LS_HD void Accumulate(const float (&x)[kN], MaxSum& acc) {
  float m = acc.m;
  LS_UNROLL
  for (int i = 0; i < kN; ++i) m = fmaxf(m, x[i]);
  if (m == -INFINITY) {
    // Every value so far is -inf or NaN: -inf adds nothing, NaN must poison the sum.
    LS_UNROLL
    for (int i = 0; i < kN; ++i) acc.s += x[i] == -INFINITY ? 0.0f : x[i];
    return;
  }
  float s = acc.m == m ? acc.s : acc.s * expf(acc.m - m);  // acc.m = -inf: s = 0 * 0
  LS_UNROLL
  for (int i = 0; i < kN; ++i) s += expf(x[i] - m);
  acc = {m, s};
}

LS_HD uint32_t Bf16Bits(float v) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
}

// The per-thread parts of the kernel, host-callable so a CPU-only machine can check their index
// arithmetic (thread `tid` of `stride` threads; kVec: V % 4 == 0, x 16-byte and d 8-byte aligned).

// Pass 1: the pair over the values x[tid + k * stride] (float4 units when kVec).
template <bool kVec>
LS_HD MaxSum ThreadMaxSum(const float* __restrict__ x, int64_t V, int64_t tid, int64_t stride) {
  MaxSum acc = {-INFINITY, 0.0f};
  if constexpr (kVec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const int64_t V4 = V / 4;
    int64_t i = tid;
    // Four independent 16-byte loads per thread before any arithmetic that depends on them.
    for (; i + 3 * stride < V4; i += 4 * stride) {
      float4 v[4];
      LS_UNROLL
      for (int u = 0; u < 4; ++u) v[u] = x4[i + u * stride];
      LS_UNROLL
      for (int u = 0; u < 4; ++u) {
        const float g[4] = {v[u].x, v[u].y, v[u].z, v[u].w};
        Accumulate<4>(g, acc);
      }
    }
    for (; i < V4; i += stride) {
      const float4 v = x4[i];
      const float g[4] = {v.x, v.y, v.z, v.w};
      Accumulate<4>(g, acc);
    }
  } else {
    for (int64_t c = tid; c < V; c += stride) {
      const float g[1] = {x[c]};
      Accumulate<1>(g, acc);
    }
  }
  return acc;
}

// Pass 2: d[c] = bf16(exp(x[c] - m) * scale - (c == target ? grad_scale : 0)).
template <bool kVec>
LS_HD void ThreadGradient(const float* __restrict__ x, int64_t V, int64_t tid, int64_t stride,
                          float m, float scale, int64_t target, float grad_scale,
                          bf16* __restrict__ d) {
  if constexpr (kVec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    uint2* d4 = reinterpret_cast<uint2*>(d);
    const int64_t V4 = V / 4;
    LS_UNROLL2
    for (int64_t i = tid; i < V4; i += stride) {
      const float4 v = x4[i];
      float g[4] = {expf(v.x - m) * scale, expf(v.y - m) * scale, expf(v.z - m) * scale,
                    expf(v.w - m) * scale};
      LS_UNROLL
      for (int u = 0; u < 4; ++u) {
        if (4 * i + u == target) g[u] -= grad_scale;
      }
      d4[i] = make_uint2(Bf16Bits(g[0]) | (Bf16Bits(g[1]) << 16),
                         Bf16Bits(g[2]) | (Bf16Bits(g[3]) << 16));
    }
  } else {
    for (int64_t c = tid; c < V; c += stride) {
      float g = expf(x[c] - m) * scale;
      if (c == target) g -= grad_scale;
      d[c] = __float2bfloat16_rn(g);
    }
  }
}

// The zero dlogits of an ignored row.
template <bool kVec>
LS_HD void ThreadZero(int64_t V, int64_t tid, int64_t stride, bf16* __restrict__ d) {
  if constexpr (kVec) {
    uint2* d4 = reinterpret_cast<uint2*>(d);
    for (int64_t i = tid; i < V / 4; i += stride) d4[i] = make_uint2(0u, 0u);
  } else {
    for (int64_t c = tid; c < V; c += stride) d[c] = __float2bfloat16_rn(0.0f);
  }
}

// The pair over the whole block, returned to every thread. blockDim.x is a multiple of 32.
__device__ MaxSum BlockCombine(MaxSum v, MaxSum* shared) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const MaxSum other = {__shfl_xor_sync(kFullMask, v.m, offset),
                          __shfl_xor_sync(kFullMask, v.s, offset)};
    v = Combine(v, other);
  }
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = static_cast<int>(blockDim.x >> 5);
    v = lane < warps ? shared[lane] : MaxSum{-INFINITY, 0.0f};
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
      const MaxSum other = {__shfl_xor_sync(kFullMask, v.m, offset),
                            __shfl_xor_sync(kFullMask, v.s, offset)};
      v = Combine(v, other);
    }
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  return shared[0];
}

// logsumexp - logit[target], formed in double from the fp32 pair.
LS_HD float RowLoss(MaxSum total, float target_logit) {
  return static_cast<float>(static_cast<double>(total.m) + log(static_cast<double>(total.s)) -
                            static_cast<double>(target_logit));
}

template <bool kVec>
__global__ void __launch_bounds__(kMaxThreads)
    CrossEntropyRowsKernel(const float* __restrict__ logits, const int32_t* __restrict__ targets,
                           int64_t V, float grad_scale, float* __restrict__ row_loss,
                           bf16* __restrict__ dlogits) {
  __shared__ MaxSum shared[32];
  const int64_t row = blockIdx.x;
  const float* x = logits + row * V;
  bf16* d = dlogits == nullptr ? nullptr : dlogits + row * V;
  const int64_t target = targets[row];
  const int64_t tid = threadIdx.x;
  const int64_t stride = blockDim.x;

  if (target < 0) {
    if (tid == 0) row_loss[row] = 0.0f;
    if (d != nullptr) ThreadZero<kVec>(V, tid, stride, d);
    return;
  }
  const MaxSum total = BlockCombine(ThreadMaxSum<kVec>(x, V, tid, stride), shared);
  if (tid == 0) {
    // A target past the row (the caller guarantees target < V) reads nothing and gives NaN.
    row_loss[row] = target < V ? RowLoss(total, x[target]) : __int_as_float(0x7fc00000);
  }
  if (d == nullptr) return;
  ThreadGradient<kVec>(x, V, tid, stride, total.m, grad_scale / total.s, target, grad_scale, d);
}

#undef LS_HD
#undef LS_UNROLL
#undef LS_UNROLL2

int ThreadsFor(int64_t V) {
  if (V >= 16384) return kMaxThreads;
  if (V >= 2048) return 256;
  return 128;
}

}  // namespace

cudaError_t CrossEntropyRowsCuda(const float* logits, const int32_t* targets, int64_t rows,
                                 int64_t V, float grad_scale, float* row_loss, bf16* dlogits,
                                 cudaStream_t stream) {
  if (rows < 0 || V <= 0 || rows > std::numeric_limits<int>::max()) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  if (logits == nullptr || targets == nullptr || row_loss == nullptr) return cudaErrorInvalidValue;
  const bool vec = V % 4 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(dlogits) % 8 == 0;
  const dim3 grid(static_cast<unsigned>(rows));
  const int threads = ThreadsFor(V);
  if (vec) {
    CrossEntropyRowsKernel<true>
        <<<grid, threads, 0, stream>>>(logits, targets, V, grad_scale, row_loss, dlogits);
  } else {
    CrossEntropyRowsKernel<false>
        <<<grid, threads, 0, stream>>>(logits, targets, V, grad_scale, row_loss, dlogits);
  }
  return cudaGetLastError();
}

}  // namespace lorasweep
