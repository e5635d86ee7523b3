// 4-bit blockwise quantization (NF4 and FP4) with optional double quantization, bit-compatible with
// bitsandbytes' CUDA kernels (`bnb.functional.quantize_4bit` / `dequantize_4bit` on a GPU). The
// exact rules are in ../shared/notes/formats.md and are summarised at each function. This is the
// CPU reference; the CUDA dequantization in dequantize_4bit.cu has the same semantics.
//
// Glossary: n = number of elements of the flattened row-major [out, in] weight; blocksize =
// elements per first-level block (blocks run across row boundaries, the last block may be short);
// nested blocks group 256 first-level absmax values for double quantization.
//
// Where bitsandbytes' own CPU backend disagrees with its CUDA kernels, lorasweep follows CUDA (that
// is what produced the checkpoints people load); quantize_4bit.cc lists the differences.
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

// The 16 code values, indexed by the 4-bit code (bitsandbytes' `quant_map`, as it serializes it:
// FP4 code 8, "-0", is stored as +0.0f).
const std::array<float, 16>& CodeTable(QuantType type);

// The 15 float32 decision thresholds bitsandbytes' CUDA quantizer compares against, ascending. The
// code of a scaled value s is the number of thresholds strictly below s (ties go to the lower
// code). For NF4 these equal the float32-rounded midpoints of CodeTable; for FP4 they are bnb's
// decimal literals (a few differ from the true midpoints by up to 3.3e-7) and apply to |s|, with
// the sign in bit 3, so only the first 7 entries are used.
const std::array<float, 15>& DecisionThresholds(QuantType type);

// bitsandbytes `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: 256 sorted
// float32 values in [-0.99297, 1.0] including an exact 0 (the `nested_quant_map` of double
// quantization). Bit-identical to what torch computes on an x86-64 CPU with FMA (AVX2 / AVX-512),
// see the .cc.
const std::array<float, 256>& DynamicSignedMap();

// bitsandbytes' 8-bit code search (CUDA dQuantize<0>) of `x` in a sorted 256-entry `code`: the
// nearest entry by float32 midpoint, a value exactly on a midpoint going to the EVEN index; NaN ->
// 0.
uint8_t QuantizeDynamic(const std::array<float, 256>& code, float x);

inline constexpr int64_t kNestedBlocksize = 256;
inline constexpr int64_t kMinBlocksize = 32;
inline constexpr int64_t kMaxBlocksize = 4096;

// A quantized weight, laid out exactly as bitsandbytes stores it.
struct Quantized4bit {
  QuantType type = QuantType::kNF4;
  int64_t blocksize = 64;
  std::vector<int64_t> shape;  // original shape, e.g. [out, in]
  int64_t num_elements = 0;
  std::vector<uint8_t> packed;  // (n + 1) / 2 bytes; first element of each pair in the HIGH nibble

  bool double_quant = false;
  // Without double quantization: one float32 absmax per block.
  std::vector<float> absmax;
  // With double quantization: one 8-bit code (into DynamicSignedMap()) per block, one float32
  // nested_absmax per 256 blocks, and the mean offset that was subtracted before quantizing.
  std::vector<uint8_t> absmax_codes;
  std::vector<float> nested_absmax;
  float nested_offset = 0.0f;

  int64_t num_blocks() const { return (num_elements + blocksize - 1) / blocksize; }
  // Bits of codes plus every scale byte (absmax, nested absmax, offset), per element. 4.127 for
  // NF4+DQ at blocksize 64 on large tensors.
  double BitsPerParameter() const;
};

// Quantizes `values` (the flattened weight of `shape`). Fails with InvalidArgument when blocksize
// is not a power of two in [32, 4096] (the sizes bitsandbytes accepts), when the shape does not
// match the value count, or when a value is inf or NaN (naming the index). `num_threads` 0 =
// DefaultNumThreads(); the result does not depend on it.
absl::StatusOr<Quantized4bit> Quantize4bit(std::span<const float> values,
                                           std::vector<int64_t> shape, QuantType type,
                                           int64_t blocksize, bool double_quant,
                                           int num_threads = 0);

// The per-block float32 absmax a dequantizer uses: stored values, or with DQ
// `DynamicSignedMap()[code] * nested_absmax[b / 256] + nested_offset` (two float32 roundings, as
// bnb's separate dequantize_blockwise and `+= offset` steps do).
std::vector<float> DequantizeAbsmax(const Quantized4bit& q);

// Same, from raw parts (e.g. memory-mapped checkpoint bytes); `nested_code` is the 256-entry map.
void DequantizeAbsmaxRaw(const float* nested_code, const uint8_t* absmax_codes,
                         const float* nested_absmax, float nested_offset, int64_t num_blocks,
                         float* out);

// Writes the n dequantized values `code[nibble] * absmax[block]` into `out` (out.size() == n).
absl::Status Dequantize4bit(const Quantized4bit& q, std::span<float> out, int num_threads = 0);

// Same, from raw parts, so callers can dequantize straight out of memory-mapped checkpoint bytes
// without building a Quantized4bit. `absmax` holds one float32 per block (already
// double-dequantized).
void Dequantize4bitRaw(const std::array<float, 16>& code, const uint8_t* packed,
                       const float* absmax, int64_t blocksize, int64_t num_elements, float* out,
                       int num_threads = 0);

}  // namespace lorasweep
