#include "coordinator/report_data.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lorasweep {
namespace {

using nlohmann::json;

std::string ParamText(const json& value) {
  if (value.is_number()) return ShortestNumberText(value.get<double>());
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  if (value.is_array()) {
    // data.shards lists: "[]" means every shard.
    if (value.empty()) return "all";
    std::vector<std::string> parts;
    for (const json& item : value) parts.push_back(ParamText(item));
    return absl::StrJoin(parts, "+");
  }
  if (value.is_null()) return "";
  return value.dump();
}

// Proto JSON prints 64-bit integers as strings ("steps": "200"); accept both spellings.
std::optional<double> NumberAt(const json& j, const char* section, const char* field) {
  if (!j.is_object() || !j.contains(section) || !j[section].is_object()) return std::nullopt;
  const json& s = j[section];
  if (!s.contains(field)) return std::nullopt;
  const json& v = s[field];
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const std::string text = v.get<std::string>();
    double d = 0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), d);
    if (r.ec == std::errc() && r.ptr == text.data() + text.size()) return d;
  }
  return std::nullopt;
}

std::vector<std::string> StringsAt(const json& j, const char* section, const char* field) {
  std::vector<std::string> out;
  if (!j.is_object() || !j.contains(section) || !j[section].is_object()) return out;
  const json& s = j[section];
  if (!s.contains(field) || !s[field].is_array()) return out;
  for (const json& v : s[field]) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

absl::StatusOr<TrialConfigSummary> ParseConfig(const TrialRow& row) {
  TrialConfigSummary c;
  if (row.config_json.empty()) return c;  // soups and hand-made rows may carry no config
  const json j = json::parse(row.config_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(
        absl::StrCat("sweep.db: trial ", row.id, ": config_json is not a JSON object"));
  }
  if (j.contains("model") && j["model"].is_string()) c.model = j["model"].get<std::string>();
  if (j.contains("device") && j["device"].is_string()) c.device = j["device"].get<std::string>();
  if (j.contains("quantization") && j["quantization"].is_object() &&
      j["quantization"].contains("type") && j["quantization"]["type"].is_string()) {
    c.quantization = j["quantization"]["type"].get<std::string>();
  }
  c.lora_rank = static_cast<int64_t>(NumberAt(j, "lora", "rank").value_or(0));
  c.lora_alpha = NumberAt(j, "lora", "alpha").value_or(0);
  if (j.contains("lora") && j["lora"].is_object() && j["lora"].contains("rslora") &&
      j["lora"]["rslora"].is_boolean()) {
    c.rslora = j["lora"]["rslora"].get<bool>();
  }
  c.target_modules = StringsAt(j, "lora", "target_modules");
  c.learning_rate = NumberAt(j, "train", "learning_rate").value_or(0);
  c.steps = static_cast<int64_t>(NumberAt(j, "train", "steps").value_or(0));
  c.data_shards = StringsAt(j, "data", "shards");
  return c;
}

absl::StatusOr<std::map<std::string, ParamValue>> ParseParams(const TrialRow& row) {
  std::map<std::string, ParamValue> params;
  if (row.params_json.empty()) return params;
  const json j = json::parse(row.params_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(
        absl::StrCat("sweep.db: trial ", row.id, ": params_json is not a JSON object"));
  }
  for (const auto& [key, value] : j.items()) {
    ParamValue p;
    p.text = ParamText(value);
    if (value.is_number()) p.number = value.get<double>();
    params[key] = p;
  }
  return params;
}

std::optional<double> LastValue(const ReportTrial& t, const std::string& name) {
  auto it = t.curves.find(name);
  if (it == t.curves.end() || it->second.empty()) return std::nullopt;
  return it->second.back().second;
}

// The final value of `metric` for one trial: the trial row's own column where one exists (the
// trainer's last word), else the last logged point; eval loss falls back to the best eval loss
// (a trial stopped before its final eval still has its rung evaluations).
std::optional<double> FinalMetric(const ReportTrial& t, const std::string& metric) {
  if (metric == "eval_loss") {
    if (t.eval_loss) return t.eval_loss;
    return t.row.best_eval_loss;
  }
  if (metric == "loss") {
    if (t.row.final_train_loss) return t.row.final_train_loss;
    return LastValue(t, "loss");
  }
  if (std::optional<double> v = LastValue(t, metric)) return v;
  if (metric == "eval_perplexity" && t.eval_loss) return std::exp(*t.eval_loss);
  return std::nullopt;
}

std::vector<std::string> VllmNotes(const ReportTrial& t) {
  std::vector<std::string> notes;
  if (t.adapter_rank > 512) {
    notes.push_back(
        absl::StrCat("rank ", t.adapter_rank,
                     " is above vLLM's largest --max-lora-rank (512): cannot be served"));
  } else if (t.vllm_max_lora_rank && *t.vllm_max_lora_rank > 16) {
    notes.push_back(
        absl::StrCat("needs --max-lora-rank ", *t.vllm_max_lora_rank, " (vLLM's default is 16)"));
  }
  // vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj; a pack targeted only in part
  // serves with the missing members as zero deltas at best (formats.md "vLLM").
  const std::vector<std::string>& m = t.config.target_modules;
  auto has = [&](const char* name) { return std::find(m.begin(), m.end(), name) != m.end(); };
  if (!has("all-linear")) {
    const int qkv = has("q_proj") + has("k_proj") + has("v_proj");
    if (qkv > 0 && qkv < 3) notes.push_back("targets part of q/k/v (vLLM packs them as qkv_proj)");
    const int gate_up = has("gate_proj") + has("up_proj");
    if (gate_up == 1) notes.push_back("targets one of gate/up (vLLM packs them as gate_up_proj)");
  }
  return notes;
}

}  // namespace

std::string ShortestNumberText(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  const size_t e = text.find('e');
  if (e == std::string::npos) return text;
  // "e-04" -> "e-4", "e+06" -> "e6".
  size_t digits = e + 1;
  std::string sign;
  if (text[digits] == '-' || text[digits] == '+') {
    if (text[digits] == '-') sign = "-";
    ++digits;
  }
  while (digits + 1 < text.size() && text[digits] == '0') ++digits;
  return absl::StrCat(text.substr(0, e), "e", sign, text.substr(digits));
}

bool MetricLowerIsBetter(const std::string& metric) {
  static const char* kHigher[] = {"tokens_per_s", "accuracy", "acc",   "score",
                                  "f1",           "bleu",     "rouge", "exact_match"};
  for (const char* h : kHigher) {
    if (absl::StrContains(metric, h)) return false;
  }
  return true;
}

std::optional<int64_t> VllmMaxLoraRank(int64_t rank) {
  static constexpr int64_t kBuckets[] = {1, 8, 16, 32, 64, 128, 256, 320, 512};
  for (int64_t b : kBuckets) {
    if (b >= rank) return b;
  }
  return std::nullopt;
}

double ImprovementPercent(double base, double value, bool lower_is_better) {
  if (base == 0) return 0;
  const double delta = lower_is_better ? base - value : value - base;
  return 100.0 * delta / std::fabs(base);
}

absl::StatusOr<ReportData> LoadReportData(ResultsStore& store, const std::string& metric) {
  ReportData data;
  data.metric = metric.empty() ? "eval_loss" : metric;
  data.lower_is_better = MetricLowerIsBetter(data.metric);

  ASSIGN_OR_RETURN(std::optional<std::string> name, store.GetValue("name"));
  data.sweep_name = name.value_or("");
  ASSIGN_OR_RETURN(std::optional<std::string> created, store.GetValue("created_at"));
  data.created_at = created.value_or("");
  auto read_number = [&](const std::string& key) -> absl::StatusOr<std::optional<double>> {
    ASSIGN_OR_RETURN(std::optional<std::string> text, store.GetValue(key));
    if (!text || text->empty()) return std::optional<double>();
    double v = 0;
    const auto r = std::from_chars(text->data(), text->data() + text->size(), v);
    if (r.ec != std::errc() || r.ptr != text->data() + text->size() || !std::isfinite(v)) {
      return absl::DataLossError(
          absl::StrCat(store.path(), ": sweep key '", key, "' is not a number: '", *text, "'"));
    }
    return std::optional<double>(v);
  };
  ASSIGN_OR_RETURN(data.base_eval_loss, read_number("base_eval_loss"));
  if (data.base_eval_loss) data.base_eval_perplexity = std::exp(*data.base_eval_loss);
  if (data.metric == "eval_loss") {
    data.base_metric = data.base_eval_loss;
  } else if (data.metric == "eval_perplexity") {
    data.base_metric = data.base_eval_perplexity;
  } else {
    ASSIGN_OR_RETURN(data.base_metric, read_number("base_" + data.metric));
  }

  ASSIGN_OR_RETURN(std::vector<TrialRow> rows, store.Trials());
  std::sort(rows.begin(), rows.end(), [](const TrialRow& a, const TrialRow& b) {
    return a.ordinal != b.ordinal ? a.ordinal < b.ordinal : a.id < b.id;
  });
  std::map<std::string, size_t> index_of;
  std::set<std::string> swept;
  for (TrialRow& row : rows) {
    ReportTrial t;
    ASSIGN_OR_RETURN(t.config, ParseConfig(row));
    ASSIGN_OR_RETURN(t.params, ParseParams(row));
    for (const auto& [key, value] : t.params) swept.insert(key);
    t.row = std::move(row);
    index_of[t.row.id] = data.trials.size();
    ++data.status_counts[t.row.status];
    data.trials.push_back(std::move(t));
  }
  // The axes people reason about first come first (tables, charts); the rest alphabetically.
  static const std::vector<std::string> kFirst = {"lora.rank", "lora.alpha", "train.learning_rate",
                                                  "data.shards"};
  for (const std::string& key : kFirst) {
    if (swept.erase(key)) data.swept_params.push_back(key);
  }
  data.swept_params.insert(data.swept_params.end(), swept.begin(), swept.end());

  ASSIGN_OR_RETURN(std::vector<MetricPoint> points, store.Metrics());
  std::set<std::string> names;
  for (const MetricPoint& p : points) {
    auto it = index_of.find(p.trial_id);
    if (it == index_of.end()) continue;  // a point of a trial no longer in the spec
    data.trials[it->second].curves[p.name].emplace_back(p.step, p.value);
    names.insert(p.name);
    ++data.metric_points;
  }
  data.metric_names.assign(names.begin(), names.end());

  for (ReportTrial& t : data.trials) {
    for (auto& [name, curve] : t.curves) std::sort(curve.begin(), curve.end());
    t.eval_loss = t.row.final_eval_loss;
    // A running or stopped trial's last eval is its current result; a failed trial's last eval
    // came before whatever broke it (often a divergence), so it is not reported as a result.
    if (!t.eval_loss && t.row.status != TrialStatus::kFailed)
      t.eval_loss = LastValue(t, "eval_loss");
    if (t.eval_loss) t.eval_perplexity = std::exp(*t.eval_loss);
    t.metric_value = FinalMetric(t, data.metric);
    t.gpu = t.config.device == "cuda";
    t.device_hours =
        t.row.wall_s * static_cast<double>(std::max<int64_t>(1, t.row.workers)) / 3600.0;
    t.adapter_rank = t.row.lora_rank > 0 ? t.row.lora_rank : t.config.lora_rank;
    if (t.adapter_rank == 0) {
      auto it = t.params.find("lora.rank");
      if (it != t.params.end() && it->second.number) {
        t.adapter_rank = static_cast<int64_t>(*it->second.number);
      }
    }
    if (t.adapter_rank > 0) t.vllm_max_lora_rank = VllmMaxLoraRank(t.adapter_rank);
    t.vllm_notes = VllmNotes(t);
  }

  for (size_t i = 0; i < data.trials.size(); ++i) {
    const ReportTrial& t = data.trials[i];
    if (!t.Finished() || !t.metric_value || !std::isfinite(*t.metric_value)) continue;
    if (!data.best) {
      data.best = i;
      continue;
    }
    const double best = *data.trials[*data.best].metric_value;
    if (data.lower_is_better ? *t.metric_value < best : *t.metric_value > best) data.best = i;
  }
  if (data.best && data.base_metric) {
    data.improvement_pct = ImprovementPercent(
        *data.base_metric, *data.trials[*data.best].metric_value, data.lower_is_better);
  }
  return data;
}

absl::StatusOr<ReportData> LoadReportDataFromRunDir(const std::string& run_dir,
                                                    const std::string& metric) {
  const std::string path = run_dir + "/sweep.db";
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(
        absl::StrCat(path, ": not found (is ", run_dir, " the --out folder of a sweep?)"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ResultsStore> store, ResultsStore::Open(path));
  ASSIGN_OR_RETURN(ReportData data, LoadReportData(*store, metric));
  data.run_dir = run_dir;
  return data;
}

}  // namespace lorasweep
