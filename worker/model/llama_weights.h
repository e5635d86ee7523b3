// The frozen base of a Llama-family decoder (Llama, Mistral, Qwen2, SmolLM2) as the QLoRA trainer
// holds it: every decoder-layer linear in 4-bit (or float32 when quantization is off), embeddings,
// norms and the LM head in float32. Read from any model file lorasweep opens (HF folder, GGUF).
//
// Thread-safety: immutable after loading.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/formats/hf_config.h"
#include "worker/model/frozen_linear.h"

namespace lorasweep {

// The seven projections of a decoder layer, in HF order (the index is a LinearModule value).
enum LinearModule { kQProj = 0, kKProj, kVProj, kOProj, kGateProj, kUpProj, kDownProj };
inline constexpr int kNumLinearModules = 7;
const char* LinearModuleName(int module);

struct LlamaLayerWeights {
  std::vector<float> input_norm;          // [H] input_layernorm
  std::vector<float> post_attention_norm; // [H]
  FrozenLinear linears[kNumLinearModules];
};

struct LlamaWeights {
  LlamaConfig config;
  BaseQuantization quantization;
  std::vector<float> embed_tokens;  // [V, H]
  std::vector<float> final_norm;    // [H]
  std::vector<float> lm_head;       // [V, H]; empty when tied to embed_tokens
  std::vector<LlamaLayerWeights> layers;

  const float* LmHead() const { return lm_head.empty() ? embed_tokens.data() : lm_head.data(); }
  // Bytes held for the base (what "never an fp32 copy of the whole model" is measured by).
  int64_t StorageBytes() const;
};

// Opens `model_path` (OpenModelFiles), checks the config is a supported Llama-family decoder and
// loads/quantizes the weights layer by layer (peak extra memory: one layer in float32).
absl::StatusOr<LlamaWeights> LoadLlamaWeights(const std::string& model_path,
                                              const BaseQuantization& quantization,
                                              int num_threads = 0);

}  // namespace lorasweep
