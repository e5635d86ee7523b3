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
#include "worker/model/model_backend.h"
#ifdef LORASWEEP_WITH_CUDA
#include "kernels/attention_cuda.h"
#include "worker/cuda/cuda_model_backend.h"
#include "worker/cuda/cuda_status.h"
#endif
#include "worker/train/adapter_params.h"
#include "worker/train/evaluate.h"
#include "worker/train/lr_schedule.h"
#include "worker/train/metrics_log.h"
#include "worker/train/peft_adapter.h"
#include "worker/train/training_checkpoint.h"
#include "worker/train/trial_config.h"

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

// auto -> cuda when this build has the CUDA backend, a GPU is visible and the CUDA kernels support
// the model's head_dim; else cpu.
absl::StatusOr<std::string> ResolveDevice(const std::string& requested, const LlamaConfig& model) {
#ifdef LORASWEEP_WITH_CUDA
  const bool gpu = CudaDeviceCount() > 0;
  if (requested == "auto" && gpu && !AttentionCudaSupportsHeadDim(model.head_dim)) {
    spdlog::info("device auto: head_dim {} has no CUDA attention kernel; training on the CPU",
                 model.head_dim);
    return std::string("cpu");
  }
#else
  (void)model;
  const bool gpu = false;
#endif
  if (requested == "cuda" && !gpu) {
#ifdef LORASWEEP_WITH_CUDA
    return absl::FailedPreconditionError("device: cuda, but no CUDA device is visible");
#else
    return absl::FailedPreconditionError(
        "device: cuda, but this lorasweep was built without the CUDA backend (configure with "
        "-DLORASWEEP_CUDA=ON where nvcc is installed); use device: cpu or auto");
#endif
  }
  if (requested == "auto") return std::string(gpu ? "cuda" : "cpu");
  return requested;
}

absl::StatusOr<std::unique_ptr<ModelBackend>> MakeModelBackend(const std::string& device,
                                                               const LlamaWeights& weights,
                                                               const LoraLayout& layout,
                                                               Communicator* comm) {
#ifdef LORASWEEP_WITH_CUDA
  if (device == "cuda") return MakeCudaModelBackend(weights, layout, comm);
#else
  (void)device;  // ResolveDevice never picks cuda in a build without it
#endif
  return MakeCpuModelBackend(weights, layout, comm);
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
  ASSIGN_OR_RETURN(const std::string device, ResolveDevice(config.device(), weights.config));
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
    ASSIGN_OR_RETURN(metrics,
                     MetricsLog::Open(out + "/metrics.jsonl", options.resume ? state.step : -1));
  }
  bool stop_requested = false;
  auto log_metrics = [&](const nlohmann::json& line) -> absl::Status {
    if (!writer) return absl::OkStatus();
    RETURN_IF_ERROR(metrics->Write(line));
    if (options.on_metrics && !options.on_metrics(line)) stop_requested = true;
    return absl::OkStatus();
  };
  if (options.stopped_early) *options.stopped_early = false;

  ASSIGN_OR_RETURN(std::unique_ptr<ModelBackend> backend,
                   MakeModelBackend(device, weights, layout, comm));
  RETURN_IF_ERROR(backend->SetState(state.params, state.exp_avg, state.exp_avg_sq));
  spdlog::info("device {}", backend->Describe());
  Communicator* grad_comm = backend->grad_comm();
  auto adapter_view = [&]() {
    return AdapterFromParams(layout, state.params.data(), config.model(), quant);
  };
  // The backend holds the live adapter state; copy it out before anything writes it.
  auto fetch_state = [&]() -> absl::Status {
    return backend->GetState(&state.params, &state.exp_avg, &state.exp_avg_sq);
  };
  auto checkpoint = [&]() -> absl::Status {
    state.cursor = loader.cursor();
    RETURN_IF_ERROR(fetch_state());
    if (writer) RETURN_IF_ERROR(SaveTrainingCheckpoint(out + "/checkpoint", state, adapter_view()));
    // Nobody runs ahead of a checkpoint that may be the one a resumed job starts from.
    return comm->Barrier();
  };
  auto evaluate = [&]() -> absl::Status {
    const std::string& eval_path =
        config.data().eval_path().empty() ? config.data().path() : config.data().eval_path();
    auto forward = [&](const MicroBatch& batch, const RunOptions& run) {
      return backend->Run(batch, /*with_adapter=*/true, run);
    };
    ASSIGN_OR_RETURN(EvalResult eval,
                     EvaluateLossWith(forward, weights.config.vocab_size, eval_path, micro_batch,
                                      tc.eval_batches(), tc.loss_chunk_rows(), comm));
    spdlog::info("step {}: eval_loss {:.4f} (perplexity {:.2f}, {} tokens)", state.step, eval.loss,
                 eval.perplexity, eval.tokens);
    return log_metrics({{"step", state.step},
                        {"eval_loss", eval.loss},
                        {"eval_perplexity", eval.perplexity},
                        {"eval_tokens", eval.tokens}});
  };

  spdlog::info(
      "training {} adapter parameters ({} modules, rank {}, scaling {}), {} steps of {} "
      "sequences x {} tokens",
      layout.num_parameters(), layout.slots().size(), layout.rank(), layout.scaling(), tc.steps(),
      global_batch, T);
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
        grad_comm->StartAllReduce(backend->grads() + begin, end - begin, ReduceOp::kSum);
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
    const CommStats comm_before = grad_comm->stats();
    int64_t num_sequences = 0;
    loader.NextBatch(&ids, &flags, &num_sequences);
    // 2. Target tokens of the whole global batch, summed over ranks.
    int64_t batch_targets = 0;
    for (int64_t s = 0; s < num_sequences; ++s) {
      MicroBatch one{1, T, ids.data() + s * T, flags.data() + s * T};
      batch_targets += MakeTokenLayout(one).num_targets;
    }
    RETURN_IF_ERROR(comm->AllReduceInt64(&batch_targets, 1));
    RETURN_IF_ERROR(backend->ZeroGrads());
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
        ASSIGN_OR_RETURN(const RunResult r, backend->Run(mb, /*with_adapter=*/true, run));
        loss_sum += r.loss_sum;
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
    ASSIGN_OR_RETURN(const double grad_norm, backend->GradNorm());
    if (!std::isfinite(grad_norm)) {
      return absl::InternalError(
          absl::StrCat("diverged at step ", state.step + 1, ": gradient norm is ", grad_norm));
    }
    float clip = 1.0f;
    if (tc.max_grad_norm() > 0) {
      const double coef = tc.max_grad_norm() / (grad_norm + 1e-6);
      if (coef < 1.0) clip = static_cast<float>(coef);
    }
    const double lr = LearningRateAt(tc, state.step);
    AdamWParams adam;
    adam.lr = static_cast<float>(lr);
    adam.beta1 = static_cast<float>(tc.adam_beta1());
    adam.beta2 = static_cast<float>(tc.adam_beta2());
    adam.eps = static_cast<float>(tc.adam_eps());
    adam.weight_decay = static_cast<float>(tc.weight_decay());
    adam.step = state.step + 1;
    RETURN_IF_ERROR(backend->AdamW(adam, clip));
    ++state.step;
    const double step_s = SecondsSince(step_start);
    state.elapsed_s += step_s;
    state.tokens_seen += batch_targets;
    const int64_t step_tokens = global_batch * T;
    const CommStats& comm_after = grad_comm->stats();
    nlohmann::json line = {
        {"step", state.step},
        {"loss", loss},
        {"lr", lr},
        {"grad_norm", grad_norm},
        {"tokens", state.tokens_seen},
        {"tokens_per_s", step_tokens / std::max(step_s, 1e-9)},
        {"elapsed_s", state.elapsed_s},
        {"peak_rss_bytes", PeakRssBytes()},
        {"comm_bytes", comm_after.all_reduce_bytes - comm_before.all_reduce_bytes},
        {"comm_wait_s", comm_after.wait_seconds - comm_before.wait_seconds}};
    for (const auto& [key, value] : backend->MemoryMetrics()) line[key] = value;
    RETURN_IF_ERROR(log_metrics(line));
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
  RETURN_IF_ERROR(fetch_state());
  if (writer) RETURN_IF_ERROR(WritePeftAdapter(adapter_view(), out + "/adapter"));
  RETURN_IF_ERROR(comm->Barrier());
  spdlog::info("adapter written to {}/adapter (peak RSS {:.0f} MB)", out, PeakRssBytes() / 1e6);
  return absl::OkStatus();
}

}  // namespace lorasweep
