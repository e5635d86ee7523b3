// Causal grouped-query attention over B packed sequences of T tokens, the CPU reference.
// Legend: B sequences, T tokens, Hq query heads, Hkv key/value heads (Hq % Hkv == 0; query head h
// reads kv head h / (Hq / Hkv)), D head_dim. q: [B*T, Hq*D], k, v: [B*T, Hkv*D], out: [B*T, Hq*D].
// doc_start[B*T] = 1 where a document starts: a query attends to keys at positions <= its own
// within its own document (packing never leaks across documents). Scores are scaled by 1/sqrt(D).
//
// The backward recomputes the probabilities from q, k and the saved log-sum-exp (as flash
// attention does) instead of storing them. One (sequence, head) at a time holds a T x T scratch.
#pragma once

#include <cstdint>

namespace lorasweep {

// lse: [B, Hq, T] log-sum-exp of each query's scaled scores (saved for backward).
void AttentionForward(const float* q, const float* k, const float* v, const uint8_t* doc_start,
                      int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, float* out,
                      float* lse);

// Writes (overwrites) dq [B*T, Hq*D], dk and dv [B*T, Hkv*D].
void AttentionBackward(const float* q, const float* k, const float* v, const uint8_t* doc_start,
                       const float* out, const float* dout, const float* lse, int64_t B, int64_t T,
                       int64_t Hq, int64_t Hkv, int64_t D, float* dq, float* dk, float* dv);

}  // namespace lorasweep
