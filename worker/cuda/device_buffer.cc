#include "worker/cuda/device_buffer.h"

#include "absl/strings/str_format.h"
#include "worker/cuda/cuda_status.h"

namespace lorasweep {
namespace {

std::string Gib(int64_t bytes) {
  return absl::StrFormat("%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

}  // namespace

absl::StatusOr<void*> DeviceAllocate(int64_t bytes, const char* what) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(bytes));
  if (e == cudaSuccess) return p;
  cudaGetLastError();  // an allocation failure is not sticky; clear it for the next call
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  const std::string message =
      absl::StrFormat("out of GPU memory allocating %s: requested %s, free %s of %s (%s)", what,
                      Gib(bytes), Gib(static_cast<int64_t>(free_bytes)),
                      Gib(static_cast<int64_t>(total_bytes)), cudaGetErrorString(e));
  if (e == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return CudaStatus(e, "cudaMalloc", __FILE__, __LINE__);
}

}  // namespace lorasweep
