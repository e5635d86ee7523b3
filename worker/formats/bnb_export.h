// Writes a model as a Hugging Face folder whose decoder-layer linear weights (q/k/v/o/gate/up/down) are
// 4-bit in bitsandbytes format (bnb_checkpoint.h) and whose other tensors (embeddings, norms, lm_head)
// stay unquantized, as transformers' `load_in_4bit` would hold them. Tokenizer files are copied.
//
// Memory: one linear weight at a time is converted to fp32, quantized and dropped; only the 4-bit
// result is kept until the folder is written. The folder appears atomically: it is written under a
// temporary name beside `out_dir` and renamed at the end, so a failure leaves nothing half-written.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/quantize_4bit.h"
#include "worker/formats/model_files.h"

namespace lorasweep {

struct BnbExportOptions {
  QuantType type = QuantType::kNF4;
  int64_t blocksize = 64;
  bool double_quant = true;
  // Storage dtype of the unquantized tensors: "auto" (as stored; f32 for GGUF block types), "f32",
  // "bf16" or "f16".
  std::string dtype = "auto";
  std::string compute_dtype = "bfloat16";  // bnb_4bit_compute_dtype
  int num_threads = 0;
  uint64_t max_shard_bytes = 5000ull * 1000 * 1000;
};

struct BnbExportReport {
  int64_t quantized_tensors = 0;
  int64_t quantized_params = 0;
  int64_t unquantized_params = 0;
  // Bits of codes and every scale byte per quantized parameter (4.127 for NF4 + DQ at blocksize 64).
  double bits_per_param = 0;
  // Root mean square of dequantized minus original over all quantized parameters.
  double rmse = 0;
  double max_abs_error = 0;
  uint64_t bytes_written = 0;
};

absl::StatusOr<BnbExportReport> ExportBnb4bit(const ModelFiles& model, const std::string& out_dir,
                                              const BnbExportOptions& options);

}  // namespace lorasweep
