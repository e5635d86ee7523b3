#include "worker/model/lora_layout.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"

namespace lorasweep {

absl::StatusOr<LoraLayout> LoraLayout::Create(const LlamaWeights& weights,
                                              const LoraOptions& options) {
  if (options.rank < 1) {
    return absl::InvalidArgumentError(absl::StrCat("lora.rank must be >= 1, got ", options.rank));
  }
  if (!(options.alpha > 0) || !std::isfinite(options.alpha)) {
    return absl::InvalidArgumentError(absl::StrCat("lora.alpha must be > 0, got ", options.alpha));
  }
  if (!(options.dropout >= 0 && options.dropout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora.dropout must be in [0, 1), got ", options.dropout));
  }
  bool targeted[kNumLinearModules] = {};
  for (const std::string& name : options.target_modules) {
    bool known = false;
    for (int m = 0; m < kNumLinearModules; ++m) {
      if (name == LinearModuleName(m)) targeted[m] = known = true;
    }
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lora.target_modules: the model has no module '", name,
          "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"));
    }
  }
  LoraLayout layout;
  layout.options_ = options;
  layout.scaling_ = static_cast<float>(
      options.rslora ? options.alpha / std::sqrt(static_cast<double>(options.rank))
                     : options.alpha / options.rank);
  const int num_layers = static_cast<int>(weights.layers.size());
  layout.slot_index_.assign(num_layers * kNumLinearModules, -1);
  int64_t offset = 0;
  for (int l = 0; l < num_layers; ++l) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      if (!targeted[m]) continue;
      const FrozenLinear& linear = weights.layers[l].linears[m];
      LoraSlot slot;
      slot.layer = l;
      slot.module = m;
      slot.in_features = linear.in_features();
      slot.out_features = linear.out_features();
      slot.a_offset = offset;
      offset += options.rank * slot.in_features;
      slot.b_offset = offset;
      offset += slot.out_features * options.rank;
      layout.slot_index_[l * kNumLinearModules + m] = static_cast<int>(layout.slots_.size());
      layout.slots_.push_back(slot);
    }
  }
  layout.num_parameters_ = offset;
  return layout;
}

std::vector<float> LoraLayout::InitialParameters(uint64_t seed) const {
  std::vector<float> params(num_parameters_, 0.0f);
  std::mt19937_64 rng(seed);
  for (const LoraSlot& slot : slots_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(slot.in_features));
    float* a = params.data() + slot.a_offset;
    for (int64_t i = 0; i < options_.rank * slot.in_features; ++i) {
      const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
      a[i] = static_cast<float>((2.0 * u - 1.0) * bound);
    }
  }
  return params;
}

}  // namespace lorasweep
