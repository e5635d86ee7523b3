// The LM head and causal-LM cross-entropy, computed `chunk_rows` rows at a time so the [N, V]
// logits are never held at once (a [chunk_rows, V] block is). Legend: N rows (tokens), H hidden,
// V vocab; lm_head is [V, H] row-major and frozen.
#pragma once

#include <cstdint>

namespace lorasweep {

// For rows with targets[i] >= 0 (negative, e.g. -100, = ignored; the caller guarantees < V):
// loss_i = logsumexp(logits_i) - logits_i[target].
// Returns the sum of loss_i over counted rows (accumulated in double). When dhidden is non-null,
// writes dhidden[i] = grad_scale * (softmax(logits_i) - onehot(target_i)) @ lm_head (zero rows for
// ignored targets). counted_rows (nullable) receives the number of counted rows.
double CrossEntropyForwardBackward(const float* hidden, const float* lm_head,
                                   const int32_t* targets, int64_t N, int64_t H, int64_t V,
                                   int64_t chunk_rows, float grad_scale, float* dhidden,
                                   int64_t* counted_rows);

// logits[N, V] = hidden[N, H] @ lm_head^T (generation).
void LmHeadLogits(const float* hidden, const float* lm_head, int64_t N, int64_t H, int64_t V,
                  float* logits);

}  // namespace lorasweep
