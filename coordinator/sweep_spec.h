// Sweep specs: YAML -> SweepSpec message (proto/sweep_spec.proto), validated with the offending key
// and line named, and expanded into trials. Each trial's id is a hash of its resolved config, so
// expanding the same spec again (a resumed sweep) yields the same ids and never duplicates a trial.
//
//   name: faq-sweep
//   base: {...a trial config...}
//   search:
//     method: grid                 # grid | random
//     trials: 12                   # random only
//     seed: 0                      # random only
//     space:                       # dotted paths into base
//       lora.rank: [8, 16, 64]
//       train.learning_rate: [1.0e-4, 2.0e-4]   # or {log_uniform: [1.0e-5, 1.0e-3]} (random)
//       data.shards: [[install], [install, packages]]
//   early_stopping: {method: asha, metric: eval_loss, grace_steps: 50, reduction_factor: 3}
//   resources: {workers_per_trial: 2}
//   max_failures_per_trial: 1
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "proto/sweep_spec.pb.h"

namespace lorasweep {

struct TrialPlan {
  std::string id;       // 12 hex digits of SHA-256 of the resolved config's JSON
  int64_t ordinal = 0;  // position in the expansion
  TrialConfig config;   // base + the swept values, finalized and validated
  nlohmann::json params = nlohmann::json::object();  // {"lora.rank": 16, ...}
};

absl::StatusOr<SweepSpec> ParseSweepSpecYaml(const std::string& yaml_text,
                                             const std::string& source_name);
absl::StatusOr<SweepSpec> LoadSweepSpec(const std::string& path);

// Grid: the cartesian product in the order the space lists its keys (the last key varies
// fastest). Random: `trials` draws from std::mt19937_64(seed), dimensions in order (choices
// uniformly, log_uniform as exp(U(log low, log high))). Trials whose resolved config equals an
// earlier one are dropped. Each config is validated; errors name the trial's values.
absl::StatusOr<std::vector<TrialPlan>> ExpandSweep(const SweepSpec& spec);

std::string TrialIdOf(const TrialConfig& config);

}  // namespace lorasweep
