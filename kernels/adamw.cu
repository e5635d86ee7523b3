// Fused AdamW and the gradient's sum of squares on the GPU; semantics in adamw_cuda.h (the mirror
// of adamw.cc). No absl / fmt / spdlog here: fmt 9 does not compile under nvcc.
//
// AdamW: one grid-stride pass reading params, grads, m, v once and writing params, m, v once
// (16-byte accesses when all four pointers are 16-byte aligned, then the n % 4 tail one value per
// thread). The scalars are formed on the host exactly as AdamWStep forms them, and every fp32
// operation of AdamWStep's loop is written with an explicit round-to-nearest intrinsic (__fmul_rn,
// __fadd_rn,
// ...): nvcc would otherwise contract a * b + c into one FMA, and the result would no longer follow
// the CPU's (and torch's single-tensor) operation order.
//
// Sum of squares: each thread accumulates g^2 in fp64 (a float32 square is exact in fp64), the
// block reduces with warp shuffles and shared memory, and one atomicAdd(double) per block adds into
// the output, which the function first zeroes on the same stream. The atomics' order varies from
// run to run, so the last bits of the fp64 sum may too (relative ~1e-16).
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "kernels/adamw_cuda.h"

namespace lorasweep {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;
// The reduction needs no more blocks than fill the GPU once (an H100 runs 8 such blocks on each
// of its 132 SMs); fewer blocks also means fewer atomics on the one output.
constexpr int64_t kMaxReduceBlocks = 1024;

struct AdamWScalars {
  float decay;               // 1 - lr * weight_decay
  float m_weight;            // 1 - beta1 (lerp weight)
  float one_minus_m_weight;  // 1 - m_weight, in float as the CPU computes it
  float v_weight;            // 1 - beta2
  float beta2;
  float step_size;  // lr / (1 - beta1^t)
  float bias_correction2_sqrt;
  float eps;
  float grad_scale;
};

__device__ __forceinline__ void AdamWElement(const AdamWScalars& s, float grad, float* param,
                                             float* m, float* v) {
  const float g = __fmul_rn(grad, s.grad_scale);
  float p = __fmul_rn(*param, s.decay);
  // torch's lerp: self + w * (end - self) for w < 0.5, else end - (end - self) * (1 - w).
  const float mi = *m;
  const float m_new = s.m_weight < 0.5f
                          ? __fadd_rn(mi, __fmul_rn(s.m_weight, __fsub_rn(g, mi)))
                          : __fsub_rn(g, __fmul_rn(__fsub_rn(g, mi), s.one_minus_m_weight));
  // v * b2 + (v_weight * g) * g
  const float v_new = __fadd_rn(__fmul_rn(*v, s.beta2), __fmul_rn(__fmul_rn(s.v_weight, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v_new), s.bias_correction2_sqrt), s.eps);
  p = __fadd_rn(p, __fmul_rn(-s.step_size, __fdiv_rn(m_new, denom)));
  *param = p;
  *m = m_new;
  *v = v_new;
}

// `groups` groups of 4 values first (0 when the pointers are not 16-byte aligned), then the rest.
__global__ void __launch_bounds__(kThreads)
    AdamWKernel(float* __restrict__ params, const float* __restrict__ grads, float* __restrict__ m,
                float* __restrict__ v, int64_t n, int64_t groups, const AdamWScalars s) {
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = first; k < groups; k += stride) {
    float4 p = reinterpret_cast<float4*>(params)[k];
    const float4 g = __ldg(reinterpret_cast<const float4*>(grads) + k);
    float4 mm = reinterpret_cast<float4*>(m)[k];
    float4 vv = reinterpret_cast<float4*>(v)[k];
    AdamWElement(s, g.x, &p.x, &mm.x, &vv.x);
    AdamWElement(s, g.y, &p.y, &mm.y, &vv.y);
    AdamWElement(s, g.z, &p.z, &mm.z, &vv.z);
    AdamWElement(s, g.w, &p.w, &mm.w, &vv.w);
    reinterpret_cast<float4*>(params)[k] = p;
    reinterpret_cast<float4*>(m)[k] = mm;
    reinterpret_cast<float4*>(v)[k] = vv;
  }
  for (int64_t i = groups * 4 + first; i < n; i += stride) {
    float p = params[i], mm = m[i], vv = v[i];
    AdamWElement(s, __ldg(grads + i), &p, &mm, &vv);
    params[i] = p;
    m[i] = mm;
    v[i] = vv;
  }
}

__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void __launch_bounds__(kThreads)
    SumSquaresKernel(const float* __restrict__ g, int64_t n, int64_t groups, double* sum_sq) {
  __shared__ double s_warp[kThreads / 32];
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  double acc = 0.0;
  for (int64_t k = first; k < groups; k += stride) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(g) + k);
    const double x = v.x, y = v.y, z = v.z, w = v.w;
    acc += x * x + y * y + z * z + w * w;
  }
  for (int64_t i = groups * 4 + first; i < n; i += stride) {
    const double x = __ldg(g + i);
    acc += x * x;
  }
  acc = WarpSum(acc);
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) s_warp[warp] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) total += s_warp[w];
    atomicAdd(sum_sq, total);
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

int GridFor(int64_t work_items, int64_t max_blocks) {
  const int64_t blocks = (work_items + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < max_blocks ? blocks : max_blocks);
}

}  // namespace

cudaError_t AdamWStepCuda(float* params, const float* grads, float* m, float* v, int64_t n,
                          const AdamWParams& p, float grad_scale, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  // step is 1-based: step 0 would divide by a zero bias correction.
  if (p.step < 1 || params == nullptr || grads == nullptr || m == nullptr || v == nullptr) {
    return cudaErrorInvalidValue;
  }
  // Exactly AdamWStep's scalars: formed in double, rounded to float once.
  const double lr = p.lr, beta1 = p.beta1, beta2 = p.beta2;
  const double t = static_cast<double>(p.step);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  AdamWScalars s;
  s.step_size = static_cast<float>(lr / bias_correction1);
  s.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  s.decay = static_cast<float>(1.0 - lr * static_cast<double>(p.weight_decay));
  s.m_weight = static_cast<float>(1.0 - beta1);
  s.one_minus_m_weight = 1.0f - s.m_weight;
  s.v_weight = static_cast<float>(1.0 - beta2);
  s.beta2 = p.beta2;
  s.eps = p.eps;
  s.grad_scale = grad_scale;
  const int64_t groups =
      Aligned16(params) && Aligned16(grads) && Aligned16(m) && Aligned16(v) ? n / 4 : 0;
  const int64_t tail = n - groups * 4;
  AdamWKernel<<<GridFor(groups > tail ? groups : tail, kMaxBlocks), kThreads, 0, stream>>>(
      params, grads, m, v, n, groups, s);
  return cudaGetLastError();
}

cudaError_t GradSquaredSumCuda(const float* g, int64_t n, double* sum_sq, cudaStream_t stream) {
  if (n < 0 || sum_sq == nullptr) return cudaErrorInvalidValue;
  // The output is overwritten even for n == 0: the sum of no squares is 0.
  if (cudaError_t e = cudaMemsetAsync(sum_sq, 0, sizeof(double), stream); e != cudaSuccess) {
    return e;
  }
  if (n == 0) return cudaSuccess;
  if (g == nullptr) return cudaErrorInvalidValue;
  const int64_t groups = Aligned16(g) ? n / 4 : 0;
  const int64_t tail = n - groups * 4;
  SumSquaresKernel<<<GridFor(groups > tail ? groups : tail, kMaxReduceBlocks), kThreads, 0,
                     stream>>>(g, n, groups, sum_sq);
  return cudaGetLastError();
}

}  // namespace lorasweep
