// The sweep report's data model: RUN_DIR/sweep.db (coordinator/results_store.h) read once and
// turned into what `lorasweep report` shows: trials with their swept values and curves, the best
// trial by a chosen metric, its improvement over the base model, costs and vLLM serving notes.
// Nothing here formats text; coordinator/report_writer.cc does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/results_store.h"

namespace lorasweep {

// One swept value as given in params_json: numbers keep their value (for axes), everything else
// (data shard lists, strings, booleans) is a category with a display text.
struct ParamValue {
  std::string text;              // "16", "0.0002", "install+packages", "all"
  std::optional<double> number;  // set for JSON numbers
};

// What the report needs from the resolved TrialConfig (config_json), read leniently: a field
// missing from the JSON stays at its default.
struct TrialConfigSummary {
  std::string model;
  std::string quantization;  // nf4 | fp4 | none
  int64_t lora_rank = 0;
  double lora_alpha = 0;
  bool rslora = false;
  std::vector<std::string> target_modules;
  double learning_rate = 0;
  int64_t steps = 0;
  std::vector<std::string> data_shards;  // empty: all shards
  std::string device;                    // auto | cpu | cuda (as configured)
};

using Curve = std::vector<std::pair<int64_t, double>>;  // (step, value), ascending step

struct ReportTrial {
  TrialRow row;
  TrialConfigSummary config;
  std::map<std::string, ParamValue> params;  // swept path -> value
  std::map<std::string, Curve> curves;       // metric name -> points
  // The final value of the report's metric (see ReportData::metric); unset when the trial has
  // none yet (pending, running without points, failed early).
  std::optional<double> metric_value;
  std::optional<double> eval_loss;            // final eval loss (row, else the eval_loss curve)
  std::optional<double> eval_perplexity;      // exp(eval_loss)
  double device_hours = 0;                    // wall_s * workers / 3600
  bool gpu = false;                           // device "cuda": GPU-hours; otherwise CPU-hours
  int64_t adapter_rank = 0;                   // the rank vLLM must accept
  std::optional<int64_t> vllm_max_lora_rank;  // smallest vLLM bucket >= rank; unset: > 512
  std::vector<std::string> vllm_notes;        // problems serving this adapter with vLLM

  bool Finished() const {
    return row.status == TrialStatus::kCompleted || row.status == TrialStatus::kStoppedEarly;
  }
};

struct ReportData {
  std::string run_dir;
  std::string sweep_name;
  std::string created_at;
  std::string metric = "eval_loss";
  bool lower_is_better = true;
  std::optional<double> base_eval_loss;
  std::optional<double> base_eval_perplexity;
  std::optional<double> base_metric;  // the base model's value of `metric`, when known

  std::vector<std::string> swept_params;  // keys of params_json: rank, alpha, lr, shards, rest
  std::vector<ReportTrial> trials;        // by ordinal, then id
  std::vector<std::string> metric_names;  // every name in the metrics table, sorted
  size_t metric_points = 0;
  std::map<TrialStatus, size_t> status_counts;

  std::optional<size_t> best;             // index into `trials`
  std::optional<double> improvement_pct;  // of the best trial's metric over the base's

  size_t Count(TrialStatus s) const {
    auto it = status_counts.find(s);
    return it == status_counts.end() ? 0 : it->second;
  }
  size_t Finished() const {
    return Count(TrialStatus::kCompleted) + Count(TrialStatus::kStoppedEarly);
  }
  bool Running() const { return Count(TrialStatus::kPending) + Count(TrialStatus::kRunning) > 0; }
  bool AllFailed() const { return !trials.empty() && Count(TrialStatus::kFailed) == trials.size(); }
};

// The shortest text that reads back as the same double, exponents written as people write them:
// "16", "0.5", "2e-4" (std::to_chars would give "2e-04").
std::string ShortestNumberText(double value);

// Whether smaller values of `metric` are better: losses and perplexities are; throughput
// ("tokens_per_s") and anything named like an accuracy or score are not.
bool MetricLowerIsBetter(const std::string& metric);

// The smallest `--max-lora-rank` vLLM accepts for an adapter of `rank` (its buckets are 1, 8, 16,
// 32, 64, 128, 256, 320, 512); unset when the rank is above 512.
std::optional<int64_t> VllmMaxLoraRank(int64_t rank);

// Improvement of `value` over `base` in percent, positive when `value` is better.
double ImprovementPercent(double base, double value, bool lower_is_better);

// Builds the model from an open store. Errors name the trial and field that could not be read.
absl::StatusOr<ReportData> LoadReportData(ResultsStore& store, const std::string& metric);

// Opens RUN_DIR/sweep.db (NotFound when the file is missing: a report is never made from a
// database it created itself) and loads it.
absl::StatusOr<ReportData> LoadReportDataFromRunDir(const std::string& run_dir,
                                                    const std::string& metric);

}  // namespace lorasweep
