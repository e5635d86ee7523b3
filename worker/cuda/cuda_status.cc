#include "worker/cuda/cuda_status.h"

#include "absl/strings/str_cat.h"
#include "kernels/matmul_cuda.h"

namespace lorasweep {

absl::Status CudaStatus(cudaError_t error, const char* what, const char* file, int line) {
  std::string message = absl::StrCat(what, " failed at ", file, ":", line, ": ",
                                     cudaGetErrorName(error), " (", cudaGetErrorString(error), ")");
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

absl::Status CublasStatus(cublasStatus_t status, const char* what, const char* file, int line) {
  std::string message =
      absl::StrCat(what, " failed at ", file, ":", line, ": ", CublasStatusName(status));
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

int CudaDeviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

}  // namespace lorasweep
