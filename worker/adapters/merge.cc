#include "worker/adapters/merge.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"
#include "worker/formats/bnb_checkpoint.h"
#include "worker/formats/bnb_export.h"
#include "worker/formats/safetensors.h"
#include "worker/model/frozen_linear.h"

#include "worker/formats/storage_dtype.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;

float RoundTrip(DType dtype, float v) {
  if (dtype == DType::kBF16) return Bf16ToFloat(FloatToBf16(v));
  if (dtype == DType::kF16) return F16ToFloat(FloatToF16(v));
  return v;
}

// The auxiliary tensors of a bitsandbytes 4-bit linear ("X.weight.absmax", ...): hidden from the
// merged view, which presents "X.weight" as plain floats instead.
bool IsBnbAuxiliary(const std::string& name) {
  for (const char* suffix : {".weight.absmax", ".weight.quant_map", ".weight.nested_absmax",
                             ".weight.nested_quant_map"}) {
    if (absl::EndsWith(name, suffix)) return true;
  }
  return absl::StrContains(name, ".weight.quant_state.bitsandbytes__");
}

// Files a model folder carries besides weights and config, copied when present.
const char* const kSideFiles[] = {"tokenizer.json",          "tokenizer_config.json",
                                  "special_tokens_map.json", "generation_config.json",
                                  "tokenizer.model",         "vocab.json",
                                  "merges.txt",              "added_tokens.json"};

struct DeltaStats {
  double delta_squares = 0;
  double delta_max_abs = 0;
  int64_t merged_params = 0;
};

// The base model as the merged model's tensors: decoder linears replaced by (optionally the
// trained-quantization round trip of) W plus the LoRA delta, bitsandbytes linears dequantized,
// everything else passed through untouched. Each linear is computed when asked for, so a writer
// holds at most what it keeps (ExportBnb4bit keeps only the 4-bit result).
class MergedTensorSource : public TensorSource {
 public:
  MergedTensorSource(const TensorSource& base, std::map<std::string, const LoraTensor*> deltas,
                     int rank, double scaling, std::optional<BaseQuantization> trained,
                     DeltaStats* stats)
      : base_(base),
        deltas_(std::move(deltas)),
        rank_(rank),
        scaling_(scaling),
        trained_(std::move(trained)),
        stats_(stats) {
    for (const TensorInfo& info : base_.List()) {
      if (IsBnbAuxiliary(info.name)) continue;
      TensorInfo out = info;
      const std::optional<std::string> prefix = DecoderLinearPrefix(info.name);
      if (prefix && HasBnb4bitWeight(base_, *prefix)) {
        bnb_.insert(info.name);
        out.dtype = DType::kF32;
        shape_fixups_.push_back(info.name);  // the real shape comes from the quant state
      }
      if (prefix) linears_.insert(info.name);
      infos_[info.name] = out;
    }
  }

  // Reads the quant states of bitsandbytes linears so List() reports [out, in].
  absl::Status Init() {
    for (const std::string& name : shape_fixups_) {
      ASSIGN_OR_RETURN(Quantized4bit q,
                       ReadBnb4bitWeight(base_, name.substr(0, name.size() - 7)));  // ".weight"
      infos_[name].shape = q.shape;
    }
    return absl::OkStatus();
  }

  // Whether GetFloats(name) differs from the base's stored tensor.
  bool Modified(const std::string& name) const {
    return linears_.count(name) && (deltas_.count(name) || bnb_.count(name) || trained_);
  }

  std::vector<TensorInfo> List() const override {
    std::vector<TensorInfo> list;
    for (const auto& [name, info] : infos_) list.push_back(info);
    return list;
  }
  bool Contains(const std::string& name) const override { return infos_.count(name) > 0; }
  absl::StatusOr<Tensor> Get(const std::string& name) const override {
    if (!Modified(name)) return base_.Get(name);
    ASSIGN_OR_RETURN(std::vector<float> values, GetFloats(name));
    const TensorInfo& info = infos_.at(name);
    return FloatsAs(IsPlainFloat(info.dtype) ? info.dtype : DType::kF32, info.shape, values);
  }
  absl::StatusOr<std::vector<float>> GetFloats(const std::string& name) const override {
    if (!Modified(name)) return base_.GetFloats(name);
    const std::string prefix = name.substr(0, name.size() - 7);
    std::vector<float> w;
    if (bnb_.count(name)) {
      // Already the quantized base: dequantize, never quantize again.
      ASSIGN_OR_RETURN(Quantized4bit q, ReadBnb4bitWeight(base_, prefix));
      w.resize(q.num_elements);
      RETURN_IF_ERROR(Dequantize4bit(q, w));
    } else {
      ASSIGN_OR_RETURN(w, base_.GetFloats(name));
      if (trained_) {
        const std::vector<int64_t>& shape = infos_.at(name).shape;
        absl::StatusOr<Quantized4bit> q = Quantize4bit(w, shape, *trained_->type,
                                                       trained_->blocksize, trained_->double_quant);
        if (!q.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(base_.Describe(), ": ", name, ": ", q.status().message()));
        }
        RETURN_IF_ERROR(Dequantize4bit(*q, w));
      }
    }
    auto it = deltas_.find(name);
    if (it != deltas_.end()) {
      std::vector<float> before;
      if (stats_) before = w;
      RETURN_IF_ERROR(AddLoraDelta(*it->second, rank_, scaling_, w));
      if (stats_) {
        for (size_t i = 0; i < w.size(); ++i) {
          const double d = static_cast<double>(w[i]) - before[i];
          stats_->delta_squares += d * d;
          stats_->delta_max_abs = std::max(stats_->delta_max_abs, std::fabs(d));
        }
        stats_->merged_params += static_cast<int64_t>(w.size());
      }
    }
    return w;
  }
  std::string Describe() const override { return absl::StrCat(base_.Describe(), " (merged)"); }

 private:
  const TensorSource& base_;
  std::map<std::string, const LoraTensor*> deltas_;
  int rank_;
  double scaling_;
  std::optional<BaseQuantization> trained_;
  DeltaStats* stats_;
  std::map<std::string, TensorInfo> infos_;
  std::set<std::string> linears_, bnb_;
  std::vector<std::string> shape_fixups_;
};

absl::Status CopySideFiles(const ModelFiles& model, const std::string& dir) {
  if (model.kind != ModelFileKind::kHfFolder) return absl::OkStatus();
  std::error_code ec;
  for (const char* name : kSideFiles) {
    const std::string from = model.path + "/" + name;
    if (!fs::exists(from, ec)) continue;
    ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(from));
    RETURN_IF_ERROR(WriteFileAtomically(dir + "/" + name, bytes));
  }
  return absl::OkStatus();
}

// config.json text for the merged folder: the user's own fields kept (HF folders), without any
// quantization_config of a 4-bit base, torch_dtype set to what was written.
std::string MergedConfigJson(const ModelFiles& model, const std::string& torch_dtype) {
  if (model.kind == ModelFileKind::kHfFolder && !model.config_json.empty()) {
    nlohmann::json j = nlohmann::json::parse(model.config_json, nullptr, false);
    if (j.is_object()) {
      j.erase("quantization_config");
      j["torch_dtype"] = torch_dtype;
      return j.dump(2) + "\n";
    }
  }
  LlamaConfig config = *model.config;
  config.torch_dtype = torch_dtype;
  return HfConfigToJson(config);
}

}  // namespace

absl::Status AddLoraDelta(const LoraTensor& lora, int rank, double scaling,
                          std::span<float> weight) {
  const int64_t r = rank, in = lora.in_features, out = lora.out_features;
  if (static_cast<int64_t>(lora.a.size()) != r * in ||
      static_cast<int64_t>(lora.b.size()) != out * r ||
      static_cast<int64_t>(weight.size()) != out * in) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer ", lora.layer, " ", lora.module, ": lora_A has ", lora.a.size(), " values, lora_B ",
        lora.b.size(), ", the weight ", weight.size(), "; [r, in] = [", r, ", ", in,
        "], [out, r] = [", out, ", ", r, "]"));
  }
  std::vector<double> row(in);
  for (int64_t o = 0; o < out; ++o) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int64_t k = 0; k < r; ++k) {
      const double b = lora.b[o * r + k];
      if (b == 0) continue;
      const float* a = lora.a.data() + k * in;
      for (int64_t i = 0; i < in; ++i) row[i] += b * a[i];
    }
    float* w = weight.data() + o * in;
    for (int64_t i = 0; i < in; ++i) w[i] = static_cast<float>(w[i] + scaling * row[i]);
  }
  return absl::OkStatus();
}

absl::StatusOr<MergeReport> MergeAdapter(const ModelFiles& model, const PeftAdapter& adapter,
                                         const std::string& adapter_path,
                                         const std::string& out_dir, const MergeOptions& options) {
  if (!model.config) {
    return absl::InvalidArgumentError(absl::StrCat(
        model.path, ": merge needs a model with a config (a HF folder or a GGUF file)"));
  }
  std::error_code ec;
  if (fs::exists(out_dir, ec) && fs::equivalent(out_dir, model.path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--out ", out_dir, " is the base model's own folder; choose another"));
  }
  // Every adapter tensor must land on a linear of this model with the same shape: a mismatch
  // means the adapter belongs to another base.
  std::map<std::string, const LoraTensor*> deltas;
  std::map<std::string, std::vector<int64_t>> base_shapes;
  for (const TensorInfo& info : model.tensors->List()) base_shapes[info.name] = info.shape;
  for (const LoraTensor& t : adapter.tensors) {
    const std::string name = LinearModulePrefix(t.layer, t.module) + ".weight";
    const std::string key = PeftTensorKey(t.layer, t.module, 'A');
    if (!model.tensors->Contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat(adapter_path, ": ", key, ": the model ",
                                                     model.path, " has no ", name));
    }
    std::vector<int64_t> shape;
    const std::optional<std::string> prefix = DecoderLinearPrefix(name);
    if (prefix && HasBnb4bitWeight(*model.tensors, *prefix)) {
      ASSIGN_OR_RETURN(Quantized4bit q, ReadBnb4bitWeight(*model.tensors, *prefix));
      shape = q.shape;
    } else {
      auto it = base_shapes.find(name);
      if (it != base_shapes.end()) shape = it->second;
    }
    if (shape != std::vector<int64_t>{t.out_features, t.in_features}) {
      return absl::InvalidArgumentError(absl::StrCat(
          adapter_path, ": layer ", t.layer, " ", t.module, ": lora_B @ lora_A is [",
          t.out_features, ", ", t.in_features, "] but ", model.path, " has ", name, " ",
          ShapeToString(shape), " (an adapter of another base model?)"));
    }
    deltas[name] = &t;
  }
  if (deltas.empty()) return absl::InvalidArgumentError(absl::StrCat(adapter_path, ": no tensors"));

  MergeReport report;
  std::optional<BaseQuantization> trained;
  report.base = "original";
  if (options.into_trained_base && adapter.trained_quantization != "none" &&
      !adapter.trained_quantization.empty()) {
    ASSIGN_OR_RETURN(QuantType type, ParseQuantType(adapter.trained_quantization));
    BaseQuantization q;
    q.type = type;
    q.blocksize = adapter.blocksize > 0 ? adapter.blocksize : 64;
    q.double_quant = adapter.double_quant;
    trained = q;
    report.base = absl::StrCat(adapter.trained_quantization, " (blocksize ", q.blocksize,
                               q.double_quant ? ", double quant)" : ")");
  }
  DeltaStats stats;
  auto merged = std::make_unique<MergedTensorSource>(
      *model.tensors, deltas, adapter.rank, LoraScaling(adapter.alpha, adapter.rank, adapter.rslora),
      trained, &stats);
  RETURN_IF_ERROR(merged->Init());
  report.merged_modules = static_cast<int64_t>(deltas.size());

  const fs::path parent = fs::path(out_dir).parent_path();
  if (!parent.empty()) RETURN_IF_ERROR(MakeDirectories(parent.string()));
  ASSIGN_OR_RETURN(std::string staged, MakeStagingDirectory(out_dir));
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code e;
      if (!dir.empty()) fs::remove_all(dir, e);
    }
  } cleanup{staged};

  if (options.quant) {
    // bnb_export quantizes whatever a TensorSource holds; handing it the merged view re-quantizes
    // the merged linears and measures the error against the f32 merged values.
    ModelFiles view;
    view.path = model.path;
    view.kind = model.kind;
    view.config = model.config;
    view.config_json = MergedConfigJson(model, model.config->torch_dtype);
    view.tensors = std::move(merged);
    BnbExportOptions bnb;
    bnb.type = *options.quant;
    bnb.blocksize = options.blocksize;
    bnb.double_quant = options.double_quant;
    bnb.dtype = options.dtype;
    bnb.num_threads = options.num_threads;
    bnb.max_shard_bytes = options.max_shard_bytes;
    ASSIGN_OR_RETURN(BnbExportReport r, ExportBnb4bit(view, staged, bnb));
    report.requantized = true;
    report.quant_rmse = r.rmse;
    report.quant_max_abs_error = r.max_abs_error;
    report.bits_per_param = r.bits_per_param;
    report.bytes_written = r.bytes_written;
  } else {
    NamedTensors out;
    double storage_squares = 0;
    int64_t linear_params = 0;
    std::string linear_dtype = model.config->torch_dtype;
    for (const TensorInfo& info : merged->List()) {
      ASSIGN_OR_RETURN(DType storage, ResolveStorageDType(options.dtype, info.dtype));
      if (merged->Modified(info.name)) {
        ASSIGN_OR_RETURN(std::vector<float> values, merged->GetFloats(info.name));
        for (float v : values) {
          const double d = static_cast<double>(RoundTrip(storage, v)) - v;
          storage_squares += d * d;
          report.storage_max_abs_error = std::max(report.storage_max_abs_error, std::fabs(d));
        }
        linear_params += static_cast<int64_t>(values.size());
        linear_dtype = TorchDTypeName(storage);
        out.emplace_back(info.name, FloatsAs(storage, info.shape, values));
      } else if (storage == info.dtype) {
        ASSIGN_OR_RETURN(Tensor t, merged->Get(info.name));  // a view: no copy
        out.emplace_back(info.name, std::move(t));
      } else {
        ASSIGN_OR_RETURN(std::vector<float> values, merged->GetFloats(info.name));
        out.emplace_back(info.name, FloatsAs(storage, info.shape, values));
      }
    }
    if (linear_params > 0) {
      report.storage_rmse = std::sqrt(storage_squares / static_cast<double>(linear_params));
    }
    RETURN_IF_ERROR(WriteSafetensorsCheckpoint(staged, out, options.max_shard_bytes));
    RETURN_IF_ERROR(
        WriteFileAtomically(staged + "/config.json", MergedConfigJson(model, linear_dtype)));
    RETURN_IF_ERROR(CopySideFiles(model, staged));
    for (const auto& entry : fs::directory_iterator(staged, ec)) {
      report.bytes_written += fs::file_size(entry.path(), ec);
    }
  }
  report.merged_params = stats.merged_params;
  if (stats.merged_params > 0) {
    report.delta_rms = std::sqrt(stats.delta_squares / static_cast<double>(stats.merged_params));
  }
  report.delta_max_abs = stats.delta_max_abs;
  RETURN_IF_ERROR(ReplaceDirectory(staged, out_dir));
  cleanup.dir.clear();
  spdlog::info("merged {} LoRA modules of {} into {} ({})", report.merged_modules, adapter_path,
               out_dir, report.base);
  return report;
}

}  // namespace lorasweep
