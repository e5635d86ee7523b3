// Token embedding lookup on the GPU; semantics in embedding_cuda.h. No absl / fmt / spdlog here:
// fmt 9 does not compile under nvcc.
//
// One block per token row (grid-stride over rows), the block's threads across the hidden dimension.
// bf16 -> fp32 is exact (a bf16 is the top half of a float32), so the output is bit for bit the CPU
// model's copy of the bf16-rounded table. When H % 4 == 0 and the pointers allow it, each thread
// moves 4 values per step: an 8-byte load of 4 bf16 and a 16-byte store of 4 floats.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/embedding_cuda.h"

namespace lorasweep {
namespace {

constexpr int kMaxThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // grid-stride over rows covers any N

__device__ __forceinline__ float Bf16BitsToFloat(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}

template <int kVec>
__global__ void __launch_bounds__(kMaxThreads)
    EmbeddingKernel(const int32_t* __restrict__ ids, const bf16* __restrict__ table, int64_t N,
                    int64_t H, int64_t V, float* __restrict__ out) {
  const int64_t cols = H / kVec;  // H % kVec == 0 (checked by the launcher)
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const int32_t id = __ldg(ids + row);
    const int64_t src = (id >= 0 && id < V) ? id : 0;
    const bf16* s = table + src * H;
    float* d = out + row * H;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
      if constexpr (kVec == 4) {
        // Element 4c is the low half of raw.x (little-endian), 4c + 3 the high half of raw.y.
        const uint2 raw = __ldg(reinterpret_cast<const uint2*>(s) + c);
        float4 v;
        v.x = Bf16BitsToFloat(raw.x & 0xffffu);
        v.y = __uint_as_float(raw.x & 0xffff0000u);
        v.z = Bf16BitsToFloat(raw.y & 0xffffu);
        v.w = __uint_as_float(raw.y & 0xffff0000u);
        reinterpret_cast<float4*>(d)[c] = v;
      } else {
        d[c] = __bfloat162float(s[c]);
      }
    }
  }
}

int ThreadsFor(int64_t cols) {
  const int64_t rounded = (cols + 31) / 32 * 32;
  return static_cast<int>(rounded < kMaxThreads ? rounded : kMaxThreads);
}

}  // namespace

cudaError_t EmbeddingForwardCuda(const int32_t* ids, const bf16* table, int64_t N, int64_t H,
                                 int64_t V, float* out, cudaStream_t stream) {
  if (N < 0 || H < 0 || V < 0) return cudaErrorInvalidValue;
  if (N == 0 || H == 0) return cudaSuccess;
  // Every id outside [0, V) reads row 0, which must exist.
  if (V == 0 || ids == nullptr || table == nullptr || out == nullptr) return cudaErrorInvalidValue;
  const int blocks = static_cast<int>(N < kMaxBlocks ? N : kMaxBlocks);
  // Row starts stay aligned for the vector path when H % 4 == 0: table rows at multiples of 8
  // bytes, output rows at multiples of 16.
  const bool vec = H % 4 == 0 && reinterpret_cast<uintptr_t>(table) % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vec) {
    EmbeddingKernel<4><<<blocks, ThreadsFor(H / 4), 0, stream>>>(ids, table, N, H, V, out);
  } else {
    EmbeddingKernel<1><<<blocks, ThreadsFor(H), 0, stream>>>(ids, table, N, H, V, out);
  }
  return cudaGetLastError();
}

}  // namespace lorasweep
