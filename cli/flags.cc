#include "cli/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, model, "", "Model: a Hugging Face folder, a .gguf file or a .safetensors file");
ABSL_FLAG(std::string, out, "", "Output folder");
ABSL_FLAG(bool, json, false, "Print one JSON object (as the last line of stdout)");
ABSL_FLAG(std::string, quant, "nf4", "4-bit quantization type: nf4 or fp4");
ABSL_FLAG(int64_t, blocksize, 64, "Quantization block size (a power of two in 32..4096)");
ABSL_FLAG(bool, double_quant, true, "Quantize the per-block absmax values again (QLoRA double quant)");
ABSL_FLAG(std::string, dtype, "auto",
          "dtype of the tensors left unquantized: auto (as stored; f32 for GGUF block types), f32, "
          "bf16 or f16");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0: LORASWEEP_NUM_THREADS or all cores)");
ABSL_FLAG(std::string, max_shard_size, "5GB",
          "Largest safetensors shard to write, as transformers spells it (e.g. 5GB, 500MB, 20KB)");
