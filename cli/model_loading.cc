#include "cli/model_loading.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/flags.h"
#include "common/parallel_for.h"
#include "common/status_macros.h"
#include "kernels/matmul.h"
#include "worker/train/adapter_params.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep::cli {

absl::StatusOr<LoadedModel> LoadModelForInference(const std::string& command) {
  (void)command;
  LoadedModel loaded;
  const std::string model_path = absl::GetFlag(FLAGS_model);
  if (model_path.empty()) return absl::InvalidArgumentError("--model is required");
  if (absl::GetFlag(FLAGS_threads) > 0) {
    setenv("LORASWEEP_NUM_THREADS", std::to_string(absl::GetFlag(FLAGS_threads)).c_str(), 1);
    SetBlasThreads(absl::GetFlag(FLAGS_threads));
  }
  loaded.adapter_path = absl::GetFlag(FLAGS_adapter);
  std::optional<PeftAdapter> adapter;
  if (!loaded.adapter_path.empty()) {
    ASSIGN_OR_RETURN(adapter, ReadPeftAdapter(loaded.adapter_path));
  }
  std::string quant = absl::GetFlag(FLAGS_quant);
  if (quant.empty()) quant = adapter ? adapter->trained_quantization : "none";
  if (quant.empty()) quant = "none";
  BaseQuantization base;
  if (quant == "none") {
    base.type = std::nullopt;
  } else {
    absl::StatusOr<QuantType> type = ParseQuantType(quant);
    if (!type.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--quant: expected nf4, fp4 or none, got '", quant, "'"));
    }
    base.type = *type;
    if (adapter) {
      base.blocksize = adapter->blocksize > 0 ? adapter->blocksize : 64;
      base.double_quant = adapter->double_quant;
    }
  }
  loaded.quant_name = quant;
  ASSIGN_OR_RETURN(LlamaWeights weights, LoadLlamaWeights(model_path, base));
  loaded.weights = std::make_unique<LlamaWeights>(std::move(weights));
  LoraOptions options;
  if (adapter) {
    options = LoraOptionsFromAdapter(*adapter);
  } else {
    options.target_modules = {};
  }
  ASSIGN_OR_RETURN(LoraLayout layout, LoraLayout::Create(*loaded.weights, options));
  loaded.layout = std::make_unique<LoraLayout>(std::move(layout));
  if (adapter) {
    absl::StatusOr<std::vector<float>> params = ParamsFromAdapter(*adapter, *loaded.layout);
    if (!params.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(loaded.adapter_path, ": ", params.status().message()));
    }
    loaded.params = *std::move(params);
  }
  loaded.model = std::make_unique<LlamaModel>(*loaded.weights, *loaded.layout);
  return loaded;
}

}  // namespace lorasweep::cli
