// LoRA adapters as Hugging Face PEFT saves them (what PEFT, transformers and vLLM load): a folder
// with `adapter_config.json` and `adapter_model.safetensors`, keys
//   base_model.model.model.layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
//   base_model.model.model.layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
// with lora_A [r, in] and lora_B [out, r] (see ../shared/notes/formats.md). lorasweep adds
// `lorasweep_training.json` beside them, recording how the base was quantized while training (so
// `lorasweep eval` can default to the same); PEFT ignores the extra file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lorasweep {

struct LoraTensor {
  int layer = 0;
  std::string module;    // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj
  std::vector<float> a;  // lora_A, [r, in] row-major
  std::vector<float> b;  // lora_B, [out, r] row-major
  int64_t in_features = 0;
  int64_t out_features = 0;
};

struct PeftAdapter {
  std::string base_model_name_or_path;
  int rank = 0;
  double alpha = 0.0;
  double dropout = 0.0;
  bool rslora = false;
  std::vector<std::string> target_modules;  // as in adapter_config.json (may be {"all-linear"})
  std::vector<LoraTensor> tensors;          // ReadPeftAdapter: sorted by layer, then q..down order
  // From lorasweep_training.json: nf4 | fp4 | none. An adapter without that file (made by PEFT)
  // reads as "none", blocksize 0, double_quant false.
  std::string trained_quantization = "none";
  int64_t blocksize = 0;
  bool double_quant = false;
};

// File names inside an adapter folder.
inline constexpr char kAdapterConfigFile[] = "adapter_config.json";
inline constexpr char kAdapterWeightsFile[] = "adapter_model.safetensors";
inline constexpr char kAdapterTrainingFile[] = "lorasweep_training.json";

// The safetensors key of one LoRA matrix:
// "base_model.model.model.layers.3.mlp.up_proj.lora_B.weight". `which` is 'A' or 'B'.
std::string PeftTensorKey(int layer, const std::string& module, char which);

// The adapter_config.json PEFT writes for this adapter (all fields of LoraConfig that PEFT and vLLM
// read; no lorasweep-specific ones).
std::string PeftAdapterConfigJson(const PeftAdapter& adapter);

// Writes the three files into a staging folder beside `dir`, then puts it in place of `dir`
// (an existing folder is replaced as a whole: see ReplaceDirectory in common/file_util.h). Tensors
// are F32. Checks the adapter first (known modules, no duplicates, sizes r*in and out*r).
absl::Status WritePeftAdapter(const PeftAdapter& adapter, const std::string& dir);

// Reads and validates an adapter folder: config fields (peft_type LORA, r >= 1, lora_alpha,
// target_modules; DoRA, rank/alpha patterns, bias and modules_to_save refused), every key against
// the pattern above (layer index, module in its block), A/B paired, shapes [r, in] / [out, r],
// dtypes F32, F16 or BF16. Errors name the file and the key.
absl::StatusOr<PeftAdapter> ReadPeftAdapter(const std::string& dir);

// The LoRA output scaling: alpha / rank, or alpha / sqrt(rank) with rsLoRA.
double LoraScaling(double alpha, int rank, bool rslora);

}  // namespace lorasweep
