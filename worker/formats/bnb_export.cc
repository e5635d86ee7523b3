#include "worker/formats/bnb_export.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "worker/formats/bnb_checkpoint.h"
#include "worker/formats/safetensors.h"

#include "worker/formats/storage_dtype.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;

// Files a model folder carries besides weights and config, copied when present.
const char* const kTokenizerFiles[] = {"tokenizer.json",          "tokenizer_config.json",
                                       "special_tokens_map.json", "generation_config.json",
                                       "tokenizer.model",         "vocab.json",
                                       "merges.txt",              "added_tokens.json"};

absl::Status CopyFileAtomically(const std::string& from, const std::string& to) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(from));
  return WriteFileAtomically(to, bytes);
}

}  // namespace

absl::StatusOr<BnbExportReport> ExportBnb4bit(const ModelFiles& model, const std::string& out_dir,
                                              const BnbExportOptions& options) {
  if (!model.config) {
    return absl::InvalidArgumentError(absl::StrCat(
        model.path, ": quantize needs a model with a config (a HF folder or a GGUF file)"));
  }
  std::error_code ec;
  if (fs::exists(out_dir, ec) && !fs::is_empty(out_dir, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat(out_dir, ": already exists and is not empty; remove it or choose another --out"));
  }
  const std::string temp_dir = absl::StrCat(out_dir, ".partial-", ::getpid());
  fs::remove_all(temp_dir, ec);
  RETURN_IF_ERROR(MakeDirectories(temp_dir));
  // Removes the temporary folder on every early return.
  struct Cleanup {
    std::string dir;
    bool armed = true;
    ~Cleanup() {
      std::error_code e;
      if (armed) fs::remove_all(dir, e);
    }
  } cleanup{temp_dir};

  BnbExportReport report;
  NamedTensors out;
  double squared_error = 0, quantized_bits = 0;
  std::string quant_state_dtype;
  for (const TensorInfo& info : model.tensors->List()) {
    const std::optional<std::string> prefix = DecoderLinearPrefix(info.name);
    ASSIGN_OR_RETURN(DType storage, ResolveStorageDType(options.dtype, info.dtype));
    if (prefix) {
      if (info.shape.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(model.path, ": ", info.name, " has shape ",
                                                       ShapeToString(info.shape), ", expected 2-D"));
      }
      ASSIGN_OR_RETURN(std::vector<float> values, model.tensors->GetFloats(info.name));
      absl::StatusOr<Quantized4bit> q = Quantize4bit(values, info.shape, options.type,
                                                     options.blocksize, options.double_quant,
                                                     options.num_threads);
      if (!q.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(model.path, ": ", info.name, ": ", q.status().message()));
      }
      std::vector<float> restored(values.size());
      RETURN_IF_ERROR(Dequantize4bit(*q, restored, options.num_threads));
      for (size_t i = 0; i < values.size(); ++i) {
        const double d = static_cast<double>(restored[i]) - values[i];
        squared_error += d * d;
        report.max_abs_error = std::max(report.max_abs_error, std::fabs(d));
      }
      quant_state_dtype = TorchDTypeName(storage);
      AppendBnb4bitTensors(*prefix, *q, quant_state_dtype, &out);
      ++report.quantized_tensors;
      report.quantized_params += q->num_elements;
      quantized_bits += q->BitsPerParameter() * static_cast<double>(q->num_elements);
      continue;
    }
    report.unquantized_params += NumElements(info.shape);
    if (storage == info.dtype) {
      ASSIGN_OR_RETURN(Tensor t, model.tensors->Get(info.name));  // a view: no copy
      out.emplace_back(info.name, std::move(t));
    } else {
      ASSIGN_OR_RETURN(std::vector<float> values, model.tensors->GetFloats(info.name));
      out.emplace_back(info.name, FloatsAs(storage, info.shape, values));
    }
  }
  if (report.quantized_tensors == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(model.path, ": no decoder-layer linear weights (model.layers.N.*_proj.weight) found"));
  }
  report.bits_per_param = quantized_bits / static_cast<double>(report.quantized_params);
  report.rmse = std::sqrt(squared_error / static_cast<double>(report.quantized_params));

  RETURN_IF_ERROR(WriteSafetensorsCheckpoint(temp_dir, out, options.max_shard_bytes));
  LlamaConfig config = *model.config;
  config.torch_dtype = quant_state_dtype;
  const std::string quant_config =
      BnbQuantizationConfigJson(options.type, options.double_quant, options.compute_dtype);
  std::string config_json;
  if (model.kind == ModelFileKind::kHfFolder && !model.config_json.empty()) {
    // Keep every field of the user's config.json (generation settings, token ids, ...) and add ours.
    nlohmann::json j = nlohmann::json::parse(model.config_json, nullptr, false);
    nlohmann::json q = nlohmann::json::parse(quant_config);
    j["quantization_config"] = q["quantization_config"];
    j["torch_dtype"] = quant_state_dtype;
    config_json = j.dump(2) + "\n";
  } else {
    config_json = HfConfigToJson(config, quant_config);
  }
  RETURN_IF_ERROR(WriteFileAtomically(temp_dir + "/config.json", config_json));
  if (model.kind == ModelFileKind::kHfFolder) {
    for (const char* name : kTokenizerFiles) {
      const std::string from = model.path + "/" + name;
      if (fs::exists(from, ec)) RETURN_IF_ERROR(CopyFileAtomically(from, temp_dir + "/" + name));
    }
  }
  for (const auto& entry : fs::directory_iterator(temp_dir, ec)) {
    report.bytes_written += fs::file_size(entry.path(), ec);
  }
  if (fs::exists(out_dir, ec)) fs::remove(out_dir, ec);  // an empty folder may stand in the way
  fs::rename(temp_dir, out_dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot rename ", temp_dir, " to ", out_dir, ": ",
                                                     ec.message()));
  cleanup.armed = false;
  spdlog::info("quantized {} linear weights ({} params) into {}", report.quantized_tensors,
               report.quantized_params, out_dir);
  return report;
}

}  // namespace lorasweep
