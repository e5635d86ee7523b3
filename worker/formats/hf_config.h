// The architecture of a Llama-family model (Llama 2/3, Mistral, Qwen2, SmolLM), read from a Hugging Face
// `config.json` or from GGUF metadata, and written back as config.json.
//
// Only what lorasweep can run is accepted: an unsupported architecture or option (another model type, a
// non-SiLU activation, MLP biases, an unknown rope_scaling type) is an InvalidArgument error naming the
// file and the field, never a guess.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lorasweep {

class GgufFile;

struct RopeScaling {
  // "none", "linear", "dynamic" or "llama3" (transformers' rope_type names).
  std::string type = "none";
  double factor = 1.0;
  // llama3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

struct LlamaConfig {
  std::string architecture = "LlamaForCausalLM";  // as in config.json "architectures"
  std::string model_type = "llama";                // llama | mistral | qwen2
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (always on for Qwen2)
  std::optional<int64_t> sliding_window;  // Mistral; lorasweep refuses sequences longer than it
  std::string torch_dtype = "bfloat16";
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;

  // Total parameters of the model (embeddings, decoder layers, norms, lm_head unless tied).
  int64_t NumParameters() const;
};

// Parses config.json text; `source` names the file in errors.
absl::StatusOr<LlamaConfig> ParseHfConfig(const std::string& json_text, const std::string& source);
// Reads DIR/config.json.
absl::StatusOr<LlamaConfig> LoadHfConfig(const std::string& model_dir);
// From GGUF metadata ({arch}.block_count, .embedding_length, ...) and tensor shapes.
absl::StatusOr<LlamaConfig> ConfigFromGguf(const GgufFile& gguf);

// A transformers-loadable config.json for `config`. `extra_json_fields`, when non-empty, is a JSON object
// whose members are added (e.g. "quantization_config").
std::string HfConfigToJson(const LlamaConfig& config, const std::string& extra_json_fields = "");

// The names of the seven linear projections of a Llama decoder layer, in HF order.
const std::vector<std::string>& LlamaLinearModules();  // q_proj k_proj v_proj o_proj gate_proj up_proj down_proj
// "model.layers.{layer}.self_attn.q_proj" / "model.layers.{layer}.mlp.gate_proj" ...
std::string LinearModulePrefix(int64_t layer, const std::string& module);
// If `tensor_name` is the weight of a decoder-layer linear ("model.layers.3.mlp.up_proj.weight"), its
// module prefix ("model.layers.3.mlp.up_proj"); otherwise nullopt.
std::optional<std::string> DecoderLinearPrefix(const std::string& tensor_name);

}  // namespace lorasweep
