#include "kernels/matmul.h"

#include <cblas.h>

namespace lorasweep {

void Sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
           int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // BLAS rejects lda = 0; an empty product leaves beta * C.
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(N),
              static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

void LinearForward(const float* x, const float* W, const float* bias, int64_t N, int64_t in,
                   int64_t out, float* y) {
  Sgemm(false, true, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
  if (bias == nullptr) return;
  for (int64_t n = 0; n < N; ++n) {
    float* row = y + n * out;
    for (int64_t o = 0; o < out; ++o) row[o] += bias[o];
  }
}

void LinearBackwardInput(const float* dy, const float* W, int64_t N, int64_t in, int64_t out,
                         bool accumulate, float* dx) {
  Sgemm(false, false, N, in, out, 1.0f, dy, out, W, in, accumulate ? 1.0f : 0.0f, dx, in);
}

void LinearBackwardWeight(const float* dy, const float* x, int64_t N, int64_t in, int64_t out,
                          float* dW) {
  Sgemm(true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
}

void SetBlasThreads(int threads) {
  if (threads > 0) openblas_set_num_threads(threads);
}

}  // namespace lorasweep
