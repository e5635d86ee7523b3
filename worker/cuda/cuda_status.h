// CUDA and cuBLAS results as absl::Status: every runtime call of the CUDA worker goes through
// these, so a failure names the call, the file and line, and the runtime's own message.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace lorasweep {

// `what` names the call (e.g. "cudaMalloc"); kResourceExhausted for out-of-memory errors.
absl::Status CudaStatus(cudaError_t error, const char* what, const char* file, int line);
absl::Status CublasStatus(cublasStatus_t status, const char* what, const char* file, int line);

// Number of CUDA devices this process may use (0 when there is no driver or no device).
int CudaDeviceCount();

}  // namespace lorasweep

#define CUDA_RETURN_IF_ERROR(expr)                                                      \
  do {                                                                                  \
    const cudaError_t lorasweep_cuda_error_ = (expr);                                   \
    if (lorasweep_cuda_error_ != cudaSuccess) {                                         \
      return ::lorasweep::CudaStatus(lorasweep_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                                   \
  } while (false)

#define CUBLAS_RETURN_IF_ERROR(expr)                                                         \
  do {                                                                                       \
    const cublasStatus_t lorasweep_cublas_status_ = (expr);                                  \
    if (lorasweep_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                 \
      return ::lorasweep::CublasStatus(lorasweep_cublas_status_, #expr, __FILE__, __LINE__); \
    }                                                                                        \
  } while (false)
