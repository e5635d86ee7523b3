// RMSNorm (Llama): y = x / sqrt(mean(x^2) + eps) * weight, per row of [rows, dim].
// Legend: rows = tokens (B*T), dim = hidden size C; weight [dim] is frozen.
#pragma once

#include <cstdint>

namespace lorasweep {

// Writes y and inv_rms[row] = 1 / sqrt(mean(x^2) + eps) (kept for backward).
void RmsNormForward(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
                    float* y, float* inv_rms);
// dx for frozen `weight` (no weight gradient): dx = r * (w*dy - x * r^2 * mean(x * w*dy)).
// Accumulates into dx when `accumulate`.
void RmsNormBackward(const float* x, const float* weight, const float* inv_rms, const float* dy,
                     int64_t rows, int64_t dim, bool accumulate, float* dx);

}  // namespace lorasweep
