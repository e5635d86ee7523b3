// cuBLAS matrix products of the CUDA backend (see matmul_cuda.h).
//
// Row-major to column-major: a row-major matrix X [r, c] with row stride ld is, read column-major,
// X^T [c, r] with leading dimension ld. So the row-major C [M, N] = op(A) @ op(B) is computed as
// the column-major C^T [N, M] = op(B)^T @ op(A)^T, i.e. cuBLAS' "A" is our B and its "B" our A:
//   - cuBLAS A = B with leading dimension ldb. Read column-major, B's memory is B^T when B is
//   stored
//     [K, N] (trans_b false), and that is exactly op(B)^T: CUBLAS_OP_N. When B is stored [N, K]
//     (trans_b true) the memory reads as B_stored^T = op(B) and op(B)^T needs CUBLAS_OP_T.
//   - cuBLAS B = A with leading dimension lda, CUBLAS_OP_T exactly when trans_a.
//   - cuBLAS m = N, n = M, k = K; C with leading dimension ldc.
// tests/cuda_parity/matmul_cases.cc checks every transpose combination with padded strides.
#include "kernels/matmul_cuda.h"

#include <cstdint>
#include <limits>

#include "kernels/bias_add_cuda.h"

namespace lorasweep {
namespace {

bool FitsInt(int64_t v) { return v >= 0 && v <= std::numeric_limits<int>::max(); }

// The row-major product above as one cublasGemmEx call; c_type is CUDA_R_32F or CUDA_R_16BF.
cublasStatus_t GemmBf16(const CublasContext& ctx, bool trans_a, bool trans_b, int64_t M, int64_t N,
                        int64_t K, float alpha, const bf16* A, int64_t lda, const bf16* B,
                        int64_t ldb, float beta, void* C, cudaDataType_t c_type, int64_t ldc) {
  if (ctx.handle == nullptr) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!FitsInt(M) || !FitsInt(N) || !FitsInt(K) || !FitsInt(lda) || !FitsInt(ldb) ||
      !FitsInt(ldc)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (M == 0 || N == 0) return CUBLAS_STATUS_SUCCESS;
  // Row strides must cover a row: A's rows hold K values (M when transposed), B's N (K), C's N.
  const int64_t a_row = trans_a ? M : K;
  const int64_t b_row = trans_b ? K : N;
  if (ldc < N || (K > 0 && (lda < a_row || ldb < b_row))) return CUBLAS_STATUS_INVALID_VALUE;
  // With K == 0 nothing reads A or B (C = beta * C); cuBLAS still wants ld >= max(1, rows), which
  // a caller's 0 stride would not meet.
  const int64_t cublas_lda = K == 0 ? (trans_b ? 1 : N) : ldb;
  const int64_t cublas_ldb = K == 0 ? (trans_a ? M : 1) : lda;
  return cublasGemmEx(ctx.handle, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                      trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                      static_cast<int>(K), &alpha, B, CUDA_R_16BF, static_cast<int>(cublas_lda), A,
                      CUDA_R_16BF, static_cast<int>(cublas_ldb), &beta, C, c_type,
                      static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

}  // namespace

cublasStatus_t CreateCublasContext(cudaStream_t stream, CublasContext* ctx) {
  if (ctx == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *ctx = CublasContext{};
  cublasHandle_t handle = nullptr;
  cublasStatus_t status = cublasCreate(&handle);
  if (status != CUBLAS_STATUS_SUCCESS) return status;
  status = cublasSetStream(handle, stream);
  // bf16 operands with CUBLAS_COMPUTE_32F run on tensor cores under the default math mode
  // (CUBLAS_TENSOR_OP_MATH is deprecated and would only allow fp16 down-conversion of fp32 data).
  // Split-K partial sums must be reduced in fp32 even when C is bf16, not in the output type.
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasSetMathMode(
        handle, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                          CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
  }
  if (status == CUBLAS_STATUS_SUCCESS) {
    // alpha and beta are host floats.
    status = cublasSetPointerMode(handle, CUBLAS_POINTER_MODE_HOST);
  }
  if (status != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle);
    return status;
  }
  ctx->handle = handle;
  ctx->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

void DestroyCublasContext(CublasContext* ctx) {
  if (ctx == nullptr) return;
  if (ctx->handle != nullptr) cublasDestroy(ctx->handle);
  ctx->handle = nullptr;
  ctx->stream = nullptr;
}

const char* CublasStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t GemmBf16F32(const CublasContext& ctx, bool trans_a, bool trans_b, int64_t M,
                           int64_t N, int64_t K, float alpha, const bf16* A, int64_t lda,
                           const bf16* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  return GemmBf16(ctx, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, CUDA_R_32F, ldc);
}

cublasStatus_t GemmBf16Bf16(const CublasContext& ctx, bool trans_a, bool trans_b, int64_t M,
                            int64_t N, int64_t K, float alpha, const bf16* A, int64_t lda,
                            const bf16* B, int64_t ldb, float beta, bf16* C, int64_t ldc) {
  return GemmBf16(ctx, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, CUDA_R_16BF, ldc);
}

cublasStatus_t LinearForwardCuda(const CublasContext& ctx, const bf16* x, const bf16* W,
                                 const float* bias, int64_t N, int64_t in, int64_t out, bf16* y) {
  // y = x @ W^T: W [out, in] row-major is op(B) with trans_b.
  const cublasStatus_t status =
      GemmBf16Bf16(ctx, false, true, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
  if (status != CUBLAS_STATUS_SUCCESS || bias == nullptr) return status;
  // The bias kernel's launch failure has no cuBLAS status of its own.
  if (BiasAddBf16Cuda(y, bias, N, out, ctx.stream) != cudaSuccess) {
    return CUBLAS_STATUS_EXECUTION_FAILED;
  }
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace lorasweep
