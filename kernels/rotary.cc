#include "kernels/rotary.h"

#include <cmath>

#include "common/parallel_for.h"

namespace lorasweep {

std::vector<float> RopeInverseFrequencies(int64_t head_dim, double theta,
                                          const RopeScalingParams& scaling) {
  const int64_t half = head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
  }
  if (scaling.type == "linear") {
    for (double& f : inv) f /= scaling.factor;
  } else if (scaling.type == "llama3") {
    const double old_context = static_cast<double>(scaling.original_max_position_embeddings);
    const double low_freq_wavelen = old_context / scaling.low_freq_factor;
    const double high_freq_wavelen = old_context / scaling.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_freq_wavelen) {
        f = f / scaling.factor;
      } else if (wavelen >= high_freq_wavelen) {
        // Medium frequencies: interpolate between scaled and unscaled.
        const double smooth = (old_context / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1 - smooth) * f / scaling.factor + smooth * f;
      }
    }
  }
  return std::vector<float>(inv.begin(), inv.end());
}

bool RopeScalingSupported(const std::string& type) {
  return type == "none" || type == "default" || type == "linear" || type == "llama3";
}

void RopeTables(const std::vector<float>& inv_freq, int64_t max_pos, float* cos, float* sin) {
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * inv_freq[i];
      cos[p * half + i] = std::cos(angle);
      sin[p * half + i] = std::sin(angle);
    }
  }
}

namespace {

void Rotate(float* x, const int32_t* positions, int64_t T, int64_t H, int64_t D, const float* cos,
            const float* sin, float sign) {
  const int64_t half = D / 2;
  ParallelFor(T, 64, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const float* c = cos + positions[t] * half;
      const float* s = sin + positions[t] * half;
      for (int64_t h = 0; h < H; ++h) {
        float* v = x + (t * H + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = v[i], x2 = v[i + half];
          const float si = sign * s[i];
          v[i] = x1 * c[i] - x2 * si;
          v[i + half] = x2 * c[i] + x1 * si;
        }
      }
    }
  });
}

}  // namespace

void RotaryForward(float* x, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                   const float* cos, const float* sin) {
  Rotate(x, positions, T, H, D, cos, sin, 1.0f);
}

void RotaryBackward(float* dx, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                    const float* cos, const float* sin) {
  Rotate(dx, positions, T, H, D, cos, sin, -1.0f);
}

}  // namespace lorasweep
