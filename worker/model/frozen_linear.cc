#include "worker/model/frozen_linear.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace lorasweep {

absl::StatusOr<FrozenLinear> FrozenLinear::Create(std::vector<float> weight, int64_t out_features,
                                                  int64_t in_features,
                                                  const BaseQuantization& quant,
                                                  std::vector<float> bias) {
  if (static_cast<int64_t>(weight.size()) != out_features * in_features) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "linear weight has %d values, expected %d x %d", weight.size(), out_features, in_features));
  }
  if (!bias.empty() && static_cast<int64_t>(bias.size()) != out_features) {
    return absl::InvalidArgumentError(
        absl::StrFormat("linear bias has %d values, expected %d", bias.size(), out_features));
  }
  FrozenLinear linear;
  linear.in_ = in_features;
  linear.out_ = out_features;
  linear.bias_ = std::move(bias);
  if (!quant.type.has_value()) {
    linear.dense_ = std::move(weight);
    return linear;
  }
  ASSIGN_OR_RETURN(Quantized4bit q, Quantize4bit(weight, {out_features, in_features}, *quant.type,
                                                 quant.blocksize, quant.double_quant));
  // Decoding the double-quantized absmax once costs one float per block (1/64 of an fp32 copy at
  // blocksize 64) and makes every later dequantization a single pass over the codes.
  linear.block_absmax_ = DequantizeAbsmax(q);
  linear.quantized_ = std::move(q);
  return linear;
}

const float* FrozenLinear::Weight(std::vector<float>* scratch, int num_threads) const {
  if (!quantized_) return dense_.data();
  const int64_t n = in_ * out_;
  if (static_cast<int64_t>(scratch->size()) < n) scratch->resize(n);
  Dequantize4bitRaw(CodeTable(quantized_->type), quantized_->packed.data(), block_absmax_.data(),
                    quantized_->blocksize, n, scratch->data(), num_threads);
  return scratch->data();
}

int64_t FrozenLinear::StorageBytes() const {
  int64_t bytes = static_cast<int64_t>(bias_.size() * sizeof(float));
  if (!quantized_) return bytes + static_cast<int64_t>(dense_.size() * sizeof(float));
  return bytes + static_cast<int64_t>(quantized_->packed.size() + quantized_->absmax.size() * 4 +
                                      quantized_->absmax_codes.size() +
                                      quantized_->nested_absmax.size() * 4 + 4 +
                                      block_absmax_.size() * 4);
}

}  // namespace lorasweep
