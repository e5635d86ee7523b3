#include "worker/train/adapter_params.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/quantize_4bit.h"

namespace lorasweep {

PeftAdapter AdapterFromParams(const LoraLayout& layout, const float* params,
                              const std::string& base_model, const BaseQuantization& quant) {
  PeftAdapter adapter;
  const LoraOptions& options = layout.options();
  adapter.base_model_name_or_path = base_model;
  adapter.rank = options.rank;
  adapter.alpha = options.alpha;
  adapter.dropout = options.dropout;
  adapter.rslora = options.rslora;
  adapter.target_modules = options.target_modules;
  adapter.trained_quantization = quant.type ? QuantTypeName(*quant.type) : "none";
  adapter.blocksize = quant.blocksize;
  adapter.double_quant = quant.double_quant;
  const int64_t r = options.rank;
  for (const LoraSlot& slot : layout.slots()) {
    LoraTensor t;
    t.layer = slot.layer;
    t.module = LinearModuleName(slot.module);
    t.in_features = slot.in_features;
    t.out_features = slot.out_features;
    t.a.assign(params + slot.a_offset, params + slot.a_offset + r * slot.in_features);
    t.b.assign(params + slot.b_offset, params + slot.b_offset + slot.out_features * r);
    adapter.tensors.push_back(std::move(t));
  }
  return adapter;
}

LoraOptions LoraOptionsFromAdapter(const PeftAdapter& adapter) {
  LoraOptions options;
  options.rank = adapter.rank;
  options.alpha = adapter.alpha;
  options.dropout = adapter.dropout;
  options.rslora = adapter.rslora;
  options.target_modules = adapter.target_modules;
  return options;
}

absl::StatusOr<std::vector<float>> ParamsFromAdapter(const PeftAdapter& adapter,
                                                     const LoraLayout& layout) {
  std::map<std::pair<int, std::string>, const LoraTensor*> by_module;
  for (const LoraTensor& t : adapter.tensors) by_module[{t.layer, t.module}] = &t;
  std::vector<float> params(layout.num_parameters(), 0.0f);
  const int64_t r = layout.rank();
  for (const LoraSlot& slot : layout.slots()) {
    const std::string module = LinearModuleName(slot.module);
    auto it = by_module.find({slot.layer, module});
    if (it == by_module.end()) {
      return absl::InvalidArgumentError(absl::StrCat("adapter has no tensors for layer ",
                                                     slot.layer, " ", module));
    }
    const LoraTensor& t = *it->second;
    if (static_cast<int64_t>(t.a.size()) != r * slot.in_features ||
        static_cast<int64_t>(t.b.size()) != slot.out_features * r) {
      return absl::InvalidArgumentError(absl::StrCat(
          "adapter layer ", slot.layer, " ", module, ": lora_A/lora_B shapes do not fit the model (",
          "expected A [", r, ", ", slot.in_features, "], B [", slot.out_features, ", ", r, "])"));
    }
    std::copy(t.a.begin(), t.a.end(), params.begin() + slot.a_offset);
    std::copy(t.b.begin(), t.b.end(), params.begin() + slot.b_offset);
    by_module.erase(it);
  }
  if (!by_module.empty()) {
    const auto& [key, tensor] = *by_module.begin();
    return absl::InvalidArgumentError(absl::StrCat("adapter has tensors for layer ", key.first, " ",
                                                   key.second, " that the model or the adapter's ",
                                                   "target_modules do not have"));
  }
  return params;
}

}  // namespace lorasweep
