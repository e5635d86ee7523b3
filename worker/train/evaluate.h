// Mean next-token loss of a model (+ adapter) over a dataset's held-out eval split, the number
// `lorasweep eval` prints and the trainer logs as eval_loss.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "comm/communicator.h"
#include "worker/model/llama_model.h"

namespace lorasweep {

struct EvalResult {
  double loss = 0;        // mean cross-entropy per target token (nats)
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;     // targets counted
  int64_t sequences = 0;
};

// Runs the eval split of `dataset_dir` through `model` in micro-batches of `micro_batch`
// sequences; `max_batches` > 0 stops after that many micro-batches. `params` may be null (base).
// With a communicator of n ranks, rank r evaluates micro-batches b with b % n == r and the sums
// are all-reduced, so every rank returns the same result as one process would.
absl::StatusOr<EvalResult> EvaluateLoss(LlamaModel& model, const float* params,
                                        const std::string& dataset_dir, int64_t micro_batch,
                                        int64_t max_batches, int64_t loss_chunk_rows,
                                        Communicator* comm = nullptr);

// The same over any way of running a forward pass (e.g. a ModelBackend on the GPU): `run` gets each
// eval micro-batch with training off; `vocab_size` is the model's.
using ForwardRunner =
    std::function<absl::StatusOr<RunResult>(const MicroBatch& batch, const RunOptions& options)>;
absl::StatusOr<EvalResult> EvaluateLossWith(const ForwardRunner& run, int64_t vocab_size,
                                            const std::string& dataset_dir, int64_t micro_batch,
                                            int64_t max_batches, int64_t loss_chunk_rows,
                                            Communicator* comm = nullptr);

}  // namespace lorasweep
