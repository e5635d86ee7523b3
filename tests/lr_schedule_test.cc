// Tests of the learning-rate schedules against transformers' lr_lambda definitions
// (get_constant_schedule_with_warmup, get_linear_schedule_with_warmup,
// get_cosine_schedule_with_warmup with num_cycles 0.5), written out again here in the same
// operation order, plus hand-checked values.
#include "worker/train/lr_schedule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace lorasweep {
namespace {

constexpr double kPi = 3.141592653589793;

// transformers/optimization.py, lr_lambda(current_step), transcribed.
double ReferenceLambda(const std::string& schedule, int64_t current_step, int64_t warmup,
                       int64_t total) {
  if (current_step < warmup) {
    return static_cast<double>(current_step) / static_cast<double>(std::max<int64_t>(1, warmup));
  }
  if (schedule == "constant") return 1.0;
  if (schedule == "linear") {
    return std::max(0.0, static_cast<double>(total - current_step) /
                             static_cast<double>(std::max<int64_t>(1, total - warmup)));
  }
  const double progress = static_cast<double>(current_step - warmup) /
                          static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double num_cycles = 0.5;
  return std::max(0.0, 0.5 * (1.0 + std::cos(kPi * num_cycles * 2.0 * progress)));
}

TrainConfig Config(const std::string& schedule, int64_t steps, int64_t warmup, double lr) {
  TrainConfig config;
  config.set_schedule(schedule);
  config.set_steps(steps);
  config.set_warmup_steps(warmup);
  config.set_learning_rate(lr);
  return config;
}

TEST(LrScheduleTest, MatchesTheTransformersFormulasEverywhere) {
  for (const std::string schedule : {"constant", "linear", "cosine"}) {
    for (int64_t steps : {1, 2, 7, 100, 1000}) {
      for (int64_t warmup : {int64_t{0}, int64_t{1}, steps / 10, steps / 3, steps}) {
        const TrainConfig config = Config(schedule, steps, warmup, 3e-4);
        for (int64_t step = 0; step <= steps + 3; ++step) {
          const double expected = ReferenceLambda(schedule, step, warmup, steps);
          ASSERT_EQ(LearningRateFactor(config, step), expected)
              << schedule << " steps " << steps << " warmup " << warmup << " step " << step;
          ASSERT_EQ(LearningRateAt(config, step), 3e-4 * expected);
        }
      }
    }
  }
}

TEST(LrScheduleTest, HandCheckedValues) {
  const double lr = 2e-4;
  // Warmup: step / warmup, starting from 0 at the first update.
  for (const std::string schedule : {"constant", "linear", "cosine"}) {
    const TrainConfig c = Config(schedule, 110, 10, lr);
    EXPECT_EQ(LearningRateAt(c, 0), 0.0) << schedule;
    EXPECT_DOUBLE_EQ(LearningRateAt(c, 5), lr * 0.5) << schedule;
    EXPECT_DOUBLE_EQ(LearningRateAt(c, 10), lr) << schedule;  // peak right after warmup
  }
  const TrainConfig constant = Config("constant", 110, 10, lr);
  EXPECT_EQ(LearningRateAt(constant, 60), lr);
  EXPECT_EQ(LearningRateAt(constant, 500), lr);

  const TrainConfig linear = Config("linear", 110, 10, lr);
  EXPECT_DOUBLE_EQ(LearningRateAt(linear, 60), lr * 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(linear, 85), lr * 0.25);
  EXPECT_EQ(LearningRateAt(linear, 110), 0.0);
  EXPECT_EQ(LearningRateAt(linear, 200), 0.0);  // clamped at 0 past the end

  const TrainConfig cosine = Config("cosine", 110, 10, lr);
  EXPECT_DOUBLE_EQ(LearningRateAt(cosine, 60), lr * 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(cosine, 35), lr * 0.5 * (1 + std::sqrt(0.5)));
  EXPECT_NEAR(LearningRateAt(cosine, 110), 0.0, 1e-20);
  // transformers' cosine is not clamped past the end: it rises again (cos over (pi, 2 pi)).
  EXPECT_GT(LearningRateAt(cosine, 120), 0.0);

  // No warmup: the first update uses the full rate.
  for (const std::string schedule : {"constant", "linear", "cosine"}) {
    EXPECT_EQ(LearningRateAt(Config(schedule, 100, 0, lr), 0), lr) << schedule;
  }
  // Warmup over the whole run.
  EXPECT_DOUBLE_EQ(LearningRateAt(Config("cosine", 4, 4, lr), 3), lr * 0.75);
  EXPECT_EQ(LearningRateAt(Config("cosine", 4, 4, lr), 4), lr);  // progress 0 at step == warmup
}

TEST(LrScheduleTest, CosineDecreasesMonotonicallyAfterWarmup) {
  const TrainConfig c = Config("cosine", 1000, 30, 1e-3);
  for (int64_t step = 30; step < 1000; ++step) {
    ASSERT_GE(LearningRateAt(c, step), LearningRateAt(c, step + 1)) << step;
  }
  for (int64_t step = 0; step < 30; ++step) {
    ASSERT_LT(LearningRateAt(c, step), LearningRateAt(c, step + 1)) << step;
  }
}

}  // namespace
}  // namespace lorasweep
