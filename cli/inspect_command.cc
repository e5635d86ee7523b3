// `lorasweep inspect PATH [--json]`: what a model file holds (tensors, config, quantization).
#include <cstdio>
#include <map>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/formats/bnb_checkpoint.h"
#include "worker/formats/model_files.h"

namespace lorasweep::cli {
namespace {

using nlohmann::json;

json ConfigJson(const LlamaConfig& c) {
  return {{"architecture", c.architecture},
          {"model_type", c.model_type},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_hidden_layers", c.num_hidden_layers},
          {"num_attention_heads", c.num_attention_heads},
          {"num_key_value_heads", c.num_key_value_heads},
          {"head_dim", c.head_dim},
          {"vocab_size", c.vocab_size},
          {"max_position_embeddings", c.max_position_embeddings},
          {"rope_theta", c.rope_theta},
          {"rope_scaling", c.rope_scaling.type},
          {"rms_norm_eps", c.rms_norm_eps},
          {"tie_word_embeddings", c.tie_word_embeddings},
          {"attention_bias", c.attention_bias},
          {"num_parameters", c.NumParameters()}};
}

// Summarises bitsandbytes 4-bit linears (HF folders written by `lorasweep quantize` or transformers)
// and the storage dtypes of everything else.
absl::StatusOr<json> QuantizationSummary(const TensorSource& tensors) {
  json summary = json::object();
  std::map<std::string, int64_t> dtype_counts;
  int64_t modules = 0, params = 0;
  double bits = 0;
  std::string quant_type;
  int64_t blocksize = 0;
  bool double_quant = false;
  for (const TensorInfo& info : tensors.List()) {
    dtype_counts[DTypeName(info.dtype)] += 1;
    const std::string suffix = ".weight";
    if (info.name.size() <= suffix.size() ||
        info.name.compare(info.name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const std::string prefix = info.name.substr(0, info.name.size() - suffix.size());
    if (!HasBnb4bitWeight(tensors, prefix)) continue;
    ASSIGN_OR_RETURN(Quantized4bit q, ReadBnb4bitWeight(tensors, prefix));
    ++modules;
    params += q.num_elements;
    bits += q.BitsPerParameter() * static_cast<double>(q.num_elements);
    quant_type = QuantTypeName(q.type);
    blocksize = q.blocksize;
    double_quant = q.double_quant;
  }
  summary["tensor_dtypes"] = dtype_counts;
  if (modules > 0) {
    summary["bitsandbytes"] = {{"quantized_modules", modules},
                               {"quantized_params", params},
                               {"quant_type", quant_type},
                               {"blocksize", blocksize},
                               {"double_quant", double_quant},
                               {"bits_per_param", bits / static_cast<double>(params)}};
  }
  return summary;
}

int RunInspect(const std::vector<std::string>& positional) {
  if (positional.size() != 1) return ReportError("inspect", "expected exactly one PATH");
  absl::StatusOr<ModelFiles> model = OpenModelFiles(positional[0]);
  if (!model.ok()) return ReportError("inspect", std::string(model.status().message()));
  absl::StatusOr<json> quantization = QuantizationSummary(*model->tensors);
  if (!quantization.ok()) return ReportError("inspect", std::string(quantization.status().message()));
  const std::vector<TensorInfo> infos = model->tensors->List();
  if (absl::GetFlag(FLAGS_json)) {
    json out = {{"path", model->path}, {"kind", ModelFileKindName(model->kind)}};
    if (model->config) out["config"] = ConfigJson(*model->config);
    out["quantization"] = *quantization;
    json tensors = json::array();
    for (const TensorInfo& info : infos) {
      tensors.push_back({{"name", info.name}, {"dtype", DTypeName(info.dtype)}, {"shape", info.shape}});
    }
    out["tensors"] = tensors;
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::printf("%s (%s)\n", model->path.c_str(), ModelFileKindName(model->kind));
  if (model->config) {
    const LlamaConfig& c = *model->config;
    std::printf(
        "config: %s (%s), %lld layers, hidden %lld, heads %lld (kv %lld), head_dim %lld, ffn %lld, "
        "vocab %lld, rope_theta %g%s, rms_norm_eps %g, %s embeddings, %.1fM parameters\n",
        c.architecture.c_str(), c.model_type.c_str(), static_cast<long long>(c.num_hidden_layers),
        static_cast<long long>(c.hidden_size), static_cast<long long>(c.num_attention_heads),
        static_cast<long long>(c.num_key_value_heads), static_cast<long long>(c.head_dim),
        static_cast<long long>(c.intermediate_size), static_cast<long long>(c.vocab_size),
        c.rope_theta, c.rope_scaling.type == "none" ? "" : (" + " + c.rope_scaling.type).c_str(),
        c.rms_norm_eps, c.tie_word_embeddings ? "tied" : "separate",
        static_cast<double>(c.NumParameters()) / 1e6);
  }
  if (quantization->contains("bitsandbytes")) {
    const json& b = (*quantization)["bitsandbytes"];
    std::printf("quantization: bitsandbytes %s, blocksize %lld, double quant %s: %lld modules, "
                "%lld params, %.3f bits/param\n",
                b["quant_type"].get<std::string>().c_str(),
                static_cast<long long>(b["blocksize"].get<int64_t>()),
                b["double_quant"].get<bool>() ? "on" : "off",
                static_cast<long long>(b["quantized_modules"].get<int64_t>()),
                static_cast<long long>(b["quantized_params"].get<int64_t>()),
                b["bits_per_param"].get<double>());
  }
  std::string dtypes;
  for (const auto& [name, count] : (*quantization)["tensor_dtypes"].items()) {
    absl::StrAppend(&dtypes, dtypes.empty() ? "" : ", ", name, " x", count.get<int64_t>());
  }
  std::printf("tensors: %zu (%s)\n", infos.size(), dtypes.c_str());
  for (const TensorInfo& info : infos) {
    std::printf("  %-60s %-5s %s\n", info.name.c_str(), DTypeName(info.dtype),
                ShapeToString(info.shape).c_str());
  }
  return 0;
}

}  // namespace

Command InspectCommand() {
  return {"inspect", "Show the tensors, config and quantization of a model file or folder",
          "lorasweep inspect PATH [--json]", {"json"}, RunInspect};
}

}  // namespace lorasweep::cli
