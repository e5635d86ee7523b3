// Parity cases of the fused AdamW step and the gradient's sum of squares (kernels/adamw_cuda.h vs
// kernels/adamw.h and float64 references written here). See tests/cuda_parity.h and
// small_ops_helpers.h.
//
// AdamW: params small (|p| <= 0.05, like adapter weights) so that one step moves them by a few
// percent and the parameters' error reflects the update's; m and v start from nonzero states
// (except the fresh step-1 case), weight decay on. The CPU reference gets the gradient scaled in
// fp32 first, as the trainer's clipping does. A beta1 of 0.3 takes torch lerp's other branch
// (weight >= 0.5); one case offsets every pointer by one float (the scalar path). All outputs are
// fp32: tolerance kF32OutputTolerance.
//
// Grad norm: compared as sqrt(sum of squares). Both sides accumulate in fp64 the exact fp64
// squares of float32 values, so the error is bounded by (longest chain of additions) * 2^-53:
// 65536 sequential adds on the CPU (GradL2Norm's blocks), ~1000 on the GPU, i.e. <= 7.3e-12 and
// half that after the square root; tolerance 1e-10. The reference sums with Neumaier's compensated
// summation (exact to ~1e-16). The n = 0 case checks that the output is zeroed, not left as is.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/adamw.h"
#include "kernels/adamw_cuda.h"
#include "tests/cuda_parity.h"
#include "tests/cuda_parity/small_ops_helpers.h"

namespace lorasweep {
namespace {

using parity_small::kF32OutputTolerance;
using parity_small::Rng;
using parity_small::ScopedStream;
using parity_small::Upload;

struct AdamWCase {
  std::string name;
  int64_t n;
  int64_t step;
  float beta1;
  float weight_decay;
  float grad_scale;
  bool fresh;      // m = v = 0
  int64_t offset;  // elements added to every device pointer
};

absl::StatusOr<std::vector<ParityOutput>> RunAdamW(uint64_t seed, const AdamWCase& c) {
  Rng rng(seed, 0x4144'414d'0000'0000ull ^ static_cast<uint64_t>(c.n * 31 + c.step));
  AdamWParams p;
  p.lr = 1e-3f;
  p.beta1 = c.beta1;
  p.beta2 = 0.999f;
  p.eps = 1e-8f;
  p.weight_decay = c.weight_decay;
  p.step = c.step;
  const std::vector<float> params = rng.Uniform(c.n, -0.05f, 0.05f);
  const std::vector<float> grads = rng.Normal(c.n, 1e-2f);
  std::vector<float> m(c.n, 0.0f), v(c.n, 0.0f);
  if (!c.fresh) {
    m = rng.Normal(c.n, 1e-2f);
    v = rng.Uniform(c.n, 0.0f, 2e-4f);
  }

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_p, Upload(params, c.offset));
  ASSIGN_OR_RETURN(auto d_g, Upload(grads, c.offset));
  ASSIGN_OR_RETURN(auto d_m, Upload(m, c.offset));
  ASSIGN_OR_RETURN(auto d_v, Upload(v, c.offset));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(AdamWStepCuda(d_p.data(), d_g.data(), d_m.data(), d_v.data(), c.n, p,
                                     c.grad_scale, stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<float> gpu_p, d_p.ToHost());
  ASSIGN_OR_RETURN(std::vector<float> gpu_m, d_m.ToHost());
  ASSIGN_OR_RETURN(std::vector<float> gpu_v, d_v.ToHost());

  std::vector<float> cpu_p = params, cpu_g = grads, cpu_m = m, cpu_v = v;
  for (float& g : cpu_g) g *= c.grad_scale;  // the trainer's clipping, in fp32
  AdamWStep(cpu_p.data(), cpu_g.data(), cpu_m.data(), cpu_v.data(), c.n, p);

  // float64, with the float hyperparameters' exact values.
  const double lr = p.lr, b1 = p.beta1, b2 = p.beta2, eps = p.eps, wd = p.weight_decay;
  const double t = static_cast<double>(p.step);
  const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
  std::vector<double> ref_p(c.n), ref_m(c.n), ref_v(c.n);
  for (int64_t i = 0; i < c.n; ++i) {
    const double g = static_cast<double>(grads[i]) * c.grad_scale;
    ref_m[i] = b1 * m[i] + (1.0 - b1) * g;
    ref_v[i] = b2 * v[i] + (1.0 - b2) * g * g;
    const double denom = std::sqrt(ref_v[i]) / std::sqrt(bc2) + eps;
    ref_p[i] = params[i] * (1.0 - lr * wd) - lr / bc1 * ref_m[i] / denom;
  }
  return std::vector<ParityOutput>{
      {"params", RelativeError(gpu_p, ref_p), RelativeError(cpu_p, ref_p)},
      {"m", RelativeError(gpu_m, ref_m), RelativeError(cpu_m, ref_m)},
      {"v", RelativeError(gpu_v, ref_v), RelativeError(cpu_v, ref_v)}};
}

struct GradNormCase {
  std::string name;
  int64_t n;
  float scale;     // of the values
  int64_t offset;  // elements added to the device pointer
};

absl::StatusOr<std::vector<ParityOutput>> RunGradNorm(uint64_t seed, const GradNormCase& c) {
  Rng rng(seed, 0x474e'524d'0000'0000ull ^ static_cast<uint64_t>(c.n * 7 + c.offset));
  const std::vector<float> g = rng.Normal(c.n, c.scale);

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_g, Upload(g, c.offset));
  ASSIGN_OR_RETURN(auto d_sum, Upload(std::vector<double>{-123.0}));  // must be overwritten
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(GradSquaredSumCuda(d_g.data(), c.n, d_sum.data(), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<double> gpu_sum, d_sum.ToHost());
  const double gpu = std::sqrt(gpu_sum[0]);  // NaN (fails) if the -123 were left

  const double cpu = GradL2Norm(g.data(), c.n);

  // Neumaier summation of the exact squares.
  double sum = 0, comp = 0;
  for (float x : g) {
    const double sq = static_cast<double>(x) * x;
    const double t = sum + sq;
    comp += std::fabs(sum) >= sq ? (sum - t) + sq : (sq - t) + sum;
    sum = t;
  }
  const double ref = std::sqrt(sum + comp);
  double gpu_rel = parity_small::ScalarRelativeError(gpu, ref);
  if (std::isnan(gpu_rel)) gpu_rel = INFINITY;
  return std::vector<ParityOutput>{{"norm", gpu_rel, parity_small::ScalarRelativeError(cpu, ref)}};
}

std::vector<ParityCase> AdamWCases() {
  const std::vector<AdamWCase> adamw = {
      {"n1000003_step7_wd0.01_scale0.37", 1000003, 7, 0.9f, 0.01f, 0.37f, false, 0},
      {"n37_step1_fresh", 37, 1, 0.9f, 0.0f, 1.0f, true, 0},
      {"n4099_step3_beta1_0.3_unaligned", 4099, 3, 0.3f, 0.1f, 1.0f, false, 1},
      {"n65536_step1000", 65536, 1000, 0.9f, 0.01f, 1.0f, false, 0},
  };
  const std::vector<GradNormCase> norms = {
      {"n1000003", 1000003, 1e-3f, 0},
      {"n4097_unaligned", 4097, 1.0f, 1},
      {"n1", 1, 1.0f, 0},
      {"n0", 0, 1.0f, 0},
      {"n70001_values_1e25", 70001, 1e25f, 0},  // squares overflow fp32, not fp64
  };
  std::vector<ParityCase> cases;
  for (const AdamWCase& c : adamw) {
    cases.push_back({absl::StrCat("adamw/", c.name), kF32OutputTolerance, kF32OutputTolerance,
                     [c](uint64_t seed) { return RunAdamW(seed, c); }});
  }
  for (const GradNormCase& c : norms) {
    cases.push_back({absl::StrCat("grad_norm/", c.name), 1e-10, 1e-10,
                     [c](uint64_t seed) { return RunGradNorm(seed, c); }});
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(AdamWCases);

}  // namespace lorasweep
