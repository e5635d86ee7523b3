// Text generation with a KV cache: the prompt is fed once, then each new token costs one pass over
// the layers against the cached keys and values. Uses the training model's own linears (base +
// adapter, no dropout), norms and RoPE tables, so what `lorasweep generate` shows is what was trained.
//
// Thread-safety: one Generator per thread of control.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "worker/model/llama_model.h"

namespace lorasweep {

struct SamplingOptions {
  int64_t max_new_tokens = 128;
  double temperature = 0.0;  // 0 = greedy (argmax)
  double top_p = 1.0;        // nucleus sampling when < 1
  uint64_t seed = 0;
};

class Generator {
 public:
  // `params` (the adapter buffer of model.lora()) may be null for the bare base model.
  Generator(LlamaModel& model, const float* params);

  // Appends `tokens` at the next positions and returns the logits [V] after the last one.
  std::vector<float> Feed(std::span<const int32_t> tokens);
  int64_t length() const { return length_; }

  // Generates after `prompt` until a token in `stop_ids` or max_new_tokens; returns the new ids
  // (the stop token excluded).
  std::vector<int32_t> Generate(std::span<const int32_t> prompt,
                                std::span<const int32_t> stop_ids, const SamplingOptions& options);

 private:
  LlamaModel& model_;
  const float* params_;
  int64_t length_ = 0;
  std::vector<std::vector<float>> k_cache_, v_cache_;  // per layer [length, Hkv*D]
};

// The next token from `logits` as SamplingOptions say (greedy: the first maximum).
int32_t SampleToken(std::span<const float> logits, const SamplingOptions& options,
                    uint64_t* rng_state);

}  // namespace lorasweep
