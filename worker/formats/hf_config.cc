#include "worker/formats/hf_config.h"

#include <cmath>
#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/formats/gguf.h"

namespace lorasweep {
namespace {

using nlohmann::json;

absl::Status FieldError(const std::string& source, const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": field '", field, "': ", what));
}

absl::StatusOr<int64_t> RequiredInt(const json& j, const std::string& source, const std::string& field,
                                    int64_t min_value = 1) {
  if (!j.contains(field) || j[field].is_null()) {
    return FieldError(source, field, "missing (expected an integer)");
  }
  if (!j[field].is_number_integer()) return FieldError(source, field, "expected an integer");
  const int64_t v = j[field].get<int64_t>();
  if (v < min_value) return FieldError(source, field, absl::StrCat("must be >= ", min_value, ", got ", v));
  return v;
}

absl::StatusOr<double> OptionalDouble(const json& j, const std::string& source, const std::string& field,
                                      double default_value) {
  if (!j.contains(field) || j[field].is_null()) return default_value;
  if (!j[field].is_number()) return FieldError(source, field, "expected a number");
  const double v = j[field].get<double>();
  if (!std::isfinite(v) || v <= 0) return FieldError(source, field, "must be a positive number");
  return v;
}

absl::StatusOr<bool> OptionalBool(const json& j, const std::string& source, const std::string& field,
                                  bool default_value) {
  if (!j.contains(field) || j[field].is_null()) return default_value;
  if (!j[field].is_boolean()) return FieldError(source, field, "expected true or false");
  return j[field].get<bool>();
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const json& j, const std::string& source) {
  RopeScaling scaling;
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return scaling;
  const json& r = j["rope_scaling"];
  if (!r.is_object()) return FieldError(source, "rope_scaling", "expected an object or null");
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    if (r.contains(key) && r[key].is_string()) {
      type = r[key].get<std::string>();
      break;
    }
  }
  if (type == "default") return scaling;
  if (type != "linear" && type != "dynamic" && type != "llama3") {
    return FieldError(source, "rope_scaling.rope_type",
                      absl::StrCat("unsupported '", type, "' (supported: linear, dynamic, llama3)"));
  }
  scaling.type = type;
  ASSIGN_OR_RETURN(scaling.factor, OptionalDouble(r, source, "factor", 1.0));
  if (type == "llama3") {
    ASSIGN_OR_RETURN(scaling.low_freq_factor, OptionalDouble(r, source, "low_freq_factor", 1.0));
    ASSIGN_OR_RETURN(scaling.high_freq_factor, OptionalDouble(r, source, "high_freq_factor", 4.0));
    ASSIGN_OR_RETURN(scaling.original_max_position_embeddings,
                     RequiredInt(r, source, "original_max_position_embeddings"));
  }
  return scaling;
}

absl::Status Validate(const LlamaConfig& c, const std::string& source) {
  if (c.hidden_size % c.num_attention_heads != 0 && c.head_dim == 0) {
    return FieldError(source, "hidden_size", "not divisible by num_attention_heads");
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return FieldError(source, "num_key_value_heads",
                      absl::StrCat(c.num_key_value_heads, " does not divide num_attention_heads ",
                                   c.num_attention_heads));
  }
  if (c.head_dim % 2 != 0) {
    return FieldError(source, "head_dim", "must be even (rotary embedding rotates pairs)");
  }
  return absl::OkStatus();
}

}  // namespace

int64_t LlamaConfig::NumParameters() const {
  const int64_t q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t layer = hidden_size * (q + 2 * kv) + q * hidden_size + 3 * hidden_size * intermediate_size +
                  2 * hidden_size;
  if (attention_bias) layer += q + 2 * kv;
  int64_t total = vocab_size * hidden_size + num_hidden_layers * layer + hidden_size;
  if (!tie_word_embeddings) total += vocab_size * hidden_size;
  return total;
}

absl::StatusOr<LlamaConfig> ParseHfConfig(const std::string& json_text, const std::string& source) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a valid JSON object"));
  }
  LlamaConfig c;
  if (!j.contains("model_type") || !j["model_type"].is_string()) {
    return FieldError(source, "model_type", "missing (expected \"llama\", \"mistral\" or \"qwen2\")");
  }
  c.model_type = j["model_type"].get<std::string>();
  if (c.model_type != "llama" && c.model_type != "mistral" && c.model_type != "qwen2") {
    return FieldError(source, "model_type",
                      absl::StrCat("unsupported architecture '", c.model_type,
                                   "' (lorasweep supports llama, mistral, qwen2)"));
  }
  if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty()) {
    c.architecture = j["architectures"][0].get<std::string>();
    static const std::vector<std::string> kSupported = {"LlamaForCausalLM", "MistralForCausalLM",
                                                        "Qwen2ForCausalLM"};
    if (std::find(kSupported.begin(), kSupported.end(), c.architecture) == kSupported.end()) {
      return FieldError(source, "architectures",
                        absl::StrCat("unsupported '", c.architecture,
                                     "' (supported: LlamaForCausalLM, MistralForCausalLM, "
                                     "Qwen2ForCausalLM)"));
    }
  } else {
    c.architecture = c.model_type == "llama"     ? "LlamaForCausalLM"
                     : c.model_type == "mistral" ? "MistralForCausalLM"
                                                 : "Qwen2ForCausalLM";
  }
  if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
    return FieldError(source, "hidden_act", "only \"silu\" (SwiGLU) is supported");
  }
  ASSIGN_OR_RETURN(bool mlp_bias, OptionalBool(j, source, "mlp_bias", false));
  if (mlp_bias) return FieldError(source, "mlp_bias", "MLP biases are not supported");
  ASSIGN_OR_RETURN(c.hidden_size, RequiredInt(j, source, "hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, RequiredInt(j, source, "intermediate_size"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, RequiredInt(j, source, "num_hidden_layers"));
  ASSIGN_OR_RETURN(c.num_attention_heads, RequiredInt(j, source, "num_attention_heads"));
  ASSIGN_OR_RETURN(c.vocab_size, RequiredInt(j, source, "vocab_size"));
  c.num_key_value_heads = c.num_attention_heads;
  if (j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()) {
    ASSIGN_OR_RETURN(c.num_key_value_heads, RequiredInt(j, source, "num_key_value_heads"));
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    ASSIGN_OR_RETURN(c.head_dim, RequiredInt(j, source, "head_dim"));
  }
  if (j.contains("max_position_embeddings")) {
    ASSIGN_OR_RETURN(c.max_position_embeddings, RequiredInt(j, source, "max_position_embeddings"));
  }
  ASSIGN_OR_RETURN(c.rope_theta, OptionalDouble(j, source, "rope_theta", 10000.0));
  ASSIGN_OR_RETURN(c.rms_norm_eps, OptionalDouble(j, source, "rms_norm_eps", 1e-6));
  ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(j, source));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, OptionalBool(j, source, "tie_word_embeddings", false));
  ASSIGN_OR_RETURN(c.attention_bias, OptionalBool(j, source, "attention_bias", false));
  if (c.model_type == "qwen2") c.attention_bias = true;  // Qwen2 always has q/k/v biases
  if (j.contains("sliding_window") && j["sliding_window"].is_number_integer() &&
      c.model_type == "mistral") {
    c.sliding_window = j["sliding_window"].get<int64_t>();
  }
  if (j.contains("torch_dtype") && j["torch_dtype"].is_string()) {
    c.torch_dtype = j["torch_dtype"].get<std::string>();
  }
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) {
    c.bos_token_id = j["bos_token_id"].get<int64_t>();
  }
  if (j.contains("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
    if (e.is_array()) {
      for (const json& v : e) {
        if (v.is_number_integer()) c.eos_token_ids.push_back(v.get<int64_t>());
      }
    }
  }
  RETURN_IF_ERROR(Validate(c, source));
  return c;
}

absl::StatusOr<LlamaConfig> LoadHfConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseHfConfig(text, path);
}

absl::StatusOr<LlamaConfig> ConfigFromGguf(const GgufFile& gguf) {
  const std::string& source = gguf.path();
  ASSIGN_OR_RETURN(const GgufValue* arch_value, gguf.Find("general.architecture"));
  ASSIGN_OR_RETURN(std::string arch, arch_value->AsString());
  LlamaConfig c;
  if (arch == "llama") {
    c.model_type = "llama";
    c.architecture = "LlamaForCausalLM";
  } else if (arch == "qwen2") {
    c.model_type = "qwen2";
    c.architecture = "Qwen2ForCausalLM";
    c.attention_bias = true;
  } else {
    return FieldError(source, "general.architecture",
                      absl::StrCat("unsupported architecture '", arch, "' (supported: llama, qwen2)"));
  }
  auto get_int = [&](const std::string& key) -> absl::StatusOr<int64_t> {
    ASSIGN_OR_RETURN(const GgufValue* v, gguf.Find(arch + "." + key));
    ASSIGN_OR_RETURN(int64_t n, v->AsInt());
    if (n <= 0) return FieldError(source, arch + "." + key, "must be positive");
    return n;
  };
  auto get_double = [&](const std::string& key, double fallback) -> absl::StatusOr<double> {
    if (!gguf.metadata().contains(arch + "." + key)) return fallback;
    ASSIGN_OR_RETURN(const GgufValue* v, gguf.Find(arch + "." + key));
    return v->AsDouble();
  };
  ASSIGN_OR_RETURN(c.hidden_size, get_int("embedding_length"));
  ASSIGN_OR_RETURN(c.intermediate_size, get_int("feed_forward_length"));
  ASSIGN_OR_RETURN(c.num_hidden_layers, get_int("block_count"));
  ASSIGN_OR_RETURN(c.num_attention_heads, get_int("attention.head_count"));
  c.num_key_value_heads = c.num_attention_heads;
  if (gguf.metadata().contains(arch + ".attention.head_count_kv")) {
    ASSIGN_OR_RETURN(c.num_key_value_heads, get_int("attention.head_count_kv"));
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  if (gguf.metadata().contains(arch + ".rope.dimension_count")) {
    ASSIGN_OR_RETURN(c.head_dim, get_int("rope.dimension_count"));
  }
  if (gguf.metadata().contains(arch + ".context_length")) {
    ASSIGN_OR_RETURN(c.max_position_embeddings, get_int("context_length"));
  }
  ASSIGN_OR_RETURN(c.rope_theta, get_double("rope.freq_base", 10000.0));
  ASSIGN_OR_RETURN(c.rms_norm_eps, get_double("attention.layer_norm_rms_epsilon", 1e-5));
  // Vocabulary: the embedding's row count is authoritative.
  ASSIGN_OR_RETURN(const GgufTensorInfo* embed, gguf.FindTensor("token_embd.weight"));
  const std::vector<int64_t> embed_shape = embed->Shape();
  if (embed_shape.size() != 2 || embed_shape[1] != c.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": token_embd.weight has shape ",
                                                   embed_shape.size(), "-d, expected [vocab, ",
                                                   c.hidden_size, "]"));
  }
  c.vocab_size = embed_shape[0];
  c.tie_word_embeddings = !gguf.FindTensor("output.weight").ok();
  c.torch_dtype = "bfloat16";
  if (gguf.metadata().contains("tokenizer.ggml.bos_token_id")) {
    ASSIGN_OR_RETURN(const GgufValue* v, gguf.Find("tokenizer.ggml.bos_token_id"));
    ASSIGN_OR_RETURN(int64_t id, v->AsInt());
    c.bos_token_id = id;
  }
  if (gguf.metadata().contains("tokenizer.ggml.eos_token_id")) {
    ASSIGN_OR_RETURN(const GgufValue* v, gguf.Find("tokenizer.ggml.eos_token_id"));
    ASSIGN_OR_RETURN(int64_t id, v->AsInt());
    c.eos_token_ids.push_back(id);
  }
  RETURN_IF_ERROR(Validate(c, source));
  return c;
}

std::string HfConfigToJson(const LlamaConfig& c, const std::string& extra_json_fields) {
  json j;
  j["architectures"] = {c.architecture};
  j["model_type"] = c.model_type;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = c.rope_theta;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type == "llama") {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
  }
  if (c.rope_scaling.type == "none") {
    j["rope_scaling"] = nullptr;
  } else {
    json r = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      r["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      r["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      r["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = r;
  }
  if (c.sliding_window) j["sliding_window"] = *c.sliding_window;
  j["torch_dtype"] = c.torch_dtype;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  if (!extra_json_fields.empty()) {
    json extra = json::parse(extra_json_fields, nullptr, false);
    if (extra.is_object()) {
      for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
    }
  }
  return j.dump(2) + "\n";
}

const std::vector<std::string>& LlamaLinearModules() {
  static const std::vector<std::string> modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};
  return modules;
}

std::string LinearModulePrefix(int64_t layer, const std::string& module) {
  const bool attention = module == "q_proj" || module == "k_proj" || module == "v_proj" ||
                         module == "o_proj";
  return absl::StrCat("model.layers.", layer, attention ? ".self_attn." : ".mlp.", module);
}

std::optional<std::string> DecoderLinearPrefix(const std::string& tensor_name) {
  // model.layers.<digits>.(self_attn|mlp).<module>.weight, with the module matching its block.
  const std::string head = "model.layers.", tail = ".weight";
  if (tensor_name.rfind(head, 0) != 0 || tensor_name.size() <= head.size() + tail.size() ||
      tensor_name.compare(tensor_name.size() - tail.size(), tail.size(), tail) != 0) {
    return std::nullopt;
  }
  size_t pos = head.size();
  const size_t digits_begin = pos;
  while (pos < tensor_name.size() && std::isdigit(static_cast<unsigned char>(tensor_name[pos]))) ++pos;
  if (pos == digits_begin || pos >= tensor_name.size() || tensor_name[pos] != '.') return std::nullopt;
  const std::string rest = tensor_name.substr(pos + 1, tensor_name.size() - tail.size() - pos - 1);
  for (const std::string& module : LlamaLinearModules()) {
    const bool attention = module == "q_proj" || module == "k_proj" || module == "v_proj" ||
                           module == "o_proj";
    if (rest == (attention ? "self_attn." : "mlp.") + module) {
      return tensor_name.substr(0, tensor_name.size() - tail.size());
    }
  }
  return std::nullopt;
}

}  // namespace lorasweep
