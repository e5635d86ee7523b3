// Token embedding lookup on the GPU (the CPU model's memcpy loop in LlamaModel::Run).
#pragma once

#include "kernels/cuda_types.h"

namespace lorasweep {

// out[i, :] = float(table[ids[i], :]) for i < N; an id outside [0, V) reads row 0 (as the CPU
// model does: such ids never count in the loss). table [V, H] bf16, out [N, H] fp32 (the residual
// stream).
cudaError_t EmbeddingForwardCuda(const int32_t* ids, const bf16* table, int64_t N, int64_t H,
                                 int64_t V, float* out, cudaStream_t stream);

}  // namespace lorasweep
