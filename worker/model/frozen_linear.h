// A frozen base-model linear layer (HF layout, weight [out, in]) as QLoRA keeps it: 4-bit NF4/FP4
// blocks laid out as bitsandbytes stores them, or plain float32 when quantization is off. The
// trainer never holds an fp32 copy of the whole model: it dequantizes one layer at a time into a
// scratch buffer it reuses (DequantizeInto).
//
// Thread-safety: immutable after construction; DequantizeInto may run from many threads on
// different outputs.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/quantize_4bit.h"

namespace lorasweep {

// How the base linears are stored: "none" keeps float32.
struct BaseQuantization {
  std::optional<QuantType> type = QuantType::kNF4;  // nullopt = unquantized
  int64_t blocksize = 64;
  bool double_quant = true;
};

class FrozenLinear {
 public:
  // Quantizes `weight` ([out, in] row-major) as `quant` says, or keeps it when unquantized.
  static absl::StatusOr<FrozenLinear> Create(std::vector<float> weight, int64_t out_features,
                                             int64_t in_features, const BaseQuantization& quant,
                                             std::vector<float> bias = {});

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  bool quantized() const { return quantized_.has_value(); }
  const Quantized4bit* quantized_weight() const {
    return quantized_ ? &*quantized_ : nullptr;
  }
  // Empty when the layer has no bias (Llama); Qwen2's q/k/v projections have one.
  const std::vector<float>& bias() const { return bias_; }

  // The weight as float32 [out, in]: either the stored values (no copy; `scratch` untouched) or
  // the dequantized ones written into `scratch` (resized as needed). bitsandbytes' dequantization:
  // code[nibble] * absmax[block], with double-quantized absmax decoded once at load.
  const float* Weight(std::vector<float>* scratch, int num_threads = 0) const;

  // Bytes this layer holds (codes + scales, or float32 values).
  int64_t StorageBytes() const;

 private:
  int64_t in_ = 0;
  int64_t out_ = 0;
  std::vector<float> dense_;                // unquantized weight
  std::optional<Quantized4bit> quantized_;  // bitsandbytes layout
  std::vector<float> block_absmax_;         // per-block absmax, double quantization undone
  std::vector<float> bias_;
};

}  // namespace lorasweep
