#include "worker/formats/gguf_model.h"

#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"

namespace lorasweep {
namespace {

struct NamePair {
  const char* gguf;
  const char* hf;
};

constexpr NamePair kGlobalNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

// Suffixes after "blk.N." and after "model.layers.N.".
constexpr NamePair kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_output.bias", "self_attn.o_proj.bias"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};

template <typename... Args>
absl::Status Invalid(const std::string& path, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat("GGUF file ", path, ": ", args...));
}

bool IsQ(const std::string& hf_name) {
  return absl::EndsWith(hf_name, ".self_attn.q_proj.weight") ||
         absl::EndsWith(hf_name, ".self_attn.q_proj.bias");
}

bool IsK(const std::string& hf_name) {
  return absl::EndsWith(hf_name, ".self_attn.k_proj.weight") ||
         absl::EndsWith(hf_name, ".self_attn.k_proj.bias");
}

absl::Status CheckPermutationArgs(int64_t n_head, int64_t rows, int64_t cols) {
  if (n_head <= 0 || rows <= 0 || cols < 0 || rows % (2 * n_head) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("rotary row permutation needs rows (", rows,
                                                   ") to be a positive multiple of 2 * ", n_head,
                                                   " heads"));
  }
  return absl::OkStatus();
}

// Within head h, GGUF row 2 * i + s holds HF row s * half + i (half = head_dim / 2, s = 0 or 1):
// the converter's reshape(n_head, 2, half, in).swapaxes(1, 2) in index form.
template <bool kToHf>
void MoveRotaryRows(const float* in, float* out, int64_t n_head, int64_t rows, int64_t cols) {
  const int64_t head_dim = rows / n_head;
  const int64_t half = head_dim / 2;
  const size_t row_bytes = static_cast<size_t>(cols) * sizeof(float);
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t s = 0; s < 2; ++s) {
        const int64_t gguf_row = h * head_dim + 2 * i + s;
        const int64_t hf_row = h * head_dim + s * half + i;
        const int64_t from = kToHf ? gguf_row : hf_row;
        const int64_t to = kToHf ? hf_row : gguf_row;
        if (row_bytes != 0) std::memcpy(out + to * cols, in + from * cols, row_bytes);
      }
    }
  }
}

}  // namespace

absl::StatusOr<std::string> GgufToHfName(const std::string& gguf_name) {
  for (const NamePair& pair : kGlobalNames) {
    if (gguf_name == pair.gguf) return std::string(pair.hf);
  }
  absl::string_view rest(gguf_name);
  const absl::string_view prefix = "blk.";
  if (absl::StartsWith(rest, prefix)) {
    rest.remove_prefix(prefix.size());
    const size_t dot = rest.find('.');
    const absl::string_view layer = rest.substr(0, dot);
    // A canonical decimal index (no sign, no leading zeros) so that the HF name is unique.
    bool canonical = !layer.empty() && layer.size() <= 9 && (layer == "0" || layer[0] != '0');
    for (char c : layer)
      canonical = canonical && absl::ascii_isdigit(static_cast<unsigned char>(c));
    if (canonical && dot != absl::string_view::npos) {
      const absl::string_view part = rest.substr(dot + 1);
      for (const NamePair& pair : kLayerNames) {
        if (part == pair.gguf) {
          return absl::StrCat("model.layers.", layer, ".", pair.hf);
        }
      }
    }
  }
  return absl::NotFoundError(
      absl::StrCat("GGUF tensor '", gguf_name, "' has no Hugging Face Llama counterpart"));
}

absl::Status UnpermuteRotaryRows(const float* in, float* out, int64_t n_head, int64_t rows,
                                 int64_t cols) {
  RETURN_IF_ERROR(CheckPermutationArgs(n_head, rows, cols));
  MoveRotaryRows<true>(in, out, n_head, rows, cols);
  return absl::OkStatus();
}

absl::Status PermuteRotaryRows(const float* in, float* out, int64_t n_head, int64_t rows,
                               int64_t cols) {
  RETURN_IF_ERROR(CheckPermutationArgs(n_head, rows, cols));
  MoveRotaryRows<false>(in, out, n_head, rows, cols);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<GgufModel>> GgufModel::Open(const std::string& path) {
  std::unique_ptr<GgufModel> model(new GgufModel());
  ASSIGN_OR_RETURN(model->gguf_, GgufFile::Open(path));
  const GgufFile& gguf = *model->gguf_;

  auto metadata_int = [&](const std::string& key) -> absl::StatusOr<int64_t> {
    ASSIGN_OR_RETURN(const GgufValue* value, gguf.Find(key));
    absl::StatusOr<int64_t> n = value->AsInt();
    if (!n.ok()) return Invalid(path, key, ": ", n.status().message());
    if (*n <= 0) return Invalid(path, key, " must be positive, got ", *n);
    return *n;
  };

  const absl::StatusOr<const GgufValue*> arch_value = gguf.Find("general.architecture");
  if (!arch_value.ok()) return Invalid(path, "no general.architecture in the metadata");
  const absl::StatusOr<std::string> arch = (*arch_value)->AsString();
  if (!arch.ok()) return Invalid(path, "general.architecture: ", arch.status().message());
  if (*arch == "llama") {
    model->permute_qk_ = true;
  } else if (*arch != "qwen2") {
    return Invalid(path, "architecture '", *arch,
                   "' is not supported (lorasweep reads llama and qwen2 GGUF files)");
  }

  const std::string heads_key = absl::StrCat(*arch, ".attention.head_count");
  const absl::StatusOr<int64_t> heads = metadata_int(heads_key);
  if (!heads.ok()) {
    if (absl::IsNotFound(heads.status()))
      return Invalid(path, "no ", heads_key, " in the metadata");
    return heads.status();
  }
  model->num_heads_ = *heads;
  // llama.cpp's default when the key is absent: no grouped-query attention.
  model->num_kv_heads_ = model->num_heads_;
  if (gguf.metadata().count(heads_key + "_kv") != 0) {
    ASSIGN_OR_RETURN(model->num_kv_heads_, metadata_int(heads_key + "_kv"));
  }

  for (const GgufTensorInfo& info : gguf.tensors()) {
    absl::StatusOr<std::string> hf_name = GgufToHfName(info.name);
    if (!hf_name.ok()) continue;  // e.g. rope_freqs.weight: not a Hugging Face parameter
    if (model->permute_qk_ && (IsQ(*hf_name) || IsK(*hf_name))) {
      const int64_t n_head = IsQ(*hf_name) ? model->num_heads_ : model->num_kv_heads_;
      const std::vector<int64_t> shape = info.Shape();
      if (shape.size() > 2 || shape[0] % (2 * n_head) != 0) {
        return Invalid(path, "tensor '", info.name, "' of shape ", ShapeToString(shape),
                       " cannot be split into ", n_head, " rotary heads (", heads_key,
                       IsQ(*hf_name) ? "" : "_kv", ")");
      }
    }
    model->hf_to_gguf_.emplace(*std::move(hf_name), info.name);
  }
  return model;
}

std::vector<TensorInfo> GgufModel::List() const {
  std::vector<TensorInfo> out;
  out.reserve(hf_to_gguf_.size());
  for (const auto& [hf_name, gguf_name] : hf_to_gguf_) {
    const GgufTensorInfo& info = *gguf_->FindTensor(gguf_name).value();
    out.push_back({hf_name, GgmlTypeToDType(info.type), info.Shape()});
  }
  return out;
}

bool GgufModel::Contains(const std::string& name) const { return hf_to_gguf_.count(name) != 0; }

absl::StatusOr<Tensor> GgufModel::Get(const std::string& name) const {
  auto it = hf_to_gguf_.find(name);
  if (it == hf_to_gguf_.end()) {
    return absl::NotFoundError(absl::StrCat("GGUF file ", Describe(), ": no tensor '", name, "'"));
  }
  return gguf_->GetRaw(it->second);
}

absl::StatusOr<std::vector<float>> GgufModel::GetFloats(const std::string& name) const {
  auto it = hf_to_gguf_.find(name);
  if (it == hf_to_gguf_.end()) {
    return absl::NotFoundError(absl::StrCat("GGUF file ", Describe(), ": no tensor '", name, "'"));
  }
  ASSIGN_OR_RETURN(std::vector<float> values, gguf_->GetFloats(it->second));
  if (!permute_qk_ || !(IsQ(name) || IsK(name))) return values;
  const int64_t n_head = IsQ(name) ? num_heads_ : num_kv_heads_;
  const GgufTensorInfo& info = *gguf_->FindTensor(it->second).value();
  const int64_t rows = info.Shape()[0];
  const int64_t cols = static_cast<int64_t>(values.size()) / rows;
  std::vector<float> hf_order(values.size());
  RETURN_IF_ERROR(UnpermuteRotaryRows(values.data(), hf_order.data(), n_head, rows, cols));
  return hf_order;
}

}  // namespace lorasweep
