// Device memory owned by one object (RAII over cudaMalloc/cudaFree), with the copies the worker
// and the tests need. Allocation failures come back as kResourceExhausted naming the bytes
// requested and the bytes free on the device: the trial fails with that message, the sweep goes on.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/cuda/cuda_status.h"

namespace lorasweep {

// cudaMalloc with the error message described above ("what" names the buffer).
absl::StatusOr<void*> DeviceAllocate(int64_t bytes, const char* what);

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  static absl::StatusOr<DeviceBuffer> Allocate(int64_t n, const char* what = "device buffer") {
    DeviceBuffer b;
    if (n > 0) {
      absl::StatusOr<void*> p = DeviceAllocate(n * static_cast<int64_t>(sizeof(T)), what);
      if (!p.ok()) return p.status();
      b.data_ = static_cast<T*>(*p);
      b.size_ = n;
    }
    return b;
  }
  static absl::StatusOr<DeviceBuffer> FromHost(const std::vector<T>& host,
                                               const char* what = "device buffer") {
    absl::StatusOr<DeviceBuffer> b = Allocate(static_cast<int64_t>(host.size()), what);
    if (!b.ok()) return b.status();
    absl::Status s = b->CopyFromHost(host.data(), static_cast<int64_t>(host.size()));
    if (!s.ok()) return s;
    return b;
  }
  // Grows (never shrinks) to at least n elements; the contents are not kept.
  absl::Status EnsureSize(int64_t n, const char* what = "device buffer") {
    if (n <= size_) return absl::OkStatus();
    Reset();
    absl::StatusOr<DeviceBuffer> b = Allocate(n, what);
    if (!b.ok()) return b.status();
    *this = *std::move(b);
    return absl::OkStatus();
  }

  absl::Status CopyFromHost(const T* host, int64_t n) {
    return Check(cudaMemcpy(data_, host, n * sizeof(T), cudaMemcpyHostToDevice), "H2D copy");
  }
  // Ordered on `stream` (cudaMemcpy on the legacy stream does not order against non-blocking
  // streams); `host` may be reused as soon as this returns (pageable memory is staged).
  absl::Status CopyFromHostAsync(const T* host, int64_t n, cudaStream_t stream) {
    return Check(cudaMemcpyAsync(data_, host, n * sizeof(T), cudaMemcpyHostToDevice, stream),
                 "H2D copy");
  }
  absl::Status CopyToHost(T* host, int64_t n) const {
    return Check(cudaMemcpy(host, data_, n * sizeof(T), cudaMemcpyDeviceToHost), "D2H copy");
  }
  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> host(size_);
    absl::Status s = CopyToHost(host.data(), size_);
    if (!s.ok()) return s;
    return host;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  int64_t size() const { return size_; }
  int64_t bytes() const { return size_ * static_cast<int64_t>(sizeof(T)); }

  void Reset() {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }

 private:
  static absl::Status Check(cudaError_t e, const char* what);

  T* data_ = nullptr;
  int64_t size_ = 0;
};

template <typename T>
absl::Status DeviceBuffer<T>::Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return CudaStatus(e, what, __FILE__, __LINE__);
}

}  // namespace lorasweep
