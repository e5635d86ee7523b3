// Tests for the CPU compute kernels (kernels/*.cc). Each forward is compared with a straightforward
// float64 implementation written here (no code shared with the kernels); each backward with central
// finite differences of that float64 reference, for the scalar loss L = sum(dy * y) with random dy.
//
// Tolerances: forwards within ~1e-5 of the tensor's scale (float32 against float64); gradients
// within 1e-4 of the gradient's scale (the float32 backward against a float64 difference quotient
// with h = 1e-6, whose own error is ~1e-10). A wrong formula misses by O(1).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "common/parallel_for.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary.h"
#include "kernels/swiglu.h"

namespace lorasweep {
namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

Vec Random(int64_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

DVec ToDouble(const Vec& v) { return DVec(v.begin(), v.end()); }

double MaxAbs(const DVec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// |actual - expected| <= rtol * (|expected| + max|expected|), element by element.
void ExpectClose(const Vec& actual, const DVec& expected, double rtol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  const double scale = MaxAbs(expected);
  int reported = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double tol = rtol * (std::abs(expected[i]) + scale);
    if (!(std::abs(actual[i] - expected[i]) <= tol) && reported++ < 5) {
      ADD_FAILURE() << what << "[" << i << "]: got " << actual[i] << ", want " << expected[i]
                    << " (tolerance " << tol << ")";
    }
  }
}

constexpr double kForwardTol = 1e-5;
constexpr double kGradTol = 1e-4;

// Central differences of f at x, for the listed indices (all when `indices` is empty).
DVec NumericGradient(const std::function<double(const DVec&)>& f, DVec x,
                     const std::vector<size_t>& indices = {}) {
  constexpr double h = 1e-6;
  DVec g(x.size(), 0.0);
  auto one = [&](size_t i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double plus = f(x);
    x[i] = saved - h;
    const double minus = f(x);
    x[i] = saved;
    g[i] = (plus - minus) / (2 * h);
  };
  if (indices.empty()) {
    for (size_t i = 0; i < x.size(); ++i) one(i);
  } else {
    for (size_t i : indices) one(i);
  }
  return g;
}

// Compares only `indices` (all when empty).
void ExpectGradClose(const Vec& analytic, const DVec& numeric, const std::string& what,
                     const std::vector<size_t>& indices = {}) {
  if (indices.empty()) {
    ExpectClose(analytic, numeric, kGradTol, what);
    return;
  }
  Vec a;
  DVec n;
  for (size_t i : indices) {
    a.push_back(analytic[i]);
    n.push_back(numeric[i]);
  }
  ExpectClose(a, n, kGradTol, what);
}

double Dot(const DVec& a, const DVec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ---------------------------------------------------------------------------------------------
// Matmul

// C = alpha op(A) op(B) + beta C with row strides, the textbook triple loop.
void RefGemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const DVec& A,
             int64_t lda, const DVec& B, int64_t ldb, double beta, DVec& C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = ta ? A[k * lda + i] : A[i * lda + k];
        const double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        s += a * b;
      }
      C[i * ldc + j] = alpha * s + beta * C[i * ldc + j];
    }
  }
}

TEST(SgemmTest, AllTransposesWithStridesAlphaBeta) {
  const int64_t M = 7, N = 5, K = 9;
  uint32_t seed = 1;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      // Padded leading dimensions: a kernel that ignores them reads the wrong elements.
      const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 4;
      const Vec A = Random((ta ? K : M) * lda, seed++), B = Random((tb ? N : K) * ldb, seed++);
      Vec C = Random(M * ldc, seed++);
      DVec expected = ToDouble(C);
      RefGemm(ta, tb, M, N, K, 0.75, ToDouble(A), lda, ToDouble(B), ldb, -0.5, expected, ldc);
      Sgemm(ta, tb, M, N, K, 0.75f, A.data(), lda, B.data(), ldb, -0.5f, C.data(), ldc);
      ExpectClose(C, expected, kForwardTol,
                  "C ta=" + std::to_string(ta) + " tb=" + std::to_string(tb));
    }
  }
}

TEST(SgemmTest, EmptyInnerDimensionScalesC) {
  Vec C = {1, 2, 3, 4, 5, 6};
  Sgemm(false, false, 2, 3, 0, 1.0f, nullptr, 0, nullptr, 0, 2.0f, C.data(), 3);
  EXPECT_EQ(C, (Vec{2, 4, 6, 8, 10, 12}));
  Sgemm(false, false, 2, 3, 0, 1.0f, nullptr, 0, nullptr, 0, 0.0f, C.data(), 3);
  EXPECT_EQ(C, Vec(6, 0.0f));
}

DVec RefLinear(const DVec& x, const DVec& W, const DVec* bias, int64_t N, int64_t in, int64_t out) {
  DVec y(static_cast<size_t>(N * out));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t o = 0; o < out; ++o) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[n * in + i] * W[o * in + i];
      y[n * out + o] = s;
    }
  }
  return y;
}

TEST(LinearTest, ForwardAndBothBackwardsAgainstFiniteDifferences) {
  const int64_t N = 5, in = 7, out = 3;
  const Vec x = Random(N * in, 10), W = Random(out * in, 11), bias = Random(out, 12);
  const Vec dy = Random(N * out, 13);
  const DVec dyd = ToDouble(dy), bd = ToDouble(bias);
  for (bool with_bias : {false, true}) {
    Vec y(N * out);
    LinearForward(x.data(), W.data(), with_bias ? bias.data() : nullptr, N, in, out, y.data());
    ExpectClose(y, RefLinear(ToDouble(x), ToDouble(W), with_bias ? &bd : nullptr, N, in, out),
                kForwardTol, "y");
  }
  // dx overwrites, then accumulates on top of itself.
  Vec dx(N * in, 123.0f);
  LinearBackwardInput(dy.data(), W.data(), N, in, out, /*accumulate=*/false, dx.data());
  const DVec num_dx = NumericGradient(
      [&](const DVec& xd) { return Dot(dyd, RefLinear(xd, ToDouble(W), nullptr, N, in, out)); },
      ToDouble(x));
  ExpectGradClose(dx, num_dx, "dx");
  LinearBackwardInput(dy.data(), W.data(), N, in, out, /*accumulate=*/true, dx.data());
  DVec twice = num_dx;
  for (double& g : twice) g *= 2;
  ExpectGradClose(dx, twice, "dx accumulated");
  // dW always accumulates (gradient accumulation over micro-batches).
  const Vec dW0 = Random(out * in, 14);
  Vec dW = dW0;
  LinearBackwardWeight(dy.data(), x.data(), N, in, out, dW.data());
  DVec num_dW = NumericGradient(
      [&](const DVec& Wd) { return Dot(dyd, RefLinear(ToDouble(x), Wd, nullptr, N, in, out)); },
      ToDouble(W));
  for (size_t i = 0; i < num_dW.size(); ++i) num_dW[i] += dW0[i];
  ExpectGradClose(dW, num_dW, "dW");
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

DVec RefRmsNorm(const DVec& x, const DVec& w, int64_t rows, int64_t dim, double eps) {
  DVec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < dim; ++i) ms += x[r * dim + i] * x[r * dim + i];
    ms /= static_cast<double>(dim);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = x[r * dim + i] / std::sqrt(ms + eps) * w[i];
  }
  return y;
}

TEST(RmsNormTest, ForwardAndBackward) {
  const float eps = 1e-5f;
  for (auto [rows, dim] : {std::pair<int64_t, int64_t>{3, 6}, {5, 17}, {40, 64}}) {
    const Vec x = Random(rows * dim, 20 + dim, -2, 2), w = Random(dim, 21, 0.5f, 1.5f);
    const Vec dy = Random(rows * dim, 22);
    Vec y(rows * dim), inv_rms(rows);
    RmsNormForward(x.data(), w.data(), rows, dim, eps, y.data(), inv_rms.data());
    ExpectClose(y, RefRmsNorm(ToDouble(x), ToDouble(w), rows, dim, eps), kForwardTol, "y");
    for (int64_t r = 0; r < rows; ++r) {
      double ms = 0;
      for (int64_t i = 0; i < dim; ++i) ms += double(x[r * dim + i]) * x[r * dim + i];
      EXPECT_NEAR(inv_rms[r], 1 / std::sqrt(ms / dim + eps), 1e-5 / std::sqrt(ms / dim + eps));
    }
    Vec dx(rows * dim, 7.0f);
    RmsNormBackward(x.data(), w.data(), inv_rms.data(), dy.data(), rows, dim, false, dx.data());
    const DVec num = NumericGradient(
        [&](const DVec& xd) {
          return Dot(ToDouble(dy), RefRmsNorm(xd, ToDouble(w), rows, dim, eps));
        },
        ToDouble(x));
    ExpectGradClose(dx, num, "dx dim=" + std::to_string(dim));
    // Accumulate adds the same gradient again.
    RmsNormBackward(x.data(), w.data(), inv_rms.data(), dy.data(), rows, dim, true, dx.data());
    DVec twice = num;
    for (double& g : twice) g *= 2;
    ExpectGradClose(dx, twice, "dx accumulated");
  }
}

// ---------------------------------------------------------------------------------------------
// Rotary

// Meta's apply_scaling (llama/model.py of Llama 3.1), written as a three-way branch.
DVec RefLlama3InvFreq(int64_t D, double theta, double factor, double low, double high, double old) {
  DVec out;
  for (int64_t i = 0; i < D / 2; ++i) {
    const double freq = 1.0 / std::pow(theta, 2.0 * i / D);
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < old / high) {
      out.push_back(freq);
    } else if (wavelen > old / low) {
      out.push_back(freq / factor);
    } else {
      const double smooth = (old / wavelen - low) / (high - low);
      out.push_back((1 - smooth) * freq / factor + smooth * freq);
    }
  }
  return out;
}

TEST(RopeTest, DefaultAndLinearInverseFrequencies) {
  for (int64_t D : {6, 64, 128}) {
    const std::vector<float> inv = RopeInverseFrequencies(D, 10000.0, RopeScalingParams{});
    ASSERT_EQ(inv.size(), static_cast<size_t>(D / 2));
    RopeScalingParams linear;
    linear.type = "linear";
    linear.factor = 4.0;
    const std::vector<float> lin = RopeInverseFrequencies(D, 10000.0, linear);
    for (int64_t i = 0; i < D / 2; ++i) {
      const double want = std::pow(10000.0, -2.0 * i / D);
      EXPECT_NEAR(inv[i], want, 1e-7 * want) << i;
      EXPECT_NEAR(lin[i], want / 4, 1e-7 * want / 4) << i;
    }
  }
  EXPECT_TRUE(RopeScalingSupported("llama3"));
  EXPECT_TRUE(RopeScalingSupported("none"));
  EXPECT_FALSE(RopeScalingSupported("dynamic"));
  EXPECT_FALSE(RopeScalingSupported("yarn"));
}

TEST(RopeTest, Llama3InverseFrequencies) {
  RopeScalingParams s;
  s.type = "llama3";
  s.factor = 8;
  s.low_freq_factor = 1;
  s.high_freq_factor = 4;
  s.original_max_position_embeddings = 8192;
  const std::vector<float> inv = RopeInverseFrequencies(128, 500000.0, s);
  const DVec ref = RefLlama3InvFreq(128, 500000.0, 8, 1, 4, 8192);
  ASSERT_EQ(inv.size(), 64u);
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(inv[i], ref[i], 1e-7 * ref[i]) << i;
  // Llama-3.1 defaults (head_dim 128, theta 500000, factor 8, low 1, high 4, original 8192), values
  // printed by Python's math module running Meta's apply_scaling in double: indices 0..28 keep
  // their frequency, 29..34 are blended, 35..63 are divided by 8.
  const std::pair<int, double> known[] = {{0, 1.0},
                                          {1, 0.8146172338565447},
                                          {28, 0.0032114459947525913},
                                          {29, 0.002166570763503359},
                                          {30, 0.0013718935677611381},
                                          {32, 0.0005248461609929547},
                                          {34, 0.00017850781276799638},
                                          {35, 9.556212353964683e-05},
                                          {63, 3.068925988914511e-07}};
  for (auto [i, want] : known) EXPECT_NEAR(inv[i], want, 2e-7 * want) << i;

  // A different shape and factors, medium band included.
  s.factor = 4;
  s.low_freq_factor = 2;
  s.high_freq_factor = 8;
  s.original_max_position_embeddings = 256;
  const std::vector<float> inv2 = RopeInverseFrequencies(64, 10000.0, s);
  const DVec ref2 = RefLlama3InvFreq(64, 10000.0, 4, 2, 8, 256);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(inv2[i], ref2[i], 1e-7 * ref2[i]) << i;
}

TEST(RopeTest, TablesUseTheFloat32Angle) {
  const std::vector<float> inv = RopeInverseFrequencies(64, 10000.0, RopeScalingParams{});
  const int64_t max_pos = 2048, half = 32;
  Vec cos(max_pos * half), sin(max_pos * half);
  RopeTables(inv, max_pos, cos.data(), sin.data());
  for (int64_t p : {0, 1, 7, 1000, 2047}) {
    for (int64_t i = 0; i < half; ++i) {
      // transformers: freqs = position(float32) * inv_freq(float32), rounded to float32.
      const double angle = static_cast<float>(static_cast<float>(p) * inv[i]);
      EXPECT_NEAR(cos[p * half + i], std::cos(angle), 1e-6) << p << "," << i;
      EXPECT_NEAR(sin[p * half + i], std::sin(angle), 1e-6) << p << "," << i;
    }
  }
}

DVec RefRotary(const DVec& x, const std::vector<int32_t>& pos, int64_t T, int64_t H, int64_t D,
               const Vec& cos, const Vec& sin) {
  // rotate_half form: x * cos_full + rotate_half(x) * sin_full, cos_full = cat(cos, cos).
  const int64_t half = D / 2;
  DVec y(x.size());
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const double* v = &x[(t * H + h) * D];
      for (int64_t d = 0; d < D; ++d) {
        const int64_t i = d % half;
        const double c = cos[pos[t] * half + i], s = sin[pos[t] * half + i];
        const double rotated = d < half ? -v[d + half] : v[d - half];
        y[(t * H + h) * D + d] = v[d] * c + rotated * s;
      }
    }
  }
  return y;
}

TEST(RotaryTest, ForwardBackwardAndInverse) {
  const int64_t T = 7, H = 3, D = 6, max_pos = 40;
  const std::vector<float> inv = RopeInverseFrequencies(D, 10000.0, RopeScalingParams{});
  Vec cos(max_pos * D / 2), sin(max_pos * D / 2);
  RopeTables(inv, max_pos, cos.data(), sin.data());
  const std::vector<int32_t> pos = {0, 1, 2, 0, 1, 5, 39};  // packed documents restart positions
  const Vec x = Random(T * H * D, 30), dy = Random(T * H * D, 31);
  Vec y = x;
  RotaryForward(y.data(), pos.data(), T, H, D, cos.data(), sin.data());
  ExpectClose(y, RefRotary(ToDouble(x), pos, T, H, D, cos, sin), kForwardTol, "y");
  Vec dx = dy;
  RotaryBackward(dx.data(), pos.data(), T, H, D, cos.data(), sin.data());
  ExpectGradClose(
      dx,
      NumericGradient(
          [&](const DVec& xd) { return Dot(ToDouble(dy), RefRotary(xd, pos, T, H, D, cos, sin)); },
          ToDouble(x)),
      "dx");
  // A rotation's transpose is its inverse.
  RotaryBackward(y.data(), pos.data(), T, H, D, cos.data(), sin.data());
  ExpectClose(y, ToDouble(x), 1e-6, "backward(forward(x))");
}

// ---------------------------------------------------------------------------------------------
// Attention

struct AttnShape {
  int64_t B, T, Hq, Hkv, D;
  std::vector<uint8_t> doc_start;  // [B*T]
};

struct AttnRef {
  DVec out, lse;
};

AttnRef RefAttention(const DVec& q, const DVec& k, const DVec& v, const AttnShape& s) {
  const int64_t B = s.B, T = s.T, Hq = s.Hq, Hkv = s.Hkv, D = s.D;
  AttnRef r{DVec(B * T * Hq * D), DVec(B * Hq * T)};
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t kvh = h / (Hq / Hkv);
      for (int64_t t = 0; t < T; ++t) {
        // Keys: back from t to the nearest document start, inclusive.
        int64_t lo = t;
        while (lo > 0 && !s.doc_start[b * T + lo]) --lo;
        DVec score;
        for (int64_t u = lo; u <= t; ++u) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) {
            dot += q[((b * T + t) * Hq + h) * D + d] * k[((b * T + u) * Hkv + kvh) * D + d];
          }
          score.push_back(scale * dot);
        }
        const double mx = *std::max_element(score.begin(), score.end());
        double sum = 0;
        for (double x : score) sum += std::exp(x - mx);
        r.lse[(b * Hq + h) * T + t] = mx + std::log(sum);
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t u = lo; u <= t; ++u) {
            o += std::exp(score[u - lo] - mx) / sum * v[((b * T + u) * Hkv + kvh) * D + d];
          }
          r.out[((b * T + t) * Hq + h) * D + d] = o;
        }
      }
    }
  }
  return r;
}

std::vector<AttnShape> AttentionShapes() {
  return {
      // GQA 3:1, odd head_dim, two documents per sequence.
      {2, 7, 6, 2, 6, {1, 0, 0, 1, 0, 0, 0, /**/ 1, 0, 0, 0, 0, 1, 0}},
      // All query heads on one kv head; three documents, one of a single token.
      {1, 9, 4, 1, 8, {1, 0, 0, 0, 1, 1, 0, 0, 0}},
      // Plain multi-head attention, one document; position 0 not flagged still starts one.
      {1, 5, 2, 2, 4, {0, 0, 0, 0, 0}},
  };
}

TEST(AttentionTest, ForwardMatchesReference) {
  uint32_t seed = 40;
  for (const AttnShape& s : AttentionShapes()) {
    const Vec q = Random(s.B * s.T * s.Hq * s.D, seed++, -2, 2);
    const Vec k = Random(s.B * s.T * s.Hkv * s.D, seed++, -2, 2);
    const Vec v = Random(s.B * s.T * s.Hkv * s.D, seed++);
    Vec out(q.size()), lse(s.B * s.Hq * s.T);
    AttentionForward(q.data(), k.data(), v.data(), s.doc_start.data(), s.B, s.T, s.Hq, s.Hkv, s.D,
                     out.data(), lse.data());
    const AttnRef ref = RefAttention(ToDouble(q), ToDouble(k), ToDouble(v), s);
    ExpectClose(out, ref.out, kForwardTol, "out T=" + std::to_string(s.T));
    ExpectClose(lse, ref.lse, kForwardTol, "lse T=" + std::to_string(s.T));
  }
}

void CheckAttentionGradients(const AttnShape& s, uint32_t seed, size_t max_checked) {
  const Vec q = Random(s.B * s.T * s.Hq * s.D, seed, -2, 2);
  const Vec k = Random(s.B * s.T * s.Hkv * s.D, seed + 1, -2, 2);
  const Vec v = Random(s.B * s.T * s.Hkv * s.D, seed + 2);
  const Vec dout = Random(q.size(), seed + 3);
  Vec out(q.size()), lse(s.B * s.Hq * s.T);
  AttentionForward(q.data(), k.data(), v.data(), s.doc_start.data(), s.B, s.T, s.Hq, s.Hkv, s.D,
                   out.data(), lse.data());
  // Garbage in the outputs: the backward must overwrite them.
  Vec dq(q.size(), 5.0f), dk(k.size(), 5.0f), dv(v.size(), 5.0f);
  AttentionBackward(q.data(), k.data(), v.data(), s.doc_start.data(), out.data(), dout.data(),
                    lse.data(), s.B, s.T, s.Hq, s.Hkv, s.D, dq.data(), dk.data(), dv.data());
  const DVec qd = ToDouble(q), kd = ToDouble(k), vd = ToDouble(v), dod = ToDouble(dout);
  std::mt19937 rng(seed + 4);
  auto pick = [&](size_t n) {
    std::vector<size_t> idx;
    if (n <= max_checked) return idx;  // all
    std::uniform_int_distribution<size_t> dist(0, n - 1);
    for (size_t i = 0; i < max_checked; ++i) idx.push_back(dist(rng));
    return idx;
  };
  const std::string tag = " T=" + std::to_string(s.T) + " Hq=" + std::to_string(s.Hq);
  std::vector<size_t> idx = pick(q.size());
  ExpectGradClose(
      dq,
      NumericGradient([&](const DVec& x) { return Dot(dod, RefAttention(x, kd, vd, s).out); }, qd,
                      idx),
      "dq" + tag, idx);
  idx = pick(k.size());
  ExpectGradClose(
      dk,
      NumericGradient([&](const DVec& x) { return Dot(dod, RefAttention(qd, x, vd, s).out); }, kd,
                      idx),
      "dk" + tag, idx);
  idx = pick(v.size());
  ExpectGradClose(
      dv,
      NumericGradient([&](const DVec& x) { return Dot(dod, RefAttention(qd, kd, x, s).out); }, vd,
                      idx),
      "dv" + tag, idx);
}

TEST(AttentionTest, BackwardMatchesFiniteDifferences) {
  uint32_t seed = 50;
  for (const AttnShape& s : AttentionShapes()) {
    CheckAttentionGradients(s, seed, /*max_checked=*/100000);
    seed += 10;
  }
}

TEST(AttentionTest, SeveralRowBlocksSampledGradients) {
  // Longer sequences than the kernel's 64-row blocks, with documents starting inside blocks and on
  // block edges; gradients checked on a random sample of elements.
  AttnShape wide{2, 67, 4, 2, 64, std::vector<uint8_t>(2 * 67, 0)};  // head_dim of SmolLM2
  for (int t : {0, 30, 31, 67, 67 + 50}) wide.doc_start[t] = 1;
  AttnShape tall{1, 200, 3, 1, 16, std::vector<uint8_t>(200, 0)};
  for (int t : {10, 64, 70, 129, 190}) tall.doc_start[t] = 1;
  uint32_t seed = 60;
  for (const AttnShape& s : {wide, tall}) {
    const Vec q = Random(s.B * s.T * s.Hq * s.D, seed++, -1, 1);
    const Vec k = Random(s.B * s.T * s.Hkv * s.D, seed++, -1, 1);
    const Vec v = Random(s.B * s.T * s.Hkv * s.D, seed++);
    Vec out(q.size()), lse(s.B * s.Hq * s.T);
    AttentionForward(q.data(), k.data(), v.data(), s.doc_start.data(), s.B, s.T, s.Hq, s.Hkv, s.D,
                     out.data(), lse.data());
    const AttnRef ref = RefAttention(ToDouble(q), ToDouble(k), ToDouble(v), s);
    ExpectClose(out, ref.out, kForwardTol, "out T=" + std::to_string(s.T));
    ExpectClose(lse, ref.lse, kForwardTol, "lse T=" + std::to_string(s.T));
    CheckAttentionGradients(s, seed++, /*max_checked=*/40);
  }
}

TEST(AttentionTest, DocumentsDoNotSeeEachOther) {
  // Sequence of 12 tokens holding documents [0, 5), [5, 9), [9, 12). Changing every q, k and v of
  // the first document must leave the other documents' outputs bit for bit unchanged, and a loss
  // on the later documents alone must give the first document zero gradient.
  AttnShape s{1, 12, 4, 2, 8, {1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0}};
  const int64_t qw = s.Hq * s.D, kw = s.Hkv * s.D;
  Vec q = Random(s.T * qw, 70, -2, 2), k = Random(s.T * kw, 71, -2, 2), v = Random(s.T * kw, 72);
  Vec out1(q.size()), out2(q.size()), lse(s.Hq * s.T);
  AttentionForward(q.data(), k.data(), v.data(), s.doc_start.data(), 1, s.T, s.Hq, s.Hkv, s.D,
                   out1.data(), lse.data());
  Vec q2 = q, k2 = k, v2 = v;
  const Vec noise = Random(5 * qw, 73, -3, 3);
  for (int64_t i = 0; i < 5 * qw; ++i) q2[i] += noise[i];
  for (int64_t i = 0; i < 5 * kw; ++i) {
    k2[i] += noise[i];
    v2[i] -= noise[i];
  }
  AttentionForward(q2.data(), k2.data(), v2.data(), s.doc_start.data(), 1, s.T, s.Hq, s.Hkv, s.D,
                   out2.data(), lse.data());
  for (int64_t i = 0; i < 5 * qw; ++i) ASSERT_NE(out1[i], out2[i]) << i;
  for (int64_t i = 5 * qw; i < s.T * qw; ++i) ASSERT_EQ(out1[i], out2[i]) << i;

  Vec dout = Random(q.size(), 74);
  for (int64_t i = 0; i < 5 * qw; ++i) dout[i] = 0;
  AttentionForward(q.data(), k.data(), v.data(), s.doc_start.data(), 1, s.T, s.Hq, s.Hkv, s.D,
                   out1.data(), lse.data());
  Vec dq(q.size()), dk(k.size()), dv(v.size());
  AttentionBackward(q.data(), k.data(), v.data(), s.doc_start.data(), out1.data(), dout.data(),
                    lse.data(), 1, s.T, s.Hq, s.Hkv, s.D, dq.data(), dk.data(), dv.data());
  for (int64_t i = 0; i < 5 * qw; ++i) ASSERT_EQ(dq[i], 0.0f) << i;
  for (int64_t i = 0; i < 5 * kw; ++i) {
    ASSERT_EQ(dk[i], 0.0f) << i;
    ASSERT_EQ(dv[i], 0.0f) << i;
  }
  for (int64_t i = 5 * kw; i < s.T * kw; ++i) ASSERT_NE(dv[i], 0.0f) << i;
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

DVec RefSwiglu(const DVec& gate, const DVec& up) {
  DVec out(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) out[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
  return out;
}

TEST(SwigluTest, ForwardAndBackward) {
  const int64_t n = 37;
  const Vec gate = Random(n, 80, -6, 6), up = Random(n, 81, -2, 2), dout = Random(n, 82);
  Vec out(n), dgate(n, 9.0f), dup(n, 9.0f);
  SwigluForward(gate.data(), up.data(), n, out.data());
  ExpectClose(out, RefSwiglu(ToDouble(gate), ToDouble(up)), kForwardTol, "out");
  SwigluBackward(gate.data(), up.data(), dout.data(), n, dgate.data(), dup.data());
  const DVec dd = ToDouble(dout);
  ExpectGradClose(
      dgate,
      NumericGradient([&](const DVec& g) { return Dot(dd, RefSwiglu(g, ToDouble(up))); },
                      ToDouble(gate)),
      "dgate");
  ExpectGradClose(
      dup,
      NumericGradient([&](const DVec& u) { return Dot(dd, RefSwiglu(ToDouble(gate), u)); },
                      ToDouble(up)),
      "dup");
}

TEST(SwigluTest, LargeGatesStayFinite) {
  const Vec gate = {-200.0f, -90.0f, -30.0f, 30.0f, 90.0f, 200.0f}, up(6, 1.5f), dout(6, 1.0f);
  Vec out(6), dgate(6), dup(6);
  SwigluForward(gate.data(), up.data(), 6, out.data());
  SwigluBackward(gate.data(), up.data(), dout.data(), 6, dgate.data(), dup.data());
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(std::isfinite(out[i]) && std::isfinite(dgate[i]) && std::isfinite(dup[i])) << i;
  }
  EXPECT_NEAR(out[5], 300.0f, 1e-3);
  EXPECT_NEAR(dgate[5], 1.5f, 1e-6);
  EXPECT_NEAR(out[0], 0.0f, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

// Sum over counted rows of logsumexp(h W^T) - (h W^T)[target].
double RefCrossEntropy(const DVec& hidden, const DVec& W, const std::vector<int32_t>& targets,
                       int64_t N, int64_t H, int64_t V) {
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] < 0) continue;
    DVec logits(V);
    for (int64_t c = 0; c < V; ++c) {
      for (int64_t j = 0; j < H; ++j) logits[c] += hidden[i * H + j] * W[c * H + j];
    }
    const double mx = *std::max_element(logits.begin(), logits.end());
    double sum = 0;
    for (double l : logits) sum += std::exp(l - mx);
    total += mx + std::log(sum) - logits[targets[i]];
  }
  return total;
}

TEST(CrossEntropyTest, LossAndGradientForEveryChunking) {
  const int64_t N = 11, H = 5, V = 37;
  const Vec hidden = Random(N * H, 90, -2, 2), W = Random(V * H, 91, -2, 2);
  const std::vector<int32_t> targets = {3, -100, 0, 36, 17, -100, -100, 5, 36, 1, 22};
  const float grad_scale = 1.0f / 8;
  const DVec Wd = ToDouble(W);
  const double want = RefCrossEntropy(ToDouble(hidden), Wd, targets, N, H, V);
  DVec num = NumericGradient(
      [&](const DVec& h) { return grad_scale * RefCrossEntropy(h, Wd, targets, N, H, V); },
      ToDouble(hidden));
  for (int64_t chunk : {1, 3, 4, 8, 11, 64}) {
    Vec dhidden(N * H, 3.0f);
    int64_t counted = -1;
    const double loss = CrossEntropyForwardBackward(hidden.data(), W.data(), targets.data(), N, H,
                                                    V, chunk, grad_scale, dhidden.data(), &counted);
    EXPECT_EQ(counted, 8);
    EXPECT_NEAR(loss, want, 1e-5 * want) << "chunk " << chunk;
    ExpectGradClose(dhidden, num, "dhidden chunk " + std::to_string(chunk));
    for (int64_t i : {1, 5, 6}) {
      for (int64_t j = 0; j < H; ++j) EXPECT_EQ(dhidden[i * H + j], 0.0f) << i;
    }
    // Loss only, no gradient buffer.
    EXPECT_NEAR(CrossEntropyForwardBackward(hidden.data(), W.data(), targets.data(), N, H, V, chunk,
                                            grad_scale, nullptr, nullptr),
                want, 1e-5 * want);
  }
}

TEST(CrossEntropyTest, AllIgnoredAndExtremeLogits) {
  const int64_t N = 3, H = 4, V = 9;
  Vec hidden = Random(N * H, 95), W = Random(V * H, 96);
  std::vector<int32_t> targets(N, -100);
  Vec dhidden(N * H, 1.0f);
  int64_t counted = -1;
  EXPECT_EQ(CrossEntropyForwardBackward(hidden.data(), W.data(), targets.data(), N, H, V, 2, 1.0f,
                                        dhidden.data(), &counted),
            0.0);
  EXPECT_EQ(counted, 0);
  EXPECT_EQ(dhidden, Vec(N * H, 0.0f));
  // Logits in the thousands: no overflow, loss = gap between the max logit and the target's.
  for (float& h : hidden) h *= 1000.0f;
  targets = {0, 4, 8};
  const double want = RefCrossEntropy(ToDouble(hidden), ToDouble(W), targets, N, H, V);
  const double loss = CrossEntropyForwardBackward(hidden.data(), W.data(), targets.data(), N, H, V,
                                                  2, 1.0f, dhidden.data(), &counted);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, want, 1e-5 * want);
  for (float g : dhidden) EXPECT_TRUE(std::isfinite(g));
}

TEST(CrossEntropyTest, LmHeadLogits) {
  const int64_t N = 2, H = 5, V = 37;
  const Vec hidden = Random(N * H, 97), W = Random(V * H, 98);
  Vec logits(N * V);
  LmHeadLogits(hidden.data(), W.data(), N, H, V, logits.data());
  ExpectClose(logits, RefLinear(ToDouble(hidden), ToDouble(W), nullptr, N, H, V), kForwardTol,
              "logits");
}

// ---------------------------------------------------------------------------------------------
// AdamW

struct RefAdam {
  DVec p, m, v;
  void Step(const DVec& g, double lr, double b1, double b2, double eps, double wd, int64_t t) {
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] -= lr * wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(b1, t)), v_hat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

TEST(AdamWTest, SeveralStepsAgainstFloat64) {
  const int64_t n = 70001;  // more than one thread's share
  for (float wd : {0.0f, 0.1f}) {
    Vec p = Random(n, 100), m(n, 0.0f), v(n, 0.0f);
    RefAdam ref{ToDouble(p), DVec(n, 0.0), DVec(n, 0.0)};
    for (int64_t t = 1; t <= 6; ++t) {
      // Gradients of different scales per step, a few exactly zero.
      Vec g = Random(n, 100 + static_cast<uint32_t>(t), -1, 1);
      for (int64_t i = 0; i < n; i += 97) g[i] = 0;
      for (float& x : g) x *= std::pow(10.0f, static_cast<float>(t % 3) - 1);
      AdamWParams params;
      params.lr = 1e-2f / static_cast<float>(t);  // a schedule that changes lr each step
      params.weight_decay = wd;
      params.step = t;
      AdamWStep(p.data(), g.data(), m.data(), v.data(), n, params);
      ref.Step(ToDouble(g), params.lr, params.beta1, params.beta2, params.eps, wd, t);
    }
    ExpectClose(p, ref.p, 1e-5, "params wd=" + std::to_string(wd));
    ExpectClose(m, ref.m, 1e-5, "exp_avg");
    ExpectClose(v, ref.v, 1e-5, "exp_avg_sq");
  }
}

TEST(AdamWTest, FirstStepMovesBySignOfGradient) {
  // Bias correction makes the first update lr * g / (|g| + eps): lr * sign(g) for |g| >> eps.
  Vec p = {1.0f, -2.0f, 0.5f, 3.0f}, g = {0.3f, -4.0f, 1e-3f, 0.0f}, m(4, 0.0f), v(4, 0.0f);
  AdamWParams params;
  params.lr = 0.01f;
  params.weight_decay = 0.5f;
  params.step = 1;
  AdamWStep(p.data(), g.data(), m.data(), v.data(), 4, params);
  const float decay = 1 - 0.01f * 0.5f;
  EXPECT_NEAR(p[0], 1.0f * decay - 0.01f, 1e-6);
  EXPECT_NEAR(p[1], -2.0f * decay + 0.01f, 1e-6);
  EXPECT_NEAR(p[2], 0.5f * decay - 0.01f, 1e-6);
  EXPECT_FLOAT_EQ(p[3], 3.0f * decay);  // zero gradient: decay only
}

TEST(GradL2NormTest, MatchesFloat64AndIgnoresThreadCount) {
  const int64_t n = 300001;
  const Vec g = Random(n, 110, -3, 3);
  double want = 0;
  for (float x : g) want += double(x) * x;
  want = std::sqrt(want);
  setenv("LORASWEEP_NUM_THREADS", "1", 1);
  const double one = GradL2Norm(g.data(), n);
  setenv("LORASWEEP_NUM_THREADS", "3", 1);
  const double three = GradL2Norm(g.data(), n);
  unsetenv("LORASWEEP_NUM_THREADS");
  EXPECT_NEAR(one, want, 1e-12 * want);
  EXPECT_EQ(one, three);
  EXPECT_EQ(GradL2Norm(g.data(), 0), 0.0);
}

}  // namespace
}  // namespace lorasweep
