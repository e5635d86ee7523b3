// What `eval` and `generate` share: the base model from --model, quantized as --quant says (default:
// the quantization the --adapter was trained with, recorded in its lorasweep_training.json, or none
// for a bare model), and the adapter's parameters.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama_model.h"

namespace lorasweep::cli {

struct LoadedModel {
  std::unique_ptr<LlamaWeights> weights;
  std::unique_ptr<LoraLayout> layout;
  std::unique_ptr<LlamaModel> model;
  std::vector<float> params;  // empty without --adapter
  std::string adapter_path;
  std::string quant_name;
  const float* params_or_null() const { return params.empty() ? nullptr : params.data(); }
};

absl::StatusOr<LoadedModel> LoadModelForInference(const std::string& command);

}  // namespace lorasweep::cli
