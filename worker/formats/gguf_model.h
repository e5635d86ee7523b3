// A GGUF file seen as a Hugging Face Llama checkpoint: llama.cpp tensor names mapped to HF names
// (token_embd.weight -> model.embed_tokens.weight, blk.N.attn_q.weight ->
// model.layers.N.self_attn.q_proj.weight, ...), and the rows of attn_q / attn_k un-permuted.
//
// Why the permutation: llama.cpp's convert_hf_to_gguf.py reorders the rows of q_proj and k_proj
// (per head, the two rotary halves are interleaved) to suit its rotary kernel:
//   w.reshape(n_head, 2, head_dim / 2, in).swapaxes(1, 2).reshape(out, in)
// A loader that wants HF layout (so that PEFT adapters trained here line up with the HF model)
// applies the inverse: reshape(n_head, head_dim / 2, 2, in).swapaxes(1, 2).reshape(out, in), with
// n_head the number of query heads for q and of KV heads for k (biases, 1-D, are permuted the same
// way). Only the "llama" architecture is permuted this way; "qwen2" GGUF files keep the HF row
// order (its rotary kernel is the NEOX one). Other architectures are rejected, since their layout
// is unknown.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/formats/gguf.h"
#include "worker/formats/tensor_source.h"

namespace lorasweep {

// Maps "blk.3.ffn_gate.weight" to "model.layers.3.mlp.gate_proj.weight"; NotFound for names
// lorasweep does not use (the tensor is then skipped by GgufModel).
absl::StatusOr<std::string> GgufToHfName(const std::string& gguf_name);

// Undo / apply llama.cpp's rotary row permutation on a row-major [rows, cols] matrix, rows =
// n_head * head_dim. InvalidArgument (and `out` untouched) unless n_head > 0 and rows is a multiple
// of 2 * n_head. `in` and `out` must not overlap.
absl::Status UnpermuteRotaryRows(const float* in, float* out, int64_t n_head, int64_t rows,
                                 int64_t cols);
absl::Status PermuteRotaryRows(const float* in, float* out, int64_t n_head, int64_t rows,
                               int64_t cols);

class GgufModel : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<GgufModel>> Open(const std::string& path);

  std::vector<TensorInfo> List() const override;
  bool Contains(const std::string& name) const override;
  // The raw GGUF tensor (GGUF row order, possibly block-quantized); shape is reported in HF order.
  absl::StatusOr<Tensor> Get(const std::string& name) const override;
  // Dequantized, HF row order (q/k un-permuted).
  absl::StatusOr<std::vector<float>> GetFloats(const std::string& name) const override;
  std::string Describe() const override { return gguf_->path(); }

  const GgufFile& gguf() const { return *gguf_; }

 private:
  GgufModel() = default;
  std::unique_ptr<GgufFile> gguf_;
  std::map<std::string, std::string> hf_to_gguf_;
  int64_t num_heads_ = 0;
  int64_t num_kv_heads_ = 0;
  bool permute_qk_ = false;  // "llama": q/k rows are stored permuted
};

}  // namespace lorasweep
