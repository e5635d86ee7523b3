#include "coordinator/sweep_runner.h"

#include <chrono>
#include <csignal>
#include <algorithm>
#include <filesystem>
#include <thread>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/stop_signal.h"
#include "coordinator/early_stopping.h"
#include "coordinator/report_writer.h"
#include "coordinator/results_store.h"
#include "coordinator/sweep_spec.h"
#include "common/sha256.h"
#include "worker/adapters/soup.h"
#include "worker/train/adapter_params.h"
#include "worker/train/peft_adapter.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "proto/sweep_protocol.pb.h"
#include "spdlog/spdlog.h"
#include "worker/train/evaluate.h"
#include "worker/train/trainer.h"
#include "worker/train/trial_config.h"

namespace lorasweep {
namespace {

// Control messages may wait as long as a trial step takes: no practical timeout.
constexpr double kMessageTimeoutSeconds = 7 * 24 * 3600.0;

std::string TrialDir(const std::string& run_dir, const std::string& id) {
  return run_dir + "/trials/" + id;
}

bool HasCheckpoint(const std::string& trial_dir) {
  std::error_code ec;
  return std::filesystem::exists(trial_dir + "/checkpoint/state.json", ec);
}

absl::StatusOr<TrialConfig> ConfigFromJson(const std::string& json) {
  TrialConfig config;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &config);
  if (!status.ok()) {
    return absl::DataLossError(absl::StrCat("bad trial config JSON: ", status.ToString()));
  }
  return config;
}

absl::StatusOr<BaseQuantization> BaseQuantizationOf(const TrialConfig& config) {
  BaseQuantization quant;
  if (config.quantization().type() == "none") {
    quant.type = std::nullopt;
  } else {
    ASSIGN_OR_RETURN(quant.type, ParseQuantType(config.quantization().type()));
  }
  quant.blocksize = config.quantization().blocksize();
  quant.double_quant = config.quantization().double_quant();
  return quant;
}

// The numbers of one metrics.jsonl line as store rows (the step is the key, not a metric).
void AppendMetricPoints(const std::string& trial_id, const nlohmann::json& line, double time,
                        std::vector<MetricPoint>* points) {
  const int64_t step = line.value("step", int64_t{0});
  for (const auto& [name, value] : line.items()) {
    if (name != "step" && value.is_number()) {
      points->push_back({trial_id, step, name, value.get<double>(), time});
    }
  }
}

// The sweep's state on rank 0 (or the lone process): the store, the rows, the early stopper.
class Coordinator {
 public:
  absl::Status Init(const SweepOptions& options) {
    run_dir_ = options.run_dir;
    ASSIGN_OR_RETURN(spec_, LoadSweepSpec(options.spec_path));
    ASSIGN_OR_RETURN(std::vector<TrialPlan> plans, ExpandSweep(spec_));
    RETURN_IF_ERROR(MakeDirectories(run_dir_ + "/trials"));
    const std::string db_path = run_dir_ + "/sweep.db";
    std::error_code ec;
    const bool existed = std::filesystem::exists(db_path, ec);
    if (existed && !options.resume) {
      return absl::AlreadyExistsError(absl::StrCat(
          run_dir_, " already holds a sweep; continue it with --resume or choose another --out"));
    }
    ASSIGN_OR_RETURN(store_, ResultsStore::Open(db_path));
    std::string spec_json;
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(spec_, &spec_json, print);
    ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->GetValue("spec_json"));
    if (stored && *stored != spec_json) {
      return absl::FailedPreconditionError(absl::StrCat(
          run_dir_, " was started with a different spec; resume it with the same spec file"));
    }
    if (!stored) {
      RETURN_IF_ERROR(store_->SetValue("name", spec_.name()));
      RETURN_IF_ERROR(store_->SetValue("spec_json", spec_json));
      RETURN_IF_ERROR(store_->SetValue("created_at", absl::StrCat(UnixNow())));
    }
    std::vector<TrialRow> rows;
    for (const TrialPlan& plan : plans) {
      TrialRow row;
      row.id = plan.id;
      row.ordinal = plan.ordinal;
      row.config_json = TrialConfigToJson(plan.config);
      row.params_json = plan.params.dump();
      row.lora_rank = plan.config.lora().rank();
      row.workers = spec_.resources().workers_per_trial();
      rows.push_back(row);
    }
    RETURN_IF_ERROR(store_->AddTrialsIfMissing(rows));
    if (options.resume) {
      ASSIGN_OR_RETURN(std::optional<std::string> resumes, store_->GetValue("resumes"));
      RETURN_IF_ERROR(
          store_->SetValue("resumes", absl::StrCat(resumes ? std::stoll(*resumes) + 1 : 1)));
    }
    // Trials a crash left "running" continue from their checkpoints. An array task owns only its
    // own trial: the others may be running in other processes right now.
    ASSIGN_OR_RETURN(std::vector<TrialRow> all, store_->Trials());
    for (TrialRow& row : all) {
      const bool mine = options.trial_index < 0 || row.ordinal == options.trial_index;
      if (row.status == TrialStatus::kRunning && mine) {
        row.status = TrialStatus::kPending;
        RETURN_IF_ERROR(store_->UpdateTrial(row));
        RETURN_IF_ERROR(store_->AddEvent(row.id, "interrupted", "was running when the sweep stopped"));
      }
    }
    // The early stopper sees the stored reports again, in the order they were made.
    stopper_ = EarlyStopper::Create(spec_.early_stopping(), spec_.base().train().steps());
    ASSIGN_OR_RETURN(std::vector<MetricPoint> points, store_->Metrics());
    std::sort(points.begin(), points.end(), [](const MetricPoint& a, const MetricPoint& b) {
      return std::tie(a.time, a.trial_id, a.step) < std::tie(b.time, b.trial_id, b.step);
    });
    for (const MetricPoint& p : points) {
      if (p.name == spec_.early_stopping().metric()) stopper_->OnReport(p.trial_id, p.step, p.value);
    }
    ASSIGN_OR_RETURN(all, store_->Trials());
    int pending = 0, done = 0;
    for (const TrialRow& row : all) {
      if (row.status == TrialStatus::kPending) ++pending;
      if (row.status == TrialStatus::kCompleted || row.status == TrialStatus::kStoppedEarly) ++done;
    }
    spdlog::info("sweep '{}': {} trials ({} finished, {} to run) in {}", spec_.name(), all.size(),
                 done, pending, run_dir_);
    return absl::OkStatus();
  }

  const SweepSpec& spec() const { return spec_; }

  // The base model's eval loss, once per sweep (the report's reference point).
  absl::Status EvaluateBaseOnce() {
    ASSIGN_OR_RETURN(std::optional<std::string> stored, store_->GetValue("base_eval_loss"));
    if (stored) return absl::OkStatus();
    const TrialConfig& base = spec_.base();
    ASSIGN_OR_RETURN(BaseQuantization quant, BaseQuantizationOf(base));
    ASSIGN_OR_RETURN(LlamaWeights weights, LoadLlamaWeights(base.model(), quant));
    ASSIGN_OR_RETURN(LoraLayout layout, LoraLayout::Create(weights, LoraOptions{}));
    LlamaModel model(weights, layout);
    ASSIGN_OR_RETURN(EvalResult eval,
                     EvaluateLoss(model, nullptr, base.data().eval_path(), base.train().micro_batch(),
                                  base.train().eval_batches(), base.train().loss_chunk_rows()));
    spdlog::info("base model: eval_loss {:.4f} (perplexity {:.2f})", eval.loss, eval.perplexity);
    RETURN_IF_ERROR(store_->SetValue("base_eval_loss", absl::StrCat(eval.loss)));
    return store_->SetValue("base_eval_tokens", absl::StrCat(eval.tokens));
  }

  // The next pending trial (or only the one with `ordinal`, when >= 0), marked running on `slot`.
  absl::StatusOr<std::optional<TrialRow>> StartNext(int slot, int64_t ordinal = -1) {
    ASSIGN_OR_RETURN(std::vector<TrialRow> rows, store_->Trials());
    for (TrialRow& row : rows) {
      if (row.status != TrialStatus::kPending) continue;
      if (ordinal >= 0 && (row.kind != "trained" || row.ordinal != ordinal)) continue;
      row.status = TrialStatus::kRunning;
      row.slot = slot;
      row.attempts += 1;
      row.started_at = UnixNow();
      RETURN_IF_ERROR(store_->UpdateTrial(row));
      RETURN_IF_ERROR(store_->AddEvent(row.id, "started", absl::StrCat("slot ", slot, ", attempt ",
                                                                      row.attempts)));
      spdlog::info("trial {} {} -> slot {}", row.id, row.params_json, slot);
      running_[row.id] = Progress{};
      return std::optional<TrialRow>(row);
    }
    return std::optional<TrialRow>();
  }

  // Stores one metrics line; returns false when the trial should stop early.
  bool OnMetrics(const std::string& id, const nlohmann::json& line) {
    Progress& p = running_[id];
    const int64_t step = line.value("step", int64_t{0});
    std::vector<MetricPoint> points;
    AppendMetricPoints(id, line, UnixNow(), &points);
    absl::Status stored = store_->AddMetrics(points);
    if (!stored.ok()) spdlog::error("storing metrics of {}: {}", id, std::string(stored.message()));
    const std::string& metric = spec_.early_stopping().metric();
    if (line.contains(metric) && !p.stop_decided) {
      const StopDecision decision = stopper_->OnReport(id, step, line[metric].get<double>());
      if (decision.stop) {
        p.stop_decided = true;
        p.rung = decision.rung;
        (void)store_->AddEvent(id, "stop_early", decision.reason);
        spdlog::info("trial {}: {}", id, decision.reason);
        return false;
      }
    }
    return true;
  }

  absl::Status OnDone(const std::string& id, bool ok, bool stopped_early,
                      const std::string& failure) {
    ASSIGN_OR_RETURN(TrialRow row, store_->Trial(id));
    const int64_t rung = running_[id].rung;
    running_.erase(id);
    // The trial's own metrics.jsonl is the record: lines whose messages were lost with a killed
    // coordinator, and lines from before a resume, are stored again (idempotent upserts), and the
    // summary columns are computed from the whole file.
    Progress p;
    const std::string dir = TrialDir(run_dir_, id);
    std::vector<MetricPoint> points;
    const double now = UnixNow();
    if (absl::StatusOr<std::string> text = ReadFileToString(dir + "/metrics.jsonl"); text.ok()) {
      size_t begin = 0;
      while (begin < text->size()) {
        size_t end = text->find('\n', begin);
        if (end == std::string::npos) end = text->size();
        const nlohmann::json line =
            nlohmann::json::parse(text->substr(begin, end - begin), nullptr, false);
        begin = end + 1;
        if (!line.is_object()) continue;
        const int64_t step = line.value("step", int64_t{0});
        AppendMetricPoints(id, line, now, &points);
        p.steps = std::max(p.steps, step);
        if (line.contains("loss")) {
          p.train_loss = line["loss"].get<double>();
          p.tokens = line.value("tokens", int64_t{0});
          p.wall_s = line.value("elapsed_s", 0.0);
          p.peak_rss = std::max(p.peak_rss, line.value("peak_rss_bytes", int64_t{0}));
          p.comm_bytes += line.value("comm_bytes", int64_t{0});
        }
        if (line.contains("eval_loss")) {
          const double e = line["eval_loss"].get<double>();
          p.eval_loss = e;
          p.best_eval = p.best_eval ? std::min(*p.best_eval, e) : e;
        }
      }
    }
    RETURN_IF_ERROR(store_->AddMetrics(points));
    row.ended_at = UnixNow();
    row.steps_done = p.steps;
    row.final_train_loss = p.train_loss;
    row.final_eval_loss = p.eval_loss;
    row.best_eval_loss = p.best_eval;
    row.tokens_seen = p.tokens;
    row.wall_s = p.wall_s;
    // Target (trained-on) tokens per second of training wall time.
    row.tokens_per_s = p.wall_s > 0 ? static_cast<double>(p.tokens) / p.wall_s : 0;
    row.peak_rss_bytes = p.peak_rss;
    row.comm_bytes = p.comm_bytes;
    absl::StatusOr<std::string> state = ReadFileToString(dir + "/checkpoint/state.json");
    if (state.ok()) {
      const nlohmann::json j = nlohmann::json::parse(*state, nullptr, false);
      if (j.is_object()) row.trainable_params = j.value("num_parameters", int64_t{0});
    }
    if (ok) {
      row.status = stopped_early ? TrialStatus::kStoppedEarly : TrialStatus::kCompleted;
      row.stopped_rung = stopped_early ? rung : -1;
      row.adapter_path = "trials/" + id + "/adapter";
      row.failure.clear();
      RETURN_IF_ERROR(store_->AddEvent(id, TrialStatusName(row.status), ""));
      spdlog::info("trial {} {} after {} steps (eval_loss {})", id, TrialStatusName(row.status),
                   p.steps, p.eval_loss ? absl::StrCat(*p.eval_loss) : "-");
    } else {
      row.failure = failure;
      const bool retry = row.attempts <= spec_.max_failures_per_trial();
      row.status = retry ? TrialStatus::kPending : TrialStatus::kFailed;
      RETURN_IF_ERROR(store_->AddEvent(id, "failed", failure));
      spdlog::warn("trial {} failed (attempt {}): {}{}", id, row.attempts, failure,
                   retry ? "; retrying" : "");
      // A retry starts from scratch: the checkpoint may hold the state that failed.
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
    return store_->UpdateTrial(row);
  }

  // A trial stopped by SIGUSR1/SIGTERM: pending again (its checkpoint continues it), and the
  // interrupted attempt does not count.
  absl::Status OnPreempted(const std::string& id) {
    ASSIGN_OR_RETURN(TrialRow row, store_->Trial(id));
    running_.erase(id);
    row.status = TrialStatus::kPending;
    row.attempts = std::max<int64_t>(0, row.attempts - 1);
    RETURN_IF_ERROR(store_->AddEvent(id, "preempted", "stopped by a signal; continues on --resume"));
    spdlog::info("trial {} preempted (checkpoint saved)", id);
    return store_->UpdateTrial(row);
  }

  // The soup stage: weighted combinations of the chosen trials' adapters, each evaluated on the
  // eval split (no training) and recorded as a trial of kind 'soup'. Idempotent on resume.
  absl::Status RunSoupStage() {
    const SoupStage& stage = spec_.soup();
    if (stage.weights_size() == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::vector<TrialRow> rows, store_->Trials());
    std::vector<const TrialRow*> inputs;
    if (stage.trials_size() > 0) {
      for (const std::string& id : stage.trials()) {
        auto it = std::find_if(rows.begin(), rows.end(), [&](const TrialRow& r) { return r.id == id; });
        if (it == rows.end() || it->adapter_path.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("soup.trials: '", id, "' is not a finished trial of this sweep"));
        }
        inputs.push_back(&*it);
      }
    } else {
      for (const TrialRow& r : rows) {
        if (r.kind == "trained" && r.final_eval_loss && !r.adapter_path.empty() &&
            (r.status == TrialStatus::kCompleted || r.status == TrialStatus::kStoppedEarly)) {
          inputs.push_back(&r);
        }
      }
      std::sort(inputs.begin(), inputs.end(), [](const TrialRow* a, const TrialRow* b) {
        return *a->final_eval_loss < *b->final_eval_loss;
      });
      if (static_cast<int>(inputs.size()) < stage.top()) {
        spdlog::warn("soup: only {} finished trials with an eval loss, {} wanted; no soups",
                     inputs.size(), stage.top());
        return absl::OkStatus();
      }
      inputs.resize(stage.top());
    }
    std::vector<SoupInput> adapters;
    nlohmann::json input_ids = nlohmann::json::array();
    for (const TrialRow* r : inputs) {
      SoupInput in;
      in.path = run_dir_ + "/" + r->adapter_path;
      ASSIGN_OR_RETURN(in.adapter, ReadPeftAdapter(in.path));
      adapters.push_back(std::move(in));
      input_ids.push_back(r->id);
    }
    ASSIGN_OR_RETURN(SoupMethod method, ParseSoupMethod(stage.method()));
    const TrialConfig& base = spec_.base();
    ASSIGN_OR_RETURN(BaseQuantization quant, BaseQuantizationOf(base));
    std::optional<LlamaWeights> weights;
    for (int c = 0; c < stage.weights_size(); ++c) {
      nlohmann::json params = {{"soup.method", stage.method()},
                               {"soup.inputs", input_ids},
                               {"soup.weights", stage.weights(c).w()}};
      const std::string id = "soup-" + Sha256Hex(params.dump()).substr(0, 7);
      absl::StatusOr<TrialRow> existing = store_->Trial(id);
      if (existing.ok() && existing->status == TrialStatus::kCompleted) continue;
      for (int i = 0; i < static_cast<int>(adapters.size()); ++i) {
        adapters[i].weight = stage.weights(c).w(i);
      }
      TrialRow row;
      row.id = id;
      row.ordinal = 100000 + c;
      row.kind = "soup";
      row.config_json = TrialConfigToJson(base);
      row.params_json = params.dump();
      row.started_at = UnixNow();
      row.attempts = 1;
      absl::StatusOr<PeftAdapter> soup = MakeSoup(adapters, method, stage.rank(), nullptr);
      if (!soup.ok()) {
        row.status = TrialStatus::kFailed;
        row.failure = std::string(soup.status().message());
        row.ended_at = UnixNow();
        RETURN_IF_ERROR(store_->UpdateTrial(row));
        continue;
      }
      const std::string adapter_dir = TrialDir(run_dir_, id) + "/adapter";
      RETURN_IF_ERROR(MakeDirectories(TrialDir(run_dir_, id)));
      RETURN_IF_ERROR(WritePeftAdapter(*soup, adapter_dir));
      if (!weights) {
        ASSIGN_OR_RETURN(LlamaWeights loaded, LoadLlamaWeights(base.model(), quant));
        weights.emplace(std::move(loaded));
      }
      ASSIGN_OR_RETURN(LoraLayout layout, LoraLayout::Create(*weights, LoraOptionsFromAdapter(*soup)));
      ASSIGN_OR_RETURN(std::vector<float> soup_params, ParamsFromAdapter(*soup, layout));
      LlamaModel model(*weights, layout);
      ASSIGN_OR_RETURN(EvalResult eval,
                       EvaluateLoss(model, soup_params.data(), base.data().eval_path(),
                                    base.train().micro_batch(), base.train().eval_batches(),
                                    base.train().loss_chunk_rows()));
      row.status = TrialStatus::kCompleted;
      row.final_eval_loss = eval.loss;
      row.best_eval_loss = eval.loss;
      row.lora_rank = soup->rank;
      row.trainable_params = layout.num_parameters();
      row.adapter_path = "trials/" + id + "/adapter";
      row.ended_at = UnixNow();
      row.wall_s = row.ended_at - row.started_at;
      RETURN_IF_ERROR(store_->AddMetrics({{id, 0, "eval_loss", eval.loss, UnixNow()}}));
      RETURN_IF_ERROR(store_->UpdateTrial(row));
      RETURN_IF_ERROR(store_->AddEvent(id, "soup", params.dump()));
      spdlog::info("soup {} {}: eval_loss {:.4f}", id, params.dump(), eval.loss);
    }
    return absl::OkStatus();
  }

  // Whether every trained trial has ended (completed, stopped early or failed for good).
  absl::StatusOr<bool> AllTrainedTrialsEnded() {
    ASSIGN_OR_RETURN(std::vector<TrialRow> rows, store_->Trials());
    for (const TrialRow& row : rows) {
      if (row.kind == "trained" &&
          (row.status == TrialStatus::kPending || row.status == TrialStatus::kRunning)) {
        return false;
      }
    }
    return true;
  }

  absl::StatusOr<int64_t> NumTrainedTrials() {
    ASSIGN_OR_RETURN(std::vector<TrialRow> rows, store_->Trials());
    return static_cast<int64_t>(
        std::count_if(rows.begin(), rows.end(), [](const TrialRow& r) { return r.kind == "trained"; }));
  }

  absl::Status Finish() {
    ASSIGN_OR_RETURN(std::vector<TrialRow> rows, store_->Trials());
    std::map<std::string, int> counts;
    for (const TrialRow& row : rows) ++counts[TrialStatusName(row.status)];
    std::string summary;
    for (const auto& [status, n] : counts) absl::StrAppend(&summary, " ", n, " ", status);
    spdlog::info("sweep '{}' finished:{}", spec_.name(), summary);
    RETURN_IF_ERROR(store_->AddEvent("", "finished", summary));
    // The report is a view of the database: failing to write it must not fail the sweep.
    ReportOptions report;
    report.metric = spec_.early_stopping().metric().empty() ? "eval_loss"
                                                             : spec_.early_stopping().metric();
    const absl::Status written = WriteSweepReport(run_dir_, report);
    if (written.ok()) {
      spdlog::info("report: {}/report.html, report.md, trials.csv, metrics.csv", run_dir_);
    } else {
      spdlog::warn("report not written: {}", std::string(written.message()));
    }
    return absl::OkStatus();
  }

 private:
  struct Progress {
    int64_t steps = 0;
    std::optional<double> train_loss, eval_loss, best_eval;
    int64_t tokens = 0;
    double wall_s = 0;
    int64_t peak_rss = 0;
    int64_t comm_bytes = 0;
    bool stop_decided = false;
    int64_t rung = -1;
  };

  std::string run_dir_;
  SweepSpec spec_;
  std::unique_ptr<ResultsStore> store_;
  std::unique_ptr<EarlyStopper> stopper_;
  std::map<std::string, Progress> running_;
};

// Runs one trial on `comm` (a slot, or nullptr for this process alone). `on_metrics` is called on
// the slot's rank 0.
struct TrialOutcome {
  bool ok = false;
  bool stopped_early = false;
  bool preempted = false;  // SIGUSR1/SIGTERM: checkpointed, to be continued
  std::string failure;
};

TrialOutcome RunTrial(const TrialConfig& config, const std::string& out_dir, bool resume,
                      Communicator* comm,
                      std::function<bool(const nlohmann::json&)> on_metrics) {
  TrainOptions options;
  options.out_dir = out_dir;
  options.resume = resume;
  options.comm = comm;
  options.on_metrics = std::move(on_metrics);
  options.stoppable = true;
  TrialOutcome outcome;
  options.stopped_early = &outcome.stopped_early;
  const absl::Status status = Train(config, options);
  outcome.ok = status.ok();
  outcome.preempted = absl::IsCancelled(status) && StopSignalReceived();
  if (!status.ok()) outcome.failure = std::string(status.message());
  return outcome;
}

absl::Status RunAlone(const SweepOptions& options) {
  Coordinator coordinator;
  RETURN_IF_ERROR(coordinator.Init(options));
  const bool array_task = options.trial_index >= 0;
  if (array_task) {
    ASSIGN_OR_RETURN(int64_t trials, coordinator.NumTrainedTrials());
    if (options.trial_index >= trials) {
      return absl::InvalidArgumentError(absl::StrCat("--trial-index ", options.trial_index,
                                                     ": the spec expands to ", trials,
                                                     " trials (0..", trials - 1, ")"));
    }
  }
  // Array tasks: the base model is evaluated by task 0 only.
  if (!array_task || options.trial_index == 0) RETURN_IF_ERROR(coordinator.EvaluateBaseOnce());
  while (!StopSignalReceived()) {
    ASSIGN_OR_RETURN(std::optional<TrialRow> row,
                     coordinator.StartNext(0, array_task ? options.trial_index : -1));
    if (!row) break;
    ASSIGN_OR_RETURN(TrialConfig config, ConfigFromJson(row->config_json));
    const std::string dir = TrialDir(options.run_dir, row->id);
    const TrialOutcome outcome =
        RunTrial(config, dir, HasCheckpoint(dir), nullptr, [&](const nlohmann::json& line) {
          return coordinator.OnMetrics(row->id, line);
        });
    if (outcome.preempted) {
      RETURN_IF_ERROR(coordinator.OnPreempted(row->id));
      break;
    }
    RETURN_IF_ERROR(coordinator.OnDone(row->id, outcome.ok, outcome.stopped_early,
                                       outcome.failure));
  }
  if (StopSignalReceived()) {
    spdlog::info("preempted: stopping; the same command with --resume continues the sweep");
    return absl::OkStatus();
  }
  if (array_task) {
    // The task that sees every trained trial ended finishes the sweep (soups, report).
    ASSIGN_OR_RETURN(bool all_ended, coordinator.AllTrainedTrialsEnded());
    if (!all_ended) return absl::OkStatus();
  }
  RETURN_IF_ERROR(coordinator.RunSoupStage());
  return coordinator.Finish();
}

std::string Serialize(const google::protobuf::Message& m) {
  std::string bytes;
  m.SerializeToString(&bytes);
  return bytes;
}

absl::Status RunCoordinatorRank(const SweepOptions& options, int num_slots, int slot_size) {
  Communicator* world = options.world;
  Coordinator coordinator;
  RETURN_IF_ERROR(coordinator.Init(options));
  auto leader = [&](int slot) { return 1 + slot * slot_size; };
  std::vector<std::string> slot_trial(num_slots);
  std::map<std::string, int> stop_sent;
  // 1. Fill every free slot.
  auto fill = [&]() -> absl::Status {
    if (StopSignalReceived()) return absl::OkStatus();  // preempted: start nothing new
    for (int slot = 0; slot < num_slots; ++slot) {
      if (!slot_trial[slot].empty()) continue;
      ASSIGN_OR_RETURN(std::optional<TrialRow> row, coordinator.StartNext(slot));
      if (!row) return absl::OkStatus();
      CoordinatorToSlot message;
      AssignTrial* assign = message.mutable_assign();
      assign->set_trial_id(row->id);
      assign->set_config_json(row->config_json);
      assign->set_out_dir(TrialDir(options.run_dir, row->id));
      assign->set_resume(HasCheckpoint(assign->out_dir()));
      RETURN_IF_ERROR(world->SendMessage(leader(slot), Serialize(message)));
      slot_trial[slot] = row->id;
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(fill());
  // The base model is evaluated while the slots train.
  RETURN_IF_ERROR(coordinator.EvaluateBaseOnce());
  world->set_timeout_seconds(kMessageTimeoutSeconds);
  bool preempt_sent = false;
  while (std::any_of(slot_trial.begin(), slot_trial.end(),
                     [](const std::string& t) { return !t.empty(); })) {
    // Poll, so that a signal to this rank alone still stops the slots (they may not get it).
    ASSIGN_OR_RETURN(std::optional<Communicator::Message> maybe, world->TryReceiveMessage());
    if (StopSignalReceived() && !preempt_sent) {
      preempt_sent = true;
      for (int slot = 0; slot < num_slots; ++slot) {
        if (slot_trial[slot].empty()) continue;
        CoordinatorToSlot stop;
        stop.mutable_stop()->set_trial_id(slot_trial[slot]);
        stop.mutable_stop()->set_preempt(true);
        RETURN_IF_ERROR(world->SendMessage(leader(slot), Serialize(stop)));
      }
    }
    if (!maybe) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    Communicator::Message received = *std::move(maybe);
    SlotToCoordinator message;
    if (!message.ParseFromString(received.bytes)) {
      return absl::DataLossError(absl::StrCat("unreadable message from rank ", received.source));
    }
    const int slot = (received.source - 1) / slot_size;
    if (message.has_metrics()) {
      const std::string& id = message.metrics().trial_id();
      const nlohmann::json line = nlohmann::json::parse(message.metrics().line_json());
      // 3. Store; ask the slot to stop when the stopper says so.
      if (!coordinator.OnMetrics(id, line) && !stop_sent.count(id)) {
        CoordinatorToSlot stop;
        stop.mutable_stop()->set_trial_id(id);
        RETURN_IF_ERROR(world->SendMessage(received.source, Serialize(stop)));
        stop_sent[id] = slot;
      }
    } else if (message.has_done()) {
      // 5. The slot is free again.
      const TrialDone& done = message.done();
      if (done.preempted()) {
        RETURN_IF_ERROR(coordinator.OnPreempted(done.trial_id()));
      } else {
        RETURN_IF_ERROR(
            coordinator.OnDone(done.trial_id(), done.ok(), done.stopped_early(), done.failure()));
      }
      slot_trial[slot].clear();
      RETURN_IF_ERROR(fill());
    }
  }
  // 6. Nothing left: shut every slot down.
  CoordinatorToSlot shutdown;
  shutdown.mutable_shutdown();
  for (int slot = 0; slot < num_slots; ++slot) {
    RETURN_IF_ERROR(world->SendMessage(leader(slot), Serialize(shutdown)));
  }
  if (StopSignalReceived()) {
    spdlog::info("preempted: stopping; the same command with --resume continues the sweep");
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(coordinator.RunSoupStage());
  return coordinator.Finish();
}

// Every rank of a slot: the leader receives from rank 0 and forwards to its slot (length, then
// bytes, by broadcast); all ranks run the assigned trials together.
absl::Status RunSlotRank(const SweepOptions& options, Communicator* slot) {
  Communicator* world = options.world;
  const bool is_leader = slot->rank() == 0;
  world->set_timeout_seconds(kMessageTimeoutSeconds);
  while (true) {
    std::string bytes;
    if (is_leader) {
      CoordinatorToSlot peek;
      do {
        ASSIGN_OR_RETURN(Communicator::Message m, world->ReceiveMessage());
        bytes = std::move(m.bytes);
        peek.ParseFromString(bytes);
      } while (peek.has_stop());  // a stop for a trial that already ended
    }
    int64_t size = static_cast<int64_t>(bytes.size());
    RETURN_IF_ERROR(slot->Broadcast(&size, sizeof(size), 0));
    bytes.resize(size);
    RETURN_IF_ERROR(slot->Broadcast(bytes.data(), size, 0));
    CoordinatorToSlot message;
    if (!message.ParseFromString(bytes)) return absl::DataLossError("unreadable assignment");
    if (message.has_shutdown()) return absl::OkStatus();
    if (!message.has_assign()) continue;
    const AssignTrial& assign = message.assign();
    ASSIGN_OR_RETURN(TrialConfig config, ConfigFromJson(assign.config_json()));
    std::function<bool(const nlohmann::json&)> on_metrics;
    if (is_leader) {
      on_metrics = [&](const nlohmann::json& line) {
        SlotToCoordinator out;
        out.mutable_metrics()->set_trial_id(assign.trial_id());
        out.mutable_metrics()->set_line_json(line.dump());
        (void)world->SendMessage(0, Serialize(out));
        // 4. A StopTrial may be waiting.
        absl::StatusOr<std::optional<Communicator::Message>> m = world->TryReceiveMessage();
        if (m.ok() && m->has_value()) {
          CoordinatorToSlot in;
          if (in.ParseFromString((*m)->bytes) && in.has_stop() &&
              in.stop().trial_id() == assign.trial_id()) {
            // A preemption reaches the whole slot through the trainer's per-step broadcast of
            // this rank's signal flag.
            if (in.stop().preempt()) {
              std::raise(SIGUSR1);
              return true;
            }
            return false;
          }
        }
        return true;
      };
    }
    const TrialOutcome outcome =
        RunTrial(config, assign.out_dir(), assign.resume(), slot, std::move(on_metrics));
    if (is_leader) {
      SlotToCoordinator done;
      done.mutable_done()->set_trial_id(assign.trial_id());
      done.mutable_done()->set_ok(outcome.ok);
      done.mutable_done()->set_stopped_early(outcome.stopped_early);
      done.mutable_done()->set_failure(outcome.failure);
      done.mutable_done()->set_preempted(outcome.preempted);
      RETURN_IF_ERROR(world->SendMessage(0, Serialize(done)));
    }
  }
}

}  // namespace

absl::Status RunSweep(const SweepOptions& options) {
  Communicator* world = options.world;
  if (world == nullptr || world->size() == 1) return RunAlone(options);
  // Peek at the spec on every rank for the slot size (cheap; rank 0 validates it fully).
  ASSIGN_OR_RETURN(SweepSpec spec, LoadSweepSpec(options.spec_path));
  const int slot_size = spec.resources().workers_per_trial();
  const int workers = world->size() - 1;
  const int num_slots = workers / slot_size;
  if (num_slots == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resources.workers_per_trial is ", slot_size, " but only ", workers,
        " worker rank(s) besides the coordinator: launch at least ", slot_size + 1, " ranks"));
  }
  const int rank = world->rank();
  const int my_slot = rank == 0 ? -1 : (rank - 1) / slot_size;
  const bool in_slot = rank > 0 && my_slot < num_slots;
  if (rank == 0) {
    spdlog::info("layout: rank 0 coordinator, {} slot(s) of {} rank(s) (ranks 1..{}){}",
                 num_slots, slot_size, num_slots * slot_size,
                 workers % slot_size ? absl::StrCat(", ", workers % slot_size, " idle rank(s)")
                                     : "");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Communicator> slot_comm,
                   world->Split(in_slot ? my_slot : num_slots, rank));
  absl::Status status = absl::OkStatus();
  if (rank == 0) {
    status = RunCoordinatorRank(options, num_slots, slot_size);
  } else if (in_slot) {
    status = RunSlotRank(options, slot_comm.get());
  }
  return status;
}

}  // namespace lorasweep
