// Fused AdamW over the flat fp32 adapter buffer and the global gradient norm on the GPU, the mirror
// of adamw.h (same torch.optim.AdamW single-tensor arithmetic, in fp32).
#pragma once

#include "kernels/adamw.h"
#include "kernels/cuda_types.h"

namespace lorasweep {

// One step over params, grads, m, v [n] (all fp32, device), updated in place. grad_scale multiplies
// each gradient first (global-norm clipping folded in; 1 = none).
cudaError_t AdamWStepCuda(float* params, const float* grads, float* m, float* v, int64_t n,
                          const AdamWParams& p, float grad_scale, cudaStream_t stream);

// *sum_sq (one double in device memory) = sum g^2 over n values, accumulated in fp64 (overwrites).
cudaError_t GradSquaredSumCuda(const float* g, int64_t n, double* sum_sq, cudaStream_t stream);

}  // namespace lorasweep
