#include "kernels/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/parallel_for.h"

namespace lorasweep {

void AdamWStep(float* params, const float* grads, float* m, float* v, int64_t n,
               const AdamWParams& p) {
  // The scalars are formed in double and rounded to float once, as torch does with its Python-float
  // hyperparameters before the float32 tensor ops (torch.optim.adamw._single_tensor_adamw).
  const double lr = p.lr, beta1 = p.beta1, beta2 = p.beta2;
  const double t = static_cast<double>(p.step);
  const double bias_correction1 = 1.0 - std::pow(beta1, t);
  const double bias_correction2 = 1.0 - std::pow(beta2, t);
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  const float decay = static_cast<float>(1.0 - lr * static_cast<double>(p.weight_decay));
  const float m_weight = static_cast<float>(1.0 - beta1);  // exp_avg.lerp_(grad, 1 - beta1)
  const float v_weight = static_cast<float>(1.0 - beta2);  // addcmul_(grad, grad, value=1 - beta2)
  const float b2 = p.beta2, eps = p.eps;
  ParallelFor(n, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float g = grads[i];
      float param = params[i] * decay;
      // torch's lerp: self + w * (end - self) for w < 0.5, else end - (end - self) * (1 - w).
      m[i] = m_weight < 0.5f ? m[i] + m_weight * (g - m[i]) : g - (g - m[i]) * (1.0f - m_weight);
      v[i] = v[i] * b2 + v_weight * g * g;
      const float denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
      param += -step_size * (m[i] / denom);
      params[i] = param;
    }
  });
}

double GradL2Norm(const float* g, int64_t n) {
  // Fixed blocks summed in order: the result does not depend on the thread count, so a run and its
  // resumption on another machine clip identically.
  constexpr int64_t kBlock = 1 << 16;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<size_t>(blocks), 0.0);
  ParallelFor(blocks, 4, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      double sum = 0;
      const int64_t last = std::min(n, (b + 1) * kBlock);
      for (int64_t i = b * kBlock; i < last; ++i) sum += static_cast<double>(g[i]) * g[i];
      partial[static_cast<size_t>(b)] = sum;
    }
  });
  double sum = 0;
  for (double s : partial) sum += s;
  return std::sqrt(sum);
}

}  // namespace lorasweep
