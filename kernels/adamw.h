// AdamW over one flat parameter buffer (the adapter), and the global gradient norm.
#pragma once

#include <cstdint>

namespace lorasweep {

struct AdamWParams {
  float lr = 0;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0;
  int64_t step = 1;  // 1-based, for bias correction
};

// torch.optim.AdamW semantics, written as its single-tensor path (foreach=False) writes them:
// p *= 1 - lr * wd; m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
// step_size = lr / (1 - b1^t); denom = sqrt(v) / sqrt(1 - b2^t) + eps; p -= step_size * m / denom.
// Legend: n parameters; params, grads, m (exp_avg), v (exp_avg_sq) are [n] and updated in place.
void AdamWStep(float* params, const float* grads, float* m, float* v, int64_t n,
               const AdamWParams& p);

// sqrt(sum g^2), accumulated in double.
double GradL2Norm(const float* g, int64_t n);

}  // namespace lorasweep
