#include "worker/train/peft_adapter.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/tensor.h"
#include "nlohmann/json.hpp"
#include "worker/formats/safetensors.h"

namespace lorasweep {
namespace {

using json = nlohmann::json;

constexpr char kKeyPrefix[] = "base_model.model.model.layers.";

const std::vector<std::string>& LinearModules() {
  static const std::vector<std::string> kModules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};
  return kModules;
}

// Position of `module` in q, k, v, o, gate, up, down; -1 if unknown.
int ModuleIndex(const std::string& module) {
  const auto& modules = LinearModules();
  auto it = std::find(modules.begin(), modules.end(), module);
  return it == modules.end() ? -1 : static_cast<int>(it - modules.begin());
}

// "self_attn" for q/k/v/o, "mlp" for gate/up/down.
const char* BlockOf(int module_index) { return module_index < 4 ? "self_attn" : "mlp"; }

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

// The modules named by target_modules (all-linear: all seven); error on an unknown name.
absl::StatusOr<std::set<std::string>> TargetSet(const std::vector<std::string>& target_modules,
                                                const std::string& where) {
  std::set<std::string> set;
  for (const std::string& name : target_modules) {
    if (name == "all-linear") {
      set.insert(LinearModules().begin(), LinearModules().end());
    } else if (ModuleIndex(name) >= 0) {
      set.insert(name);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": target_modules: unknown module '", name,
                       "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj "
                       "or all-linear)"));
    }
  }
  if (set.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": target_modules is empty"));
  }
  return set;
}

absl::Status CheckQuantizationName(const std::string& type, const std::string& where) {
  if (type == "nf4" || type == "fp4" || type == "none") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": trained quantization must be nf4, fp4 or none, got '", type, "'"));
}

json AlphaJson(double alpha) {
  // PEFT writes lora_alpha as an int when it is one; keep that spelling for whole numbers.
  if (std::isfinite(alpha) && alpha == std::floor(alpha) && std::fabs(alpha) < 9.0e15) {
    return static_cast<int64_t>(alpha);
  }
  return alpha;
}

absl::Status CheckAdapterForWrite(const PeftAdapter& adapter, const std::string& dir) {
  const std::string where = absl::StrCat("adapter ", dir);
  if (adapter.rank < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": rank must be >= 1, got ", adapter.rank));
  }
  if (!(adapter.alpha > 0) || !std::isfinite(adapter.alpha)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": lora_alpha must be a finite number > 0, got ", adapter.alpha));
  }
  if (!(adapter.dropout >= 0 && adapter.dropout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": lora_dropout must be in [0, 1), got ", adapter.dropout));
  }
  ASSIGN_OR_RETURN(std::set<std::string> targets, TargetSet(adapter.target_modules, where));
  RETURN_IF_ERROR(CheckQuantizationName(
      adapter.trained_quantization.empty() ? "none" : adapter.trained_quantization, where));
  if (adapter.tensors.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": no LoRA tensors"));
  }
  std::set<std::pair<int, std::string>> seen;
  const int64_t r = adapter.rank;
  for (const LoraTensor& t : adapter.tensors) {
    const std::string name = absl::StrCat("layer ", t.layer, " ", t.module);
    if (t.layer < 0)
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, ": negative layer"));
    if (ModuleIndex(t.module) < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, ": unknown module"));
    }
    if (!targets.count(t.module)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": ", name, ": module is not in target_modules [",
                       absl::StrJoin(adapter.target_modules, ", "), "]"));
    }
    if (!seen.insert({t.layer, t.module}).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, " appears twice"));
    }
    if (t.in_features < 1 || t.out_features < 1) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, ": in_features ",
                                                     t.in_features, ", out_features ",
                                                     t.out_features, " must be >= 1"));
    }
    if (static_cast<int64_t>(t.a.size()) != r * t.in_features) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, ": lora_A has ", t.a.size(),
                                                     " values, [r, in] = [", r, ", ", t.in_features,
                                                     "] needs ", r * t.in_features));
    }
    if (static_cast<int64_t>(t.b.size()) != t.out_features * r) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", name, ": lora_B has ", t.b.size(),
                                                     " values, [out, r] = [", t.out_features, ", ",
                                                     r, "] needs ", t.out_features * r));
    }
  }
  return absl::OkStatus();
}

// Parses "base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight".
// Returns an empty string on success, else why the key does not fit.
std::string ParseKey(const std::string& key, int* layer, std::string* module, char* which) {
  if (!absl::StartsWith(key, kKeyPrefix)) {
    return absl::StrCat("does not start with '", kKeyPrefix, "'");
  }
  std::string rest = key.substr(sizeof(kKeyPrefix) - 1);
  const size_t dot = rest.find('.');
  if (dot == std::string::npos) return "has no layer index";
  const std::string index = rest.substr(0, dot);
  if (index.empty() || index.size() > 6 ||
      !std::all_of(index.begin(), index.end(),
                   [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
      (index.size() > 1 && index[0] == '0')) {
    return absl::StrCat("has layer index '", index, "' (expected a non-negative integer)");
  }
  (void)absl::SimpleAtoi(index, layer);
  rest = rest.substr(dot + 1);
  const std::vector<std::string> parts = [&] {
    std::vector<std::string> p;
    size_t start = 0;
    while (true) {
      const size_t end = rest.find('.', start);
      p.push_back(rest.substr(start, end == std::string::npos ? std::string::npos : end - start));
      if (end == std::string::npos) break;
      start = end + 1;
    }
    return p;
  }();
  // {block}.{module}.lora_{A|B}.weight
  if (parts.size() != 4 || parts[3] != "weight" || (parts[2] != "lora_A" && parts[2] != "lora_B")) {
    return "is not '{self_attn|mlp}.{module}.lora_A.weight' or '.lora_B.weight' after the layer "
           "index";
  }
  const int index_of_module = ModuleIndex(parts[1]);
  if (index_of_module < 0) {
    return absl::StrCat(
        "names module '", parts[1],
        "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
  }
  if (parts[0] != BlockOf(index_of_module)) {
    return absl::StrCat("puts ", parts[1], " under '", parts[0], "' (expected '",
                        BlockOf(index_of_module), "')");
  }
  *module = parts[1];
  *which = parts[2].back();
  return "";
}

template <typename T>
absl::StatusOr<T> JsonField(const json& config, const char* name, const std::string& where) {
  try {
    return config.at(name).get<T>();
  } catch (const json::exception&) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", name, "' is ",
                     config.contains(name) ? "of the wrong type" : "missing"));
  }
}

absl::Status ReadConfig(const std::string& path, PeftAdapter* adapter) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::NotFoundError(
        absl::StrCat("adapter config ", path, ": ", text.status().message()));
  }
  json config;
  try {
    config = json::parse(*text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON: ", e.what()));
  }
  if (!config.is_object())
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  auto bad = [&](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, ": ", why));
  };
  if (config.contains("peft_type") && config["peft_type"] != "LORA") {
    return bad("peft_type", absl::StrCat("expected \"LORA\", got ", config["peft_type"].dump()));
  }
  if (!config.contains("r") || !config["r"].is_number_integer() || config["r"].get<int64_t>() < 1 ||
      config["r"].get<int64_t>() > (1 << 20)) {
    return bad("r", absl::StrCat("expected an integer >= 1, got ",
                                 config.contains("r") ? config["r"].dump() : "nothing"));
  }
  adapter->rank = config["r"].get<int>();
  if (!config.contains("lora_alpha") || !config["lora_alpha"].is_number() ||
      !(config["lora_alpha"].get<double>() > 0)) {
    return bad(
        "lora_alpha",
        absl::StrCat("expected a number > 0, got ",
                     config.contains("lora_alpha") ? config["lora_alpha"].dump() : "nothing"));
  }
  adapter->alpha = config["lora_alpha"].get<double>();
  adapter->dropout = 0.0;
  if (config.contains("lora_dropout") && !config["lora_dropout"].is_null()) {
    const json& d = config["lora_dropout"];
    if (!d.is_number() || !(d.get<double>() >= 0 && d.get<double>() < 1)) {
      return bad("lora_dropout", absl::StrCat("expected a number in [0, 1), got ", d.dump()));
    }
    adapter->dropout = d.get<double>();
  }
  adapter->rslora = false;
  if (config.contains("use_rslora") && !config["use_rslora"].is_null()) {
    if (!config["use_rslora"].is_boolean()) {
      return bad("use_rslora",
                 absl::StrCat("expected true or false, got ", config["use_rslora"].dump()));
    }
    adapter->rslora = config["use_rslora"].get<bool>();
  }
  if (config.contains("use_dora") && config["use_dora"] == true) {
    return bad("use_dora", "DoRA adapters are not supported");
  }
  if (config.contains("fan_in_fan_out") && config["fan_in_fan_out"] == true) {
    return bad("fan_in_fan_out", "only false (Linear layers, weights [out, in]) is supported");
  }
  if (config.contains("bias") && !config["bias"].is_null() && config["bias"] != "none") {
    return bad("bias", absl::StrCat("only \"none\" is supported, got ", config["bias"].dump()));
  }
  if (config.contains("modules_to_save") && !config["modules_to_save"].is_null() &&
      !(config["modules_to_save"].is_array() && config["modules_to_save"].empty())) {
    return bad("modules_to_save", "adapters that save whole modules are not supported");
  }
  for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
    if (config.contains(pattern) && !config[pattern].is_null() &&
        !(config[pattern].is_object() && config[pattern].empty())) {
      return bad(pattern, "per-module ranks or alphas are not supported");
    }
  }
  adapter->target_modules.clear();
  if (!config.contains("target_modules")) return bad("target_modules", "missing");
  const json& targets = config["target_modules"];
  if (targets.is_string()) {
    adapter->target_modules.push_back(targets.get<std::string>());
  } else if (targets.is_array()) {
    for (const json& t : targets) {
      if (!t.is_string())
        return bad("target_modules", absl::StrCat("expected strings, got ", t.dump()));
      adapter->target_modules.push_back(t.get<std::string>());
    }
  } else {
    return bad("target_modules",
               absl::StrCat("expected a list of module names, got ", targets.dump()));
  }
  RETURN_IF_ERROR(TargetSet(adapter->target_modules, path).status());
  adapter->base_model_name_or_path.clear();
  if (config.contains("base_model_name_or_path") && config["base_model_name_or_path"].is_string()) {
    adapter->base_model_name_or_path = config["base_model_name_or_path"].get<std::string>();
  }
  return absl::OkStatus();
}

absl::Status ReadTrainingInfo(const std::string& path, PeftAdapter* adapter) {
  adapter->trained_quantization = "none";
  adapter->blocksize = 0;
  adapter->double_quant = false;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return absl::OkStatus();  // an adapter made by PEFT
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json info;
  try {
    info = json::parse(text);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": invalid JSON: ", e.what()));
  }
  if (!info.is_object() || !info.contains("quantization") || !info["quantization"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected an object with 'quantization'"));
  }
  const json& q = info["quantization"];
  const std::string where = absl::StrCat(path, ": quantization");
  ASSIGN_OR_RETURN(adapter->trained_quantization, JsonField<std::string>(q, "type", where));
  RETURN_IF_ERROR(CheckQuantizationName(adapter->trained_quantization, where));
  ASSIGN_OR_RETURN(adapter->blocksize, JsonField<int64_t>(q, "blocksize", where));
  ASSIGN_OR_RETURN(adapter->double_quant, JsonField<bool>(q, "double_quant", where));
  return absl::OkStatus();
}

}  // namespace

std::string PeftTensorKey(int layer, const std::string& module, char which) {
  const int index = ModuleIndex(module);
  return absl::StrCat(kKeyPrefix, layer, ".", index >= 0 ? BlockOf(index) : "self_attn", ".",
                      module, ".lora_", std::string(1, which), ".weight");
}

std::string PeftAdapterConfigJson(const PeftAdapter& adapter) {
  json config = json::object();
  config["alpha_pattern"] = json::object();
  config["base_model_name_or_path"] = adapter.base_model_name_or_path;
  config["bias"] = "none";
  config["fan_in_fan_out"] = false;
  config["inference_mode"] = true;
  config["init_lora_weights"] = true;
  config["layers_pattern"] = nullptr;
  config["layers_to_transform"] = nullptr;
  config["lora_alpha"] = AlphaJson(adapter.alpha);
  config["lora_dropout"] = adapter.dropout;
  config["modules_to_save"] = nullptr;
  config["peft_type"] = "LORA";
  config["r"] = adapter.rank;
  config["rank_pattern"] = json::object();
  config["revision"] = nullptr;
  config["target_modules"] = adapter.target_modules;
  config["task_type"] = "CAUSAL_LM";
  config["use_dora"] = false;
  config["use_rslora"] = adapter.rslora;
  return config.dump(2) + "\n";
}

absl::Status WritePeftAdapter(const PeftAdapter& adapter, const std::string& dir_in) {
  const std::string dir = StripTrailingSlashes(dir_in);
  RETURN_IF_ERROR(CheckAdapterForWrite(adapter, dir));
  const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) RETURN_IF_ERROR(MakeDirectories(parent.string()));
  ASSIGN_OR_RETURN(std::string staged, MakeStagingDirectory(dir));

  absl::Status status = [&]() -> absl::Status {
    NamedTensors tensors;
    tensors.reserve(adapter.tensors.size() * 2);
    const int64_t r = adapter.rank;
    for (const LoraTensor& t : adapter.tensors) {
      tensors.emplace_back(PeftTensorKey(t.layer, t.module, 'A'),
                           Tensor::FromFloats({r, t.in_features}, t.a));
      tensors.emplace_back(PeftTensorKey(t.layer, t.module, 'B'),
                           Tensor::FromFloats({t.out_features, r}, t.b));
    }
    RETURN_IF_ERROR(
        WriteSafetensors(staged + "/" + kAdapterWeightsFile, tensors, {{"format", "pt"}}));
    RETURN_IF_ERROR(
        WriteFileAtomically(staged + "/" + kAdapterConfigFile, PeftAdapterConfigJson(adapter)));
    json info = {
        {"format", "lorasweep-training"},
        {"version", 1},
        {"quantization",
         {{"type", adapter.trained_quantization.empty() ? "none" : adapter.trained_quantization},
          {"blocksize", adapter.blocksize},
          {"double_quant", adapter.double_quant}}},
    };
    RETURN_IF_ERROR(WriteFileAtomically(staged + "/" + kAdapterTrainingFile, info.dump(2) + "\n"));
    return ReplaceDirectory(staged, dir);
  }();
  if (!status.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(staged, ec);
  }
  return status;
}

absl::StatusOr<PeftAdapter> ReadPeftAdapter(const std::string& dir_in) {
  const std::string dir = StripTrailingSlashes(dir_in);
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("adapter folder ", dir, " does not exist"));
  }
  PeftAdapter adapter;
  const std::string config_path = dir + "/" + kAdapterConfigFile;
  const std::string weights_path = dir + "/" + kAdapterWeightsFile;
  if (!std::filesystem::exists(config_path, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": missing ", kAdapterConfigFile));
  }
  if (!std::filesystem::exists(weights_path, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": missing ", kAdapterWeightsFile));
  }
  RETURN_IF_ERROR(ReadConfig(config_path, &adapter));
  RETURN_IF_ERROR(ReadTrainingInfo(dir + "/" + kAdapterTrainingFile, &adapter));
  ASSIGN_OR_RETURN(std::set<std::string> targets, TargetSet(adapter.target_modules, config_path));

  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(weights_path));
  const int64_t r = adapter.rank;
  struct Pair {
    const TensorInfo* a = nullptr;
    const TensorInfo* b = nullptr;
  };
  const std::vector<TensorInfo> infos = file->List();
  std::map<std::pair<int, int>, Pair> pairs;  // (layer, module index) -> A, B
  for (const TensorInfo& info : infos) {
    const std::string where = absl::StrCat(weights_path, ": key '", info.name, "'");
    int layer = 0;
    std::string module;
    char which = 0;
    const std::string why = ParseKey(info.name, &layer, &module, &which);
    if (!why.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unknown key: it ", why,
                       " (expected base_model.model.model.layers.{i}.{self_attn|mlp}.{module}."
                       "lora_{A|B}.weight)"));
    }
    if (!targets.count(module)) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": module ", module, " is not in target_modules [",
                       absl::StrJoin(adapter.target_modules, ", "), "] of ", config_path));
    }
    if (info.dtype != DType::kF32 && info.dtype != DType::kF16 && info.dtype != DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": dtype ", DTypeName(info.dtype), " (expected F32, F16 or BF16)"));
    }
    if (info.shape.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": shape ", ShapeToString(info.shape), " is not 2-D"));
    }
    if (which == 'A' && info.shape[0] != r) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": shape ", ShapeToString(info.shape),
                                                     " does not match r = ", r,
                                                     " (lora_A is [r, in])"));
    }
    if (which == 'B' && info.shape[1] != r) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": shape ", ShapeToString(info.shape),
                                                     " does not match r = ", r,
                                                     " (lora_B is [out, r])"));
    }
    if (info.shape[0] < 1 || info.shape[1] < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": empty shape ", ShapeToString(info.shape)));
    }
    Pair& pair = pairs[{layer, ModuleIndex(module)}];
    (which == 'A' ? pair.a : pair.b) = &info;
  }
  if (pairs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(weights_path, ": holds no LoRA tensors"));
  }
  for (const auto& [key, pair] : pairs) {
    const std::string& module = LinearModules()[key.second];
    if (pair.a == nullptr || pair.b == nullptr) {
      const std::string present = PeftTensorKey(key.first, module, pair.a ? 'A' : 'B');
      const std::string missing = PeftTensorKey(key.first, module, pair.a ? 'B' : 'A');
      return absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": key '", present, "' has no partner '", missing, "'"));
    }
    LoraTensor t;
    t.layer = key.first;
    t.module = module;
    t.in_features = pair.a->shape[1];
    t.out_features = pair.b->shape[0];
    for (const TensorInfo* info : {pair.a, pair.b}) {
      absl::StatusOr<Tensor> tensor = file->Get(info->name);
      absl::StatusOr<std::vector<float>> values =
          tensor.ok() ? tensor->ToFloats() : absl::StatusOr<std::vector<float>>(tensor.status());
      if (!values.ok()) {
        return absl::Status(
            values.status().code(),
            absl::StrCat(weights_path, ": key '", info->name, "': ", values.status().message()));
      }
      (info == pair.a ? t.a : t.b) = std::move(*values);
    }
    adapter.tensors.push_back(std::move(t));
  }
  return adapter;
}

double LoraScaling(double alpha, int rank, bool rslora) {
  if (rank <= 0) return 0.0;
  return rslora ? alpha / std::sqrt(static_cast<double>(rank)) : alpha / static_cast<double>(rank);
}

}  // namespace lorasweep
