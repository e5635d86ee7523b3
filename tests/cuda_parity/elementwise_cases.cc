// Parity cases of the embedding lookup, LoRA dropout and the small elementwise kernels
// (kernels/embedding_cuda.h, kernels/elementwise_cuda.h) against the CPU model's code and float64
// references written here. See tests/cuda_parity.h and small_ops_helpers.h.
//
// Embedding: the output is an exact copy (bf16 -> fp32 loses nothing), so the tolerance is 0. Ids
// include out-of-range values (row 0, as LlamaModel::Run does); shapes cover hidden sizes that are
// and are not multiples of 4 and more tokens than the kernel's grid cap (70000 > 65535).
//
// LoRA dropout: the mask must equal the CPU's (ApplyLoraDropout on each run of rows_per_key rows)
// bit for bit, and the one the header specifies (splitmix64 written again here): a case fails with
// an error naming the first differing element if any kept/dropped decision differs, or if the
// dropped fraction is far from p. Inputs are never 0, so a 0 output means dropped. Values are then
// compared like any output: bf16 output (one rounding), or fp32 for the accumulating variant.
//
// Conversions, residual add, accumulate, scale: one fp32 rounding at most per value (tolerance
// 1e-6 > 2^-24), f32 -> bf16 one bf16 rounding (kBf16OutputTolerance, and bit-equal to the host's
// round-to-nearest-even), bf16 -> f32 exact (0). Sizes with a tail after the groups of 4, and
// pointers one element off alignment (the scalar path); the residual add runs in place (out == a).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/elementwise_cuda.h"
#include "kernels/embedding_cuda.h"
#include "tests/cuda_parity.h"
#include "tests/cuda_parity/small_ops_helpers.h"
#include "worker/model/lora_dropout.h"

namespace lorasweep {
namespace {

using parity_small::AsBf16;
using parity_small::Bf16BitsToFloats;
using parity_small::kBf16OutputTolerance;
using parity_small::kF32OutputTolerance;
using parity_small::Rng;
using parity_small::RoundToBf16;
using parity_small::ScopedStream;
using parity_small::ToDouble;
using parity_small::Upload;

// ---- embedding ---------------------------------------------------------------------------------

struct EmbeddingShape {
  int64_t N;
  int64_t H;
  int64_t V;
};

absl::StatusOr<std::vector<ParityOutput>> RunEmbedding(uint64_t seed, const EmbeddingShape& s) {
  Rng rng(seed, 0x454d'4244'0000'0000ull ^ static_cast<uint64_t>(s.N * 7919 + s.H * 31 + s.V));
  const parity_small::Bf16Values table = RoundToBf16(rng.Normal(s.V * s.H, 0.02f));
  std::vector<int32_t> ids(s.N);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng.Int(-3, s.V + 2));  // ~6 / V out of range
  ids[0] = -1;                                                              // at least one of each
  if (s.N > 1) ids[1] = static_cast<int32_t>(s.V);

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_ids, Upload(ids));
  ASSIGN_OR_RETURN(auto d_table, Upload(table.bits));
  ASSIGN_OR_RETURN(auto d_out, Upload(std::vector<float>(s.N * s.H, NAN)));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(EmbeddingForwardCuda(d_ids.data(), AsBf16(d_table), s.N, s.H, s.V,
                                            d_out.data(), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<float> gpu, d_out.ToHost());

  // The CPU model's loop (LlamaModel::Run) on the bf16-rounded table.
  std::vector<float> cpu(s.N * s.H);
  for (int64_t i = 0; i < s.N; ++i) {
    const int32_t id = ids[i];
    const int32_t safe = (id >= 0 && id < s.V) ? id : 0;
    for (int64_t c = 0; c < s.H; ++c) cpu[i * s.H + c] = table.values[safe * s.H + c];
  }
  // float64: the bf16 values decoded from their bits.
  std::vector<double> ref(s.N * s.H);
  for (int64_t i = 0; i < s.N; ++i) {
    const int64_t row = (ids[i] < 0 || ids[i] >= s.V) ? 0 : ids[i];
    for (int64_t c = 0; c < s.H; ++c) {
      const uint32_t bits = static_cast<uint32_t>(table.bits[row * s.H + c]) << 16;
      float f;
      std::memcpy(&f, &bits, sizeof(f));
      ref[i * s.H + c] = f;
    }
  }
  return std::vector<ParityOutput>{{"out", RelativeError(gpu, ref), RelativeError(cpu, ref)}};
}

// ---- LoRA dropout
// --------------------------------------------------------------------------------

struct DropoutShape {
  std::string name;
  int64_t N;
  int64_t in;
  int64_t rows_per_key;  // the last run is shorter when it does not divide N
  float p;
  int64_t offset;  // elements added to every device pointer
};

// The header's rule, written independently of lora_dropout.cc.
uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::vector<bool> ReferenceKept(const DropoutShape& s, const std::vector<uint64_t>& keys) {
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(s.p) * 16777216.0);
  const int64_t run_len = s.rows_per_key * s.in;
  std::vector<bool> kept(s.N * s.in);
  for (int64_t i = 0; i < s.N * s.in; ++i) {
    const uint64_t j = static_cast<uint64_t>(i % run_len);
    kept[i] = (Mix(keys[i / run_len] + j) >> 40) >= threshold;
  }
  return kept;
}

// The CPU model's ApplyDropout: ApplyLoraDropout on each run with its key.
std::vector<float> CpuDropout(const DropoutShape& s, const std::vector<float>& x,
                              const std::vector<uint64_t>& keys) {
  std::vector<float> out(x.size());
  const int64_t chunk = s.rows_per_key * s.in;
  for (int64_t b = 0; b * s.rows_per_key < s.N; ++b) {
    ApplyLoraDropout(x.data() + b * chunk, std::min(chunk, s.N * s.in - b * chunk), s.p, keys[b],
                     out.data() + b * chunk);
  }
  return out;
}

// Fails unless the three masks agree everywhere and the dropped fraction is near p.
absl::Status CheckMasks(const DropoutShape& s, const std::vector<bool>& gpu_kept,
                        const std::vector<bool>& cpu_kept, const std::vector<bool>& ref_kept) {
  int64_t gpu_vs_cpu = 0, gpu_vs_ref = 0, cpu_vs_ref = 0, first = -1, dropped = 0;
  for (size_t i = 0; i < ref_kept.size(); ++i) {
    gpu_vs_cpu += gpu_kept[i] != cpu_kept[i];
    gpu_vs_ref += gpu_kept[i] != ref_kept[i];
    cpu_vs_ref += cpu_kept[i] != ref_kept[i];
    if (first < 0 && (gpu_kept[i] != cpu_kept[i] || gpu_kept[i] != ref_kept[i])) {
      first = static_cast<int64_t>(i);
    }
    dropped += !ref_kept[i];
  }
  if (gpu_vs_cpu != 0 || gpu_vs_ref != 0 || cpu_vs_ref != 0) {
    return absl::InternalError(absl::StrCat(
        s.name, ": dropout masks differ: GPU vs CPU at ", gpu_vs_cpu, " positions, GPU vs spec at ",
        gpu_vs_ref, ", CPU vs spec at ", cpu_vs_ref, "; first at flat index ", first, " (row ",
        first / s.in, ", column ", first % s.in, ")"));
  }
  const double fraction = static_cast<double>(dropped) / static_cast<double>(ref_kept.size());
  // n >= 40000 here: the fraction's standard deviation is <= 0.0025, so +-0.05 is > 20 sigma.
  if (std::fabs(fraction - s.p) > 0.05) {
    return absl::InternalError(
        absl::StrCat(s.name, ": dropped fraction ", fraction, " is far from p = ", s.p));
  }
  return absl::OkStatus();
}

std::vector<uint64_t> DrawKeys(Rng& rng, const DropoutShape& s) {
  std::vector<uint64_t> keys((s.N + s.rows_per_key - 1) / s.rows_per_key);
  for (uint64_t& k : keys) k = rng.Bits();
  return keys;
}

absl::StatusOr<std::vector<ParityOutput>> RunDropout(uint64_t seed, const DropoutShape& s) {
  Rng rng(seed, 0x4452'4f50'0000'0000ull ^ static_cast<uint64_t>(s.N * 7919 + s.in));
  const std::vector<uint64_t> keys = DrawKeys(rng, s);
  const parity_small::Bf16Values x = RoundToBf16(rng.SignedMagnitude(s.N * s.in, 0.1f, 1.0f));

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_x, Upload(x.bits, s.offset));
  ASSIGN_OR_RETURN(auto d_keys, Upload(keys));
  ASSIGN_OR_RETURN(auto d_out, Upload(std::vector<uint16_t>(s.N * s.in, 0x7fc0), s.offset));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(LoraDropoutCuda(AsBf16(d_x), s.N, s.in, s.p, d_keys.data(), s.rows_per_key,
                                       AsBf16(d_out), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<uint16_t> gpu_bits, d_out.ToHost());
  const std::vector<float> gpu = Bf16BitsToFloats(gpu_bits);

  const std::vector<float> cpu = CpuDropout(s, x.values, keys);
  const std::vector<bool> ref_kept = ReferenceKept(s, keys);
  std::vector<bool> gpu_kept(gpu.size()), cpu_kept(cpu.size());
  for (size_t i = 0; i < gpu.size(); ++i) {
    gpu_kept[i] = gpu[i] != 0.0f;  // NaN (never written) counts as kept and then fails the values
    cpu_kept[i] = cpu[i] != 0.0f;
  }
  RETURN_IF_ERROR(CheckMasks(s, gpu_kept, cpu_kept, ref_kept));

  std::vector<double> ref(x.values.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i] = ref_kept[i] ? static_cast<double>(x.values[i]) / (1.0 - static_cast<double>(s.p)) : 0;
  }
  return std::vector<ParityOutput>{{"out", RelativeError(gpu, ref), RelativeError(cpu, ref)}};
}

// out (fp32, starting from random values) += dropout(x) with x fp32.
absl::StatusOr<std::vector<ParityOutput>> RunDropoutAccumulate(uint64_t seed,
                                                               const DropoutShape& s) {
  Rng rng(seed, 0x4452'4f41'0000'0000ull ^ static_cast<uint64_t>(s.N * 7919 + s.in));
  const std::vector<uint64_t> keys = DrawKeys(rng, s);
  const std::vector<float> x = rng.SignedMagnitude(s.N * s.in, 0.1f, 1.0f);
  const std::vector<float> out0 = rng.Uniform(s.N * s.in, -1.0f, 1.0f);

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_x, Upload(x, s.offset));
  ASSIGN_OR_RETURN(auto d_keys, Upload(keys));
  ASSIGN_OR_RETURN(auto d_out, Upload(out0, s.offset));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(LoraDropoutAccumulateCuda(d_x.data(), s.N, s.in, s.p, d_keys.data(),
                                                 s.rows_per_key, d_out.data(), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<float> gpu, d_out.ToHost());

  const std::vector<float> dropped = CpuDropout(s, x, keys);
  std::vector<float> cpu(out0.size());
  for (size_t i = 0; i < cpu.size(); ++i) cpu[i] = out0[i] + dropped[i];  // the CPU's dx += masked

  // |x / (1 - p)| >= 0.1 and |out0| <= 1: a kept value always changes the sum.
  const std::vector<bool> ref_kept = ReferenceKept(s, keys);
  std::vector<bool> gpu_kept(gpu.size()), cpu_kept(cpu.size());
  for (size_t i = 0; i < gpu.size(); ++i) {
    gpu_kept[i] = gpu[i] != out0[i];
    cpu_kept[i] = cpu[i] != out0[i];
  }
  RETURN_IF_ERROR(CheckMasks(s, gpu_kept, cpu_kept, ref_kept));

  std::vector<double> ref(x.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    ref[i] = static_cast<double>(out0[i]) +
             (ref_kept[i] ? static_cast<double>(x[i]) / (1.0 - static_cast<double>(s.p)) : 0.0);
  }
  return std::vector<ParityOutput>{{"out", RelativeError(gpu, ref), RelativeError(cpu, ref)}};
}

// ---- conversions, residual add, accumulate, scale
// ------------------------------------------------

enum class ElementwiseOp { kF32ToBf16, kBf16ToF32, kAddBf16ToF32InPlace, kAccumulate, kScale };

absl::StatusOr<std::vector<ParityOutput>> RunElementwise(uint64_t seed, ElementwiseOp op, int64_t n,
                                                         int64_t offset) {
  Rng rng(seed, 0x454c'574e'0000'0000ull ^ static_cast<uint64_t>(n * 8 + offset * 4) ^
                    static_cast<uint64_t>(op));
  const std::vector<float> a = rng.Normal(n, 3.0f);
  const parity_small::Bf16Values b = RoundToBf16(rng.Normal(n, 1.0f));
  const float s = -0.7071f;
  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  std::vector<float> gpu, cpu(n);
  std::vector<double> ref(n);
  switch (op) {
    case ElementwiseOp::kF32ToBf16: {
      ASSIGN_OR_RETURN(auto d_a, Upload(a, offset));
      ASSIGN_OR_RETURN(auto d_out, Upload(std::vector<uint16_t>(n, 0x7fc0), offset));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      CUDA_RETURN_IF_ERROR(ConvertF32ToBf16Cuda(d_a.data(), n, AsBf16(d_out), stream.get()));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      ASSIGN_OR_RETURN(std::vector<uint16_t> bits, d_out.ToHost());
      for (int64_t i = 0; i < n; ++i) {
        if (bits[i] != FloatToBf16(a[i])) {
          return absl::InternalError(absl::StrCat("bf16 of ", a[i], " at ", i, ": GPU bits ",
                                                  bits[i], ", round-to-nearest-even ",
                                                  FloatToBf16(a[i])));
        }
        cpu[i] = Bf16ToFloat(FloatToBf16(a[i]));
        ref[i] = a[i];
      }
      gpu = Bf16BitsToFloats(bits);
      break;
    }
    case ElementwiseOp::kBf16ToF32: {
      ASSIGN_OR_RETURN(auto d_b, Upload(b.bits, offset));
      ASSIGN_OR_RETURN(auto d_out, Upload(std::vector<float>(n, NAN), offset));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      CUDA_RETURN_IF_ERROR(ConvertBf16ToF32Cuda(AsBf16(d_b), n, d_out.data(), stream.get()));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      ASSIGN_OR_RETURN(gpu, d_out.ToHost());
      cpu = b.values;
      ref = ToDouble(b.values);
      break;
    }
    case ElementwiseOp::kAddBf16ToF32InPlace: {
      ASSIGN_OR_RETURN(auto d_a, Upload(a, offset));
      ASSIGN_OR_RETURN(auto d_b, Upload(b.bits, offset));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      CUDA_RETURN_IF_ERROR(
          AddBf16ToF32Cuda(d_a.data(), AsBf16(d_b), n, d_a.data(), stream.get()));  // out == a
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      ASSIGN_OR_RETURN(gpu, d_a.ToHost());
      for (int64_t i = 0; i < n; ++i) {
        cpu[i] = a[i] + b.values[i];
        ref[i] = static_cast<double>(a[i]) + b.values[i];
      }
      break;
    }
    case ElementwiseOp::kAccumulate: {
      const std::vector<float> out0 = rng.Normal(n, 1.0f);
      ASSIGN_OR_RETURN(auto d_a, Upload(a, offset));
      ASSIGN_OR_RETURN(auto d_out, Upload(out0, offset));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      CUDA_RETURN_IF_ERROR(AccumulateF32Cuda(d_a.data(), n, d_out.data(), stream.get()));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      ASSIGN_OR_RETURN(gpu, d_out.ToHost());
      for (int64_t i = 0; i < n; ++i) {
        cpu[i] = out0[i] + a[i];
        ref[i] = static_cast<double>(out0[i]) + a[i];
      }
      break;
    }
    case ElementwiseOp::kScale: {
      ASSIGN_OR_RETURN(auto d_a, Upload(a, offset));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      CUDA_RETURN_IF_ERROR(ScaleF32Cuda(d_a.data(), n, s, stream.get()));
      RETURN_IF_ERROR(ScopedStream::Synchronize());
      ASSIGN_OR_RETURN(gpu, d_a.ToHost());
      for (int64_t i = 0; i < n; ++i) {
        cpu[i] = a[i] * s;
        ref[i] = static_cast<double>(a[i]) * s;
      }
      break;
    }
  }
  return std::vector<ParityOutput>{{"out", RelativeError(gpu, ref), RelativeError(cpu, ref)}};
}

std::vector<ParityCase> ElementwiseCases() {
  std::vector<ParityCase> cases;
  for (const EmbeddingShape& s : std::vector<EmbeddingShape>{
           {37, 576, 1000}, {130, 2050, 77}, {1, 2048, 5}, {70000, 8, 50}}) {
    cases.push_back({absl::StrCat("embedding/N", s.N, "_H", s.H, "_V", s.V), 0.0, 0.0,
                     [s](uint64_t seed) { return RunEmbedding(seed, s); }});
  }

  const std::vector<DropoutShape> dropout = {
      // Two sequences of 37 tokens, Llama-style hidden size: vector path, then scalar path.
      {"N74_in576_2runs_p0.1", 74, 576, 37, 0.1f, 0},
      {"N74_in576_2runs_p0.1_unaligned", 74, 576, 37, 0.1f, 1},
      // in odd: the vector path's groups of 4 straddle run boundaries; 3 runs, the last one row.
      {"N75_in577_3runs_p0.1_short_last", 75, 577, 37, 0.1f, 0},
      {"N128_in2048_1run_p0.5", 128, 2048, 128, 0.5f, 0},
  };
  for (const DropoutShape& s : dropout) {
    cases.push_back({absl::StrCat("lora_dropout/", s.name), kBf16OutputTolerance,
                     kF32OutputTolerance, [s](uint64_t seed) { return RunDropout(seed, s); }});
    cases.push_back({absl::StrCat("lora_dropout/accumulate_", s.name), kF32OutputTolerance,
                     kF32OutputTolerance,
                     [s](uint64_t seed) { return RunDropoutAccumulate(seed, s); }});
  }

  struct Op {
    const char* name;
    ElementwiseOp op;
    double tolerance;
  };
  const Op ops[] = {{"convert_f32_to_bf16", ElementwiseOp::kF32ToBf16, kBf16OutputTolerance},
                    {"convert_bf16_to_f32", ElementwiseOp::kBf16ToF32, 0.0},
                    {"add_bf16_to_f32_in_place", ElementwiseOp::kAddBf16ToF32InPlace, 1e-6},
                    {"accumulate_f32", ElementwiseOp::kAccumulate, 1e-6},
                    {"scale_f32", ElementwiseOp::kScale, 1e-6}};
  for (const Op& op : ops) {
    for (const std::pair<int64_t, int64_t>& size :
         std::vector<std::pair<int64_t, int64_t>>{{100003, 0}, {4099, 1}, {3, 0}}) {
      const int64_t n = size.first, offset = size.second;
      // The CPU side of f32 -> bf16 is the host rounding itself: a bf16 output.
      const double cpu_tolerance =
          op.op == ElementwiseOp::kF32ToBf16 ? kBf16OutputTolerance : op.tolerance;
      cases.push_back({absl::StrCat(op.name, "/n", n, offset != 0 ? "_unaligned" : ""),
                       op.tolerance, cpu_tolerance, [op, n, offset](uint64_t seed) {
                         return RunElementwise(seed, op.op, n, offset);
                       }});
    }
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(ElementwiseCases);

}  // namespace lorasweep
