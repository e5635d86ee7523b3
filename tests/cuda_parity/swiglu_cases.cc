// Parity cases of SwiGLU forward and backward (kernels/swiglu_cuda.h vs kernels/swiglu.h and a
// float64 reference written here). See tests/cuda_parity.h and small_ops_helpers.h.
//
// gate in [-10, 10] (both saturated ends of the sigmoid), up and dout ~ N(0, 1), all rounded to
// bf16. Sizes: 1 and 7 (tail only), 4099 (groups of 8 plus a tail), 2^20 + 3, and 4099 with every
// pointer one element off 16-byte alignment (the scalar path).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/swiglu.h"
#include "kernels/swiglu_cuda.h"
#include "tests/cuda_parity.h"
#include "tests/cuda_parity/small_ops_helpers.h"

namespace lorasweep {
namespace {

using parity_small::AsBf16;
using parity_small::Bf16BitsToFloats;
using parity_small::kBf16OutputTolerance;
using parity_small::kF32OutputTolerance;
using parity_small::Rng;
using parity_small::RoundToBf16;
using parity_small::ScopedStream;
using parity_small::Upload;

struct SwigluShape {
  int64_t n;
  int64_t offset;  // elements added to every device pointer (1: not 16-byte aligned)
};

std::string ShapeName(const SwigluShape& s) {
  return absl::StrCat("n", s.n, s.offset != 0 ? "_unaligned" : "");
}

double Sigmoid(double g) { return 1.0 / (1.0 + std::exp(-g)); }

absl::StatusOr<std::vector<ParityOutput>> RunForward(uint64_t seed, const SwigluShape& s) {
  Rng rng(seed, 0x5357'4746'0000'0000ull ^ static_cast<uint64_t>(s.n * 2 + s.offset));
  const parity_small::Bf16Values gate = RoundToBf16(rng.Uniform(s.n, -10.0f, 10.0f));
  const parity_small::Bf16Values up = RoundToBf16(rng.Normal(s.n, 1.0f));

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_gate, Upload(gate.bits, s.offset));
  ASSIGN_OR_RETURN(auto d_up, Upload(up.bits, s.offset));
  ASSIGN_OR_RETURN(auto d_out, Upload(std::vector<uint16_t>(s.n, 0), s.offset));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(
      SwigluForwardCuda(AsBf16(d_gate), AsBf16(d_up), s.n, AsBf16(d_out), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<uint16_t> gpu_bits, d_out.ToHost());

  std::vector<float> cpu(s.n);
  SwigluForward(gate.values.data(), up.values.data(), s.n, cpu.data());

  std::vector<double> ref(s.n);
  for (int64_t i = 0; i < s.n; ++i) {
    const double g = gate.values[i];
    ref[i] = g * Sigmoid(g) * static_cast<double>(up.values[i]);
  }
  return std::vector<ParityOutput>{
      {"out", RelativeError(Bf16BitsToFloats(gpu_bits), ref), RelativeError(cpu, ref)}};
}

absl::StatusOr<std::vector<ParityOutput>> RunBackward(uint64_t seed, const SwigluShape& s) {
  Rng rng(seed, 0x5357'4742'0000'0000ull ^ static_cast<uint64_t>(s.n * 2 + s.offset));
  const parity_small::Bf16Values gate = RoundToBf16(rng.Uniform(s.n, -10.0f, 10.0f));
  const parity_small::Bf16Values up = RoundToBf16(rng.Normal(s.n, 1.0f));
  const parity_small::Bf16Values dout = RoundToBf16(rng.Normal(s.n, 1.0f));

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_gate, Upload(gate.bits, s.offset));
  ASSIGN_OR_RETURN(auto d_up, Upload(up.bits, s.offset));
  ASSIGN_OR_RETURN(auto d_dout, Upload(dout.bits, s.offset));
  ASSIGN_OR_RETURN(auto d_dgate, Upload(std::vector<uint16_t>(s.n, 0x7fc0), s.offset));  // NaN
  ASSIGN_OR_RETURN(auto d_dup, Upload(std::vector<uint16_t>(s.n, 0x7fc0), s.offset));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(SwigluBackwardCuda(AsBf16(d_gate), AsBf16(d_up), AsBf16(d_dout), s.n,
                                          AsBf16(d_dgate), AsBf16(d_dup), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<uint16_t> gpu_dgate, d_dgate.ToHost());
  ASSIGN_OR_RETURN(std::vector<uint16_t> gpu_dup, d_dup.ToHost());

  std::vector<float> cpu_dgate(s.n), cpu_dup(s.n);
  SwigluBackward(gate.values.data(), up.values.data(), dout.values.data(), s.n, cpu_dgate.data(),
                 cpu_dup.data());

  // d/dg [g sig(g) u] = u sig (1 + g (1 - sig)); d/du = g sig.
  std::vector<double> ref_dgate(s.n), ref_dup(s.n);
  for (int64_t i = 0; i < s.n; ++i) {
    const double g = gate.values[i], u = up.values[i], d = dout.values[i];
    const double sig = Sigmoid(g);
    ref_dup[i] = d * g * sig;
    ref_dgate[i] = d * u * sig * (1.0 + g * (1.0 - sig));
  }
  return std::vector<ParityOutput>{
      {"dgate", RelativeError(Bf16BitsToFloats(gpu_dgate), ref_dgate),
       RelativeError(cpu_dgate, ref_dgate)},
      {"dup", RelativeError(Bf16BitsToFloats(gpu_dup), ref_dup), RelativeError(cpu_dup, ref_dup)}};
}

std::vector<ParityCase> SwigluCases() {
  const std::vector<SwigluShape> shapes = {
      {1, 0}, {7, 0}, {4099, 0}, {(1 << 20) + 3, 0}, {4099, 1}};
  std::vector<ParityCase> cases;
  for (const SwigluShape& s : shapes) {
    cases.push_back({absl::StrCat("swiglu_forward/", ShapeName(s)), kBf16OutputTolerance,
                     kF32OutputTolerance, [s](uint64_t seed) { return RunForward(seed, s); }});
    cases.push_back({absl::StrCat("swiglu_backward/", ShapeName(s)), kBf16OutputTolerance,
                     kF32OutputTolerance, [s](uint64_t seed) { return RunBackward(seed, s); }});
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(SwigluCases);

}  // namespace lorasweep
