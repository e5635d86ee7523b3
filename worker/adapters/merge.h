// `lorasweep merge`: folds a LoRA adapter into its base model, W' = W + scaling * B @ A for every
// adapted linear, and writes a Hugging Face folder that transformers (and lorasweep) load with no
// adapter at all. With a 4-bit output the merged linears are re-quantized in bitsandbytes format
// (worker/formats/bnb_export.h) and the error that adds is reported.
//
// Which W: an adapter trained by lorasweep against an NF4/FP4 base (lorasweep_training.json) saw
// the base quantized then dequantized, not the stored weights. By default the merge adds the delta
// to exactly that base, so the merged model computes what base + adapter computed in training
// (and its eval loss equals the adapter's). `into_trained_base = false` adds it to the stored
// weights instead (what PEFT's merge_and_unload does on an unquantized base). Adapters without
// lorasweep_training.json (made by PEFT) read as trained on "none": both choices coincide.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/quantize_4bit.h"
#include "worker/formats/model_files.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {

struct MergeOptions {
  bool into_trained_base = true;  // see the file comment
  // Storage dtype of every written float tensor: "auto" (as stored; f32 for GGUF block types and
  // bitsandbytes-stored linears), "f32", "bf16" or "f16".
  std::string dtype = "auto";
  // Re-quantize the merged decoder linears (bitsandbytes layout); nullopt writes plain floats.
  std::optional<QuantType> quant;
  int64_t blocksize = 64;
  bool double_quant = true;
  uint64_t max_shard_bytes = 5000ull * 1000 * 1000;
  int num_threads = 0;
};

struct MergeReport {
  int64_t merged_modules = 0;  // linears that received a LoRA delta
  int64_t merged_params = 0;
  // "original", or e.g. "nf4 (blocksize 64, double quant)" when merged into the trained base.
  std::string base;
  // Root mean square and max |.| of scaling * B @ A over the merged linears' elements.
  double delta_rms = 0;
  double delta_max_abs = 0;
  // Rounding of the merged linears to a 16-bit --dtype (0 for f32): rmse / max |stored - merged|.
  // Compare with delta_rms: a delta far below the rounding step is partly lost in bf16.
  double storage_rmse = 0;
  double storage_max_abs_error = 0;
  // With `quant`: dequantized re-quantized merged linears vs the f32 merged values, over every
  // decoder linear (adapted or not).
  bool requantized = false;
  double quant_rmse = 0;
  double quant_max_abs_error = 0;
  double bits_per_param = 0;
  uint64_t bytes_written = 0;
};

// weight[out, in] += scaling * B[out, r] @ A[r, in], each element's sum of r products taken in
// double and rounded once. Fails when the sizes disagree.
absl::Status AddLoraDelta(const LoraTensor& lora, int rank, double scaling,
                          std::span<float> weight);

// Merges `adapter` (read from `adapter_path`, named in errors) into `model` and writes `out_dir`
// atomically (staged beside it, then put in place of any previous folder; refuses the model's own
// folder). Every adapter tensor must name a linear of the model with matching [out, in].
absl::StatusOr<MergeReport> MergeAdapter(const ModelFiles& model, const PeftAdapter& adapter,
                                         const std::string& adapter_path,
                                         const std::string& out_dir, const MergeOptions& options);

}  // namespace lorasweep
