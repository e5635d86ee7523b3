// SwiGLU forward and backward on the GPU; semantics in swiglu_cuda.h (the mirror of swiglu.cc). No
// absl / fmt / spdlog here: fmt 9 does not compile under nvcc.
//
// Grid-stride elementwise loops. When every pointer is 16-byte aligned, each thread handles groups
// of 8 values (one 16-byte load or store per array), and the n % 8 tail goes one value per thread;
// otherwise everything goes one value per thread. Math in fp32 with the CPU's formulas and expf
// (full precision, not __expf); only the stored results are rounded to bf16. A thread reads each of
// its elements before it writes that element, and no other thread touches it, so outputs may alias
// inputs (no __restrict__ / __ldg here for that reason).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/swiglu_cuda.h"

namespace lorasweep {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;
constexpr int kVec = 8;  // bf16 values per 16-byte access

__device__ __forceinline__ void Unpack8(const uint4& raw, float* f) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    f[2 * k] = __uint_as_float(w[k] << 16);  // the lower address holds the lower half
    f[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
  }
}

__device__ __forceinline__ uint32_t Bf16Bits(float v) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
}

__device__ __forceinline__ uint4 Pack8(const float* f) {
  return make_uint4(
      Bf16Bits(f[0]) | (Bf16Bits(f[1]) << 16), Bf16Bits(f[2]) | (Bf16Bits(f[3]) << 16),
      Bf16Bits(f[4]) | (Bf16Bits(f[5]) << 16), Bf16Bits(f[6]) | (Bf16Bits(f[7]) << 16));
}

__device__ __forceinline__ float SwigluValue(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__device__ __forceinline__ void SwigluGrads(float g, float u, float dout, float* dgate,
                                            float* dup) {
  const float sig = 1.0f / (1.0f + expf(-g));
  const float silu = g * sig;
  *dup = dout * silu;
  // d silu / dg = sig * (1 + g * (1 - sig))
  *dgate = dout * u * sig * (1.0f + g * (1.0f - sig));
}

// `groups` groups of 8 values first (0 when the pointers are not 16-byte aligned), then the rest.
__global__ void __launch_bounds__(kThreads)
    SwigluForwardKernel(const bf16* gate, const bf16* up, int64_t n, int64_t groups, bf16* out) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = first; k < groups; k += stride) {
    float g[kVec], u[kVec], o[kVec];
    Unpack8(reinterpret_cast<const uint4*>(gate)[k], g);
    Unpack8(reinterpret_cast<const uint4*>(up)[k], u);
#pragma unroll
    for (int j = 0; j < kVec; ++j) o[j] = SwigluValue(g[j], u[j]);
    reinterpret_cast<uint4*>(out)[k] = Pack8(o);
  }
  for (int64_t i = groups * kVec + first; i < n; i += stride) {
    out[i] = __float2bfloat16_rn(SwigluValue(__bfloat162float(gate[i]), __bfloat162float(up[i])));
  }
}

__global__ void __launch_bounds__(kThreads)
    SwigluBackwardKernel(const bf16* gate, const bf16* up, const bf16* dout, int64_t n,
                         int64_t groups, bf16* dgate, bf16* dup) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = first; k < groups; k += stride) {
    float g[kVec], u[kVec], d[kVec], dg[kVec], du[kVec];
    Unpack8(reinterpret_cast<const uint4*>(gate)[k], g);
    Unpack8(reinterpret_cast<const uint4*>(up)[k], u);
    Unpack8(reinterpret_cast<const uint4*>(dout)[k], d);
#pragma unroll
    for (int j = 0; j < kVec; ++j) SwigluGrads(g[j], u[j], d[j], &dg[j], &du[j]);
    reinterpret_cast<uint4*>(dgate)[k] = Pack8(dg);
    reinterpret_cast<uint4*>(dup)[k] = Pack8(du);
  }
  for (int64_t i = groups * kVec + first; i < n; i += stride) {
    float dg, du;
    SwigluGrads(__bfloat162float(gate[i]), __bfloat162float(up[i]), __bfloat162float(dout[i]), &dg,
                &du);
    dgate[i] = __float2bfloat16_rn(dg);
    dup[i] = __float2bfloat16_rn(du);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int GridFor(int64_t work_items) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

}  // namespace

cudaError_t SwigluForwardCuda(const bf16* gate, const bf16* up, int64_t n, bf16* out,
                              cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (gate == nullptr || up == nullptr || out == nullptr) return cudaErrorInvalidValue;
  const int64_t groups = Aligned16(gate) && Aligned16(up) && Aligned16(out) ? n / kVec : 0;
  // Enough threads for the larger of the two loops.
  const int64_t tail = n - groups * kVec;
  SwigluForwardKernel<<<GridFor(groups > tail ? groups : tail), kThreads, 0, stream>>>(gate, up, n,
                                                                                       groups, out);
  return cudaGetLastError();
}

cudaError_t SwigluBackwardCuda(const bf16* gate, const bf16* up, const bf16* dout, int64_t n,
                               bf16* dgate, bf16* dup, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (gate == nullptr || up == nullptr || dout == nullptr || dgate == nullptr || dup == nullptr) {
    return cudaErrorInvalidValue;
  }
  const int64_t groups =
      Aligned16(gate) && Aligned16(up) && Aligned16(dout) && Aligned16(dgate) && Aligned16(dup)
          ? n / kVec
          : 0;
  const int64_t tail = n - groups * kVec;
  SwigluBackwardKernel<<<GridFor(groups > tail ? groups : tail), kThreads, 0, stream>>>(
      gate, up, dout, n, groups, dgate, dup);
  return cudaGetLastError();
}

}  // namespace lorasweep
