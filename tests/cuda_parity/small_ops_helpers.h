// Helpers shared by the parity cases of the small CUDA ops (tests/cuda_parity/*_cases.cc for
// embedding, RMSNorm, rotary, SwiGLU, AdamW / grad norm, dropout and the elementwise kernels, 4-bit
// dequantization): seeded draws, bf16 rounding on the host, device round trips and error measures.
//
// bf16 inputs: a case draws floats, rounds them to bf16 here (FloatToBf16, round to nearest even),
// uploads the bits to the GPU and gives the same rounded values, as float, to the CPU reference
// and, as double, to the float64 reference. All three then see identical inputs, and the errors
// measure only the op.
//
// Tolerance of bf16 outputs (kBf16OutputTolerance): every such op computes in fp32 and rounds its
// result to bf16 once. bf16 keeps 8 significant bits, so rounding to nearest moves a value by at
// most half an ulp, 2^-8 = 3.9e-3 of itself (when its significand is near 1), and
// ||out - ref|| / ||ref|| <= 3.9e-3 plus the fp32 error (~1e-6). Large random tensors measure
// ~1.7e-3; a case with a handful of values can approach the bound. The tolerance is twice the bound
// (2^-7 = 7.8e-3, rounded to 8e-3): an error above it cannot come from the one rounding.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "kernels/cuda_types.h"
#include "tests/cuda_parity.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"

namespace lorasweep::parity_small {

inline constexpr double kBf16OutputTolerance = 8e-3;
// fp32 outputs of short fp32 computations (a few roundings, fp32 row reductions): the observed
// error is ~1e-7; 1e-5 leaves room for reductions over thousands of values.
inline constexpr double kF32OutputTolerance = 1e-5;

// A CUDA stream owned by the case. Synchronize() waits for the whole device: the uploads
// (cudaMemcpy on the legacy default stream) and the op queued on this stream.
class ScopedStream {
 public:
  static absl::StatusOr<ScopedStream> Create() {
    ScopedStream s;
    CUDA_RETURN_IF_ERROR(cudaStreamCreate(&s.stream_));
    return s;
  }
  ScopedStream() = default;
  ScopedStream(ScopedStream&& o) noexcept : stream_(std::exchange(o.stream_, nullptr)) {}
  ScopedStream& operator=(ScopedStream&&) = delete;
  ScopedStream(const ScopedStream&) = delete;
  ScopedStream& operator=(const ScopedStream&) = delete;
  ~ScopedStream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  cudaStream_t get() const { return stream_; }
  static absl::Status Synchronize() {
    CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return absl::OkStatus();
  }

 private:
  cudaStream_t stream_ = nullptr;
};

// The case's random source: one stream per (seed, case salt), so cases do not share draws.
class Rng {
 public:
  Rng(uint64_t seed, uint64_t salt) : engine_(seed * 0x9E3779B97F4A7C15ull ^ salt) {}
  std::mt19937_64& engine() { return engine_; }
  std::vector<float> Uniform(int64_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = d(engine_);
    return v;
  }
  std::vector<float> Normal(int64_t n, float stddev) {
    std::normal_distribution<float> d(0.0f, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = d(engine_);
    return v;
  }
  // Magnitudes in [lo, hi] with random signs: values that are never 0 (dropout masks are read
  // back from which outputs are 0).
  std::vector<float> SignedMagnitude(int64_t n, float lo, float hi) {
    std::vector<float> v = Uniform(n, lo, hi);
    for (float& x : v) {
      if (engine_() & 1) x = -x;
    }
    return v;
  }
  int64_t Int(int64_t lo, int64_t hi) {  // [lo, hi]
    return std::uniform_int_distribution<int64_t>(lo, hi)(engine_);
  }
  uint64_t Bits() { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// Values rounded to bf16: the bits for the GPU and the same values as float.
struct Bf16Values {
  std::vector<uint16_t> bits;
  std::vector<float> values;
};

inline Bf16Values RoundToBf16(const std::vector<float>& x) {
  Bf16Values r;
  r.bits.reserve(x.size());
  r.values.reserve(x.size());
  for (float v : x) {
    r.bits.push_back(FloatToBf16(v));
    r.values.push_back(Bf16ToFloat(r.bits.back()));
  }
  return r;
}

inline std::vector<float> Bf16BitsToFloats(const std::vector<uint16_t>& bits) {
  std::vector<float> r(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) r[i] = Bf16ToFloat(bits[i]);
  return r;
}

inline std::vector<double> ToDouble(const std::vector<float>& x) {
  return std::vector<double>(x.begin(), x.end());
}

// A device copy of `host` placed `offset` elements into its allocation, so a case can hand the
// kernels a pointer that is not 16-byte aligned (offset 1) and exercise their scalar paths.
template <typename T>
struct OffsetBuffer {
  DeviceBuffer<T> buffer;
  int64_t offset = 0;
  int64_t size = 0;
  T* data() { return buffer.data() + offset; }
  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> host(static_cast<size_t>(size));
    if (size > 0) {
      CUDA_RETURN_IF_ERROR(cudaMemcpy(host.data(), buffer.data() + offset,
                                      static_cast<size_t>(size) * sizeof(T),
                                      cudaMemcpyDeviceToHost));
    }
    return host;
  }
};

template <typename T>
absl::StatusOr<OffsetBuffer<T>> Upload(const std::vector<T>& host, int64_t offset = 0) {
  OffsetBuffer<T> b;
  b.offset = offset;
  b.size = static_cast<int64_t>(host.size());
  absl::StatusOr<DeviceBuffer<T>> buf =
      DeviceBuffer<T>::Allocate(b.size + offset + 1, "parity input");  // never empty
  if (!buf.ok()) return buf.status();
  b.buffer = *std::move(buf);
  if (b.size > 0) {
    CUDA_RETURN_IF_ERROR(cudaMemcpy(b.buffer.data() + offset, host.data(),
                                    static_cast<size_t>(b.size) * sizeof(T),
                                    cudaMemcpyHostToDevice));
  }
  return b;
}

// The bf16 view of a buffer of bf16 bits.
inline bf16* AsBf16(OffsetBuffer<uint16_t>& b) { return reinterpret_cast<bf16*>(b.data()); }

// |a - ref| / max(|ref|, 1e-30) for one scalar.
inline double ScalarRelativeError(double a, double ref) {
  return std::fabs(a - ref) / std::max(std::fabs(ref), 1e-30);
}

}  // namespace lorasweep::parity_small
