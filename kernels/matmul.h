// Matrix products for the CPU reference, through OpenBLAS sgemm (row-major, float32).
// Dimension legend: N rows (tokens), in / out features of a linear layer in HF layout W[out, in].
#pragma once

#include <cstdint>

namespace lorasweep {

// C[M, N] = alpha * op(A) @ op(B) + beta * C; op transposes when the flag is set. A is [M, K] (or
// [K, M] when transposed), B is [K, N] (or [N, K]); lda/ldb/ldc are row strides.
void Sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// y[N, out] = x[N, in] @ W[out, in]^T (+ bias[out] when non-null): a linear layer in HF layout.
void LinearForward(const float* x, const float* W, const float* bias, int64_t N, int64_t in,
                   int64_t out, float* y);
// dx[N, in] (+)= dy[N, out] @ W[out, in]; accumulates into dx when `accumulate`.
void LinearBackwardInput(const float* dy, const float* W, int64_t N, int64_t in, int64_t out,
                         bool accumulate, float* dx);
// dW[out, in] += dy^T @ x (accumulates, as gradient accumulation over micro-batches does).
void LinearBackwardWeight(const float* dy, const float* x, int64_t N, int64_t in, int64_t out,
                          float* dW);

// Threads OpenBLAS may use (0 leaves its default).
void SetBlasThreads(int threads);

}  // namespace lorasweep
