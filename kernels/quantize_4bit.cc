// CPU reference of bitsandbytes' 4-bit blockwise quantization, bit-exact with its CUDA kernels
// (csrc kQuantizeBlockwise with dQuantizeNF4 / dQuantizeFP4, and dQuantize<0> for the 8-bit absmax
// codes of double quantization).
//
// Facts about bitsandbytes this file depends on (read from its source, checked against bnb 0.50.2):
// - First level: absmax = max|x| over the block (float32), then every x is multiplied by the
// float32
//   reciprocal `1.0f / absmax` (a multiply, not a division) and mapped by a comparison tree `s > t`
//   against float32 thresholds, so a value exactly on a threshold takes the lower code. A tree of
//   `>` comparisons on sorted thresholds equals "the number of thresholds below s", which is what
//   the vectorizable loops below count.
// - An all-zero block has absmax 0, 1/0 = inf and 0 * inf = NaN; every comparison with NaN is
// false,
//   so the CUDA tree returns code 0 for every element (NF4 -1.0, FP4 +0), dequantizing to -0.0 /
//   0.0. Likewise a block whose absmax is a denormal below ~2.9e-39 gets an infinite reciprocal:
//   its nonzero elements go to the extreme codes and its zeros to code 0. We reproduce both.
// - Double quantization (Python side of bnb.functional.quantize_4bit): offset = absmax.mean() in
//   float32, then quantize_blockwise(absmax - offset, blocksize=256) with the signed dynamic map,
//   i.e. the same absmax/reciprocal scheme per 256 blocks and dQuantize<0>'s binary search.
// bitsandbytes' CPU backend (used when no GPU is present) differs from CUDA in corner cases, and we
// follow CUDA: it clamps absmax to >= 1e-38 (an all-zero NF4 block becomes 0x77, not 0x00), divides
// instead of multiplying by the reciprocal in the last short block, derives FP4 thresholds from a
// 4-decimal table (0.0052, 0.6667, ...) and cannot tell FP4 +0 from -0, and its 8-bit search
// divides, breaks ties towards the lower index and replaces code[0] by -1.
#include "kernels/quantize_4bit.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/parallel_for.h"

namespace lorasweep {
namespace {

constexpr std::array<float, 16> kNf4Code = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// E2M1 magnitudes in bit-pattern order divided by 12 in float32 (bnb builds the table the same
// way). Code 8 is "-0" but bnb's serialized quant_map holds +0 (Python's `-0` is the integer 0).
constexpr std::array<float, 16> kFp4Code = {
    0.0f,          0.0625f / 12.0f, 8.0f / 12.0f,  12.0f / 12.0f,    4.0f / 12.0f,  6.0f / 12.0f,
    2.0f / 12.0f,  3.0f / 12.0f,    0.0f,          -0.0625f / 12.0f, -8.0f / 12.0f, -12.0f / 12.0f,
    -4.0f / 12.0f, -6.0f / 12.0f,   -2.0f / 12.0f, -3.0f / 12.0f,
};

constexpr std::array<float, 15> MidpointsOf(const std::array<float, 16>& sorted) {
  std::array<float, 15> mid{};
  for (size_t i = 0; i < 15; ++i) mid[i] = (sorted[i] + sorted[i + 1]) * 0.5f;
  return mid;
}

// bnb's dQuantizeNF4 literals are the float32 roundings of these midpoints (checked in the test).
constexpr std::array<float, 15> kNf4Thresholds = MidpointsOf(kNf4Code);

// dQuantizeFP4's thresholds on |s|, as bnb writes them; several are not the float32 midpoints
// (0.583333f is 6 ulps below 7/12), so they are data, not derived. The tail is unused padding.
constexpr std::array<float, 15> kFp4Thresholds = {
    0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f, 2.0f,
    2.0f,        2.0f,       2.0f,        2.0f,        2.0f,       2.0f,      2.0f,
};
// Between sorted magnitudes the FP4 code changes by these amounts: sorted order of the codes
// 0b000.. 0b111 is 0, 1, 6, 7, 4, 5, 2, 3; summing weights keeps the loop free of a table gather.
constexpr int32_t kFp4Steps[7] = {1, 5, 1, -3, 1, -3, 1};

bool IsPowerOfTwo(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// max |x| as an IEEE bit pattern: for non-negative floats integer order is float order, and the
// integer max vectorizes where a float max with NaN semantics would not. Any pattern above the
// largest finite float means an inf or NaN is present.
int32_t AbsMaxBits(const float* x, int64_t len) {
  int32_t m = 0;
  for (int64_t i = 0; i < len; ++i) {
    const int32_t bits = std::bit_cast<int32_t>(x[i]) & 0x7fffffff;
    m = bits > m ? bits : m;
  }
  return m;
}
constexpr int32_t kMaxFiniteBits = 0x7f7fffff;

void CodesNf4(const float* x, int64_t len, float inv, uint8_t* codes) {
  for (int64_t i = 0; i < len; ++i) {
    const float s = x[i] * inv;
    int32_t q = 0;
    for (int t = 0; t < 15; ++t) q += s > kNf4Thresholds[t] ? 1 : 0;
    codes[i] = static_cast<uint8_t>(q);
  }
}

void CodesFp4(const float* x, int64_t len, float inv, uint8_t* codes) {
  for (int64_t i = 0; i < len; ++i) {
    const float s = x[i] * inv;
    const float a = std::fabs(s);
    // NaN: no threshold is below it and `s < 0` is false, so code 0, as in bnb's tree.
    int32_t q = s < 0.0f ? 8 : 0;
    for (int t = 0; t < 7; ++t) q += a > kFp4Thresholds[t] ? kFp4Steps[t] : 0;
    codes[i] = static_cast<uint8_t>(q);
  }
}

// Codes of one block packed two per byte, first element in the high nibble; an odd tail pairs with
// 0.
void PackCodes(const uint8_t* codes, int64_t len, uint8_t* out) {
  const int64_t pairs = len / 2;
  for (int64_t j = 0; j < pairs; ++j) {
    out[j] = static_cast<uint8_t>((codes[2 * j] << 4) | codes[2 * j + 1]);
  }
  if (len & 1) out[pairs] = static_cast<uint8_t>(codes[len - 1] << 4);
}

// torch.linspace(start, end, steps, dtype=float32) on x86-64 CPUs: the step in float32, the first
// half counted up from `start` and the second half down from `end`. torch's kernel is built with
// FMA contraction for its AVX2/AVX-512 paths (every wheel on a modern x86 CPU runs those), so each
// point is fma(step, k, start) rounded once; without FMA, 42 of the 256 map entries would differ by
// an ulp.
std::vector<float> TorchLinspaceF32(float start, float end, int steps) {
  std::vector<float> out(static_cast<size_t>(steps));
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int halfway = steps / 2;
  for (int k = 0; k < steps; ++k) {
    out[k] = k < halfway ? std::fma(step, static_cast<float>(k), start)
                         : std::fma(-step, static_cast<float>(steps - k - 1), end);
  }
  return out;
}

std::array<float, 256> BuildDynamicSignedMap() {
  // create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for exponent i in 0..6,
  // 2^i + 1 linspace boundaries in [0.1, 1], their float32 means, scaled by 10^(i-6) (a Python
  // double that torch rounds to float32 before the float32 multiply), with both signs; plus 0
  // and 1.0.
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const std::vector<float> bounds = TorchLinspaceF32(0.1f, 1.0f, (1 << i) + 1);
    const float scale = static_cast<float>(std::pow(10.0, i - 6));
    for (size_t k = 0; k + 1 < bounds.size(); ++k) {
      const float mean = (bounds[k] + bounds[k + 1]) / 2.0f;
      data.push_back(scale * mean);
      data.push_back(-scale * mean);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  std::array<float, 256> map{};
  std::copy(data.begin(), data.end(), map.begin());
  return map;
}

absl::Status NonFiniteError(const float* values, int64_t index) {
  return absl::InvalidArgumentError(absl::StrFormat(
      "Quantize4bit: element %d is %f; only finite values can be quantized", index, values[index]));
}

}  // namespace

const char* QuantTypeName(QuantType type) { return type == QuantType::kNF4 ? "nf4" : "fp4"; }

absl::StatusOr<QuantType> ParseQuantType(const std::string& name) {
  if (name == "nf4") return QuantType::kNF4;
  if (name == "fp4") return QuantType::kFP4;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown 4-bit quantization type \"", name, "\" (expected nf4 or fp4)"));
}

const std::array<float, 16>& CodeTable(QuantType type) {
  return type == QuantType::kNF4 ? kNf4Code : kFp4Code;
}

const std::array<float, 15>& DecisionThresholds(QuantType type) {
  return type == QuantType::kNF4 ? kNf4Thresholds : kFp4Thresholds;
}

const std::array<float, 256>& DynamicSignedMap() {
  static const std::array<float, 256> map = BuildDynamicSignedMap();
  return map;
}

uint8_t QuantizeDynamic(const std::array<float, 256>& code, float x) {
  // Seven halving steps from the middle leave `pivot` on an even index with code[lower] < x <=
  // code[upper] around it (lower/upper stay 0/255 when the search never moved that way). The final
  // midpoint test is bnb's: computed in float32, and a tie resolves to `pivot`, the even index.
  int pivot = 127;
  int lower = 0;
  int upper = 255;
  for (int step = 64; step > 0; step >>= 1) {
    if (x > code[pivot]) {
      lower = pivot;
      pivot += step;
    } else {
      upper = pivot;
      pivot -= step;
    }
  }
  const float val = code[pivot];
  if (x > val) {
    const float midpoint = (code[upper] + val) * 0.5f;
    return static_cast<uint8_t>(x > midpoint ? upper : pivot);
  }
  const float midpoint = (code[lower] + val) * 0.5f;
  return static_cast<uint8_t>(x < midpoint ? lower : pivot);
}

double Quantized4bit::BitsPerParameter() const {
  if (num_elements <= 0) return 0.0;
  const int64_t blocks = num_blocks();
  double bits = 8.0 * static_cast<double>((num_elements + 1) / 2);
  if (double_quant) {
    const int64_t nested = (blocks + kNestedBlocksize - 1) / kNestedBlocksize;
    bits += 8.0 * static_cast<double>(blocks) + 32.0 * static_cast<double>(nested) + 32.0;
  } else {
    bits += 32.0 * static_cast<double>(blocks);
  }
  return bits / static_cast<double>(num_elements);
}

absl::StatusOr<Quantized4bit> Quantize4bit(std::span<const float> values,
                                           std::vector<int64_t> shape, QuantType type,
                                           int64_t blocksize, bool double_quant, int num_threads) {
  if (!IsPowerOfTwo(blocksize) || blocksize < kMinBlocksize || blocksize > kMaxBlocksize) {
    return absl::InvalidArgumentError(absl::StrCat("Quantize4bit: blocksize ", blocksize,
                                                   " is not a power of two in [32, 4096]"));
  }
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0) return absl::InvalidArgumentError("Quantize4bit: negative dimension in shape");
    count *= d;
  }
  if (count != static_cast<int64_t>(values.size())) {
    return absl::InvalidArgumentError(absl::StrCat("Quantize4bit: shape holds ", count,
                                                   " elements but ", values.size(),
                                                   " values were given"));
  }

  Quantized4bit q;
  q.type = type;
  q.blocksize = blocksize;
  q.shape = std::move(shape);
  q.num_elements = count;
  q.double_quant = double_quant;
  const int64_t n = count;
  const int64_t blocks = q.num_blocks();
  q.packed.resize(static_cast<size_t>((n + 1) / 2));
  std::vector<float> absmax(static_cast<size_t>(blocks));

  // Lowest offending block index, so the error names the first bad element whatever the threading.
  std::atomic<int64_t> first_bad_block{std::numeric_limits<int64_t>::max()};
  const float* x = values.data();
  ParallelFor(
      blocks, std::max<int64_t>(1, 32768 / blocksize),
      [&](int64_t begin, int64_t end) {
        uint8_t codes[kMaxBlocksize];
        for (int64_t b = begin; b < end; ++b) {
          const int64_t start = b * blocksize;
          const int64_t len = std::min(blocksize, n - start);
          const int32_t max_bits = AbsMaxBits(x + start, len);
          if (max_bits > kMaxFiniteBits) {
            int64_t seen = first_bad_block.load();
            while (b < seen && !first_bad_block.compare_exchange_weak(seen, b)) {
            }
            return;
          }
          const float block_max = std::bit_cast<float>(max_bits);
          absmax[b] = block_max;
          const float inv = 1.0f / block_max;
          if (type == QuantType::kNF4) {
            CodesNf4(x + start, len, inv, codes);
          } else {
            CodesFp4(x + start, len, inv, codes);
          }
          // Blocks hold an even number of elements, so byte boundaries never straddle blocks.
          PackCodes(codes, len, q.packed.data() + start / 2);
        }
      },
      num_threads);
  if (const int64_t bad = first_bad_block.load(); bad != std::numeric_limits<int64_t>::max()) {
    const int64_t start = bad * blocksize;
    const int64_t len = std::min(blocksize, n - start);
    for (int64_t i = start; i < start + len; ++i) {
      if (!std::isfinite(x[i])) return NonFiniteError(x, i);
    }
  }

  if (!double_quant) {
    q.absmax = std::move(absmax);
    return q;
  }

  // torch's float32 mean sums in float32 in its own (vectorized, cascaded) order, which is not
  // reproducible here; a double sum rounded once is the exact mean to within half an ulp, so the
  // offset can differ from bnb's in the last bit. Codes are computed against our own offset, so the
  // checkpoint stays self-consistent either way.
  double sum = 0.0;
  for (float a : absmax) sum += a;
  q.nested_offset = blocks > 0 ? static_cast<float>(sum / static_cast<double>(blocks)) : 0.0f;
  const int64_t nested_blocks = (blocks + kNestedBlocksize - 1) / kNestedBlocksize;
  q.nested_absmax.resize(static_cast<size_t>(nested_blocks));
  q.absmax_codes.resize(static_cast<size_t>(blocks));
  const std::array<float, 256>& map = DynamicSignedMap();
  const float offset = q.nested_offset;
  ParallelFor(
      nested_blocks, 16,
      [&](int64_t begin, int64_t end) {
        float centered[kNestedBlocksize];
        for (int64_t g = begin; g < end; ++g) {
          const int64_t start = g * kNestedBlocksize;
          const int64_t len = std::min(kNestedBlocksize, blocks - start);
          for (int64_t k = 0; k < len; ++k) centered[k] = absmax[start + k] - offset;
          const float nested = std::bit_cast<float>(AbsMaxBits(centered, len));
          q.nested_absmax[g] = nested;
          const float inv = 1.0f / nested;
          for (int64_t k = 0; k < len; ++k) {
            q.absmax_codes[start + k] = QuantizeDynamic(map, centered[k] * inv);
          }
        }
      },
      num_threads);
  return q;
}

void DequantizeAbsmaxRaw(const float* nested_code, const uint8_t* absmax_codes,
                         const float* nested_absmax, float nested_offset, int64_t num_blocks,
                         float* out) {
  for (int64_t b = 0; b < num_blocks; ++b) {
    // bnb rounds the product (dequantize_blockwise) before adding the offset (a separate torch op);
    // the volatile keeps a compiler targeting FMA hardware from fusing the two.
    volatile float scaled = nested_code[absmax_codes[b]] * nested_absmax[b / kNestedBlocksize];
    out[b] = scaled + nested_offset;
  }
}

std::vector<float> DequantizeAbsmax(const Quantized4bit& q) {
  if (!q.double_quant) return q.absmax;
  std::vector<float> out(q.absmax_codes.size());
  DequantizeAbsmaxRaw(DynamicSignedMap().data(), q.absmax_codes.data(), q.nested_absmax.data(),
                      q.nested_offset, static_cast<int64_t>(q.absmax_codes.size()), out.data());
  return out;
}

void Dequantize4bitRaw(const std::array<float, 16>& code, const uint8_t* packed,
                       const float* absmax, int64_t blocksize, int64_t num_elements, float* out,
                       int num_threads) {
  // One table entry per packed byte holds both of its values, so the inner loop is a load and two
  // multiplies per byte instead of two shifts and two table lookups.
  alignas(64) float pairs[256][2];
  for (int b = 0; b < 256; ++b) {
    pairs[b][0] = code[b >> 4];
    pairs[b][1] = code[b & 15];
  }
  const int64_t blocks = (num_elements + blocksize - 1) / blocksize;
  ParallelFor(
      blocks, std::max<int64_t>(1, 65536 / blocksize),
      [&](int64_t begin, int64_t end) {
        for (int64_t blk = begin; blk < end; ++blk) {
          const float a = absmax[blk];
          const int64_t start = blk * blocksize;
          const int64_t len = std::min(blocksize, num_elements - start);
          const uint8_t* bytes = packed + start / 2;
          float* dst = out + start;
          const int64_t full = len / 2;
          for (int64_t j = 0; j < full; ++j) {
            const float* p = pairs[bytes[j]];
            dst[2 * j] = p[0] * a;
            dst[2 * j + 1] = p[1] * a;
          }
          if (len & 1) dst[len - 1] = code[bytes[full] >> 4] * a;
        }
      },
      num_threads);
}

absl::Status Dequantize4bit(const Quantized4bit& q, std::span<float> out, int num_threads) {
  if (static_cast<int64_t>(out.size()) != q.num_elements) {
    return absl::InvalidArgumentError(absl::StrCat("Dequantize4bit: output holds ", out.size(),
                                                   " values, the tensor has ", q.num_elements));
  }
  if (!IsPowerOfTwo(q.blocksize) || q.blocksize < kMinBlocksize || q.blocksize > kMaxBlocksize) {
    return absl::InvalidArgumentError(absl::StrCat("Dequantize4bit: blocksize ", q.blocksize,
                                                   " is not a power of two in [32, 4096]"));
  }
  const int64_t blocks = q.num_blocks();
  if (static_cast<int64_t>(q.packed.size()) != (q.num_elements + 1) / 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Dequantize4bit: ", q.packed.size(), " packed bytes for ", q.num_elements, " elements"));
  }
  if (q.double_quant) {
    const int64_t nested = (blocks + kNestedBlocksize - 1) / kNestedBlocksize;
    if (static_cast<int64_t>(q.absmax_codes.size()) != blocks ||
        static_cast<int64_t>(q.nested_absmax.size()) != nested) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Dequantize4bit: double quantization needs ", blocks, " absmax codes and ", nested,
          " nested absmax values, got ", q.absmax_codes.size(), " and ", q.nested_absmax.size()));
    }
  } else if (static_cast<int64_t>(q.absmax.size()) != blocks) {
    return absl::InvalidArgumentError(absl::StrCat("Dequantize4bit: ", q.absmax.size(),
                                                   " absmax values for ", blocks, " blocks"));
  }
  const std::vector<float> absmax = DequantizeAbsmax(q);
  Dequantize4bitRaw(CodeTable(q.type), q.packed.data(), absmax.data(), q.blocksize, q.num_elements,
                    out.data(), num_threads);
  return absl::OkStatus();
}

}  // namespace lorasweep
