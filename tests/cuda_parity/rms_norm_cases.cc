// Parity cases of RMSNorm forward and backward (kernels/rms_norm_cuda.h vs kernels/rms_norm.h and a
// float64 reference written here). See tests/cuda_parity.h and small_ops_helpers.h.
//
// Shapes: hidden sizes of the supported models (576, 2048), an odd width (4099: the kernels' scalar
// path), a width that is 2 mod 4 (130: scalar path too), a single wide row (8192), and more rows
// than the kernels' grid cap (70000 > 65535: the grid-stride loop over rows). Rows get different
// scales so inv_rms varies. The forward's two outputs are reported by two cases: y is bf16
// (tolerance kBf16OutputTolerance), inv_rms fp32 (kF32OutputTolerance).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/rms_norm.h"
#include "kernels/rms_norm_cuda.h"
#include "tests/cuda_parity.h"
#include "tests/cuda_parity/small_ops_helpers.h"

namespace lorasweep {
namespace {

using parity_small::kBf16OutputTolerance;
using parity_small::kF32OutputTolerance;
using parity_small::Rng;
using parity_small::ScopedStream;
using parity_small::ToDouble;
using parity_small::Upload;

constexpr float kEps = 1e-5f;

struct Shape {
  int64_t rows;
  int64_t dim;
};

std::string ShapeName(const Shape& s) { return absl::StrCat("rows", s.rows, "_dim", s.dim); }

// x [rows, dim] with a per-row scale in [0.25, 4]; weight in [0.2, 2].
struct NormInputs {
  std::vector<float> x;
  std::vector<float> weight;
};

NormInputs DrawInputs(Rng& rng, const Shape& s) {
  NormInputs in;
  in.x = rng.Normal(s.rows * s.dim, 1.0f);
  const std::vector<float> row_scale = rng.Uniform(s.rows, 0.25f, 4.0f);
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t i = 0; i < s.dim; ++i) in.x[r * s.dim + i] *= row_scale[r];
  }
  in.weight = rng.Uniform(s.dim, 0.2f, 2.0f);
  return in;
}

// float64: inv[r] = 1 / sqrt(mean(x^2) + eps), y = w * x * inv.
void ReferenceForward(const NormInputs& in, const Shape& s, std::vector<double>* y,
                      std::vector<double>* inv) {
  y->assign(s.rows * s.dim, 0.0);
  inv->assign(s.rows, 0.0);
  for (int64_t r = 0; r < s.rows; ++r) {
    const float* xr = &in.x[r * s.dim];
    double ss = 0;
    for (int64_t i = 0; i < s.dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const double v = 1.0 / std::sqrt(ss / static_cast<double>(s.dim) + static_cast<double>(kEps));
    (*inv)[r] = v;
    for (int64_t i = 0; i < s.dim; ++i) {
      (*y)[r * s.dim + i] = static_cast<double>(in.weight[i]) * xr[i] * v;
    }
  }
}

// Runs the forward on both backends; returns {y, inv_rms} errors.
absl::StatusOr<std::vector<ParityOutput>> RunForward(uint64_t seed, const Shape& s) {
  Rng rng(seed, 0x5253'4e46'0000'0000ull ^ static_cast<uint64_t>(s.rows * 100003 + s.dim));
  const NormInputs in = DrawInputs(rng, s);

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_x, Upload(in.x));
  ASSIGN_OR_RETURN(auto d_w, Upload(in.weight));
  ASSIGN_OR_RETURN(auto d_y, Upload(std::vector<uint16_t>(s.rows * s.dim, 0)));
  ASSIGN_OR_RETURN(auto d_inv, Upload(std::vector<float>(s.rows, 0.0f)));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(RmsNormForwardCuda(d_x.data(), d_w.data(), s.rows, s.dim, kEps,
                                          parity_small::AsBf16(d_y), d_inv.data(), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<uint16_t> gpu_y_bits, d_y.ToHost());
  ASSIGN_OR_RETURN(std::vector<float> gpu_inv, d_inv.ToHost());

  std::vector<float> cpu_y(s.rows * s.dim), cpu_inv(s.rows);
  RmsNormForward(in.x.data(), in.weight.data(), s.rows, s.dim, kEps, cpu_y.data(), cpu_inv.data());

  std::vector<double> ref_y, ref_inv;
  ReferenceForward(in, s, &ref_y, &ref_inv);
  return std::vector<ParityOutput>{
      {"y", RelativeError(parity_small::Bf16BitsToFloats(gpu_y_bits), ref_y),
       RelativeError(cpu_y, ref_y)},
      {"inv_rms", RelativeError(gpu_inv, ref_inv), RelativeError(cpu_inv, ref_inv)}};
}

// Backward with inv_rms from the float64 forward (rounded to float: an input here), fp32 dy, and
// dx starting from random values when `accumulate`.
absl::StatusOr<std::vector<ParityOutput>> RunBackward(uint64_t seed, const Shape& s,
                                                      bool accumulate) {
  Rng rng(seed, 0x5253'4e42'0000'0000ull ^ static_cast<uint64_t>(s.rows * 100003 + s.dim) ^
                    (accumulate ? 1ull : 0ull));
  const NormInputs in = DrawInputs(rng, s);
  std::vector<double> unused_y, inv64;
  ReferenceForward(in, s, &unused_y, &inv64);
  const std::vector<float> inv(inv64.begin(), inv64.end());
  const std::vector<float> dy = rng.Normal(s.rows * s.dim, 1.0f);
  const std::vector<float> dx0 =
      accumulate ? rng.Uniform(s.rows * s.dim, -1.0f, 1.0f) : std::vector<float>(s.rows * s.dim);

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_x, Upload(in.x));
  ASSIGN_OR_RETURN(auto d_w, Upload(in.weight));
  ASSIGN_OR_RETURN(auto d_inv, Upload(inv));
  ASSIGN_OR_RETURN(auto d_dy, Upload(dy));
  // Without accumulate the kernel must overwrite: start from garbage.
  ASSIGN_OR_RETURN(auto d_dx,
                   Upload(accumulate ? dx0 : std::vector<float>(s.rows * s.dim, 12345.0f)));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  CUDA_RETURN_IF_ERROR(RmsNormBackwardCuda(d_x.data(), d_w.data(), d_inv.data(), d_dy.data(),
                                           s.rows, s.dim, accumulate, d_dx.data(), stream.get()));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<float> gpu_dx, d_dx.ToHost());

  std::vector<float> cpu_dx = dx0;
  RmsNormBackward(in.x.data(), in.weight.data(), inv.data(), dy.data(), s.rows, s.dim, accumulate,
                  cpu_dx.data());

  // float64: dx = r * (w*dy - x * r^2 * mean(x * w*dy)) (+ dx0).
  std::vector<double> ref(s.rows * s.dim);
  for (int64_t r = 0; r < s.rows; ++r) {
    const int64_t o = r * s.dim;
    const double v = inv[r];
    double dot = 0;
    for (int64_t i = 0; i < s.dim; ++i) {
      dot += static_cast<double>(in.x[o + i]) * in.weight[i] * dy[o + i];
    }
    const double mean = dot / static_cast<double>(s.dim);
    for (int64_t i = 0; i < s.dim; ++i) {
      const double g =
          v * (static_cast<double>(in.weight[i]) * dy[o + i] - in.x[o + i] * v * v * mean);
      ref[o + i] = (accumulate ? static_cast<double>(dx0[o + i]) : 0.0) + g;
    }
  }
  return std::vector<ParityOutput>{{"dx", RelativeError(gpu_dx, ref), RelativeError(cpu_dx, ref)}};
}

// Keeps only the output named `name` of a run.
absl::StatusOr<std::vector<ParityOutput>> Only(absl::StatusOr<std::vector<ParityOutput>> all,
                                               const std::string& name) {
  if (!all.ok()) return all.status();
  std::vector<ParityOutput> kept;
  for (ParityOutput& o : *all) {
    if (o.name == name) kept.push_back(std::move(o));
  }
  return kept;
}

std::vector<ParityCase> RmsNormCases() {
  const std::vector<Shape> shapes = {{37, 576},  {130, 2048}, {5, 4099},
                                     {300, 130}, {1, 8192},   {70000, 64}};
  std::vector<ParityCase> cases;
  for (const Shape& s : shapes) {
    cases.push_back({absl::StrCat("rms_norm_forward/", ShapeName(s), "/y"), kBf16OutputTolerance,
                     kF32OutputTolerance,
                     [s](uint64_t seed) { return Only(RunForward(seed, s), "y"); }});
    cases.push_back({absl::StrCat("rms_norm_forward/", ShapeName(s), "/inv_rms"),
                     kF32OutputTolerance, kF32OutputTolerance,
                     [s](uint64_t seed) { return Only(RunForward(seed, s), "inv_rms"); }});
    for (bool accumulate : {false, true}) {
      cases.push_back(
          {absl::StrCat("rms_norm_backward/", ShapeName(s), accumulate ? "_accumulate" : ""),
           kF32OutputTolerance, kF32OutputTolerance,
           [s, accumulate](uint64_t seed) { return RunBackward(seed, s, accumulate); }});
    }
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(RmsNormCases);

}  // namespace lorasweep
