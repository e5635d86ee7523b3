// 4-bit quantization (kernels/quantize_4bit.h) against an independent float64 reference written
// here, against bitsandbytes' own outputs (tests/data/bnb, made by
// tests/python/make_bnb_fixtures.py), and the CUDA dequantization when a GPU is present.
//
// The reference decides codes by exhaustive nearest-distance search in double on the float32-scaled
// value. bitsandbytes compares against float32 midpoints with `>`, so "a value equal to the float32
// midpoint of two neighbours" is the tie case: the lower code for 4-bit, the even index for the
// 8-bit dynamic map (dQuantize's search always ends on an even pivot and keeps it on a tie). No
// float lies strictly between a float32-rounded midpoint and the exact one, so that rule and the
// nearest search agree everywhere else. FP4 is the exception: bnb's thresholds are decimal literals
// several ulps off the midpoints, so the FP4 reference counts those literals (listed below)
// instead.
#include "kernels/quantize_4bit.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

#ifdef LORASWEEP_WITH_CUDA
#include <cuda_runtime_api.h>

#include "kernels/dequantize_4bit_cuda.h"
#endif

namespace lorasweep {
namespace {

using ::testing::HasSubstr;

// bnb's dQuantizeNF4 thresholds as written in csrc/kernels.cu.
constexpr double kBnbNf4Literals[15] = {
    -0.8480964004993439,  -0.6106329262256622,  -0.4599952697753906,   -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513,   0.2035212516784668,   0.2920137718319893,    0.3893125355243683,
    0.5016634166240692,   0.6427869200706482,   0.8614784181118011};
// bnb's dQuantizeFP4 thresholds on |x|.
constexpr double kBnbFp4Literals[7] = {0.00260417, 0.0859375, 0.20833333, 0.29166667,
                                       0.4166667,  0.583333,  0.8333333};

// ---- Independent reference ---------------------------------------------------------------------

float F(double v) { return static_cast<float>(v); }

uint8_t RefNf4(float s) {
  const std::array<float, 16>& code = CodeTable(QuantType::kNF4);
  if (std::isnan(s)) return 0;  // every `>` in bnb's tree is false
  if (std::isinf(s)) return s > 0 ? 15 : 0;
  int best = 0;
  double best_dist = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 16; ++i) {
    const double d = std::fabs(static_cast<double>(s) - static_cast<double>(code[i]));
    if (d < best_dist) {  // strict: on an exact tie the lower code stays
      best = i;
      best_dist = d;
    }
  }
  for (int i = 0; i < 15; ++i) {
    const float mid = F((static_cast<double>(code[i]) + code[i + 1]) / 2.0);
    if (s == mid) return static_cast<uint8_t>(i);
  }
  return static_cast<uint8_t>(best);
}

uint8_t RefFp4(float s) {
  const std::array<float, 16>& code = CodeTable(QuantType::kFP4);
  if (std::isnan(s)) return 0;
  // Codes 0..7 sorted by magnitude give the code for each count of thresholds below |s|.
  std::vector<int> order = {0, 1, 2, 3, 4, 5, 6, 7};
  std::sort(order.begin(), order.end(), [&](int a, int b) { return code[a] < code[b]; });
  const double mag = std::fabs(static_cast<double>(s));
  int rank = 0;
  for (double t : kBnbFp4Literals) rank += mag > static_cast<double>(F(t)) ? 1 : 0;
  return static_cast<uint8_t>(order[rank] + (s < 0 ? 8 : 0));
}

uint8_t RefCode(QuantType type, float s) { return type == QuantType::kNF4 ? RefNf4(s) : RefFp4(s); }

uint8_t RefDynamic(float s) {
  const std::array<float, 256>& map = DynamicSignedMap();
  if (std::isnan(s)) return 0;
  if (std::isinf(s)) return s > 0 ? 255 : 0;
  for (int i = 0; i < 255; ++i) {
    const float mid = F((static_cast<double>(map[i]) + map[i + 1]) / 2.0);
    if (s == mid && s > map[i] && s < map[i + 1])
      return static_cast<uint8_t>(i % 2 == 0 ? i : i + 1);
  }
  int best = 0;
  double best_dist = std::numeric_limits<double>::infinity();
  for (int i = 0; i < 256; ++i) {
    const double d = std::fabs(static_cast<double>(s) - static_cast<double>(map[i]));
    if (d < best_dist) {
      best = i;
      best_dist = d;
    }
  }
  return static_cast<uint8_t>(best);
}

struct Reference {
  std::vector<uint8_t> packed;
  std::vector<float> absmax;  // first level, exact
  std::vector<uint8_t> absmax_codes;
  std::vector<float> nested_absmax;
  float offset = 0;
};

Reference RefQuantize(const std::vector<float>& x, QuantType type, int64_t blocksize, bool dq) {
  Reference r;
  const int64_t n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> codes(x.size());
  for (int64_t start = 0; start < n; start += blocksize) {
    const int64_t end = std::min(n, start + blocksize);
    double m = 0;
    for (int64_t i = start; i < end; ++i) m = std::max(m, std::fabs(static_cast<double>(x[i])));
    const float absmax = F(m);
    r.absmax.push_back(absmax);
    const float inv =
        F(1.0 / static_cast<double>(absmax));  // division by zero gives inf, as in bnb
    for (int64_t i = start; i < end; ++i)
      codes[i] = RefCode(type, F(static_cast<double>(x[i]) * inv));
  }
  for (int64_t i = 0; i < n; i += 2) {
    const uint8_t hi = codes[i];
    const uint8_t lo = i + 1 < n ? codes[i + 1] : 0;
    r.packed.push_back(static_cast<uint8_t>(hi * 16 + lo));
  }
  if (!dq) return r;
  long double sum = 0;
  for (float a : r.absmax) sum += a;
  r.offset = r.absmax.empty() ? 0.0f : static_cast<float>(sum / r.absmax.size());
  for (size_t start = 0; start < r.absmax.size(); start += 256) {
    const size_t end = std::min(r.absmax.size(), start + 256);
    std::vector<float> centered;
    double m = 0;
    for (size_t b = start; b < end; ++b) {
      centered.push_back(F(static_cast<double>(r.absmax[b]) - r.offset));
      m = std::max(m, std::fabs(static_cast<double>(centered.back())));
    }
    r.nested_absmax.push_back(F(m));
    const float inv = F(1.0 / m);
    for (float c : centered) r.absmax_codes.push_back(RefDynamic(F(static_cast<double>(c) * inv)));
  }
  return r;
}

// Block scales the way bnb's dequantize_4bit gets them with DQ: code * nested (rounded), + offset.
std::vector<float> RefAbsmax(const Quantized4bit& q) {
  if (!q.double_quant) return q.absmax;
  std::vector<float> out;
  for (size_t b = 0; b < q.absmax_codes.size(); ++b) {
    const float scaled =
        F(static_cast<double>(DynamicSignedMap()[q.absmax_codes[b]]) * q.nested_absmax[b / 256]);
    out.push_back(F(static_cast<double>(scaled) + q.nested_offset));
  }
  return out;
}

uint32_t Bits(float v) { return std::bit_cast<uint32_t>(v); }

std::vector<uint32_t> BitsOf(const std::vector<float>& v) {
  std::vector<uint32_t> out;
  for (float f : v) out.push_back(Bits(f));
  return out;
}

void ExpectMatchesReference(const std::vector<float>& x, QuantType type, int64_t blocksize, bool dq,
                            int threads = 0) {
  SCOPED_TRACE(::testing::Message() << QuantTypeName(type) << " blocksize " << blocksize << " dq "
                                    << dq << " n " << x.size() << " threads " << threads);
  absl::StatusOr<Quantized4bit> q =
      Quantize4bit(x, {static_cast<int64_t>(x.size())}, type, blocksize, dq, threads);
  ASSERT_TRUE(q.ok()) << q.status();
  const Reference r = RefQuantize(x, type, blocksize, dq);
  EXPECT_EQ(q->packed, r.packed);
  if (dq) {
    EXPECT_TRUE(q->absmax.empty());
    EXPECT_EQ(Bits(q->nested_offset), Bits(r.offset));
    EXPECT_EQ(q->absmax_codes, r.absmax_codes);
    EXPECT_EQ(BitsOf(q->nested_absmax), BitsOf(r.nested_absmax));
  } else {
    EXPECT_EQ(BitsOf(q->absmax), BitsOf(r.absmax));
  }
}

std::vector<float> RandomWeights(int64_t n, uint64_t seed, float scale = 0.02f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> block_scale(0.1f, 10.0f);
  std::vector<float> x(static_cast<size_t>(n));
  float s = scale;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 97 == 0) s = scale * block_scale(rng);  // blocks with differing ranges
    x[i] = normal(rng) * s;
  }
  return x;
}

// ---- Tables -------------------------------------------------------------------------------------

TEST(CodeTableTest, Nf4AndFp4Values) {
  const std::array<float, 16>& nf4 = CodeTable(QuantType::kNF4);
  EXPECT_EQ(nf4[0], -1.0f);
  EXPECT_EQ(nf4[7], 0.0f);
  EXPECT_EQ(nf4[15], 1.0f);
  EXPECT_EQ(nf4[8], 0.07958029955625534f);
  EXPECT_TRUE(std::is_sorted(nf4.begin(), nf4.end()));
  // FP4 in bit-pattern order [0, .0625, 8, 12, 4, 6, 2, 3] / 12 with bit 3 the sign; bnb serializes
  // code 8 ("-0") as +0.
  const double magnitudes[8] = {0, 0.0625, 8, 12, 4, 6, 2, 3};
  const std::array<float, 16>& fp4 = CodeTable(QuantType::kFP4);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(Bits(fp4[i]), Bits(F(magnitudes[i] / 12.0))) << i;
    if (i > 0) {
      EXPECT_EQ(Bits(fp4[i + 8]), Bits(F(-magnitudes[i] / 12.0))) << i;
    }
  }
  EXPECT_EQ(Bits(fp4[8]), 0u);
}

TEST(CodeTableTest, ThresholdsAreBnbLiterals) {
  const std::array<float, 16>& nf4 = CodeTable(QuantType::kNF4);
  const std::array<float, 15>& t = DecisionThresholds(QuantType::kNF4);
  for (int i = 0; i < 15; ++i) {
    EXPECT_EQ(Bits(t[i]), Bits(F(kBnbNf4Literals[i]))) << i;
    EXPECT_EQ(Bits(t[i]), Bits(F((static_cast<double>(nf4[i]) + nf4[i + 1]) / 2.0))) << i;
  }
  const std::array<float, 15>& f = DecisionThresholds(QuantType::kFP4);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(Bits(f[i]), Bits(F(kBnbFp4Literals[i]))) << i;
}

TEST(CodeTableTest, ParseAndName) {
  EXPECT_STREQ(QuantTypeName(QuantType::kNF4), "nf4");
  EXPECT_STREQ(QuantTypeName(QuantType::kFP4), "fp4");
  EXPECT_EQ(*ParseQuantType("nf4"), QuantType::kNF4);
  EXPECT_EQ(*ParseQuantType("fp4"), QuantType::kFP4);
  EXPECT_EQ(ParseQuantType("int4").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseQuantType("NF4").status().code(), absl::StatusCode::kInvalidArgument);
}

// One float32 operation is exactly "compute in double, round once": spot values of the dynamic map
// recomputed that way from create_dynamic_map's definition.
TEST(DynamicMapTest, PropertiesAndSpotValues) {
  const std::array<float, 256>& map = DynamicSignedMap();
  EXPECT_TRUE(std::is_sorted(map.begin(), map.end()));
  for (int i = 1; i < 256; ++i) EXPECT_LT(map[i - 1], map[i]) << i;
  EXPECT_EQ(map[255], 1.0f);
  EXPECT_EQ(Bits(map[127]), 0u);
  EXPECT_NEAR(map[0], -0.99297, 5e-6);
  // Exponent 0 (scale 1e-6): two boundaries 0.1f and 1, one mean, the smallest magnitude.
  const float mean0 = F((static_cast<double>(0.1f) + 1.0) / 2.0);
  EXPECT_EQ(map[128], F(static_cast<double>(F(1e-6)) * mean0));
  EXPECT_EQ(map[126], -map[128]);
  // Exponent 6 (scale 1): 65 boundaries, step (1 - 0.1f) / 64; the last mean is between 1 - step
  // and 1.
  const float step = F(static_cast<double>(F(1.0 - static_cast<double>(0.1f))) / 64.0);
  const float b63 = F(1.0 - static_cast<double>(step));
  EXPECT_EQ(map[254], F((static_cast<double>(b63) + 1.0) / 2.0));
  EXPECT_EQ(map[0], -map[254]);
  EXPECT_EQ(map[254], 0.99296874f);
  // The first mean of exponent 6: boundaries 0.1f and 0.1f + step.
  const float b1 = F(static_cast<double>(step) + static_cast<double>(0.1f));
  const float first6 = F((static_cast<double>(0.1f) + b1) / 2.0);
  EXPECT_NE(std::find(map.begin(), map.end(), first6), map.end());
  // 2^i positive entries per exponent i, plus 1.0: 127 positive values.
  EXPECT_EQ(std::count_if(map.begin(), map.end(), [](float v) { return v > 0; }), 128);
}

TEST(DynamicMapTest, SearchMatchesReferenceOnEveryMidpoint) {
  const std::array<float, 256>& map = DynamicSignedMap();
  std::vector<float> probes = {0.0f,
                               -0.0f,
                               1.0f,
                               -1.0f,
                               2.0f,
                               -2.0f,
                               1e-30f,
                               -1e-30f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity()};
  for (int i = 0; i < 256; ++i) {
    probes.push_back(map[i]);
    probes.push_back(std::nextafter(map[i], 2.0f));
    probes.push_back(std::nextafter(map[i], -2.0f));
    if (i < 255) {
      const float mid = (map[i] + map[i + 1]) * 0.5f;
      probes.push_back(mid);
      probes.push_back(std::nextafter(mid, 2.0f));
      probes.push_back(std::nextafter(mid, -2.0f));
    }
  }
  int ties = 0;
  for (float s : probes) {
    EXPECT_EQ(QuantizeDynamic(map, s), RefDynamic(s)) << s;
    for (int i = 0; i < 255; ++i) ties += (s == (map[i] + map[i + 1]) * 0.5f) ? 1 : 0;
  }
  EXPECT_GT(ties, 200);  // the probes really exercise the tie rule
  EXPECT_EQ(QuantizeDynamic(map, std::nanf("")), 0);
}

// ---- Quantization against the reference ---------------------------------------------------------

TEST(Quantize4bitTest, RandomInputsAllBlocksizes) {
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    for (int64_t bs = 32; bs <= 4096; bs *= 2) {
      for (bool dq : {false, true}) {
        // Odd sizes with a short last block; large enough for two nested groups at small
        // blocksizes.
        const int64_t n = bs <= 64 ? 300 * bs + 7 : 5 * bs + 13;
        ExpectMatchesReference(RandomWeights(n, 1000 + bs + dq), type, bs, dq);
      }
    }
  }
}

TEST(Quantize4bitTest, ExactMidpointsGoToLowerCode) {
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    const std::array<float, 15>& t = DecisionThresholds(type);
    const int used = type == QuantType::kNF4 ? 15 : 7;
    // absmax 1 and 2 have exact reciprocals; 0.7316 does not, so x is searched such that
    // x * (1/absmax) rounds exactly onto the threshold.
    for (float absmax : {1.0f, 2.0f, 0.7316f, 3.1e-3f}) {
      const float inv = 1.0f / absmax;
      std::vector<float> x = {absmax};
      std::vector<float> targets;
      for (int i = 0; i < used; ++i) {
        targets.push_back(t[i]);
        if (type == QuantType::kFP4) targets.push_back(-t[i]);
      }
      int hits = 0;
      for (float target : targets) {
        float v = target * absmax;
        for (int k = 0; k < 8 && v * inv != target; ++k) {
          v = std::nextafter(v, v * inv < target ? 10.0f : -10.0f);
        }
        if (v * inv != target) continue;
        ++hits;
        x.push_back(v);
        x.push_back(std::nextafter(v, 10.0f));
        x.push_back(std::nextafter(v, -10.0f));
      }
      // A threshold may have no float v with v * inv exactly on it; nearly all must be hit.
      EXPECT_GE(hits, used - 2) << absmax;
      ExpectMatchesReference(x, type, 4096, false);
      absl::StatusOr<Quantized4bit> q =
          Quantize4bit(x, {static_cast<int64_t>(x.size())}, type, 4096, false);
      ASSERT_TRUE(q.ok());
      // For NF4 the code on threshold i is i itself (the lower neighbour).
      if (type == QuantType::kNF4 && absmax == 1.0f) {
        for (int i = 0; i < 15; ++i) {
          const size_t e = 1 + 3 * static_cast<size_t>(i);
          const int code = e % 2 == 0 ? q->packed[e / 2] >> 4 : q->packed[e / 2] & 15;
          EXPECT_EQ(code, i);
        }
      }
    }
  }
}

TEST(Quantize4bitTest, ZerosNegativeZeroAndEqualBlocks) {
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    std::vector<float> x(64 * 6, 0.0f);
    // Block 0: all zero (absmax 0 -> 1/0 = inf -> 0 * inf = NaN -> code 0 in bnb's CUDA tree).
    // Block 1: zeros and negative zeros next to a nonzero value.
    x[64] = 0.5f;
    for (int i = 65; i < 128; i += 2) x[i] = -0.0f;
    // Block 2: all equal positive; block 3: all equal negative; block 4: all equal, not a power
    // of 2.
    std::fill(x.begin() + 128, x.begin() + 192, 0.375f);
    std::fill(x.begin() + 192, x.begin() + 256, -3.0f);
    std::fill(x.begin() + 256, x.begin() + 320, 0.1f);
    // Block 5: all negative zero.
    std::fill(x.begin() + 320, x.end(), -0.0f);
    for (bool dq : {false, true}) ExpectMatchesReference(x, type, 64, dq);

    absl::StatusOr<Quantized4bit> q = Quantize4bit(x, {6, 64}, type, 64, false);
    ASSERT_TRUE(q.ok());
    const uint8_t zero_code = type == QuantType::kNF4 ? 7 : 0;
    const uint8_t top = type == QuantType::kNF4 ? 15 : 3;
    const uint8_t bottom = type == QuantType::kNF4 ? 0 : 11;
    EXPECT_EQ(q->packed[0], 0x00);    // all-zero block: code 0, not the zero code
    EXPECT_EQ(q->packed[160], 0x00);  // all -0.0 likewise
    EXPECT_EQ(q->absmax[0], 0.0f);
    EXPECT_EQ(q->packed[32] >> 4, top);  // 0.5 in block 1
    EXPECT_EQ(q->packed[33], zero_code * 17);
    EXPECT_EQ(q->packed[64], top * 17);
    EXPECT_EQ(q->packed[96], bottom * 17);
    EXPECT_EQ(q->packed[128], top * 17);  // 0.1 * (1 / 0.1f) rounds to 1 or just below: top code
    std::vector<float> back(x.size());
    ASSERT_TRUE(Dequantize4bit(*q, back).ok());
    for (size_t i = 0; i < 64; ++i) EXPECT_EQ(back[i], 0.0f);  // -0.0 for NF4 compares equal
    for (size_t i = 128; i < 192; ++i) EXPECT_EQ(back[i], 0.375f);
    for (size_t i = 192; i < 256; ++i) EXPECT_EQ(back[i], -3.0f);
  }
}

TEST(Quantize4bitTest, Denormals) {
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    std::vector<float> x(96, 0.0f);
    const float tiny = std::numeric_limits<float>::denorm_min();
    // Block 0: denormals with absmax 1e-40, whose reciprocal overflows to inf: nonzero values go to
    // the extreme codes, zeros (0 * inf = NaN) to code 0, exactly as bnb's kernel does.
    for (int i = 0; i < 32; ++i) x[i] = (i % 3 == 0) ? 0.0f : (i % 2 ? 1e-40f : -7 * tiny);
    // Block 1: denormals next to a normal value (finite reciprocal).
    x[32] = 1e-37f;
    for (int i = 33; i < 64; ++i) x[i] = (i % 2 ? 1 : -1) * static_cast<float>(i) * 1e-39f;
    // Block 2: denormal absmax whose reciprocal is still finite.
    for (int i = 64; i < 96; ++i) x[i] = (i % 2 ? 1 : -1) * static_cast<float>(i) * 1e-38f / 96;
    for (bool dq : {false, true}) ExpectMatchesReference(x, type, 32, dq);
    absl::StatusOr<Quantized4bit> q = Quantize4bit(x, {96}, type, 32, false);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->packed[0] >> 4, 0);                                 // x[0] = 0 -> NaN -> code 0
    EXPECT_EQ(q->packed[0] & 15, type == QuantType::kNF4 ? 15 : 3);  // x[1] = 1e-40 -> +inf
  }
}

TEST(Quantize4bitTest, PackingOrderHandBuilt) {
  // Three elements, one block: absmax 1, codes (NF4) 15, 0, 7 -> 0xF0 0x70 (first element in the
  // high nibble, the odd tail padded with 0). FP4: 1.0 = 0b0011, -1.0 = 0b1011, 0 = 0b0000 -> 0x3B
  // 0x00.
  const std::vector<float> x = {1.0f, -1.0f, 0.0f};
  absl::StatusOr<Quantized4bit> nf4 = Quantize4bit(x, {1, 3}, QuantType::kNF4, 64, false);
  ASSERT_TRUE(nf4.ok());
  EXPECT_EQ(nf4->packed, (std::vector<uint8_t>{0xF0, 0x70}));
  EXPECT_EQ(nf4->absmax, std::vector<float>{1.0f});
  EXPECT_EQ(nf4->num_elements, 3);
  EXPECT_EQ(nf4->shape, (std::vector<int64_t>{1, 3}));
  absl::StatusOr<Quantized4bit> fp4 = Quantize4bit(x, {3}, QuantType::kFP4, 64, false);
  ASSERT_TRUE(fp4.ok());
  EXPECT_EQ(fp4->packed, (std::vector<uint8_t>{0x3B, 0x00}));
  // With absmax 1: NF4 0.5 -> 12 (0.4407; bnb's threshold between 12 and 13 is 0.50166),
  // -0.25 -> 4 (-0.2844; threshold to 5 is -0.2346), 1.0 -> 15, 0.0 -> 7.
  const std::vector<float> four = {0.5f, -0.25f, 1.0f, 0.0f};
  absl::StatusOr<Quantized4bit> two = Quantize4bit(four, {4}, QuantType::kNF4, 32, false);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->packed, (std::vector<uint8_t>{0xC4, 0xF7}));
}

TEST(Quantize4bitTest, RejectsNonFiniteNamingTheFirstIndex) {
  for (int threads : {1, 3}) {
    for (float bad :
         {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
          std::numeric_limits<float>::quiet_NaN()}) {
      std::vector<float> x = RandomWeights(64 * 1000 + 5, 7);
      x[50001] = bad;
      x[63999] = bad;
      absl::StatusOr<Quantized4bit> q =
          Quantize4bit(x, {static_cast<int64_t>(x.size())}, QuantType::kNF4, 64, true, threads);
      ASSERT_FALSE(q.ok());
      EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(std::string(q.status().message()), HasSubstr("element 50001 "));
    }
  }
}

TEST(Quantize4bitTest, RejectsBadArguments) {
  const std::vector<float> x(256, 1.0f);
  for (int64_t bs : {0, -64, 16, 48, 96, 8192}) {
    absl::StatusOr<Quantized4bit> q = Quantize4bit(x, {256}, QuantType::kNF4, bs, false);
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument) << bs;
  }
  EXPECT_EQ(Quantize4bit(x, {16, 15}, QuantType::kNF4, 64, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Quantize4bit(x, {-16, -16}, QuantType::kNF4, 64, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<Quantized4bit> empty = Quantize4bit({}, {0, 5}, QuantType::kNF4, 64, true);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->packed.empty());
  EXPECT_EQ(empty->BitsPerParameter(), 0.0);
}

TEST(Quantize4bitTest, ThreadCountDoesNotChangeResults) {
  const std::vector<float> x = RandomWeights(64 * 3000 + 33, 11);
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    for (bool dq : {false, true}) {
      absl::StatusOr<Quantized4bit> one = Quantize4bit(x, {64 * 3000 + 33}, type, 64, dq, 1);
      ASSERT_TRUE(one.ok());
      std::vector<float> back_one(x.size());
      ASSERT_TRUE(Dequantize4bit(*one, back_one, 1).ok());
      for (int threads : {2, 3, 8}) {
        absl::StatusOr<Quantized4bit> many =
            Quantize4bit(x, {64 * 3000 + 33}, type, 64, dq, threads);
        ASSERT_TRUE(many.ok());
        EXPECT_EQ(many->packed, one->packed);
        EXPECT_EQ(BitsOf(many->absmax), BitsOf(one->absmax));
        EXPECT_EQ(many->absmax_codes, one->absmax_codes);
        EXPECT_EQ(BitsOf(many->nested_absmax), BitsOf(one->nested_absmax));
        EXPECT_EQ(Bits(many->nested_offset), Bits(one->nested_offset));
        std::vector<float> back(x.size());
        ASSERT_TRUE(Dequantize4bit(*many, back, threads).ok());
        EXPECT_EQ(BitsOf(back), BitsOf(back_one));
      }
      ExpectMatchesReference(x, type, 64, dq, 3);
    }
  }
}

// ---- Bits per parameter
// --------------------------------------------------------------------------

TEST(BitsPerParameterTest, FollowsTheStorageFormula) {
  struct Case {
    std::vector<int64_t> shape;
    int64_t blocksize;
    bool dq;
  };
  const std::vector<Case> cases = {{{576, 576}, 64, true},   {{1536, 576}, 64, false},
                                   {{3, 5}, 64, true},       {{1, 1}, 32, false},
                                   {{4096, 4096}, 64, true}, {{4097, 33}, 128, true},
                                   {{100, 3}, 4096, false}};
  for (const Case& c : cases) {
    Quantized4bit q;
    q.blocksize = c.blocksize;
    q.double_quant = c.dq;
    q.shape = c.shape;
    q.num_elements = 1;
    for (int64_t d : c.shape) q.num_elements *= d;
    const double n = static_cast<double>(q.num_elements);
    const double blocks = std::ceil(n / static_cast<double>(c.blocksize));
    const double code_bits = 8.0 * std::ceil(n / 2.0);
    const double scale_bits =
        c.dq ? 8.0 * blocks + 32.0 * std::ceil(blocks / 256.0) + 32.0 : 32.0 * blocks;
    EXPECT_DOUBLE_EQ(q.BitsPerParameter(), (code_bits + scale_bits) / n) << q.num_elements;
  }
  Quantized4bit big;
  big.double_quant = true;
  big.blocksize = 64;
  big.num_elements = 4096LL * 4096;
  EXPECT_NEAR(big.BitsPerParameter(), 4.127, 0.001);
  big.double_quant = false;
  EXPECT_NEAR(big.BitsPerParameter(), 4.5, 1e-9);
  // A real quantization agrees with the bare struct.
  absl::StatusOr<Quantized4bit> q =
      Quantize4bit(RandomWeights(576 * 576, 3), {576, 576}, QuantType::kNF4, 64, true);
  ASSERT_TRUE(q.ok());
  EXPECT_DOUBLE_EQ(q->BitsPerParameter(),
                   (8.0 * 576 * 288 + 8.0 * 5184 + 32.0 * 21 + 32.0) / (576.0 * 576.0));
}

// ---- Dequantization
// ------------------------------------------------------------------------------

double MaxHalfGap(QuantType type) {
  std::vector<float> code(CodeTable(type).begin(), CodeTable(type).end());
  std::sort(code.begin(), code.end());
  double gap = 0;
  for (size_t i = 1; i < code.size(); ++i)
    gap = std::max(gap, static_cast<double>(code[i]) - code[i - 1]);
  return gap / 2;
}

TEST(Dequantize4bitTest, ExactValuesAndRoundTripBound) {
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    for (int64_t bs : {32, 64, 256, 4096}) {
      for (bool dq : {false, true}) {
        SCOPED_TRACE(::testing::Message() << QuantTypeName(type) << " " << bs << " " << dq);
        const int64_t n = 20 * 4096 + 3;
        const std::vector<float> x = RandomWeights(n, 50 + bs + dq);
        absl::StatusOr<Quantized4bit> q = Quantize4bit(x, {n}, type, bs, dq);
        ASSERT_TRUE(q.ok());
        const std::vector<float> absmax = DequantizeAbsmax(*q);
        EXPECT_EQ(BitsOf(absmax), BitsOf(RefAbsmax(*q)));
        std::vector<float> back(static_cast<size_t>(n));
        ASSERT_TRUE(Dequantize4bit(*q, back).ok());
        const Reference r = RefQuantize(x, type, bs, false);  // exact first-level absmax
        const double half_gap = MaxHalfGap(type);
        for (int64_t i = 0; i < n; ++i) {
          const uint8_t byte = q->packed[i / 2];
          const int code = (i % 2 == 0) ? byte >> 4 : byte & 15;
          ASSERT_EQ(Bits(back[i]),
                    Bits(F(static_cast<double>(CodeTable(type)[code]) * absmax[i / bs])))
              << i;
          const double a = r.absmax[i / bs];
          const double scale_err = std::fabs(a - static_cast<double>(absmax[i / bs]));
          // FP4's literal thresholds sit up to 3.3e-7 off the midpoints; 1e-6 covers float
          // rounding.
          const double bound = half_gap * a + scale_err + 1e-6 * a;
          ASSERT_LE(std::fabs(static_cast<double>(x[i]) - back[i]), bound) << i;
        }
      }
    }
  }
}

TEST(Dequantize4bitTest, RawMatchesAndErrorsOnBadParts) {
  const std::vector<float> x = RandomWeights(1001, 9);
  absl::StatusOr<Quantized4bit> q = Quantize4bit(x, {7, 143}, QuantType::kFP4, 128, false);
  ASSERT_TRUE(q.ok());
  std::vector<float> a(1001), b(1001);
  ASSERT_TRUE(Dequantize4bit(*q, a).ok());
  Dequantize4bitRaw(CodeTable(QuantType::kFP4), q->packed.data(), q->absmax.data(), 128, 1001,
                    b.data(), 2);
  EXPECT_EQ(BitsOf(a), BitsOf(b));
  std::vector<float> wrong(1000);
  EXPECT_EQ(Dequantize4bit(*q, wrong).code(), absl::StatusCode::kInvalidArgument);
  Quantized4bit broken = *q;
  broken.absmax.pop_back();
  EXPECT_EQ(Dequantize4bit(broken, a).code(), absl::StatusCode::kInvalidArgument);
  broken = *q;
  broken.packed.pop_back();
  EXPECT_EQ(Dequantize4bit(broken, a).code(), absl::StatusCode::kInvalidArgument);
  broken = *q;
  broken.double_quant = true;
  EXPECT_EQ(Dequantize4bit(broken, a).code(), absl::StatusCode::kInvalidArgument);
}

// ---- bitsandbytes fixtures ----------------------------------------------------------------------

const std::string kFixtureDir = std::string(LORASWEEP_TEST_DATA_DIR) + "/bnb";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <typename T>
std::vector<T> Section(const std::string& data, const nlohmann::json& sections, const char* key) {
  const size_t offset = sections.at(key).at(0).get<size_t>();
  const size_t bytes = sections.at(key).at(1).get<size_t>();
  std::vector<T> out(bytes / sizeof(T));
  std::memcpy(out.data(), data.data() + offset, bytes);
  return out;
}

TEST(BitsandbytesFixtureTest, TablesMatch) {
  const nlohmann::json index = nlohmann::json::parse(ReadFile(kFixtureDir + "/fixtures.json"));
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    const auto bits =
        index.at("quant_map_bits").at(QuantTypeName(type)).get<std::vector<uint32_t>>();
    ASSERT_EQ(bits.size(), 16u);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(Bits(CodeTable(type)[i]), bits[i]) << i;
  }
  const std::string map = ReadFile(kFixtureDir + "/dynamic_map.bin");
  ASSERT_EQ(map.size(), 1024u);
  std::array<float, 256> expected;
  std::memcpy(expected.data(), map.data(), 1024);
  for (int i = 0; i < 256; ++i) EXPECT_EQ(Bits(DynamicSignedMap()[i]), Bits(expected[i])) << i;
}

TEST(BitsandbytesFixtureTest, QuantizationIsByteIdentical) {
  const nlohmann::json index = nlohmann::json::parse(ReadFile(kFixtureDir + "/fixtures.json"));
  ASSERT_GE(index.at("cases").size(), 4u);
  for (const nlohmann::json& c : index.at("cases")) {
    SCOPED_TRACE(c.at("name").get<std::string>());
    const std::string data = ReadFile(kFixtureDir + "/" + c.at("file").get<std::string>());
    const nlohmann::json& sections = c.at("sections");
    const std::vector<float> x = Section<float>(data, sections, "input");
    const QuantType type = *ParseQuantType(c.at("quant_type").get<std::string>());
    const bool dq = c.at("double_quant").get<bool>();
    const int64_t bs = c.at("blocksize").get<int64_t>();
    absl::StatusOr<Quantized4bit> q =
        Quantize4bit(x, c.at("shape").get<std::vector<int64_t>>(), type, bs, dq);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ(q->packed, Section<uint8_t>(data, sections, "packed"));
    if (dq) {
      EXPECT_EQ(Bits(q->nested_offset), c.at("nested_offset_bits").get<uint32_t>());
      EXPECT_EQ(q->absmax_codes, Section<uint8_t>(data, sections, "absmax_codes"));
      EXPECT_EQ(BitsOf(q->nested_absmax), BitsOf(Section<float>(data, sections, "nested_absmax")));
      EXPECT_EQ(BitsOf(DequantizeAbsmax(*q)),
                BitsOf(Section<float>(data, sections, "dequantized_absmax")));
    } else {
      EXPECT_EQ(BitsOf(q->absmax), BitsOf(Section<float>(data, sections, "absmax")));
    }
    if (sections.contains("dequantized")) {
      const std::vector<float> want = Section<float>(data, sections, "dequantized");
      std::vector<float> back(x.size());
      ASSERT_TRUE(Dequantize4bit(*q, back).ok());
      for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(back[i], want[i]) << i;  // +0 == -0
    }
  }
}

// ---- CUDA
// ----------------------------------------------------------------------------------------

#ifdef LORASWEEP_WITH_CUDA
TEST(Dequantize4bitCudaTest, StagingLayoutIsConflictFree) {
  EXPECT_TRUE(Dequantize4bitCudaLayoutSelfCheck());
}

template <typename T>
T* Upload(const std::vector<T>& v) {
  void* p = nullptr;
  if (cudaMalloc(&p, std::max<size_t>(1, v.size() * sizeof(T))) != cudaSuccess) return nullptr;
  cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
  return static_cast<T*>(p);
}

TEST(Dequantize4bitCudaTest, MatchesCpu) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    GTEST_SKIP() << "no CUDA device";
  }
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    for (bool dq : {false, true}) {
      for (int64_t n : {int64_t{3}, int64_t{31}, int64_t{64 * 1000 + 17}, int64_t{1 << 20}}) {
        SCOPED_TRACE(::testing::Message() << QuantTypeName(type) << " dq " << dq << " n " << n);
        const std::vector<float> x = RandomWeights(n, 77 + n);
        absl::StatusOr<Quantized4bit> q = Quantize4bit(x, {n}, type, 64, dq);
        ASSERT_TRUE(q.ok());
        std::vector<float> want(static_cast<size_t>(n));
        ASSERT_TRUE(Dequantize4bit(*q, want).ok());
        // Offset by one byte / one element too, to exercise the unaligned path.
        for (int shift : {0, 1}) {
          std::vector<uint8_t> packed(static_cast<size_t>(shift), 0);
          packed.insert(packed.end(), q->packed.begin(), q->packed.end());
          uint8_t* d_packed = Upload(packed);
          float* d_absmax = dq ? nullptr : Upload(q->absmax);
          uint8_t* d_codes = dq ? Upload(q->absmax_codes) : nullptr;
          float* d_nested = dq ? Upload(q->nested_absmax) : nullptr;
          std::vector<float> map(DynamicSignedMap().begin(), DynamicSignedMap().end());
          float* d_map = Upload(map);
          Dequantize4bitCudaArgs args;
          args.packed = d_packed + shift;
          args.absmax = d_absmax;
          args.absmax_codes = d_codes;
          args.nested_absmax = d_nested;
          args.nested_code = d_map;
          args.nested_offset = q->nested_offset;
          std::copy(CodeTable(type).begin(), CodeTable(type).end(), args.code);
          args.blocksize = 64;
          args.num_elements = n;
          float* d_out = nullptr;
          uint16_t* d_bf16 = nullptr;
          ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_out), (n + 1) * sizeof(float)),
                    cudaSuccess);
          ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&d_bf16), (n + 1) * sizeof(uint16_t)),
                    cudaSuccess);
          ASSERT_EQ(Dequantize4bitCudaF32(args, d_out + shift, nullptr), cudaSuccess);
          ASSERT_EQ(Dequantize4bitCudaBf16(args, d_bf16 + shift, nullptr), cudaSuccess);
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          std::vector<float> got(static_cast<size_t>(n));
          std::vector<uint16_t> got16(static_cast<size_t>(n));
          cudaMemcpy(got.data(), d_out + shift, n * sizeof(float), cudaMemcpyDeviceToHost);
          cudaMemcpy(got16.data(), d_bf16 + shift, n * sizeof(uint16_t), cudaMemcpyDeviceToHost);
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_EQ(Bits(got[i]), Bits(want[i])) << i;
            // Round to nearest even from float32, as __float2bfloat16_rn does.
            const uint32_t b = Bits(want[i]);
            const uint16_t want16 = static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
            ASSERT_EQ(got16[i], want16) << i;
          }
          for (void* p :
               {static_cast<void*>(d_packed), static_cast<void*>(d_absmax),
                static_cast<void*>(d_codes), static_cast<void*>(d_nested),
                static_cast<void*>(d_map), static_cast<void*>(d_out), static_cast<void*>(d_bf16)}) {
            if (p != nullptr) cudaFree(p);
          }
        }
      }
    }
  }
}
#endif

}  // namespace
}  // namespace lorasweep
