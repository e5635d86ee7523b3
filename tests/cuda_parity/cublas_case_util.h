// Shared by the parity cases of the cuBLAS-backed ops (matmul_cases.cc, cross_entropy_cases.cc):
// bf16-exact random inputs and a stream with a cuBLAS handle bound to it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "kernels/matmul_cuda.h"
#include "worker/cuda/cuda_status.h"

namespace lorasweep::parity_cublas {

// n normal(0, stddev) values rounded to bf16 (so exactly representable in bf16), as floats.
inline std::vector<float> RandomBf16Values(std::mt19937_64& rng, int64_t n, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = Bf16ToFloat(FloatToBf16(normal(rng)));
  return v;
}

inline std::vector<uint16_t> Bf16Bits(const std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) bits[i] = FloatToBf16(v[i]);
  return bits;
}

// A stream and a cuBLAS handle bound to it, released on scope exit.
class GpuContext {
 public:
  static absl::StatusOr<std::unique_ptr<GpuContext>> Create() {
    auto g = std::unique_ptr<GpuContext>(new GpuContext());
    CUDA_RETURN_IF_ERROR(cudaStreamCreate(&g->stream_));
    CUBLAS_RETURN_IF_ERROR(CreateCublasContext(g->stream_, &g->cublas_));
    return g;
  }
  ~GpuContext() {
    DestroyCublasContext(&cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;

  const CublasContext& cublas() const { return cublas_; }
  cudaStream_t stream() const { return stream_; }
  absl::Status Sync() const {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    CUDA_RETURN_IF_ERROR(cudaGetLastError());
    return absl::OkStatus();
  }

 private:
  GpuContext() = default;
  cudaStream_t stream_ = nullptr;
  CublasContext cublas_;
};

}  // namespace lorasweep::parity_cublas
