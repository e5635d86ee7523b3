#include "worker/model/llama_weights.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/rotary.h"
#include "spdlog/spdlog.h"
#include "worker/formats/model_files.h"

namespace lorasweep {
namespace {

absl::StatusOr<std::vector<float>> ReadTensor(const TensorSource& source, const std::string& name,
                                              int64_t expected_count) {
  if (!source.Contains(name)) {
    return absl::NotFoundError(
        absl::StrCat(source.Describe(), ": missing tensor '", name, "'"));
  }
  ASSIGN_OR_RETURN(std::vector<float> values, source.GetFloats(name));
  if (static_cast<int64_t>(values.size()) != expected_count) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: tensor '%s' has %d values, expected %d",
                                                      source.Describe(), name, values.size(),
                                                      expected_count));
  }
  return values;
}

}  // namespace

const char* LinearModuleName(int module) {
  static const char* const kNames[kNumLinearModules] = {"q_proj",    "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"};
  return kNames[module];
}

int64_t LlamaWeights::StorageBytes() const {
  int64_t bytes = static_cast<int64_t>(
      (embed_tokens.size() + final_norm.size() + lm_head.size()) * sizeof(float));
  for (const LlamaLayerWeights& layer : layers) {
    bytes += static_cast<int64_t>(
        (layer.input_norm.size() + layer.post_attention_norm.size()) * sizeof(float));
    for (const FrozenLinear& linear : layer.linears) bytes += linear.StorageBytes();
  }
  return bytes;
}

absl::StatusOr<LlamaWeights> LoadLlamaWeights(const std::string& model_path,
                                              const BaseQuantization& quantization,
                                              int num_threads) {
  ASSIGN_OR_RETURN(ModelFiles files, OpenModelFiles(model_path));
  if (!files.config.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_path, ": a bare .safetensors file has no config; give an HF folder or a .gguf file"));
  }
  LlamaWeights w;
  w.config = *files.config;
  w.quantization = quantization;
  const LlamaConfig& c = w.config;
  if (c.hidden_size <= 0 || c.num_hidden_layers <= 0 || c.num_attention_heads <= 0 ||
      c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0 ||
      c.head_dim <= 0 || c.head_dim % 2 != 0 || c.vocab_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_path, ": unsupported model shape (hidden_size, heads, kv heads, head_dim, vocab)"));
  }
  if (!RopeScalingSupported(c.rope_scaling.type)) {
    return absl::InvalidArgumentError(absl::StrCat(
        model_path, ": rope_scaling type '", c.rope_scaling.type,
        "' is not supported (supported: none/default, linear, llama3)"));
  }
  const TensorSource& src = *files.tensors;
  const int64_t H = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t q_out = c.num_attention_heads * c.head_dim;
  const int64_t kv_out = c.num_key_value_heads * c.head_dim;
  ASSIGN_OR_RETURN(w.embed_tokens, ReadTensor(src, "model.embed_tokens.weight", V * H));
  ASSIGN_OR_RETURN(w.final_norm, ReadTensor(src, "model.norm.weight", H));
  if (!c.tie_word_embeddings || src.Contains("lm_head.weight")) {
    if (src.Contains("lm_head.weight")) {
      ASSIGN_OR_RETURN(w.lm_head, ReadTensor(src, "lm_head.weight", V * H));
    } else if (!c.tie_word_embeddings) {
      return absl::NotFoundError(absl::StrCat(
          src.Describe(), ": missing tensor 'lm_head.weight' (tie_word_embeddings is false)"));
    }
  }
  const int64_t out_features[kNumLinearModules] = {q_out, kv_out, kv_out, H, I, I, H};
  const int64_t in_features[kNumLinearModules] = {H, H, H, q_out, H, H, I};
  w.layers.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LlamaLayerWeights& layer = w.layers[l];
    const std::string prefix = absl::StrCat("model.layers.", l, ".");
    ASSIGN_OR_RETURN(layer.input_norm, ReadTensor(src, prefix + "input_layernorm.weight", H));
    ASSIGN_OR_RETURN(layer.post_attention_norm,
                     ReadTensor(src, prefix + "post_attention_layernorm.weight", H));
    for (int m = 0; m < kNumLinearModules; ++m) {
      const std::string module_prefix = LinearModulePrefix(l, LinearModuleName(m));
      ASSIGN_OR_RETURN(std::vector<float> weight,
                       ReadTensor(src, module_prefix + ".weight", out_features[m] * in_features[m]));
      std::vector<float> bias;
      if (m <= kVProj && (c.attention_bias || src.Contains(module_prefix + ".bias"))) {
        ASSIGN_OR_RETURN(bias, ReadTensor(src, module_prefix + ".bias", out_features[m]));
      }
      absl::StatusOr<FrozenLinear> linear = FrozenLinear::Create(
          std::move(weight), out_features[m], in_features[m], quantization, std::move(bias));
      if (!linear.ok()) {
        return absl::Status(linear.status().code(),
                            absl::StrCat(module_prefix, ": ", linear.status().message()));
      }
      layer.linears[m] = *std::move(linear);
    }
  }
  (void)num_threads;
  spdlog::info("loaded {} ({} layers, hidden {}, vocab {}), base held in {:.1f} MB", model_path,
               c.num_hidden_layers, H, V, w.StorageBytes() / 1e6);
  return w;
}

}  // namespace lorasweep
