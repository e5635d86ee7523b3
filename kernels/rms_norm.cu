// RMSNorm forward and backward on the GPU; semantics in rms_norm_cuda.h (the mirror of
// rms_norm.cc). No absl / fmt / spdlog here: fmt 9 does not compile under nvcc.
//
// One block per row (grid-stride over rows past the grid cap). Each pass reads the row with the
// block's threads side by side (coalesced); the row statistic (sum x^2, or sum x*w*dy) is reduced
// in fp32: per-thread partials, warp shuffles, then the warps' sums in shared memory, added in a
// fixed order so the result does not depend on scheduling. The second pass re-reads the row (a
// row is at most a few tens of KB, so it comes from L1/L2). When dim % 4 == 0 and the pointers are
// aligned, threads move 4 values per access (16-byte fp32 loads, 8-byte bf16 stores).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/rms_norm_cuda.h"

namespace lorasweep {
namespace {

constexpr int kMaxThreads = 256;
constexpr int kMaxWarps = kMaxThreads / 32;
constexpr int64_t kMaxBlocks = 65535;

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of `v` over the block, returned to every thread. blockDim.x must be a multiple of 32 (at most
// kMaxThreads). Ends with a barrier, so `s_warp` may be reused right away.
__device__ __forceinline__ float BlockSum(float v, float* s_warp) {
  v = WarpSum(v);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) s_warp[warp] = v;
  __syncthreads();
  const int warps = blockDim.x >> 5;
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += s_warp[w];  // same order in every thread
  __syncthreads();
  return total;
}

__device__ __forceinline__ uint32_t Bf16Bits(float v) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
}

template <bool kVec>
__global__ void __launch_bounds__(kMaxThreads)
    RmsNormForwardKernel(const float* __restrict__ x, const float* __restrict__ weight,
                         int64_t rows, int64_t dim, float eps, bf16* __restrict__ y,
                         float* __restrict__ inv_rms) {
  __shared__ float s_warp[kMaxWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    bf16* yr = y + r * dim;
    float ss = 0.0f;
    if constexpr (kVec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) {
        const float4 v = x4[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
    } else {
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    }
    const float total = BlockSum(ss, s_warp);
    const float inv = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
    if (threadIdx.x == 0) inv_rms[r] = inv;
    // y = weight * (x * inv), the CPU's order.
    if constexpr (kVec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      const float4* w4 = reinterpret_cast<const float4*>(weight);
      uint2* y4 = reinterpret_cast<uint2*>(yr);
      for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) {
        const float4 v = x4[i];
        const float4 w = __ldg(w4 + i);
        uint2 out;
        out.x = Bf16Bits(w.x * (v.x * inv)) | (Bf16Bits(w.y * (v.y * inv)) << 16);
        out.y = Bf16Bits(w.z * (v.z * inv)) | (Bf16Bits(w.w * (v.w * inv)) << 16);
        y4[i] = out;
      }
    } else {
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        yr[i] = __float2bfloat16_rn(__ldg(weight + i) * (xr[i] * inv));
      }
    }
  }
}

// No __restrict__: every element of dy and x is read before the same thread writes that element of
// dx (the statistic pass ends at a barrier), so dx may even alias dy.
template <bool kVec>
__global__ void __launch_bounds__(kMaxThreads)
    RmsNormBackwardKernel(const float* x, const float* weight, const float* inv_rms,
                          const float* dy, int64_t rows, int64_t dim, bool accumulate, float* dx) {
  __shared__ float s_warp[kMaxWarps];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    const float* dyr = dy + r * dim;
    float* dxr = dx + r * dim;
    float dot = 0.0f;  // sum(x * w * dy)
    if constexpr (kVec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      const float4* dy4 = reinterpret_cast<const float4*>(dyr);
      const float4* w4 = reinterpret_cast<const float4*>(weight);
      for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) {
        const float4 a = x4[i];
        const float4 g = dy4[i];
        const float4 w = __ldg(w4 + i);
        dot += a.x * w.x * g.x + a.y * w.y * g.y + a.z * w.z * g.z + a.w * w.w * g.w;
      }
    } else {
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        dot += xr[i] * __ldg(weight + i) * dyr[i];
      }
    }
    const float total = BlockSum(dot, s_warp);
    const float inv = inv_rms[r];
    const float c = total / static_cast<float>(dim) * inv * inv * inv;
    // g = inv * w * dy - c * x, the CPU's order.
    if constexpr (kVec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      const float4* dy4 = reinterpret_cast<const float4*>(dyr);
      const float4* w4 = reinterpret_cast<const float4*>(weight);
      float4* dx4 = reinterpret_cast<float4*>(dxr);
      for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) {
        const float4 a = x4[i];
        const float4 g = dy4[i];
        const float4 w = __ldg(w4 + i);
        float4 out;
        out.x = inv * w.x * g.x - c * a.x;
        out.y = inv * w.y * g.y - c * a.y;
        out.z = inv * w.z * g.z - c * a.z;
        out.w = inv * w.w * g.w - c * a.w;
        if (accumulate) {
          const float4 prev = dx4[i];
          out.x += prev.x;
          out.y += prev.y;
          out.z += prev.z;
          out.w += prev.w;
        }
        dx4[i] = out;
      }
    } else {
      for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
        const float g = inv * __ldg(weight + i) * dyr[i] - c * xr[i];
        dxr[i] = accumulate ? dxr[i] + g : g;
      }
    }
  }
}

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// One thread per work item (a float4 on the vector path) rounded up to a warp, at most kMaxThreads:
// a 576-wide row (144 float4) gets 160 threads, 1024 and wider get 256.
int ThreadsFor(int64_t items) {
  const int64_t rounded = (items + 31) / 32 * 32;
  return static_cast<int>(rounded < kMaxThreads ? rounded : kMaxThreads);
}

int BlocksFor(int64_t rows) { return static_cast<int>(rows < kMaxBlocks ? rows : kMaxBlocks); }

}  // namespace

cudaError_t RmsNormForwardCuda(const float* x, const float* weight, int64_t rows, int64_t dim,
                               float eps, bf16* y, float* inv_rms, cudaStream_t stream) {
  if (rows < 0 || dim < 0) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  // dim == 0 would make inv_rms 1/sqrt(0/0 + eps): refuse it rather than write NaNs.
  if (dim == 0 || x == nullptr || weight == nullptr || y == nullptr || inv_rms == nullptr) {
    return cudaErrorInvalidValue;
  }
  const bool vec = dim % 4 == 0 && Aligned(x, 16) && Aligned(weight, 16) && Aligned(y, 8);
  const int64_t items = vec ? dim / 4 : dim;
  if (vec) {
    RmsNormForwardKernel<true>
        <<<BlocksFor(rows), ThreadsFor(items), 0, stream>>>(x, weight, rows, dim, eps, y, inv_rms);
  } else {
    RmsNormForwardKernel<false>
        <<<BlocksFor(rows), ThreadsFor(items), 0, stream>>>(x, weight, rows, dim, eps, y, inv_rms);
  }
  return cudaGetLastError();
}

cudaError_t RmsNormBackwardCuda(const float* x, const float* weight, const float* inv_rms,
                                const float* dy, int64_t rows, int64_t dim, bool accumulate,
                                float* dx, cudaStream_t stream) {
  if (rows < 0 || dim < 0) return cudaErrorInvalidValue;
  if (rows == 0 || dim == 0) return cudaSuccess;
  if (x == nullptr || weight == nullptr || inv_rms == nullptr || dy == nullptr || dx == nullptr) {
    return cudaErrorInvalidValue;
  }
  const bool vec =
      dim % 4 == 0 && Aligned(x, 16) && Aligned(weight, 16) && Aligned(dy, 16) && Aligned(dx, 16);
  const int64_t items = vec ? dim / 4 : dim;
  if (vec) {
    RmsNormBackwardKernel<true><<<BlocksFor(rows), ThreadsFor(items), 0, stream>>>(
        x, weight, inv_rms, dy, rows, dim, accumulate, dx);
  } else {
    RmsNormBackwardKernel<false><<<BlocksFor(rows), ThreadsFor(items), 0, stream>>>(
        x, weight, inv_rms, dy, rows, dim, accumulate, dx);
  }
  return cudaGetLastError();
}

}  // namespace lorasweep
