// bitsandbytes-serialized 4-bit weights, the key set transformers and vLLM load (see
// ../shared/notes/formats.md). For a quantized linear with prefix X (e.g. model.layers.0.self_attn.q_proj):
//   X.weight                          U8  [(n+1)/2, 1]  packed codes
//   X.weight.absmax                   U8  [blocks] with double quantization, F32 without
//   X.weight.quant_map                F32 [16]
//   X.weight.nested_absmax            F32 [ceil(blocks/256)]        (double quantization only)
//   X.weight.nested_quant_map         F32 [256]                      (double quantization only)
//   X.weight.quant_state.bitsandbytes__nf4 (or __fp4)  U8 bytes of the JSON that bitsandbytes'
//       QuantState.as_dict(packed=True) writes with json.dumps: quant_type, blocksize, dtype, shape,
//       and with DQ nested_blocksize, nested_dtype, nested_offset, in that order.
// plus config.json's "quantization_config" (transformers' BitsAndBytesConfig.to_dict()).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "kernels/quantize_4bit.h"
#include "worker/formats/safetensors.h"
#include "worker/formats/tensor_source.h"

namespace lorasweep {

// Appends the tensors of one quantized linear to `out`. `dtype_name` is the torch dtype of the original
// weight as bitsandbytes records it ("bfloat16", "float16", "float32").
void AppendBnb4bitTensors(const std::string& module_prefix, const Quantized4bit& q,
                          const std::string& dtype_name, NamedTensors* out);

// The quant_state JSON bytes exactly as Python's json.dumps would write them for bitsandbytes.
std::string BnbQuantStateJson(const Quantized4bit& q, const std::string& dtype_name);

// True when `source` holds a bitsandbytes 4-bit weight under `module_prefix`.
bool HasBnb4bitWeight(const TensorSource& source, const std::string& module_prefix);

// Reads one quantized linear back, validating every tensor's dtype and shape against the quant state.
absl::StatusOr<Quantized4bit> ReadBnb4bitWeight(const TensorSource& source,
                                                const std::string& module_prefix);

// The "quantization_config" member of config.json, as a JSON object text.
std::string BnbQuantizationConfigJson(QuantType type, bool double_quant,
                                      const std::string& compute_dtype);

// Formats a double as Python's repr() does (shortest round-trip digits; scientific notation when the
// exponent is < -4 or >= 16, e.g. "1e-05", "0.0001", "1.5e+16"), which json.dumps uses for floats.
std::string PythonFloatRepr(double value);

}  // namespace lorasweep
