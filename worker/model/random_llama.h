// A Llama-family base with random weights (normal(0, std) linears and embeddings, unit norms),
// built in memory at any shape: what the GPU benchmark uses for its 1B-class step and the GPU
// end-to-end test uses for a head_dim the CUDA attention supports, without shipping or downloading
// a model.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "worker/model/llama_weights.h"

namespace lorasweep {

// `config` must be complete (hidden_size, heads, head_dim, ...). Deterministic in `seed`; linears
// quantized as `quantization` says. `std` defaults to 0.02 (transformers' initializer_range).
absl::StatusOr<LlamaWeights> RandomLlamaWeights(const LlamaConfig& config,
                                                const BaseQuantization& quantization, uint64_t seed,
                                                double std = 0.02);

}  // namespace lorasweep
