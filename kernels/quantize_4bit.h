// 4-bit blockwise quantization (NF4 and FP4) with optional double quantization, bit-compatible with
// bitsandbytes (`bnb.functional.quantize_4bit` / `dequantize_4bit`). The exact rules are in
// ../shared/notes/formats.md and are summarised at each function. This is the CPU reference; the CUDA
// dequantization in dequantize_4bit.cu has the same semantics.
//
// Glossary: n = number of elements of the flattened row-major [out, in] weight; blocksize = elements per
// first-level block (blocks run across row boundaries, the last block may be short); nested blocks
// group 256 first-level absmax values for double quantization.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lorasweep {

enum class QuantType { kNF4, kFP4 };

// "nf4" / "fp4"
const char* QuantTypeName(QuantType type);
absl::StatusOr<QuantType> ParseQuantType(const std::string& name);

// The 16 code values, indexed by the 4-bit code (bitsandbytes' `quant_map`).
const std::array<float, 16>& CodeTable(QuantType type);

// bitsandbytes `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: 256 sorted float32
// values in [-0.99297, 1.0] including an exact 0 (the `nested_quant_map` of double quantization).
const std::array<float, 256>& DynamicSignedMap();

inline constexpr int64_t kNestedBlocksize = 256;

// A quantized weight, laid out exactly as bitsandbytes stores it.
struct Quantized4bit {
  QuantType type = QuantType::kNF4;
  int64_t blocksize = 64;
  std::vector<int64_t> shape;    // original shape, e.g. [out, in]
  int64_t num_elements = 0;
  std::vector<uint8_t> packed;   // (n + 1) / 2 bytes; first element of each pair in the HIGH nibble

  bool double_quant = false;
  // Without double quantization: one float32 absmax per block.
  std::vector<float> absmax;
  // With double quantization: one 8-bit code (into DynamicSignedMap()) per block, one float32
  // nested_absmax per 256 blocks, and the mean offset that was subtracted before quantizing.
  std::vector<uint8_t> absmax_codes;
  std::vector<float> nested_absmax;
  float nested_offset = 0.0f;

  int64_t num_blocks() const { return (num_elements + blocksize - 1) / blocksize; }
  // Bits of codes plus every scale byte (absmax, nested absmax, offset), per element. 4.127 for NF4+DQ
  // at blocksize 64 on large tensors.
  double BitsPerParameter() const;
};

// Quantizes `values` (the flattened weight of `shape`). Fails with InvalidArgument when blocksize is not a
// power of two in [32, 4096], when the shape does not match the value count, or when a value is inf or
// NaN (naming the index). `num_threads` 0 = DefaultNumThreads().
absl::StatusOr<Quantized4bit> Quantize4bit(std::span<const float> values, std::vector<int64_t> shape,
                                           QuantType type, int64_t blocksize, bool double_quant,
                                           int num_threads = 0);

// The per-block float32 absmax a dequantizer uses: stored values, or with DQ
// `DynamicSignedMap()[code] * nested_absmax[b / 256] + nested_offset`.
std::vector<float> DequantizeAbsmax(const Quantized4bit& q);

// Writes the n dequantized values `code[nibble] * absmax[block]` into `out` (out.size() == n).
absl::Status Dequantize4bit(const Quantized4bit& q, std::span<float> out, int num_threads = 0);

// Same, from raw parts, so callers can dequantize straight out of memory-mapped checkpoint bytes
// without building a Quantized4bit. `absmax` holds one float32 per block (already double-dequantized).
void Dequantize4bitRaw(const std::array<float, 16>& code, const uint8_t* packed, const float* absmax,
                       int64_t blocksize, int64_t num_elements, float* out, int num_threads = 0);

}  // namespace lorasweep
