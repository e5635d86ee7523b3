// The LM head and causal-LM cross-entropy on the GPU, the mirror of cross_entropy.h: computed
// `chunk_rows` rows at a time so the [N, V] logits are never held at once (one fp32
// [chunk_rows, V] block is, in the caller's workspace).
#pragma once

#include "kernels/cuda_types.h"
#include "kernels/matmul_cuda.h"

namespace lorasweep {

// Per row of logits [rows, V] (fp32): for targets[i] >= 0, row_loss[i] = logsumexp - logit[target]
// and, when dlogits is non-null, dlogits[i] = bf16(grad_scale * (softmax - onehot)); for ignored
// rows (target < 0) row_loss[i] = 0 and dlogits[i] = 0. One block per row, fp32 math.
cudaError_t CrossEntropyRowsCuda(const float* logits, const int32_t* targets, int64_t rows,
                                 int64_t V, float grad_scale, float* row_loss, bf16* dlogits,
                                 cudaStream_t stream);

// Bytes of device workspace CrossEntropyForwardBackwardCuda needs (fp32 logits block + bf16
// dlogits block of chunk_rows x V).
int64_t CrossEntropyWorkspaceBytes(int64_t chunk_rows, int64_t V);

// hidden [N, H] bf16 (after the final norm), lm_head [V, H] bf16, targets [N] (device).
// Writes row_loss [N] (fp32, device; the caller sums it in fp64) and, when dhidden is non-null,
// dhidden [N, H] fp32 = grad_scale * (softmax - onehot) @ lm_head (zero rows where ignored).
// Returns cudaErrorUnknown when a cuBLAS call fails (ctx's stream carries the work).
cudaError_t CrossEntropyForwardBackwardCuda(const CublasContext& ctx, const bf16* hidden,
                                            const bf16* lm_head, const int32_t* targets, int64_t N,
                                            int64_t H, int64_t V, int64_t chunk_rows,
                                            float grad_scale, void* workspace, float* row_loss,
                                            float* dhidden);

}  // namespace lorasweep
