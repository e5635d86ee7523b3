// Small elementwise kernels the CUDA model needs between the big ops: dtype conversion, residual
// adds, scaling, and LoRA dropout with the CPU's exact masks (worker/model/lora_dropout.h).
#pragma once

#include "kernels/cuda_types.h"

namespace lorasweep {

cudaError_t ConvertF32ToBf16Cuda(const float* x, int64_t n, bf16* out, cudaStream_t stream);
cudaError_t ConvertBf16ToF32Cuda(const bf16* x, int64_t n, float* out, cudaStream_t stream);
// out[i] = a[i] + float(b[i]) (a residual add; out may alias a).
cudaError_t AddBf16ToF32Cuda(const float* a, const bf16* b, int64_t n, float* out,
                             cudaStream_t stream);
// out[i] += a[i] (fp32).
cudaError_t AccumulateF32Cuda(const float* a, int64_t n, float* out, cudaStream_t stream);
// x[i] *= s.
cudaError_t ScaleF32Cuda(float* x, int64_t n, float s, cudaStream_t stream);

// LoRA dropout over x [N, in] whose rows come in runs of rows_per_key rows (one sequence each)
// with one key per run: keys[ceil(N / rows_per_key)] (device; a last, shorter run gets its own
// key, as in LlamaModel::ApplyDropout). Element j (0-based within its run's rows_per_key * in
// values) of run b is dropped when (splitmix64(keys[b] + j) >> 40) < uint64(double(p) * 2^24),
// else scaled by float(1 / (1 - p)): bit for bit the CPU's ApplyLoraDropout decision on each run.
// p must lie in [0, 1] (0: out = x; 1: all zero). out may alias x.
cudaError_t LoraDropoutCuda(const bf16* x, int64_t N, int64_t in, float p, const uint64_t* keys,
                            int64_t rows_per_key, bf16* out, cudaStream_t stream);
// The backward's mask applied to an fp32 gradient and added: out[i] += dropout(x)[i], same masks.
cudaError_t LoraDropoutAccumulateCuda(const float* x, int64_t N, int64_t in, float p,
                                      const uint64_t* keys, int64_t rows_per_key, float* out,
                                      cudaStream_t stream);

}  // namespace lorasweep
