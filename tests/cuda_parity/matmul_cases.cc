// Parity cases of the cuBLAS products (kernels/matmul_cuda.h) against the CPU Sgemm /
// LinearForward (kernels/matmul.h) and a float64 product written here.
//
// Inputs are drawn as floats and rounded to bf16 first; the GPU gets the bf16 bits, the CPU and the
// float64 reference the same rounded values as floats, so the only differences are how each side
// accumulates and rounds its output.
//
// Tolerances (relative L2 error against float64):
//   - fp32 output, 1e-4: the bf16 x bf16 products are exact in fp32 and cuBLAS accumulates them in
//     fp32 (CUBLAS_COMPUTE_32F, split-K reductions in fp32 too), so the error is a few fp32 ulps
//     times the accumulation depth (~1e-6 for K <= 1024, a few 1e-6 even with the tensor cores'
//     truncating adds). 1e-4 keeps a wide margin to that while any bf16 rounding of an operand or
//     of the output (>= 1e-3) or a wrong transpose / stride (~1) fails.
//   - bf16 output, 8e-3: one round-to-nearest to bf16 (8 significant bits) gives a relative error
//     of at most 2^-8 per element and ~1.5e-3 in L2 over normal-distributed values; the linear
//     layer with a bias rounds twice (product, then + bias), ~2.5e-3. 8e-3 leaves 3x or more.
//   - CPU (fp32 OpenBLAS): ~1e-6, checked at the default 1e-5.
// Strides are padded (lda/ldb/ldc wider than the rows) with random values in A's and B's padding,
// which a wrong stride would read, and C's padding is checked to be left bit for bit unchanged.
// With beta = 0, C starts as NaN: cuBLAS, as BLAS, must not read it.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/matmul.h"
#include "kernels/matmul_cuda.h"
#include "tests/cuda_parity.h"
#include "tests/cuda_parity/cublas_case_util.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"

namespace lorasweep {
namespace {

using parity_cublas::Bf16Bits;
using parity_cublas::GpuContext;
using parity_cublas::RandomBf16Values;

constexpr double kF32OutTolerance = 1e-4;
constexpr double kBf16OutTolerance = 8e-3;

const bf16* AsBf16(const DeviceBuffer<uint16_t>& b) {
  return reinterpret_cast<const bf16*>(b.data());
}
bf16* AsBf16(DeviceBuffer<uint16_t>& b) { return reinterpret_cast<bf16*>(b.data()); }

struct GemmSpec {
  bool trans_a = false;
  bool trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra columns of each row stride
  float alpha = 1.0f;
  float beta = 0.0f;
  bool bf16_out = false;
};

std::string GemmName(const GemmSpec& s) {
  return absl::StrCat("gemm/", s.trans_a ? "t" : "n", s.trans_b ? "t" : "n", "_", s.M, "x", s.N,
                      "x", s.K, s.bf16_out ? "_bf16" : "_f32", s.beta != 0.0f ? "_beta" : "",
                      s.pad_a + s.pad_b + s.pad_c > 0 ? "_strided" : "");
}

absl::StatusOr<std::vector<ParityOutput>> RunGemm(const GemmSpec& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t a_rows = s.trans_a ? s.K : s.M, a_cols = s.trans_a ? s.M : s.K;
  const int64_t b_rows = s.trans_b ? s.N : s.K, b_cols = s.trans_b ? s.K : s.N;
  const int64_t lda = a_cols + s.pad_a, ldb = b_cols + s.pad_b, ldc = s.N + s.pad_c;
  const std::vector<float> a = RandomBf16Values(rng, a_rows * lda, 1.0f);
  const std::vector<float> b = RandomBf16Values(rng, b_rows * ldb, 1.0f);
  std::vector<float> c0 = RandomBf16Values(rng, s.M * ldc, 1.0f);
  if (s.beta == 0.0f) {
    // Never read with beta = 0, padding included.
    for (float& v : c0) v = std::numeric_limits<float>::quiet_NaN();
  }

  // float64 reference of the logical [M, N] block.
  std::vector<double> ref(s.M * s.N);
  for (int64_t i = 0; i < s.M; ++i) {
    for (int64_t j = 0; j < s.N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < s.K; ++k) {
        const double av = s.trans_a ? a[k * lda + i] : a[i * lda + k];
        const double bv = s.trans_b ? b[j * ldb + k] : b[k * ldb + j];
        acc += av * bv;
      }
      ref[i * s.N + j] =
          s.alpha * acc + (s.beta != 0.0f ? static_cast<double>(s.beta) * c0[i * ldc + j] : 0.0);
    }
  }
  auto logical = [&](const std::vector<float>& c) {
    std::vector<float> out(s.M * s.N);
    for (int64_t i = 0; i < s.M; ++i) {
      for (int64_t j = 0; j < s.N; ++j) out[i * s.N + j] = c[i * ldc + j];
    }
    return out;
  };

  // CPU reference.
  std::vector<float> c_cpu = c0;
  Sgemm(s.trans_a, s.trans_b, s.M, s.N, s.K, s.alpha, a.data(), lda, b.data(), ldb, s.beta,
        c_cpu.data(), ldc);

  // GPU.
  ASSIGN_OR_RETURN(std::unique_ptr<GpuContext> gpu, GpuContext::Create());
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> d_a, DeviceBuffer<uint16_t>::FromHost(Bf16Bits(a), "A"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> d_b, DeviceBuffer<uint16_t>::FromHost(Bf16Bits(b), "B"));
  std::vector<float> c_gpu(c0.size());
  bool padding_kept = true;
  if (s.bf16_out) {
    const std::vector<uint16_t> c0_bits = Bf16Bits(c0);
    ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> d_c, DeviceBuffer<uint16_t>::FromHost(c0_bits, "C"));
    CUBLAS_RETURN_IF_ERROR(GemmBf16Bf16(gpu->cublas(), s.trans_a, s.trans_b, s.M, s.N, s.K, s.alpha,
                                        AsBf16(d_a), lda, AsBf16(d_b), ldb, s.beta, AsBf16(d_c),
                                        ldc));
    RETURN_IF_ERROR(gpu->Sync());
    ASSIGN_OR_RETURN(std::vector<uint16_t> bits, d_c.ToHost());
    for (size_t i = 0; i < bits.size(); ++i) {
      c_gpu[i] = Bf16ToFloat(bits[i]);
      if (static_cast<int64_t>(i % ldc) >= s.N && bits[i] != c0_bits[i]) padding_kept = false;
    }
  } else {
    ASSIGN_OR_RETURN(DeviceBuffer<float> d_c, DeviceBuffer<float>::FromHost(c0, "C"));
    CUBLAS_RETURN_IF_ERROR(GemmBf16F32(gpu->cublas(), s.trans_a, s.trans_b, s.M, s.N, s.K, s.alpha,
                                       AsBf16(d_a), lda, AsBf16(d_b), ldb, s.beta, d_c.data(),
                                       ldc));
    RETURN_IF_ERROR(gpu->Sync());
    ASSIGN_OR_RETURN(c_gpu, d_c.ToHost());
    for (size_t i = 0; i < c_gpu.size(); ++i) {
      if (static_cast<int64_t>(i % ldc) >= s.N &&
          std::memcmp(&c_gpu[i], &c0[i], sizeof(float)) != 0) {
        padding_kept = false;
      }
    }
  }
  if (!padding_kept) {
    return absl::InternalError(absl::StrCat(GemmName(s), ": the GPU wrote into C's row padding"));
  }
  return std::vector<ParityOutput>{
      {"C", RelativeError(logical(c_gpu), ref), RelativeError(logical(c_cpu), ref)}};
}

struct LinearSpec {
  int64_t N = 0, in = 0, out = 0;
  bool bias = false;
};

absl::StatusOr<std::vector<ParityOutput>> RunLinear(const LinearSpec& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const std::vector<float> x = RandomBf16Values(rng, s.N * s.in, 1.0f);
  const std::vector<float> w =
      RandomBf16Values(rng, s.out * s.in, 1.0f / std::sqrt(static_cast<float>(s.in)));
  std::vector<float> bias;
  if (s.bias) {
    std::normal_distribution<float> normal(0.0f, 0.5f);
    bias.resize(s.out);
    for (float& v : bias) v = normal(rng);  // fp32, not rounded: the bias stays fp32 on the GPU
  }
  const float* bias_ptr = s.bias ? bias.data() : nullptr;

  std::vector<double> ref(s.N * s.out);
  for (int64_t n = 0; n < s.N; ++n) {
    for (int64_t o = 0; o < s.out; ++o) {
      double acc = s.bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < s.in; ++i) {
        acc += static_cast<double>(x[n * s.in + i]) * w[o * s.in + i];
      }
      ref[n * s.out + o] = acc;
    }
  }

  std::vector<float> y_cpu(s.N * s.out);
  LinearForward(x.data(), w.data(), bias_ptr, s.N, s.in, s.out, y_cpu.data());

  ASSIGN_OR_RETURN(std::unique_ptr<GpuContext> gpu, GpuContext::Create());
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> d_x, DeviceBuffer<uint16_t>::FromHost(Bf16Bits(x), "x"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> d_w, DeviceBuffer<uint16_t>::FromHost(Bf16Bits(w), "W"));
  DeviceBuffer<float> d_bias;
  if (s.bias) {
    ASSIGN_OR_RETURN(d_bias, DeviceBuffer<float>::FromHost(bias, "bias"));
  }
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> d_y, DeviceBuffer<uint16_t>::Allocate(s.N * s.out, "y"));
  CUBLAS_RETURN_IF_ERROR(LinearForwardCuda(gpu->cublas(), AsBf16(d_x), AsBf16(d_w),
                                           s.bias ? d_bias.data() : nullptr, s.N, s.in, s.out,
                                           AsBf16(d_y)));
  RETURN_IF_ERROR(gpu->Sync());
  ASSIGN_OR_RETURN(std::vector<uint16_t> y_bits, d_y.ToHost());
  std::vector<float> y_gpu(y_bits.size());
  for (size_t i = 0; i < y_bits.size(); ++i) y_gpu[i] = Bf16ToFloat(y_bits[i]);
  return std::vector<ParityOutput>{{"y", RelativeError(y_gpu, ref), RelativeError(y_cpu, ref)}};
}

std::vector<ParityCase> MatmulCases() {
  std::vector<GemmSpec> gemms;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // Odd shapes with padded strides: fp32 out with beta 0 and with beta, bf16 out likewise.
      gemms.push_back({ta, tb, 37, 129, 65, 3, 5, 7, 1.0f, 0.0f, false});
      gemms.push_back({ta, tb, 37, 129, 65, 2, 9, 4, 0.75f, 0.5f, false});
      gemms.push_back({ta, tb, 37, 129, 65, 1, 3, 2, 1.0f, 0.0f, true});
      gemms.push_back({ta, tb, 37, 129, 65, 4, 1, 6, -1.5f, 1.0f, true});
    }
  }
  // Aligned shapes the tensor-core kernels take, as the trainer uses them (x @ W^T, dy @ W,
  // dy^T @ x), tight strides.
  gemms.push_back({false, true, 256, 384, 1024, 0, 0, 0, 1.0f, 0.0f, false});
  gemms.push_back({false, false, 256, 384, 1024, 0, 0, 0, 1.0f, 1.0f, false});
  gemms.push_back({true, false, 384, 256, 512, 0, 0, 0, 1.0f, 1.0f, false});
  gemms.push_back({false, true, 256, 384, 1024, 0, 0, 0, 1.0f, 0.0f, true});
  // Degenerate sizes: a single row, a single column, K = 1.
  gemms.push_back({false, true, 1, 1000, 64, 0, 0, 0, 1.0f, 0.0f, false});
  gemms.push_back({true, false, 5, 1, 1, 2, 3, 1, 2.0f, 0.25f, false});

  std::vector<ParityCase> cases;
  for (const GemmSpec& s : gemms) {
    ParityCase c;
    c.name = GemmName(s);
    c.tolerance = s.bf16_out ? kBf16OutTolerance : kF32OutTolerance;
    c.run = [s](uint64_t seed) { return RunGemm(s, seed); };
    cases.push_back(std::move(c));
  }
  for (const LinearSpec& s : {LinearSpec{37, 200, 129, true}, LinearSpec{37, 200, 129, false},
                              LinearSpec{128, 576, 768, true}}) {
    ParityCase c;
    c.name =
        absl::StrCat("linear_forward/N", s.N, "_in", s.in, "_out", s.out, s.bias ? "_bias" : "");
    c.tolerance = kBf16OutTolerance;
    c.run = [s](uint64_t seed) { return RunLinear(s, seed); };
    cases.push_back(std::move(c));
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(MatmulCases);

}  // namespace lorasweep
