// Types shared by the CUDA kernel headers (kernels/*_cuda.h). Those headers are plain C++ that both
// nvcc (.cu) and g++ (.cc) include: CUDA runtime types and bf16 only, no absl / spdlog / fmt (fmt 9
// does not compile under nvcc). Every function returns the launch's cudaError_t; kernel faults
// surface at the next synchronization, as usual. Pointers are device pointers unless a comment
// says otherwise; every function runs on the given stream.
//
// Precision plan of the CUDA worker (docs/cuda.md): activations and the operands of every matrix
// product in bf16, accumulation in fp32, the residual stream, norms' statistics, softmax/loss and
// the adapter master weights, gradients and AdamW states in fp32.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace lorasweep {

using bf16 = __nv_bfloat16;

}  // namespace lorasweep
