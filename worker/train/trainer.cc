#include "worker/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/stop_signal.h"
#include "kernels/adamw.h"
#include "kernels/matmul.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "worker/data/data_loader.h"
#include "worker/data/dataset_manifest.h"
#include "worker/model/llama_model.h"
#include "worker/train/adapter_params.h"
#include "worker/train/evaluate.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/metrics_log.h"
#include "worker/train/peft_adapter.h"
#include "worker/train/trial_config.h"
#include "worker/train/training_checkpoint.h"

namespace lorasweep {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

absl::StatusOr<BaseQuantization> BaseQuantizationFromConfig(const QuantizationConfig& q) {
  BaseQuantization base;
  if (q.type() == "none") {
    base.type = std::nullopt;
  } else {
    ASSIGN_OR_RETURN(base.type, ParseQuantType(q.type()));
  }
  base.blocksize = q.blocksize();
  base.double_quant = q.double_quant();
  return base;
}

// Peak resident set size of this process (VmHWM), in bytes.
int64_t PeakRssBytes() {
  absl::StatusOr<std::string> status = ReadFileToString("/proc/self/status");
  if (!status.ok()) return 0;
  const size_t pos = status->find("VmHWM:");
  if (pos == std::string::npos) return 0;
  return std::strtoll(status->c_str() + pos + 6, nullptr, 10) * 1024;
}

// The LoRA dropout seed of the j-th sequence of the global batch of `step`: a function of the
// sequence's place in the global batch only, so 1, 2 or 3 ranks draw the same masks.
uint64_t SequenceSeed(uint64_t seed, int64_t step, int64_t j) {
  return seed * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(step) << 24) ^
         static_cast<uint64_t>(j);
}

// [begin, end) of layer l's adapter parameters in the LoraLayout buffer (slots are layer-major).
std::vector<std::pair<int64_t, int64_t>> LayerRanges(const LoraLayout& layout, int num_layers) {
  std::vector<std::pair<int64_t, int64_t>> ranges(num_layers, {0, 0});
  for (const LoraSlot& s : layout.slots()) {
    auto& [begin, end] = ranges[s.layer];
    const int64_t slot_end = s.b_offset + s.out_features * layout.rank();
    if (begin == end) begin = s.a_offset;
    end = slot_end;
  }
  return ranges;
}

}  // namespace

absl::Status Train(const TrialConfig& config, const TrainOptions& options) {
  RETURN_IF_ERROR(ValidateTrialConfig(config));
  const TrainConfig& tc = config.train();
  if (config.device() == "cuda") {
    return absl::UnimplementedError(
        "device: cuda: this build trains on the CPU only (the CUDA trainer is not built yet); use "
        "device: cpu or auto");
  }
  if (tc.threads() > 0) {
    setenv("LORASWEEP_NUM_THREADS", std::to_string(tc.threads()).c_str(), 1);
    SetBlasThreads(tc.threads());
  }
  const std::string& out = options.out_dir;
  RETURN_IF_ERROR(MakeDirectories(out));

  // Data first: its manifest is cheap to check and names problems before the model loads.
  ASSIGN_OR_RETURN(DatasetManifest manifest, LoadDatasetManifest(config.data().path()));
  ASSIGN_OR_RETURN(BaseQuantization quant, BaseQuantizationFromConfig(config.quantization()));
  ASSIGN_OR_RETURN(LlamaWeights weights, LoadLlamaWeights(config.model(), quant));
  if (manifest.seq_len > weights.config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data.path %s: seq_len %d is longer than the model's context (max_position_embeddings %d)",
        config.data().path(), manifest.seq_len, weights.config.max_position_embeddings));
  }
  if (manifest.vocab_size > weights.config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "data.path %s: tokenized with a vocabulary of %d ids but the model has %d; prepare the "
        "data with this model's tokenizer",
        config.data().path(), manifest.vocab_size, weights.config.vocab_size));
  }
  LoraOptions lora_options;
  lora_options.rank = config.lora().rank();
  lora_options.alpha = config.lora().alpha();
  lora_options.dropout = config.lora().dropout();
  lora_options.rslora = config.lora().rslora();
  lora_options.target_modules = ExpandTargetModules(config.lora());
  ASSIGN_OR_RETURN(LoraLayout layout, LoraLayout::Create(weights, lora_options));

  std::unique_ptr<Communicator> self;
  Communicator* comm = options.comm;
  if (comm == nullptr) {
    self = MakeSelfCommunicator();
    comm = self.get();
  }
  const int rank = comm->rank(), world = comm->size();
  const bool writer = rank == 0;
  const int64_t micro_batch = tc.micro_batch(), grad_accum = tc.grad_accum();
  const int64_t global_batch = micro_batch * grad_accum;
  std::vector<std::string> shards(config.data().shards().begin(), config.data().shards().end());
  ASSIGN_OR_RETURN(DataLoader loader, DataLoader::Open(config.data().path(), shards, global_batch,
                                                       rank, world, tc.seed()));
  const int64_t T = loader.seq_len();
  const std::string config_json = TrialConfigToJson(config);

  TrainingState state;
  if (options.resume) {
    ASSIGN_OR_RETURN(state, LoadTrainingCheckpoint(out + "/checkpoint"));
    if (nlohmann::json::parse(state.config_json) != nlohmann::json::parse(config_json)) {
      return absl::FailedPreconditionError(absl::StrCat(
          out, "/checkpoint was written for a different trial config; resume needs the same one"));
    }
    if (static_cast<int64_t>(state.params.size()) != layout.num_parameters()) {
      return absl::DataLossError(absl::StrCat(out, "/checkpoint holds ", state.params.size(),
                                              " adapter parameters, the config needs ",
                                              layout.num_parameters()));
    }
    loader.set_cursor(state.cursor);
    spdlog::info("resuming at step {} of {}", state.step, tc.steps());
  } else {
    state.params = layout.InitialParameters(tc.seed());
    state.exp_avg.assign(state.params.size(), 0.0f);
    state.exp_avg_sq.assign(state.params.size(), 0.0f);
    state.config_json = config_json;
  }
  std::optional<MetricsLog> metrics;
  if (writer) {
    RETURN_IF_ERROR(WriteFileAtomically(out + "/config.json", config_json + "\n"));
    ASSIGN_OR_RETURN(metrics, MetricsLog::Open(out + "/metrics.jsonl",
                                               options.resume ? state.step : -1));
  }
  bool stop_requested = false;
  auto log_metrics = [&](const nlohmann::json& line) -> absl::Status {
    if (!writer) return absl::OkStatus();
    RETURN_IF_ERROR(metrics->Write(line));
    if (options.on_metrics && !options.on_metrics(line)) stop_requested = true;
    return absl::OkStatus();
  };
  if (options.stopped_early) *options.stopped_early = false;

  LlamaModel model(weights, layout);
  std::vector<float> grads(state.params.size());
  auto adapter_view = [&]() {
    return AdapterFromParams(layout, state.params.data(), config.model(), quant);
  };
  auto checkpoint = [&]() -> absl::Status {
    state.cursor = loader.cursor();
    if (writer) RETURN_IF_ERROR(SaveTrainingCheckpoint(out + "/checkpoint", state, adapter_view()));
    // Nobody runs ahead of a checkpoint that may be the one a resumed job starts from.
    return comm->Barrier();
  };
  auto evaluate = [&]() -> absl::Status {
    const std::string& eval_path =
        config.data().eval_path().empty() ? config.data().path() : config.data().eval_path();
    ASSIGN_OR_RETURN(EvalResult eval,
                     EvaluateLoss(model, state.params.data(), eval_path, micro_batch,
                                  tc.eval_batches(), tc.loss_chunk_rows(), comm));
    spdlog::info("step {}: eval_loss {:.4f} (perplexity {:.2f}, {} tokens)", state.step, eval.loss,
                 eval.perplexity, eval.tokens);
    return log_metrics({{"step", state.step},
                          {"eval_loss", eval.loss},
                          {"eval_perplexity", eval.perplexity},
                          {"eval_tokens", eval.tokens}});
  };

  spdlog::info("training {} adapter parameters ({} modules, rank {}, scaling {}), {} steps of {} "
               "sequences x {} tokens",
               layout.num_parameters(), layout.slots().size(), layout.rank(), layout.scaling(),
               tc.steps(), global_batch, T);
  const std::vector<std::pair<int64_t, int64_t>> layer_ranges =
      LayerRanges(layout, static_cast<int>(weights.layers.size()));
  std::vector<std::unique_ptr<PendingCollective>> pending;
  std::vector<bool> layer_started(layer_ranges.size());
  absl::Status comm_status;
  // Starts the all-reduce of layer l's gradient slice (once per step).
  auto start_layer = [&](int l) {
    if (layer_started[l] || !comm_status.ok()) return;
    layer_started[l] = true;
    const auto [begin, end] = layer_ranges[l];
    if (end == begin || world == 1) return;
    absl::StatusOr<std::unique_ptr<PendingCollective>> p =
        comm->StartAllReduce(grads.data() + begin, end - begin, ReduceOp::kSum);
    if (!p.ok()) {
      comm_status = p.status();
      return;
    }
    pending.push_back(*std::move(p));
  };
  std::vector<int32_t> ids;
  std::vector<uint8_t> flags;
  RunOptions run;
  run.training = true;
  run.activation_checkpointing = tc.activation_checkpointing();
  run.loss_chunk_rows = tc.loss_chunk_rows();
  const int64_t first_step = state.step;
  while (state.step < tc.steps()) {
    if (options.stop_after_steps > 0 && state.step - first_step >= options.stop_after_steps) {
      RETURN_IF_ERROR(checkpoint());
      spdlog::info("stopped after {} steps at step {} (checkpoint saved; continue with --resume)",
                   options.stop_after_steps, state.step);
      return absl::OkStatus();
    }
    const Clock::time_point step_start = Clock::now();
    const CommStats comm_before = comm->stats();
    int64_t num_sequences = 0;
    loader.NextBatch(&ids, &flags, &num_sequences);
    // 2. Target tokens of the whole global batch, summed over ranks.
    int64_t batch_targets = 0;
    for (int64_t s = 0; s < num_sequences; ++s) {
      MicroBatch one{1, T, ids.data() + s * T, flags.data() + s * T};
      batch_targets += MakeTokenLayout(one).num_targets;
    }
    RETURN_IF_ERROR(comm->AllReduceInt64(&batch_targets, 1));
    std::fill(grads.begin(), grads.end(), 0.0f);
    std::fill(layer_started.begin(), layer_started.end(), false);
    pending.clear();
    double loss_sum = 0;
    if (batch_targets > 0) {
      run.grad_scale = static_cast<float>(1.0 / static_cast<double>(batch_targets));
      const int64_t micro_batches = (num_sequences + micro_batch - 1) / micro_batch;
      for (int64_t micro = 0; micro < micro_batches; ++micro) {
        const int64_t first = micro * micro_batch;
        const int64_t count = std::min(micro_batch, num_sequences - first);
        MicroBatch mb{count, T, ids.data() + first * T, flags.data() + first * T};
        run.sequence_seeds.resize(count);
        for (int64_t s = 0; s < count; ++s) {
          // This rank's (first + s)-th sequence is number rank + (first + s) * world of the batch.
          run.sequence_seeds[s] = SequenceSeed(tc.seed(), state.step, rank + (first + s) * world);
        }
        run.on_layer_gradients = nullptr;
        if (micro + 1 == micro_batches) run.on_layer_gradients = start_layer;
        loss_sum += model.Run(mb, state.params.data(), grads.data(), run).loss_sum;
      }
    }
    // Layers not started yet (a rank without sequences this step), in the same descending order
    // every rank issues them in.
    for (int l = static_cast<int>(layer_ranges.size()) - 1; l >= 0; --l) start_layer(l);
    RETURN_IF_ERROR(comm_status);
    for (std::unique_ptr<PendingCollective>& p : pending) RETURN_IF_ERROR(p->Wait());
    RETURN_IF_ERROR(comm->AllReduceDouble(&loss_sum, 1));
    const double loss = batch_targets > 0 ? loss_sum / batch_targets : 0.0;
    if (!std::isfinite(loss)) {
      return absl::InternalError(absl::StrCat("diverged at step ", state.step + 1, ": loss is ",
                                              loss, " (lower train.learning_rate?)"));
    }
    // 5. Clip as torch.nn.utils.clip_grad_norm_ does, then AdamW.
    const double grad_norm = GradL2Norm(grads.data(), static_cast<int64_t>(grads.size()));
    if (!std::isfinite(grad_norm)) {
      return absl::InternalError(
          absl::StrCat("diverged at step ", state.step + 1, ": gradient norm is ", grad_norm));
    }
    if (tc.max_grad_norm() > 0) {
      const double coef = tc.max_grad_norm() / (grad_norm + 1e-6);
      if (coef < 1.0) {
        const float c = static_cast<float>(coef);
        for (float& g : grads) g *= c;
      }
    }
    const double lr = LearningRateAt(tc, state.step);
    AdamWParams adam;
    adam.lr = static_cast<float>(lr);
    adam.beta1 = static_cast<float>(tc.adam_beta1());
    adam.beta2 = static_cast<float>(tc.adam_beta2());
    adam.eps = static_cast<float>(tc.adam_eps());
    adam.weight_decay = static_cast<float>(tc.weight_decay());
    adam.step = state.step + 1;
    AdamWStep(state.params.data(), grads.data(), state.exp_avg.data(), state.exp_avg_sq.data(),
              static_cast<int64_t>(state.params.size()), adam);
    ++state.step;
    const double step_s = SecondsSince(step_start);
    state.elapsed_s += step_s;
    state.tokens_seen += batch_targets;
    const int64_t step_tokens = global_batch * T;
    const CommStats& comm_after = comm->stats();
    RETURN_IF_ERROR(log_metrics({{"step", state.step},
                                   {"loss", loss},
                                   {"lr", lr},
                                   {"grad_norm", grad_norm},
                                   {"tokens", state.tokens_seen},
                                   {"tokens_per_s", step_tokens / std::max(step_s, 1e-9)},
                                   {"elapsed_s", state.elapsed_s},
                                   {"peak_rss_bytes", PeakRssBytes()},
                                   {"comm_bytes", comm_after.all_reduce_bytes -
                                                      comm_before.all_reduce_bytes},
                                   {"comm_wait_s", comm_after.wait_seconds -
                                                       comm_before.wait_seconds}}));
    spdlog::info("step {}/{}: loss {:.4f} lr {:.3g} grad_norm {:.3f} ({:.0f} tokens/s)", state.step,
                 tc.steps(), loss, lr, grad_norm, step_tokens / std::max(step_s, 1e-9));
    const bool last = state.step == tc.steps();
    if (last || (tc.eval_every() > 0 && state.step % tc.eval_every() == 0)) {
      RETURN_IF_ERROR(evaluate());
    }
    if (last || (tc.checkpoint_every() > 0 && state.step % tc.checkpoint_every() == 0)) {
      RETURN_IF_ERROR(checkpoint());
    }
    // Every rank must stop at the same step: rank 0's view (a sweep's early-stopping request,
    // bit 0; SIGUSR1/SIGTERM, bit 1) is broadcast.
    int64_t stop = (stop_requested ? 1 : 0) | (StopSignalReceived() ? 2 : 0);
    if (world > 1) RETURN_IF_ERROR(comm->Broadcast(&stop, sizeof(stop), 0));
    if ((stop & 2) && !last) {
      RETURN_IF_ERROR(checkpoint());
      spdlog::info("preempted by a signal at step {} (checkpoint saved; continue with --resume)",
                   state.step);
      return absl::CancelledError(
          absl::StrCat("preempted by a signal at step ", state.step, " (checkpoint saved)"));
    }
    if ((stop & 1) && options.stoppable && !last) {
      RETURN_IF_ERROR(checkpoint());
      if (options.stopped_early) *options.stopped_early = true;
      spdlog::info("stopped early at step {} (asked by the sweep)", state.step);
      break;
    }
  }
  if (writer) RETURN_IF_ERROR(WritePeftAdapter(adapter_view(), out + "/adapter"));
  RETURN_IF_ERROR(comm->Barrier());
  spdlog::info("adapter written to {}/adapter (peak RSS {:.0f} MB)", out, PeakRssBytes() / 1e6);
  return absl::OkStatus();
}

}  // namespace lorasweep
