// RMSNorm on the GPU, the mirror of rms_norm.h: one row of [rows, dim] per block, statistics in
// fp32. The residual stream x stays fp32; the normed output feeds matrix products, so it is bf16.
#pragma once

#include "kernels/cuda_types.h"

namespace lorasweep {

// y = bf16(x * inv_rms * weight), inv_rms[row] = 1 / sqrt(mean(x^2) + eps) (kept for backward).
cudaError_t RmsNormForwardCuda(const float* x, const float* weight, int64_t rows, int64_t dim,
                               float eps, bf16* y, float* inv_rms, cudaStream_t stream);
// dx (+)= r * (w*dy - x * r^2 * mean(x * w*dy)), r = inv_rms[row]; accumulates into dx when
// `accumulate`. dy fp32 [rows, dim] (the sum of the gradients of the linears the norm feeds).
cudaError_t RmsNormBackwardCuda(const float* x, const float* weight, const float* inv_rms,
                                const float* dy, int64_t rows, int64_t dim, bool accumulate,
                                float* dx, cudaStream_t stream);

}  // namespace lorasweep
