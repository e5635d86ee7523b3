// Where every LoRA adapter matrix lives inside ONE contiguous float32 buffer (and its gradient in a
// second buffer of the same layout), so that the data-parallel trainer all-reduces the gradients in
// one call and the optimizer runs over one array. Order: layer ascending, then the module order of
// LinearModule (q, k, v, o, gate, up, down); per module A [r, in] then B [out, r] (PEFT's
// lora_A.weight / lora_B.weight layouts).
//
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/llama_weights.h"

namespace lorasweep {

struct LoraOptions {
  int rank = 16;
  double alpha = 16;
  double dropout = 0.0;
  bool rslora = false;
  std::vector<std::string> target_modules;  // expanded names (q_proj ... down_proj)
};

struct LoraSlot {
  int layer = 0;
  int module = 0;  // LinearModule
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t a_offset = 0;  // A [rank, in]
  int64_t b_offset = 0;  // B [out, rank]
};

class LoraLayout {
 public:
  // Fails when a target module name is unknown or the options are out of range.
  static absl::StatusOr<LoraLayout> Create(const LlamaWeights& weights, const LoraOptions& options);

  const LoraOptions& options() const { return options_; }
  int rank() const { return options_.rank; }
  // alpha / r, or alpha / sqrt(r) with rsLoRA (PEFT's `scaling`).
  float scaling() const { return scaling_; }
  int64_t num_parameters() const { return num_parameters_; }
  const std::vector<LoraSlot>& slots() const { return slots_; }
  // The slot of (layer, module), or nullptr when that module carries no adapter.
  const LoraSlot* Find(int layer, int module) const {
    const int index = slot_index_[layer * kNumLinearModules + module];
    return index < 0 ? nullptr : &slots_[index];
  }

  // PEFT's initialisation from a seeded RNG: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in),
  // 1/sqrt(in)), B = 0. The stream: std::mt19937_64(seed), 53-bit uniform doubles, consumed in
  // buffer order, so the same seed gives the same adapter on every machine.
  std::vector<float> InitialParameters(uint64_t seed) const;

 private:
  LoraOptions options_;
  float scaling_ = 1.0f;
  int64_t num_parameters_ = 0;
  std::vector<LoraSlot> slots_;
  std::vector<int> slot_index_;
};

}  // namespace lorasweep
