// Causal grouped-query attention on the GPU, the mirror of attention.h (same legend and document
// masking: a query attends to keys at positions <= its own within its own document). Tiled in the
// manner of FlashAttention-2: the T x T score matrix is never written to memory; the forward saves
// the log-sum-exp and the backward recomputes the probabilities from it. bf16 inputs and outputs,
// fp32 softmax and accumulation.
//
// q: [B*T, Hq*D], k, v: [B*T, Hkv*D], out: [B*T, Hq*D] (row-major, as the linears write them),
// doc_start[B*T] (device), lse [B, Hq, T] fp32. D in {32, 64, 96, 128}.
#pragma once

#include "kernels/cuda_types.h"

namespace lorasweep {

// Whether the kernels support head_dim D (others are rejected by the model loader's check).
bool AttentionCudaSupportsHeadDim(int64_t D);

// Bytes of device scratch the forward and the backward need for this shape (e.g. each token's
// document start index, fp32 accumulators, the per-row dot(dout, out)); the caller allocates it once
// and passes it to both. (The one argument the CPU versions do not have: they allocate freely.)
int64_t AttentionWorkspaceBytes(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D);

cudaError_t AttentionForwardCuda(const bf16* q, const bf16* k, const bf16* v,
                                 const uint8_t* doc_start, int64_t B, int64_t T, int64_t Hq,
                                 int64_t Hkv, int64_t D, void* workspace, bf16* out, float* lse,
                                 cudaStream_t stream);

// Writes (overwrites) dq [B*T, Hq*D], dk and dv [B*T, Hkv*D].
cudaError_t AttentionBackwardCuda(const bf16* q, const bf16* k, const bf16* v,
                                  const uint8_t* doc_start, const bf16* out, const bf16* dout,
                                  const float* lse, int64_t B, int64_t T, int64_t Hq, int64_t Hkv,
                                  int64_t D, void* workspace, bf16* dq, bf16* dk, bf16* dv,
                                  cudaStream_t stream);

}  // namespace lorasweep
