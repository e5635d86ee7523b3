#include "worker/train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace lorasweep {

double LearningRateFactor(const TrainConfig& config, int64_t step) {
  const int64_t warmup = config.warmup_steps();
  const int64_t total = config.steps();
  if (step < warmup) {
    return static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup));
  }
  const double decay_steps = static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (config.schedule() == "linear") {
    return std::max(0.0, static_cast<double>(total - step) / decay_steps);
  }
  if (config.schedule() == "cosine") {
    const double progress = static_cast<double>(step - warmup) / decay_steps;
    constexpr double kNumCycles = 0.5;
    return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * kNumCycles * 2.0 * progress)));
  }
  return 1.0;
}

double LearningRateAt(const TrainConfig& config, int64_t step) {
  return config.learning_rate() * LearningRateFactor(config, step);
}

}  // namespace lorasweep
