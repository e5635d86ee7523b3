// `lorasweep train`: one trial of QLoRA fine-tuning, from a TrialConfig to DIR/metrics.jsonl,
// DIR/adapter/ (PEFT) and DIR/checkpoint/. The loop per optimizer step:
//   1. take this rank's sequences of the global batch (micro_batch x grad_accum sequences, the same
//      whatever the number of ranks: rank r of n gets sequences j with j % n == r), split into
//      micro-batches of at most micro_batch;
//   2. count the batch's target tokens on every rank and all-reduce the count, so every gradient is
//      scaled by 1 / (global target count): the step's gradient is that of the mean loss over the
//      global batch, token-weighted across ranks;
//   3. forward + backward each micro-batch, accumulating adapter gradients in one buffer; during the
//      last micro-batch's backward each layer's gradient slice is all-reduced (summed) as soon as
//      the layer is done, overlapping communication with the remaining layers' backward;
//   4. a NaN/Inf loss stops the trial ("diverged at step N");
//   5. clip the global gradient norm (torch.nn.utils.clip_grad_norm_), AdamW with the schedule's lr;
//   6. log a metrics line; evaluate and checkpoint on their cadence and at the end.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "comm/communicator.h"
#include "nlohmann/json_fwd.hpp"
#include "proto/trial_config.pb.h"

namespace lorasweep {

struct TrainOptions {
  std::string out_dir;
  // Continue from out_dir/checkpoint (must exist and belong to the same config).
  bool resume = false;
  // > 0: stop after this many optimizer steps of this run, with a checkpoint, as a preempted job
  // would (tests and time-limited jobs; `--resume` continues).
  int64_t stop_after_steps = 0;
  // The ranks this trial runs on (data parallel); null = this process alone. Rank 0 of it writes
  // the metrics, checkpoints and the adapter; every rank reads the checkpoint on resume.
  Communicator* comm = nullptr;
  // Called on rank 0 with every metrics line as it is logged (the sweep stores them and decides
  // early stopping). Returning false asks the trial to stop: all ranks stop after the current
  // step, a checkpoint and the adapter are written, and *stopped_early is set.
  std::function<bool(const nlohmann::json& line)> on_metrics;
  // Set on every rank of a trial that can be stopped from outside (a sweep): after each step rank
  // 0's stop request is broadcast, so all ranks stop at the same step.
  bool stoppable = false;
  bool* stopped_early = nullptr;
};

absl::Status Train(const TrialConfig& config, const TrainOptions& options);

}  // namespace lorasweep
