// CUDA dequantization of bitsandbytes 4-bit weights; semantics in dequantize_4bit_cuda.h and
// quantize_4bit.h. No absl / fmt / spdlog here: fmt 9 does not compile under nvcc.
//
// Layout of the fast path: every thread reads 16 packed bytes (one 16-byte load; a warp reads 512
// contiguous bytes) and produces 32 consecutive outputs. Written directly, a warp's stores would be
// 128 bytes apart, so the outputs are staged in shared memory and written back as 16-byte stores in
// which consecutive threads cover consecutive addresses. 32 divides every blocksize, so each
// thread's 32 values share one absmax.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/dequantize_4bit_cuda.h"

namespace lorasweep {
namespace {

constexpr int kThreads = 256;
constexpr int kGroup = 32;  // outputs per thread in the vectorized kernel (16 packed bytes)
constexpr int kNested = 256;

struct Params {
  Dequantize4bitCudaArgs args;
  int block_shift;  // log2(blocksize)
};

// 16-byte slots of staged output per thread: 8 for float32, 4 for bfloat16.
template <typename OutT>
constexpr int SlotsPerThread() {
  return static_cast<int>(kGroup * sizeof(OutT) / 16);
}

// Shared-memory slot of a thread's `sub`-th 16-byte chunk. 16-byte accesses are served 8 threads at
// a time across 8 bank groups; the XOR spreads both the writes (8 threads, same `sub`) and the
// read-back (8 consecutive chunks, 1 or 2 owners) over distinct bank groups.
template <int kSlots>
__host__ __device__ constexpr int SlotOf(int owner, int sub) {
  return owner * kSlots + (sub ^ ((owner / (8 / kSlots)) & (kSlots - 1)));
}

__device__ __forceinline__ float BlockScale(const Params& p, int64_t block, const float* s_nested) {
  const Dequantize4bitCudaArgs& a = p.args;
  if (a.absmax != nullptr) return __ldg(a.absmax + block);
  // Two roundings, no FMA: bnb dequantizes the codes and adds the offset in separate torch ops.
  const float scaled =
      __fmul_rn(s_nested[__ldg(a.absmax_codes + block)], __ldg(a.nested_absmax + block / kNested));
  return __fadd_rn(scaled, a.nested_offset);
}

__device__ __forceinline__ uint32_t Bf16Bits(float v) {
  return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(v)));
}

__device__ void LoadTables(const Params& p, float* s_code, float* s_nested) {
  if (threadIdx.x < 16) s_code[threadIdx.x] = p.args.code[threadIdx.x];
  if (p.args.absmax == nullptr) {
    for (int i = threadIdx.x; i < kNested; i += blockDim.x) s_nested[i] = p.args.nested_code[i];
  }
  __syncthreads();
}

// Packs the 32 outputs of 16 packed bytes into 16-byte words.
template <typename OutT>
__device__ __forceinline__ void Expand(const uint4& bytes, float scale, const float* s_code,
                                       uint32_t* words) {
  const uint32_t in[4] = {bytes.x, bytes.y, bytes.z, bytes.w};
#pragma unroll
  for (int j = 0; j < 16; ++j) {
    const uint32_t byte = (in[j / 4] >> (8 * (j % 4))) & 0xffu;
    const float hi = __fmul_rn(s_code[byte >> 4], scale);
    const float lo = __fmul_rn(s_code[byte & 15u], scale);
    if constexpr (sizeof(OutT) == 4) {
      words[2 * j] = __float_as_uint(hi);
      words[2 * j + 1] = __float_as_uint(lo);
    } else {
      words[j] = Bf16Bits(hi) | (Bf16Bits(lo) << 16);  // element 2j at the lower address
    }
  }
}

template <typename OutT>
__global__ void __launch_bounds__(kThreads)
    DequantizeVectorKernel(const Params p, int64_t groups, uint4* __restrict__ out) {
  constexpr int kSlots = SlotsPerThread<OutT>();
  __shared__ float s_code[16];
  __shared__ float s_nested[kNested];
  __shared__ uint4 s_stage[kThreads * kSlots];
  LoadTables(p, s_code, s_nested);

  const uint4* packed = reinterpret_cast<const uint4*>(p.args.packed);
  const int t = static_cast<int>(threadIdx.x);
  for (int64_t first = static_cast<int64_t>(blockIdx.x) * kThreads; first < groups;
       first += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int valid = groups - first < kThreads ? static_cast<int>(groups - first) : kThreads;
    if (t < valid) {
      const int64_t g = first + t;
      const uint4 bytes = __ldg(packed + g);
      const float scale = BlockScale(p, (g * kGroup) >> p.block_shift, s_nested);
      uint32_t words[kSlots * 4];
      Expand<OutT>(bytes, scale, s_code, words);
#pragma unroll
      for (int k = 0; k < kSlots; ++k) {
        s_stage[SlotOf<kSlots>(t, k)] =
            make_uint4(words[4 * k], words[4 * k + 1], words[4 * k + 2], words[4 * k + 3]);
      }
    }
    __syncthreads();
    uint4* dst = out + first * kSlots;
#pragma unroll
    for (int k = 0; k < kSlots; ++k) {
      const int idx = k * kThreads + t;
      const int owner = idx / kSlots;
      if (owner < valid) dst[idx] = s_stage[SlotOf<kSlots>(owner, idx % kSlots)];
    }
    __syncthreads();
  }
}

__device__ __forceinline__ void StoreOne(float* out, int64_t i, float v) { out[i] = v; }
__device__ __forceinline__ void StoreOne(uint16_t* out, int64_t i, float v) {
  out[i] = static_cast<uint16_t>(Bf16Bits(v));
}

// One element per thread: the tail after the vectorized groups, or everything when the pointers are
// not 16-byte aligned.
template <typename OutT>
__global__ void __launch_bounds__(kThreads)
    DequantizeScalarKernel(const Params p, int64_t begin, OutT* __restrict__ out) {
  __shared__ float s_code[16];
  __shared__ float s_nested[kNested];
  LoadTables(p, s_code, s_nested);
  const int64_t n = p.args.num_elements;
  for (int64_t i = begin + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint32_t byte = __ldg(p.args.packed + i / 2);
    const uint32_t nibble = (i & 1) ? (byte & 15u) : (byte >> 4);
    const float scale = BlockScale(p, i >> p.block_shift, s_nested);
    StoreOne(out, i, __fmul_rn(s_code[nibble], scale));
  }
}

int Log2IfPowerOfTwo(int64_t v) {
  if (v <= 0 || (v & (v - 1)) != 0) return -1;
  int shift = 0;
  while ((int64_t{1} << shift) < v) ++shift;
  return shift;
}

int GridFor(int64_t work_items) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  // Grid-stride loops cover the rest; this many blocks already fills any current GPU.
  return static_cast<int>(blocks < 65535 ? blocks : 65535);
}

template <typename OutT>
cudaError_t Launch(const Dequantize4bitCudaArgs& args, OutT* out, cudaStream_t stream) {
  const int64_t n = args.num_elements;
  if (n < 0) return cudaErrorInvalidValue;
  const int shift = Log2IfPowerOfTwo(args.blocksize);
  if (shift < 5 || shift > 12) return cudaErrorInvalidValue;  // blocksize in [32, 4096]
  if (n == 0) return cudaSuccess;
  if (args.packed == nullptr || out == nullptr) return cudaErrorInvalidValue;
  if (args.absmax == nullptr && (args.absmax_codes == nullptr || args.nested_absmax == nullptr ||
                                 args.nested_code == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const Params params{args, shift};
  const bool aligned = reinterpret_cast<uintptr_t>(args.packed) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const int64_t groups = aligned ? n / kGroup : 0;
  if (groups > 0) {
    DequantizeVectorKernel<OutT>
        <<<GridFor(groups), kThreads, 0, stream>>>(params, groups, reinterpret_cast<uint4*>(out));
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  const int64_t begin = groups * kGroup;
  if (begin < n) {
    DequantizeScalarKernel<OutT><<<GridFor(n - begin), kThreads, 0, stream>>>(params, begin, out);
  }
  return cudaGetLastError();
}

template <int kSlots>
bool LayoutHolds() {
  std::vector<int> hits(kThreads * kSlots, 0);
  for (int owner = 0; owner < kThreads; ++owner) {
    for (int sub = 0; sub < kSlots; ++sub) {
      const int slot = SlotOf<kSlots>(owner, sub);
      if (slot < 0 || slot >= kThreads * kSlots || hits[slot]++ != 0) return false;
    }
  }
  // Each 8-thread phase of a 16-byte access must touch 8 distinct bank groups (slot mod 8).
  for (int k = 0; k < kSlots; ++k) {
    for (int phase = 0; phase < kThreads; phase += 8) {
      int write_groups = 0;
      int read_groups = 0;
      for (int t = phase; t < phase + 8; ++t) {
        write_groups |= 1 << (SlotOf<kSlots>(t, k) % 8);
        const int idx = k * kThreads + t;
        read_groups |= 1 << (SlotOf<kSlots>(idx / kSlots, idx % kSlots) % 8);
      }
      if (write_groups != 0xff || read_groups != 0xff) return false;
    }
  }
  return true;
}

}  // namespace

cudaError_t Dequantize4bitCudaF32(const Dequantize4bitCudaArgs& args, float* out,
                                  cudaStream_t stream) {
  return Launch<float>(args, out, stream);
}

cudaError_t Dequantize4bitCudaBf16(const Dequantize4bitCudaArgs& args, uint16_t* out,
                                   cudaStream_t stream) {
  return Launch<uint16_t>(args, out, stream);
}

bool Dequantize4bitCudaLayoutSelfCheck() {
  return LayoutHolds<SlotsPerThread<float>()>() && LayoutHolds<SlotsPerThread<uint16_t>()>();
}

}  // namespace lorasweep
