// The bias add that follows the cuBLAS product of LinearForwardCuda (kernels/matmul.cu): a plain
// C++ interface so both matmul_cuda.cc (g++) and .cu files can include it.
#pragma once

#include "kernels/cuda_types.h"

namespace lorasweep {

// y[r, c] = bf16(float(y[r, c]) + bias[c]) for y [rows, cols] bf16 (row stride cols) and bias
// [cols] fp32. Returns cudaErrorInvalidValue for negative sizes or null pointers with work to do,
// else the launch status.
cudaError_t BiasAddBf16Cuda(bf16* y, const float* bias, int64_t rows, int64_t cols,
                            cudaStream_t stream);

}  // namespace lorasweep
