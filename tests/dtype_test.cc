// Conversions f32 <-> bf16/f16 against an independent float64 reference of round-to-nearest-even.
#include "common/dtype.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "gtest/gtest.h"

namespace lorasweep {
namespace {

// Reference: among all finite non-negative 16-bit patterns of the format, the one nearest to |x| in
// exact double arithmetic, ties to the even pattern (the caller handles overflow to infinity).
template <typename Decode>
uint16_t NearestPattern(double x, Decode decode) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double ax = std::fabs(x);
  uint16_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (uint32_t p = 0; p < 0x8000; ++p) {
    const double v = decode(static_cast<uint16_t>(p));
    if (!std::isfinite(v)) continue;
    const double err = std::fabs(v - ax);
    if (err < best_err || (err == best_err && (p & 1u) == 0)) {
      best_err = err;
      best = static_cast<uint16_t>(p);
    }
  }
  return sign | best;
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 20000; ++i) {
    float f = std::bit_cast<float>(bits(rng));
    if (!std::isfinite(f)) continue;
    const uint16_t got = FloatToBf16(f);
    // Independent check: bf16 is the upper half of an f32; the two candidates bracket f.
    const uint32_t u = std::bit_cast<uint32_t>(f);
    const uint16_t lo = static_cast<uint16_t>(u >> 16);
    const uint16_t hi = static_cast<uint16_t>(lo + 1);
    const double dlo = std::fabs(static_cast<double>(Bf16ToFloat(lo)) - f);
    const double dhi = std::fabs(static_cast<double>(Bf16ToFloat(hi)) - f);
    uint16_t want = dlo < dhi ? lo : (dhi < dlo ? hi : ((lo & 1) ? hi : lo));
    ASSERT_EQ(got, want) << "f=" << f;
  }
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
}

TEST(DTypeTest, F16MatchesExhaustiveNearestSearch) {
  std::mt19937 rng(2);
  std::uniform_real_distribution<double> mant(1.0, 2.0);
  std::uniform_int_distribution<int> expo(-27, 16);
  const double max_f16 = 65504.0, half_ulp = 16.0;
  for (int i = 0; i < 300; ++i) {
    float f = static_cast<float>(std::ldexp(mant(rng), expo(rng)) * (i % 2 ? -1 : 1));
    uint16_t want;
    if (std::fabs(f) >= max_f16 + half_ulp) {
      want = (f < 0 ? 0x8000 : 0) | 0x7C00;
    } else {
      want = NearestPattern(f, F16ToFloat);
    }
    ASSERT_EQ(FloatToF16(f), want) << "f=" << f;
  }
  // Exact ties: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10 and goes to the even one (1).
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(FloatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(FloatToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: zero
  EXPECT_EQ(FloatToF16(std::ldexp(1.5f, -25)), 0x0001);
}

TEST(DTypeTest, F16DecodesEveryPatternExactly) {
  for (uint32_t p = 0; p < 0x10000; ++p) {
    const uint16_t h = static_cast<uint16_t>(p);
    const float f = F16ToFloat(h);
    const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 0x1F) {
      ASSERT_TRUE(m ? std::isnan(f) : std::isinf(f));
      continue;
    }
    const double want = sign * (e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25));
    ASSERT_EQ(static_cast<double>(f), want) << p;
    ASSERT_EQ(FloatToF16(f), h) << p;  // round trip of every finite pattern
  }
}

TEST(DTypeTest, SafetensorsNames) {
  EXPECT_EQ(DTypeFromSafetensorsName("BF16"), DType::kBF16);
  EXPECT_EQ(DTypeFromSafetensorsName("U8"), DType::kU8);
  EXPECT_FALSE(DTypeFromSafetensorsName("F8_E4M3").has_value());
  EXPECT_FALSE(DTypeFromSafetensorsName("Q4_0").has_value());
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
}

}  // namespace
}  // namespace lorasweep
