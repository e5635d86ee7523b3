// Host orchestration of the chunked LM head + cross-entropy on the GPU (see cross_entropy_cuda.h).
//
// Per chunk of `chunk_rows` rows, on ctx.stream:
//   logits [n, V] fp32 = hidden[rows] @ lm_head^T     (GemmBf16F32, the workspace's fp32 block)
//   row_loss, dlogits [n, V] bf16                     (CrossEntropyRowsCuda, the bf16 block)
//   dhidden[rows] [n, H] fp32 = dlogits @ lm_head     (GemmBf16F32, beta 0)
// Ignored rows go through the same products (their dlogits are zero, so are their dhidden rows):
// gathering the counted rows would need a device-side compaction for a small saving.
#include "kernels/cross_entropy_cuda.h"

#include <algorithm>
#include <cstdint>

namespace lorasweep {
namespace {

constexpr int64_t kWorkspaceAlign = 256;

int64_t AlignUp(int64_t bytes) {
  return (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
}

int64_t LogitsBlockBytes(int64_t chunk_rows, int64_t V) {
  return AlignUp(chunk_rows * V * static_cast<int64_t>(sizeof(float)));
}

}  // namespace

int64_t CrossEntropyWorkspaceBytes(int64_t chunk_rows, int64_t V) {
  chunk_rows = std::max<int64_t>(1, chunk_rows);
  V = std::max<int64_t>(0, V);
  return LogitsBlockBytes(chunk_rows, V) +
         AlignUp(chunk_rows * V * static_cast<int64_t>(sizeof(bf16)));
}

cudaError_t CrossEntropyForwardBackwardCuda(const CublasContext& ctx, const bf16* hidden,
                                            const bf16* lm_head, const int32_t* targets, int64_t N,
                                            int64_t H, int64_t V, int64_t chunk_rows,
                                            float grad_scale, void* workspace, float* row_loss,
                                            float* dhidden) {
  if (N < 0 || H <= 0 || V <= 0) return cudaErrorInvalidValue;
  if (N == 0) return cudaSuccess;
  if (hidden == nullptr || lm_head == nullptr || targets == nullptr || workspace == nullptr ||
      row_loss == nullptr) {
    return cudaErrorInvalidValue;
  }
  // Same clamp as CrossEntropyWorkspaceBytes; a chunk never exceeds what the caller sized.
  chunk_rows = std::max<int64_t>(1, chunk_rows);
  float* logits = static_cast<float*>(workspace);
  bf16* dlogits =
      reinterpret_cast<bf16*>(static_cast<char*>(workspace) + LogitsBlockBytes(chunk_rows, V));
  for (int64_t first = 0; first < N; first += chunk_rows) {
    const int64_t n = std::min(chunk_rows, N - first);
    // logits = hidden_chunk [n, H] @ lm_head [V, H]^T.
    if (GemmBf16F32(ctx, false, true, n, V, H, 1.0f, hidden + first * H, H, lm_head, H, 0.0f,
                    logits, V) != CUBLAS_STATUS_SUCCESS) {
      return cudaErrorUnknown;
    }
    const cudaError_t e =
        CrossEntropyRowsCuda(logits, targets + first, n, V, grad_scale, row_loss + first,
                             dhidden != nullptr ? dlogits : nullptr, ctx.stream);
    if (e != cudaSuccess) return e;
    if (dhidden == nullptr) continue;
    // dhidden_chunk [n, H] = dlogits [n, V] @ lm_head [V, H].
    if (GemmBf16F32(ctx, false, false, n, H, V, 1.0f, dlogits, V, lm_head, H, 0.0f,
                    dhidden + first * H, H) != CUBLAS_STATUS_SUCCESS) {
      return cudaErrorUnknown;
    }
  }
  return cudaSuccess;
}

}  // namespace lorasweep
