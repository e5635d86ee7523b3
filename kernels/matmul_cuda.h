// Matrix products on the GPU through cuBLAS, the mirror of matmul.h: row-major, bf16 operands,
// fp32 accumulation (CUBLAS_COMPUTE_32F), output in fp32 or bf16. Host code (not nvcc-only): the
// row-major product is issued as the column-major C^T = op(B)^T op(A)^T.
#pragma once

#include <cublas_v2.h>

#include "kernels/cuda_types.h"

namespace lorasweep {

// A cuBLAS handle bound to one stream, with its workspace. Create once per device worker.
struct CublasContext {
  cublasHandle_t handle = nullptr;
  cudaStream_t stream = nullptr;
};
// Creates the handle, binds `stream`, enables tensor-op math. Returns the cuBLAS status.
cublasStatus_t CreateCublasContext(cudaStream_t stream, CublasContext* ctx);
void DestroyCublasContext(CublasContext* ctx);
const char* CublasStatusName(cublasStatus_t status);

// C[M, N] = alpha * op(A) @ op(B) + beta * C, A [M, K] (or [K, M] when trans_a), B [K, N] (or
// [N, K] when trans_b), lda/ldb/ldc row strides. The F32 form writes an fp32 C, the Bf16 form a
// bf16 C (beta applies to C's stored values).
cublasStatus_t GemmBf16F32(const CublasContext& ctx, bool trans_a, bool trans_b, int64_t M,
                           int64_t N, int64_t K, float alpha, const bf16* A, int64_t lda,
                           const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc);
cublasStatus_t GemmBf16Bf16(const CublasContext& ctx, bool trans_a, bool trans_b, int64_t M,
                            int64_t N, int64_t K, float alpha, const bf16* A, int64_t lda,
                            const bf16* B, int64_t ldb, float beta, bf16* C, int64_t ldc);

// y[N, out] = x[N, in] @ W[out, in]^T (+ bias[out] fp32 when non-null), y bf16: a linear layer in
// HF layout (the bias is added by a small kernel after the product).
cublasStatus_t LinearForwardCuda(const CublasContext& ctx, const bf16* x, const bf16* W,
                                 const float* bias, int64_t N, int64_t in, int64_t out, bf16* y);

}  // namespace lorasweep
