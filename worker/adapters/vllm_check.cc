#include "worker/adapters/vllm_check.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/formats/hf_config.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool IsNonEmpty(const json& config, const char* field) {
  if (!config.contains(field) || config[field].is_null()) return false;
  const json& v = config[field];
  return !((v.is_array() || v.is_object() || v.is_string()) && v.empty());
}

// The targeted module names, "all-linear" expanded; unknown names are kept (peft-format reports
// them).
std::set<std::string> Targets(const json& config) {
  std::set<std::string> set;
  if (!config.contains("target_modules")) return set;
  const json& t = config["target_modules"];
  std::vector<std::string> names;
  if (t.is_string()) names.push_back(t.get<std::string>());
  if (t.is_array()) {
    for (const json& e : t) {
      if (e.is_string()) names.push_back(e.get<std::string>());
    }
  }
  for (const std::string& name : names) {
    if (name == "all-linear") {
      set.insert(LlamaLinearModules().begin(), LlamaLinearModules().end());
    } else {
      set.insert(name);
    }
  }
  return set;
}

// A pack of modules vLLM serves as one: all or none of it must be targeted.
void CheckPack(const std::set<std::string>& targets, const std::vector<std::string>& pack,
               const std::string& rule, const std::string& packed_name, ExportCheck* check) {
  std::vector<std::string> present, missing;
  for (const std::string& m : pack) (targets.count(m) ? present : missing).push_back(m);
  if (!present.empty() && !missing.empty()) {
    check->violations.push_back(
        {rule, absl::StrCat("target_modules has ", absl::StrJoin(present, ", "), " but not ",
                            absl::StrJoin(missing, ", "), ": vLLM serves ",
                            absl::StrJoin(pack, "/"), " as one packed ", packed_name,
                            " LoRA; retrain targeting all of ", absl::StrJoin(pack, ", "),
                            " or none of them")});
  }
}

}  // namespace

absl::StatusOr<ExportTarget> ParseExportTarget(const std::string& name) {
  if (name == "vllm") return ExportTarget::kVllm;
  if (name == "peft") return ExportTarget::kPeft;
  return absl::InvalidArgumentError(absl::StrCat("--for: expected vllm or peft, got '", name, "'"));
}

const std::vector<int>& VllmMaxLoraRanks() {
  static const std::vector<int> kRanks = {1, 8, 16, 32, 64, 128, 256, 320, 512};
  return kRanks;
}

absl::StatusOr<ExportCheck> CheckAdapterForExport(const std::string& dir, ExportTarget target) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("adapter folder ", dir, " does not exist"));
  }
  ExportCheck check;
  const std::string config_path = dir + "/" + kAdapterConfigFile;
  absl::StatusOr<std::string> text = ReadFileToString(config_path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat(config_path, ": ", text.status().message()));
  }
  const json config = json::parse(*text, nullptr, false);
  if (!config.is_object()) {
    check.violations.push_back({"config", absl::StrCat(config_path, ": not a JSON object")});
    return check;
  }
  if (config.contains("task_type") && !config["task_type"].is_null() &&
      config["task_type"] != "CAUSAL_LM") {
    check.violations.push_back(
        {"config", absl::StrCat(config_path, ": task_type ", config["task_type"].dump(),
                                " (expected \"CAUSAL_LM\" for a causal language model)")});
  }
  if (config.contains("r") && config["r"].is_number_integer()) {
    check.rank = config["r"].get<int>();
  }
  if (config.contains("rank_pattern") && config["rank_pattern"].is_object()) {
    for (const auto& [name, r] : config["rank_pattern"].items()) {
      if (r.is_number_integer()) check.rank = std::max(check.rank, r.get<int>());
    }
  }

  if (target == ExportTarget::kVllm) {
    if (config.contains("use_dora") && config["use_dora"] == true) {
      check.violations.push_back(
          {"no-dora", "use_dora is true: vLLM does not serve DoRA adapters; retrain with "
                      "use_dora false or merge it into the base (lorasweep merge)"});
    }
    if (IsNonEmpty(config, "modules_to_save")) {
      check.violations.push_back(
          {"no-modules-to-save",
           absl::StrCat("modules_to_save is ", config["modules_to_save"].dump(),
                        ": vLLM rejects adapters that replace whole modules; retrain without "
                        "modules_to_save or merge the adapter into the base")});
    }
    if (config.contains("bias") && !config["bias"].is_null() && config["bias"] != "none") {
      check.violations.push_back(
          {"bias-none", absl::StrCat("bias is ", config["bias"].dump(),
                                     ": vLLM loads LoRA weights only; retrain with bias \"none\"")});
    }
    const std::set<std::string> targets = Targets(config);
    CheckPack(targets, {"q_proj", "k_proj", "v_proj"}, "packed-qkv", "qkv_proj", &check);
    CheckPack(targets, {"gate_proj", "up_proj"}, "packed-gate-up", "gate_up_proj", &check);
    const std::vector<int>& buckets = VllmMaxLoraRanks();
    if (check.rank > buckets.back()) {
      check.violations.push_back(
          {"max-lora-rank", absl::StrCat("r = ", check.rank, " exceeds vLLM's largest --max-lora-rank ",
                                         buckets.back(), "; reduce it, e.g. lorasweep soup --method svd "
                                         "--rank 512 --adapters ", dir)});
    } else if (check.rank >= 1) {
      check.max_lora_rank = *std::lower_bound(buckets.begin(), buckets.end(), check.rank);
      if (check.max_lora_rank != check.rank) {
        check.notes.push_back(absl::StrCat(
            "r = ", check.rank, " is not one of vLLM's max_lora_rank values; it is served padded "
            "to ", check.max_lora_rank));
      }
    }
  }

  // Keys, shapes and the config fields PEFT reads.
  absl::StatusOr<PeftAdapter> adapter = ReadPeftAdapter(dir);
  if (!adapter.ok()) {
    if (absl::IsNotFound(adapter.status())) return adapter.status();
    // ReadPeftAdapter also refuses DoRA, modules_to_save and bias; when a vLLM rule above already
    // named that field, report it once.
    const std::string message(adapter.status().message());
    const std::pair<const char*, const char*> covered[] = {
        {"use_dora", "no-dora"}, {"modules_to_save", "no-modules-to-save"}, {"bias", "bias-none"}};
    bool duplicate = false;
    for (const auto& [field, rule] : covered) {
      if (message.find(absl::StrCat(": ", field, ":")) == std::string::npos) continue;
      for (const RuleViolation& v : check.violations) duplicate |= v.rule == rule;
    }
    if (!duplicate) check.violations.push_back({"peft-format", message});
    return check;
  }
  if (check.rank == 0) check.rank = adapter->rank;
  // Every layer that carries an adapter should carry all targeted modules: PEFT would otherwise
  // initialise the missing ones (random A, zero B) and warn, vLLM would fail on a partial pack.
  std::map<int, std::set<std::string>> layers;
  for (const LoraTensor& t : adapter->tensors) layers[t.layer].insert(t.module);
  std::set<std::string> targets;
  for (const std::string& t : adapter->target_modules) {
    if (t == "all-linear") {
      targets.insert(LlamaLinearModules().begin(), LlamaLinearModules().end());
    } else {
      targets.insert(t);
    }
  }
  for (const auto& [layer, modules] : layers) {
    std::vector<std::string> missing;
    for (const std::string& m : targets) {
      if (!modules.count(m)) missing.push_back(m);
    }
    if (!missing.empty()) {
      check.violations.push_back(
          {"targets-have-weights",
           absl::StrCat(dir, ": layer ", layer, " has no lora_A/lora_B for targeted ",
                        absl::StrJoin(missing, ", "))});
      break;
    }
  }
  return check;
}

absl::Status CopyAdapterFolder(const std::string& dir, const std::string& out_dir) {
  std::error_code ec;
  if (fs::exists(out_dir, ec) && fs::equivalent(out_dir, dir, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("--out ", out_dir, " is the adapter itself"));
  }
  const fs::path parent = fs::path(out_dir).parent_path();
  if (!parent.empty()) RETURN_IF_ERROR(MakeDirectories(parent.string()));
  ASSIGN_OR_RETURN(std::string staged, MakeStagingDirectory(out_dir));
  absl::Status status = [&]() -> absl::Status {
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (!entry.is_regular_file()) continue;  // an adapter folder is flat
      ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(entry.path().string()));
      RETURN_IF_ERROR(
          WriteFileAtomically(staged + "/" + entry.path().filename().string(), bytes));
    }
    if (ec) return absl::UnavailableError(absl::StrCat(dir, ": ", ec.message()));
    return ReplaceDirectory(staged, out_dir);
  }();
  if (!status.ok()) fs::remove_all(staged, ec);
  return status;
}

}  // namespace lorasweep
