#include "kernels/swiglu.h"

#include <cmath>

#include "common/parallel_for.h"

namespace lorasweep {

void SwigluForward(const float* gate, const float* up, int64_t n, float* out) {
  ParallelFor(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
  });
}

void SwigluBackward(const float* gate, const float* up, const float* dout, int64_t n, float* dgate,
                    float* dup) {
  ParallelFor(n, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = gate[i];
      const float sig = 1.0f / (1.0f + std::exp(-g));
      const float silu = g * sig;
      dup[i] = dout[i] * silu;
      // d silu / dg = sig * (1 + g * (1 - sig))
      dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
    }
  });
}

}  // namespace lorasweep
