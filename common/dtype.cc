#include "common/dtype.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>

namespace lorasweep {
namespace {

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 13> kDTypes = {{
    {DType::kF64, "F64", 8},
    {DType::kF32, "F32", 4},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kI64, "I64", 8},
    {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2},
    {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
    {DType::kQ4_0, "Q4_0", 0},
    {DType::kQ4_1, "Q4_1", 0},
    {DType::kQ8_0, "Q8_0", 0},
}};

}  // namespace

size_t DTypeSize(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].size; }

const char* DTypeName(DType dtype) { return kDTypes[static_cast<size_t>(dtype)].name.data(); }

std::optional<DType> DTypeFromSafetensorsName(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.size != 0 && info.name == name) return info.dtype;
  }
  return std::nullopt;
}

uint16_t FloatToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if (std::isnan(value)) return static_cast<uint16_t>((bits >> 16) | 0x0040);  // keep it quiet NaN
  // Round to nearest even on the 16 bits dropped: add 0x7FFF plus the lowest kept bit.
  const uint32_t lsb = (bits >> 16) & 1u;
  bits += 0x7FFFu + lsb;
  return static_cast<uint16_t>(bits >> 16);
}

float Bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t FloatToF16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits >= 0x7F800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7C00u | (abs_bits > 0x7F800000u ? 0x0200u : 0u));
  }
  // Values at or above 65520 round to infinity (65504 is the largest f16; the halfway point is 65520).
  if (abs_bits >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);
  const int exponent = static_cast<int>(abs_bits >> 23) - 127;
  if (exponent >= -14) {
    // Normal f16: keep 10 mantissa bits, round the 13 dropped ones to nearest even. A carry out of
    // the mantissa correctly bumps the exponent.
    uint32_t half = ((static_cast<uint32_t>(exponent + 15)) << 10) | ((abs_bits >> 13) & 0x3FFu);
    const uint32_t rest = abs_bits & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  if (exponent < -25) return sign;  // below half the smallest subnormal: rounds to zero
  // Subnormal f16: value = m * 2^-24 with m in [0, 1024). Shift the full 24-bit significand.
  const uint32_t significand = (abs_bits & 0x7FFFFFu) | 0x800000u;
  const int shift = -exponent - 14 + 13;  // 14..24 here
  uint32_t half = significand >> shift;
  const uint32_t rest = significand & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1);
  if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

float F16ToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu;
  const uint32_t mantissa = bits & 0x3FFu;
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in f32.
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

}  // namespace lorasweep
