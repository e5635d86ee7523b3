// The state a trial needs to continue exactly where it stopped: optimizer step, adapter parameters,
// AdamW moments, data cursor, counters. There is no RNG state to save: LoRA dropout masks are keyed
// by (seed, step, micro-batch) and the data order by (seed, epoch), so the step and the cursor fix
// every random draw of the rest of the run.
//
// On disk (DIR = RUN/checkpoint): state.json + optimizer.safetensors (flat f32 tensors "params",
// "exp_avg", "exp_avg_sq") + adapter/ (the same parameters as a PEFT adapter, for users). The folder
// is staged beside DIR and swapped in with ReplaceDirectory, so a kill at any moment leaves the
// previous checkpoint or the new one, whole.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/data_loader.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {

struct TrainingState {
  int64_t step = 0;  // optimizer steps completed
  DataCursor cursor;
  int64_t tokens_seen = 0;  // target tokens of all completed steps (all ranks)
  double elapsed_s = 0;     // training wall time of completed steps
  std::vector<float> params;
  std::vector<float> exp_avg;
  std::vector<float> exp_avg_sq;
  // The resolved trial config (JSON) the state belongs to; resuming with another config is refused.
  std::string config_json;
};

absl::Status SaveTrainingCheckpoint(const std::string& dir, const TrainingState& state,
                                    const PeftAdapter& adapter_view);
absl::StatusOr<TrainingState> LoadTrainingCheckpoint(const std::string& dir);

}  // namespace lorasweep
