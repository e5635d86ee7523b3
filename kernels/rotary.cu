// Rotary position embedding on the GPU; semantics in rotary_cuda.h (the mirror of rotary.cc). No
// absl / fmt / spdlog here: fmt 9 does not compile under nvcc.
//
// Grid-stride over the T * H * D/2 rotation pairs (i, i + D/2) of x[T, H, D]: one thread owns a
// pair (or two adjacent pairs, with 4-byte bf16x2 loads and 8-byte cos/sin loads, when D/2 is even
// and the pointers allow it), so the in-place update needs no synchronization. Consecutive threads
// take consecutive i within a head, then the next head: coalesced. The rotation is the CPU's
// formula in fp32 with the fp32 tables; only the stored result is rounded to bf16.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/rotary_cuda.h"

namespace lorasweep {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

__device__ __forceinline__ void Rotate(float x1, float x2, float c, float s, float sign, float* o1,
                                       float* o2) {
  const float si = sign * s;
  *o1 = x1 * c - x2 * si;
  *o2 = x2 * c + x1 * si;
}

// kPairs (1 or 2) adjacent pairs per work item; (D / 2) % kPairs == 0 (checked by the launcher).
template <int kPairs>
__global__ void __launch_bounds__(kThreads)
    RotaryKernel(bf16* __restrict__ x, const int32_t* __restrict__ positions, int64_t T, int64_t H,
                 int64_t D, const float* __restrict__ cos, const float* __restrict__ sin,
                 float sign) {
  const int64_t half = D / 2;
  const int64_t per_row = half / kPairs;  // work items per (token, head) row
  const int64_t items = T * H * per_row;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < items;
       idx += stride) {
    const int64_t row = idx / per_row;  // t * H + h
    const int64_t i = (idx - row * per_row) * kPairs;
    const int64_t t = row / H;
    const int64_t table = static_cast<int64_t>(__ldg(positions + t)) * half + i;
    bf16* v1 = x + row * D + i;
    bf16* v2 = v1 + half;
    if constexpr (kPairs == 2) {
      const float2 c = __ldg(reinterpret_cast<const float2*>(cos + table));
      const float2 s = __ldg(reinterpret_cast<const float2*>(sin + table));
      const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v1));
      const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(v2));
      float2 o1, o2;
      Rotate(a.x, b.x, c.x, s.x, sign, &o1.x, &o2.x);
      Rotate(a.y, b.y, c.y, s.y, sign, &o1.y, &o2.y);
      *reinterpret_cast<__nv_bfloat162*>(v1) = __float22bfloat162_rn(o1);
      *reinterpret_cast<__nv_bfloat162*>(v2) = __float22bfloat162_rn(o2);
    } else {
      float o1, o2;
      Rotate(__bfloat162float(*v1), __bfloat162float(*v2), __ldg(cos + table), __ldg(sin + table),
             sign, &o1, &o2);
      *v1 = __float2bfloat16_rn(o1);
      *v2 = __float2bfloat16_rn(o2);
    }
  }
}

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

cudaError_t Launch(bf16* x, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                   const float* cos, const float* sin, float sign, cudaStream_t stream) {
  if (T < 0 || H < 0 || D < 0 || D % 2 != 0) return cudaErrorInvalidValue;
  if (T == 0 || H == 0 || D == 0) return cudaSuccess;
  if (x == nullptr || positions == nullptr || cos == nullptr || sin == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int64_t half = D / 2;
  // With half even, every pair index i a thread starts at is even, so x + row * D + i (+ half) is
  // 4-byte aligned and pos * half + i 8-byte aligned (in floats) when the bases are.
  const bool vec = half % 2 == 0 && Aligned(x, 4) && Aligned(cos, 8) && Aligned(sin, 8);
  const int64_t items = T * H * (vec ? half / 2 : half);
  const int64_t blocks_needed = (items + kThreads - 1) / kThreads;
  const int blocks = static_cast<int>(blocks_needed < kMaxBlocks ? blocks_needed : kMaxBlocks);
  if (vec) {
    RotaryKernel<2><<<blocks, kThreads, 0, stream>>>(x, positions, T, H, D, cos, sin, sign);
  } else {
    RotaryKernel<1><<<blocks, kThreads, 0, stream>>>(x, positions, T, H, D, cos, sin, sign);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t RotaryForwardCuda(bf16* x, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                              const float* cos, const float* sin, cudaStream_t stream) {
  return Launch(x, positions, T, H, D, cos, sin, 1.0f, stream);
}

cudaError_t RotaryBackwardCuda(bf16* dx, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                               const float* cos, const float* sin, cudaStream_t stream) {
  return Launch(dx, positions, T, H, D, cos, sin, -1.0f, stream);
}

}  // namespace lorasweep
