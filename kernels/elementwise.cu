// The small elementwise kernels of the CUDA model; semantics in elementwise_cuda.h. No absl / fmt /
// spdlog here: fmt 9 does not compile under nvcc.
//
// Every op is a functor run by one grid-stride kernel (MapKernel): groups of 4 consecutive values
// first (16-byte fp32 / 8-byte bf16 accesses) when all the op's pointers are aligned for them, then
// the n % 4 tail (or everything, when they are not) one value per thread. A thread reads each of
// its elements before writing that element and no other thread touches it, so in-place use (out
// aliasing an input) is safe; nothing here is __restrict__ for that reason.
//
// LoRA dropout reproduces ApplyLoraDropout (worker/model/lora_dropout.cc) bit for bit: the same
// splitmix64, the same 24-bit integer threshold and the same float keep scale, both computed on the
// host with the CPU's expressions.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/elementwise_cuda.h"

namespace lorasweep {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;
constexpr int kVec = 4;

__device__ __forceinline__ float Bf16Lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float Bf16Hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

__device__ __forceinline__ uint32_t Bf16Bits(float v) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
}

// 4 bf16 at an 8-byte aligned address <-> 4 floats; the lower address holds the lower half.
__device__ __forceinline__ float4 LoadBf16x4(const bf16* p) {
  const uint2 raw = *reinterpret_cast<const uint2*>(p);
  return make_float4(Bf16Lo(raw.x), Bf16Hi(raw.x), Bf16Lo(raw.y), Bf16Hi(raw.y));
}
__device__ __forceinline__ void StoreBf16x4(bf16* p, const float4& v) {
  *reinterpret_cast<uint2*>(p) =
      make_uint2(Bf16Bits(v.x) | (Bf16Bits(v.y) << 16), Bf16Bits(v.z) | (Bf16Bits(v.w) << 16));
}
__device__ __forceinline__ float4 LoadF32x4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ void StoreF32x4(float* p, const float4& v) {
  *reinterpret_cast<float4*>(p) = v;
}

// Runs op.Vec(i) for i = 0, 4, ..., 4 * (groups - 1) and op.One(i) for i in [4 * groups, n).
template <typename Op>
__global__ void __launch_bounds__(kThreads) MapKernel(const Op op, int64_t n, int64_t groups) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = first; k < groups; k += stride) op.Vec(k * kVec);
  for (int64_t i = groups * kVec + first; i < n; i += stride) op.One(i);
}

bool Aligned(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <typename Op>
cudaError_t LaunchMap(const Op& op, int64_t n, bool vec, cudaStream_t stream) {
  const int64_t groups = vec ? n / kVec : 0;
  const int64_t tail = n - groups * kVec;
  const int64_t items = groups > tail ? groups : tail;
  const int64_t blocks = (items + kThreads - 1) / kThreads;
  MapKernel<Op>
      <<<static_cast<int>(blocks < kMaxBlocks ? blocks : kMaxBlocks), kThreads, 0, stream>>>(
          op, n, groups);
  return cudaGetLastError();
}

struct F32ToBf16 {
  const float* x;
  bf16* out;
  __device__ void Vec(int64_t i) const { StoreBf16x4(out + i, LoadF32x4(x + i)); }
  __device__ void One(int64_t i) const { out[i] = __float2bfloat16_rn(x[i]); }
};

struct Bf16ToF32 {
  const bf16* x;
  float* out;
  __device__ void Vec(int64_t i) const { StoreF32x4(out + i, LoadBf16x4(x + i)); }
  __device__ void One(int64_t i) const { out[i] = __bfloat162float(x[i]); }
};

struct AddBf16ToF32 {
  const float* a;
  const bf16* b;
  float* out;
  __device__ void Vec(int64_t i) const {
    const float4 u = LoadF32x4(a + i);
    const float4 w = LoadBf16x4(b + i);
    StoreF32x4(out + i, make_float4(u.x + w.x, u.y + w.y, u.z + w.z, u.w + w.w));
  }
  __device__ void One(int64_t i) const { out[i] = a[i] + __bfloat162float(b[i]); }
};

struct AccumulateF32 {
  const float* a;
  float* out;
  __device__ void Vec(int64_t i) const {
    const float4 u = LoadF32x4(a + i);
    const float4 o = LoadF32x4(out + i);
    StoreF32x4(out + i, make_float4(o.x + u.x, o.y + u.y, o.z + u.z, o.w + u.w));
  }
  __device__ void One(int64_t i) const { out[i] += a[i]; }
};

struct ScaleF32 {
  float* x;
  float s;
  __device__ void Vec(int64_t i) const {
    const float4 u = LoadF32x4(x + i);
    StoreF32x4(x + i, make_float4(u.x * s, u.y * s, u.z * s, u.w * s));
  }
  __device__ void One(int64_t i) const { x[i] *= s; }
};

// ---- LoRA dropout ----------------------------------------------------------------------------

__device__ __forceinline__ uint64_t SplitMix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The keep/drop decisions of flat elements i .. i + kCount - 1 of x[N, in]: element i belongs to
// run b = i / run_len (run_len = rows_per_key * in) at index j = i - b * run_len within it.
// Returns the kept mask in bits 0 .. kCount - 1. The caller guarantees i + kCount <= N * in.
struct DropoutMask {
  const uint64_t* keys;
  int64_t run_len;
  uint64_t threshold;  // dropped when splitmix64(key + j) >> 40 < threshold

  template <int kCount>
  __device__ __forceinline__ unsigned Kept(int64_t i) const {
    int64_t b = i / run_len;
    int64_t j = i - b * run_len;
    uint64_t key = keys[b];
    unsigned kept = 0;
#pragma unroll
    for (int k = 0; k < kCount; ++k) {
      if (j == run_len) {  // the group crosses into the next run
        ++b;
        j = 0;
        key = keys[b];
      }
      if ((SplitMix64(key + static_cast<uint64_t>(j)) >> 40) >= threshold) kept |= 1u << k;
      ++j;
    }
    return kept;
  }
};

// x * keep_scale where kept, else 0: the CPU's `bits < threshold ? 0 : x * keep_scale`.
__device__ __forceinline__ float Dropped(float x, bool kept, float keep_scale) {
  return kept ? __fmul_rn(x, keep_scale) : 0.0f;
}

struct DropoutBf16 {
  const bf16* x;
  bf16* out;
  DropoutMask mask;
  float keep_scale;
  __device__ void Vec(int64_t i) const {
    const unsigned kept = mask.Kept<kVec>(i);
    const float4 v = LoadBf16x4(x + i);
    StoreBf16x4(
        out + i,
        make_float4(Dropped(v.x, kept & 1u, keep_scale), Dropped(v.y, kept & 2u, keep_scale),
                    Dropped(v.z, kept & 4u, keep_scale), Dropped(v.w, kept & 8u, keep_scale)));
  }
  __device__ void One(int64_t i) const {
    out[i] = __float2bfloat16_rn(Dropped(__bfloat162float(x[i]), mask.Kept<1>(i), keep_scale));
  }
};

// out += dropout(x): the product is rounded before the add, as the CPU's separate dropout and
// accumulation do (no FMA).
struct DropoutAccumulateF32 {
  const float* x;
  float* out;
  DropoutMask mask;
  float keep_scale;
  __device__ void Vec(int64_t i) const {
    const unsigned kept = mask.Kept<kVec>(i);
    const float4 v = LoadF32x4(x + i);
    const float4 o = LoadF32x4(out + i);
    StoreF32x4(out + i, make_float4(__fadd_rn(o.x, Dropped(v.x, kept & 1u, keep_scale)),
                                    __fadd_rn(o.y, Dropped(v.y, kept & 2u, keep_scale)),
                                    __fadd_rn(o.z, Dropped(v.z, kept & 4u, keep_scale)),
                                    __fadd_rn(o.w, Dropped(v.w, kept & 8u, keep_scale))));
  }
  __device__ void One(int64_t i) const {
    out[i] = __fadd_rn(out[i], Dropped(x[i], mask.Kept<1>(i), keep_scale));
  }
};

// Checks the dropout arguments and fills the mask parameters as ApplyLoraDropout computes them.
cudaError_t DropoutSetup(int64_t N, int64_t in, float p, const uint64_t* keys, int64_t rows_per_key,
                         DropoutMask* mask, float* keep_scale) {
  if (N < 0 || in < 0) return cudaErrorInvalidValue;
  if (!(p >= 0.0f && p <= 1.0f)) return cudaErrorInvalidValue;  // also rejects NaN
  if (N > 0 && in > 0 && (rows_per_key <= 0 || keys == nullptr)) return cudaErrorInvalidValue;
  mask->keys = keys;
  mask->run_len = rows_per_key * in;
  // Compare in the 24-bit integer domain so the decision does not depend on float rounding.
  mask->threshold = static_cast<uint64_t>(static_cast<double>(p) * (1 << 24));
  *keep_scale = 1.0f / (1.0f - p);  // inf for p == 1, where every element is dropped
  return cudaSuccess;
}

}  // namespace

cudaError_t ConvertF32ToBf16Cuda(const float* x, int64_t n, bf16* out, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (x == nullptr || out == nullptr) return cudaErrorInvalidValue;
  return LaunchMap(F32ToBf16{x, out}, n, Aligned(x, 16) && Aligned(out, 8), stream);
}

cudaError_t ConvertBf16ToF32Cuda(const bf16* x, int64_t n, float* out, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (x == nullptr || out == nullptr) return cudaErrorInvalidValue;
  return LaunchMap(Bf16ToF32{x, out}, n, Aligned(x, 8) && Aligned(out, 16), stream);
}

cudaError_t AddBf16ToF32Cuda(const float* a, const bf16* b, int64_t n, float* out,
                             cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (a == nullptr || b == nullptr || out == nullptr) return cudaErrorInvalidValue;
  return LaunchMap(AddBf16ToF32{a, b, out}, n, Aligned(a, 16) && Aligned(b, 8) && Aligned(out, 16),
                   stream);
}

cudaError_t AccumulateF32Cuda(const float* a, int64_t n, float* out, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (a == nullptr || out == nullptr) return cudaErrorInvalidValue;
  return LaunchMap(AccumulateF32{a, out}, n, Aligned(a, 16) && Aligned(out, 16), stream);
}

cudaError_t ScaleF32Cuda(float* x, int64_t n, float s, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (x == nullptr) return cudaErrorInvalidValue;
  return LaunchMap(ScaleF32{x, s}, n, Aligned(x, 16), stream);
}

cudaError_t LoraDropoutCuda(const bf16* x, int64_t N, int64_t in, float p, const uint64_t* keys,
                            int64_t rows_per_key, bf16* out, cudaStream_t stream) {
  DropoutMask mask;
  float keep_scale = 0.0f;
  if (cudaError_t e = DropoutSetup(N, in, p, keys, rows_per_key, &mask, &keep_scale);
      e != cudaSuccess) {
    return e;
  }
  const int64_t n = N * in;
  if (n == 0) return cudaSuccess;
  if (x == nullptr || out == nullptr) return cudaErrorInvalidValue;
  return LaunchMap(DropoutBf16{x, out, mask, keep_scale}, n, Aligned(x, 8) && Aligned(out, 8),
                   stream);
}

cudaError_t LoraDropoutAccumulateCuda(const float* x, int64_t N, int64_t in, float p,
                                      const uint64_t* keys, int64_t rows_per_key, float* out,
                                      cudaStream_t stream) {
  DropoutMask mask;
  float keep_scale = 0.0f;
  if (cudaError_t e = DropoutSetup(N, in, p, keys, rows_per_key, &mask, &keep_scale);
      e != cudaSuccess) {
    return e;
  }
  const int64_t n = N * in;
  if (n == 0) return cudaSuccess;
  if (x == nullptr || out == nullptr) return cudaErrorInvalidValue;
  return LaunchMap(DropoutAccumulateF32{x, out, mask, keep_scale}, n,
                   Aligned(x, 16) && Aligned(out, 16), stream);
}

}  // namespace lorasweep
