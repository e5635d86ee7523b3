#include "worker/train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/dataset_manifest.h"
#include "worker/data/token_shard.h"

namespace lorasweep {

absl::StatusOr<EvalResult> EvaluateLoss(LlamaModel& model, const float* params,
                                        const std::string& dataset_dir, int64_t micro_batch,
                                        int64_t max_batches, int64_t loss_chunk_rows,
                                        Communicator* comm) {
  auto run = [&](const MicroBatch& batch, const RunOptions& options) -> absl::StatusOr<RunResult> {
    return model.Run(batch, params, nullptr, options);
  };
  return EvaluateLossWith(run, model.weights().config.vocab_size, dataset_dir, micro_batch,
                          max_batches, loss_chunk_rows, comm);
}

absl::StatusOr<EvalResult> EvaluateLossWith(const ForwardRunner& run_forward, int64_t vocab_size,
                                            const std::string& dataset_dir, int64_t micro_batch,
                                            int64_t max_batches, int64_t loss_chunk_rows,
                                            Communicator* comm) {
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  if (micro_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("micro batch must be >= 1, got ", micro_batch));
  }
  ASSIGN_OR_RETURN(DatasetManifest manifest, LoadDatasetManifest(dataset_dir));
  if (manifest.eval.sequences == 0 || manifest.eval.file.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dataset_dir, " has no eval split (prepare it with --eval-fraction > 0)"));
  }
  if (manifest.vocab_size > vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(dataset_dir, " was tokenized with ",
                                                   manifest.vocab_size, " ids; the model has ",
                                                   vocab_size));
  }
  ASSIGN_OR_RETURN(TokenShard shard, TokenShard::Open(dataset_dir + "/" + manifest.eval.file));
  const int64_t T = shard.seq_len();
  RunOptions run;
  run.training = false;
  run.loss_chunk_rows = loss_chunk_rows;
  EvalResult result;
  double loss_sum = 0;
  std::vector<int32_t> ids(micro_batch * T);
  std::vector<uint8_t> flags(micro_batch * T);
  int64_t batches = 0;
  for (int64_t first = 0; first < shard.num_sequences(); first += micro_batch, ++batches) {
    if (max_batches > 0 && batches == max_batches) break;
    if (batches % world != rank) continue;
    const int64_t count = std::min(micro_batch, shard.num_sequences() - first);
    for (int64_t s = 0; s < count; ++s) {
      shard.ReadSequence(first + s, &ids[s * T], &flags[s * T]);
    }
    ASSIGN_OR_RETURN(const RunResult r, run_forward({count, T, ids.data(), flags.data()}, run));
    loss_sum += r.loss_sum;
    result.tokens += r.num_targets;
    result.sequences += count;
  }
  if (comm != nullptr && world > 1) {
    int64_t counts[2] = {result.tokens, result.sequences};
    RETURN_IF_ERROR(comm->AllReduceDouble(&loss_sum, 1));
    RETURN_IF_ERROR(comm->AllReduceInt64(counts, 2));
    result.tokens = counts[0];
    result.sequences = counts[1];
  }
  if (result.tokens == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(dataset_dir, ": the eval split has no target tokens"));
  }
  result.loss = loss_sum / static_cast<double>(result.tokens);
  result.perplexity = std::exp(result.loss);
  return result;
}

}  // namespace lorasweep
