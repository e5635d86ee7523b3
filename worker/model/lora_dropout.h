// LoRA dropout (PEFT applies nn.Dropout to the input of lora_A) with masks that are a pure function
// of (key, element index): the backward pass and activation-checkpointing recomputation regenerate
// exactly the forward's mask instead of storing one [N, in] mask per adapted module.
#pragma once

#include <cstdint>

namespace lorasweep {

// The key of one module's mask in one micro-batch.
uint64_t LoraDropoutKey(uint64_t micro_batch_seed, int layer, int module);

// out[i] = x[i] / (1 - p) where element i is kept, 0 where dropped (P(drop) = p). `out` may alias
// `x`. Element i is dropped when the top 24 bits of splitmix64(key + i) / 2^24 < p.
void ApplyLoraDropout(const float* x, int64_t n, float p, uint64_t key, float* out);

}  // namespace lorasweep
