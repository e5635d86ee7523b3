// Parity cases of the CUDA 4-bit dequantization to bf16 (kernels/dequantize_4bit_cuda.h) against
// the CPU's Dequantize4bitRaw (kernels/quantize_4bit.h) and a float64 decoding written here. See
// tests/cuda_parity.h and small_ops_helpers.h.
//
// Weights ~ N(0, 0.02) with a few outliers, quantized on the CPU (Quantize4bit): NF4 with double
// quantization at blocksize 64 (the QLoRA default; more than 256 blocks, so several nested blocks,
// and an odd element count: the last byte holds one value), the same into an output one element
// off 16-byte alignment (the kernel's scalar path), and FP4 with and without double quantization.
//
// The GPU rounds the fp32 value code * absmax to bf16 once: tolerance kBf16OutputTolerance, and
// every GPU value must also equal the CPU's fp32 value rounded to nearest even (else the case
// fails), since both compute the same single fp32 product from the same absmax.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/dequantize_4bit_cuda.h"
#include "kernels/quantize_4bit.h"
#include "tests/cuda_parity.h"
#include "tests/cuda_parity/small_ops_helpers.h"

namespace lorasweep {
namespace {

using parity_small::kBf16OutputTolerance;
using parity_small::kF32OutputTolerance;
using parity_small::Rng;
using parity_small::ScopedStream;
using parity_small::Upload;

struct DequantCase {
  std::string name;
  QuantType type;
  bool double_quant;
  int64_t blocksize;
  int64_t rows;
  int64_t cols;
  int64_t out_offset;  // elements added to the output pointer
};

absl::StatusOr<std::vector<ParityOutput>> RunDequant(uint64_t seed, const DequantCase& c) {
  const int64_t n = c.rows * c.cols;
  Rng rng(seed, 0x4451'3442'0000'0000ull ^ static_cast<uint64_t>(n * 4 + c.blocksize) ^
                    (c.double_quant ? 2ull : 0ull) ^ (c.type == QuantType::kFP4 ? 1ull : 0ull));
  std::vector<float> w = rng.Normal(n, 0.02f);
  for (int k = 0; k < 16; ++k) w[rng.Int(0, n - 1)] *= 20.0f;  // outliers: uneven absmax
  ASSIGN_OR_RETURN(Quantized4bit q,
                   Quantize4bit(w, {c.rows, c.cols}, c.type, c.blocksize, c.double_quant));

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_packed, Upload(q.packed));
  ASSIGN_OR_RETURN(auto d_absmax, Upload(q.absmax));
  ASSIGN_OR_RETURN(auto d_codes, Upload(q.absmax_codes));
  ASSIGN_OR_RETURN(auto d_nested, Upload(q.nested_absmax));
  const std::vector<float> nested_code(DynamicSignedMap().begin(), DynamicSignedMap().end());
  ASSIGN_OR_RETURN(auto d_map, Upload(nested_code));
  ASSIGN_OR_RETURN(auto d_out, Upload(std::vector<uint16_t>(n, 0x7fc0), c.out_offset));
  Dequantize4bitCudaArgs args;
  args.packed = d_packed.data();
  if (c.double_quant) {
    args.absmax_codes = d_codes.data();
    args.nested_absmax = d_nested.data();
    args.nested_code = d_map.data();
    args.nested_offset = q.nested_offset;
  } else {
    args.absmax = d_absmax.data();
  }
  std::copy(CodeTable(c.type).begin(), CodeTable(c.type).end(), args.code);
  args.blocksize = c.blocksize;
  args.num_elements = n;
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(Dequantize4bitCudaBf16(args, d_out.data(), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<uint16_t> gpu_bits, d_out.ToHost());

  const std::vector<float> absmax = DequantizeAbsmax(q);
  std::vector<float> cpu(n);
  Dequantize4bitRaw(CodeTable(c.type), q.packed.data(), absmax.data(), c.blocksize, n, cpu.data());
  for (int64_t i = 0; i < n; ++i) {
    if (gpu_bits[i] != FloatToBf16(cpu[i])) {
      return absl::InternalError(absl::StrCat(c.name, ": element ", i, ": GPU bf16 bits ",
                                              gpu_bits[i], ", CPU ", cpu[i], " rounds to ",
                                              FloatToBf16(cpu[i])));
    }
  }

  // float64: code[nibble] * absmax, the first element of each byte in the high nibble; with DQ the
  // absmax decoded in double from its 8-bit code, nested scale and offset.
  const std::array<float, 16>& code = CodeTable(c.type);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t block = i / c.blocksize;
    double scale;
    if (c.double_quant) {
      scale = static_cast<double>(DynamicSignedMap()[q.absmax_codes[block]]) *
                  q.nested_absmax[block / kNestedBlocksize] +
              q.nested_offset;
    } else {
      scale = q.absmax[block];
    }
    const uint8_t byte = q.packed[i / 2];
    const int nibble = (i % 2 == 0) ? (byte >> 4) : (byte & 15);
    ref[i] = static_cast<double>(code[nibble]) * scale;
  }
  return std::vector<ParityOutput>{{"out",
                                    RelativeError(parity_small::Bf16BitsToFloats(gpu_bits), ref),
                                    RelativeError(cpu, ref)}};
}

std::vector<ParityCase> Dequantize4bitCases() {
  const std::vector<DequantCase> cases_in = {
      {"nf4_dq_bs64_rows257_cols255", QuantType::kNF4, true, 64, 257, 255, 0},
      {"nf4_dq_bs64_rows1000_cols577_unaligned_out", QuantType::kNF4, true, 64, 1000, 577, 1},
      {"fp4_bs64_rows33_cols4099", QuantType::kFP4, false, 64, 33, 4099, 0},
      {"fp4_dq_bs128_rows300_cols1000", QuantType::kFP4, true, 128, 300, 1000, 0},
  };
  std::vector<ParityCase> cases;
  for (const DequantCase& c : cases_in) {
    cases.push_back({absl::StrCat("dequantize_4bit/", c.name), kBf16OutputTolerance,
                     kF32OutputTolerance, [c](uint64_t seed) { return RunDequant(seed, c); }});
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(Dequantize4bitCases);

}  // namespace lorasweep
