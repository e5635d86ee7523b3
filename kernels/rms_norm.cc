#include "kernels/rms_norm.h"

#include <cmath>

#include "common/parallel_for.h"

namespace lorasweep {

void RmsNormForward(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
                    float* y, float* inv_rms) {
  ParallelFor(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      // Sum of squares in double: transformers' float32 mean uses a pairwise (accurate) sum, which
      // a serial float32 loop over thousands of channels would not match.
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
      const float inv = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(dim)) + eps);
      inv_rms[r] = inv;
      for (int64_t i = 0; i < dim; ++i) yr[i] = weight[i] * (xr[i] * inv);
    }
  });
}

void RmsNormBackward(const float* x, const float* weight, const float* inv_rms, const float* dy,
                     int64_t rows, int64_t dim, bool accumulate, float* dx) {
  ParallelFor(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = dy + r * dim;
      float* dxr = dx + r * dim;
      const float inv = inv_rms[r];
      double dot = 0;  // sum(x * w * dy)
      for (int64_t i = 0; i < dim; ++i) dot += static_cast<double>(xr[i]) * weight[i] * dyr[i];
      const float c = static_cast<float>(dot / dim) * inv * inv * inv;
      for (int64_t i = 0; i < dim; ++i) {
        const float g = inv * weight[i] * dyr[i] - c * xr[i];
        dxr[i] = accumulate ? dxr[i] + g : g;
      }
    }
  });
}

}  // namespace lorasweep
