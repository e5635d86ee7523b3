// Element types of stored tensors and the exact conversions between the float formats.
//
// f32 -> bf16 and f32 -> f16 round to nearest, ties to even (as PyTorch and numpy do); NaN stays NaN
// (quiet), overflow goes to +-inf, f16 subnormals are produced exactly. bf16/f16 -> f32 are exact.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lorasweep {

enum class DType : uint8_t {
  kF64,
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
  // Block-quantized GGUF formats: their size is per block, not per element (see gguf.h).
  kQ4_0,
  kQ4_1,
  kQ8_0,
};

// Bytes per element; 0 for block-quantized types.
size_t DTypeSize(DType dtype);
// The safetensors spelling ("F32", "BF16", "U8", ...).
const char* DTypeName(DType dtype);
// Parses a safetensors dtype name; nullopt for names lorasweep does not know.
std::optional<DType> DTypeFromSafetensorsName(std::string_view name);

// Bit-exact conversions (see file comment).
uint16_t FloatToBf16(float value);
float Bf16ToFloat(uint16_t bits);
uint16_t FloatToF16(float value);
float F16ToFloat(uint16_t bits);

}  // namespace lorasweep
