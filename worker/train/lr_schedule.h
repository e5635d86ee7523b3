// Learning-rate schedules with linear warmup, defined exactly like transformers'
// get_constant_schedule_with_warmup / get_linear_schedule_with_warmup /
// get_cosine_schedule_with_warmup (num_cycles 0.5): the learning rate of optimizer step `step`
// (0-based; the first update uses step 0) is learning_rate * lr_lambda(step), where
//   step < warmup:  step / max(1, warmup)
//   constant:       1
//   linear:         max(0, (steps - step) / max(1, steps - warmup))
//   cosine:         max(0, 0.5 * (1 + cos(pi * progress))),
//                   progress = (step - warmup) / max(1, steps - warmup)
#pragma once

#include <cstdint>

#include "proto/trial_config.pb.h"

namespace lorasweep {

// lr_lambda(step) for the config's schedule (an unknown schedule counts as constant; the config
// validator rejects it before training).
double LearningRateFactor(const TrainConfig& config, int64_t step);

// learning_rate * LearningRateFactor(config, step).
double LearningRateAt(const TrainConfig& config, int64_t step);

}  // namespace lorasweep
