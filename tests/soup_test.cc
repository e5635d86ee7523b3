// `lorasweep soup`: each method against an independent computation in this file: cat against the
// exact weighted sum of deltas, linear against PEFT's formula, svd's error against the singular
// values found by a symmetric (two-sided) Jacobi eigensolver on D^T D, a different algorithm from
// the library's QR + one-sided Jacobi.
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/train_test_util.h"
#include "worker/adapters/soup.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {
namespace {

std::pair<int64_t, int64_t> TinyShape(const std::string& module) {
  if (module == "k_proj" || module == "v_proj") return {20, 40};
  if (module == "gate_proj" || module == "up_proj") return {100, 40};
  if (module == "down_proj") return {40, 100};
  return {40, 40};
}

PeftAdapter RandomAdapter(int rank, double alpha, bool rslora, uint32_t seed,
                          const std::vector<std::string>& modules = {"q_proj", "k_proj", "down_proj"}) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  PeftAdapter a;
  a.base_model_name_or_path = kTinyModel;
  a.rank = rank;
  a.alpha = alpha;
  a.rslora = rslora;
  a.target_modules = modules;
  for (int layer = 0; layer < 2; ++layer) {
    for (const std::string& m : modules) {
      LoraTensor t;
      t.layer = layer;
      t.module = m;
      std::tie(t.out_features, t.in_features) = TinyShape(m);
      for (int64_t i = 0; i < rank * t.in_features; ++i) t.a.push_back(u(rng) * 0.2f);
      for (int64_t i = 0; i < t.out_features * rank; ++i) t.b.push_back(u(rng) * 0.1f);
      a.tensors.push_back(std::move(t));
    }
  }
  return a;
}

std::string Save(const PeftAdapter& a, const std::string& dir) {
  EXPECT_TRUE(WritePeftAdapter(a, dir).ok());
  return dir;
}

// delta[o, i] = scale * sum_k B[o, k] A[k, i], in double.
std::vector<double> Delta(const LoraTensor& t, int rank, double scale) {
  std::vector<double> d(t.out_features * t.in_features, 0.0);
  for (int64_t o = 0; o < t.out_features; ++o) {
    for (int64_t i = 0; i < t.in_features; ++i) {
      double sum = 0;
      for (int k = 0; k < rank; ++k) {
        sum += static_cast<double>(t.b[o * rank + k]) * t.a[k * t.in_features + i];
      }
      d[o * t.in_features + i] = scale * sum;
    }
  }
  return d;
}

const LoraTensor& Find(const PeftAdapter& a, int layer, const std::string& module) {
  for (const LoraTensor& t : a.tensors) {
    if (t.layer == layer && t.module == module) return t;
  }
  ADD_FAILURE() << "no " << layer << " " << module;
  return a.tensors[0];
}

// Eigenvalues of the symmetric n x n matrix s (row-major), by cyclic two-sided Jacobi rotations.
std::vector<double> SymmetricEigenvalues(std::vector<double> s, int64_t n) {
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t q = p + 1; q < n; ++q) off += s[p * n + q] * s[p * n + q];
    }
    if (off < 1e-30) break;
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = s[p * n + q];
        if (std::fabs(apq) < 1e-300) continue;
        const double theta = (s[q * n + q] - s[p * n + p]) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), sn = t * c;
        for (int64_t k = 0; k < n; ++k) {  // columns p, q
          const double skp = s[k * n + p], skq = s[k * n + q];
          s[k * n + p] = c * skp - sn * skq;
          s[k * n + q] = sn * skp + c * skq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p, q
          const double spk = s[p * n + k], sqk = s[q * n + k];
          s[p * n + k] = c * spk - sn * sqk;
          s[q * n + k] = sn * spk + c * sqk;
        }
      }
    }
  }
  std::vector<double> ev(n);
  for (int64_t i = 0; i < n; ++i) ev[i] = s[i * n + i];
  std::sort(ev.rbegin(), ev.rend());
  return ev;
}

// Singular values of the m x n matrix d: square roots of the eigenvalues of d^T d.
std::vector<double> SingularValues(const std::vector<double>& d, int64_t m, int64_t n) {
  std::vector<double> g(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t r = 0; r < m; ++r) sum += d[r * n + i] * d[r * n + j];
      g[i * n + j] = sum;
    }
  }
  std::vector<double> ev = SymmetricEigenvalues(g, n);
  for (double& e : ev) e = std::sqrt(std::max(e, 0.0));
  return ev;
}

nlohmann::json LastJson(const std::string& output) {
  return nlohmann::json::parse(output.substr(output.rfind('{')));
}

TEST(SoupTest, ParseAdapterWeight) {
  auto p = ParseAdapterWeight("runs/a:b/adapter:0.25");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->first, "runs/a:b/adapter");
  EXPECT_EQ(p->second, 0.25);
  p = ParseAdapterWeight("x:-1e-1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->second, -0.1);
  p = ParseAdapterWeight("dir:notanumber");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->first, "dir:notanumber");
  EXPECT_EQ(p->second, 1.0);
  EXPECT_FALSE(ParseAdapterWeight(":0.5").ok());
  EXPECT_FALSE(ParseAdapterWeight("").ok());
}

TEST(SoupTest, CatIsTheExactWeightedSumOfDeltas) {
  const std::string dir = NewDir("soup_cat");
  const PeftAdapter a = RandomAdapter(4, 8, false, 1), b = RandomAdapter(2, 3, true, 2);
  const ProcessResult r =
      RunLorasweep({"soup", "--adapters",
                    Save(a, dir + "/a") + ":0.7," + Save(b, dir + "/b") + ":-0.4", "--method",
                    "cat", "--out", dir + "/soup", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(LastJson(r.output)["rank"], 6);
  absl::StatusOr<PeftAdapter> soup = ReadPeftAdapter(dir + "/soup");
  ASSERT_TRUE(soup.ok()) << soup.status();
  EXPECT_EQ(soup->rank, 6);
  EXPECT_EQ(soup->alpha, 6.0);
  EXPECT_FALSE(soup->rslora);
  ASSERT_EQ(soup->tensors.size(), a.tensors.size());
  const double sa = 0.7 * 8.0 / 4, sb = -0.4 * 3.0 / std::sqrt(2.0);
  for (const LoraTensor& t : soup->tensors) {
    const std::vector<double> got = Delta(t, 6, 1.0);
    const std::vector<double> da = Delta(Find(a, t.layer, t.module), 4, sa);
    const std::vector<double> db = Delta(Find(b, t.layer, t.module), 2, sb);
    double max_ref = 0;
    for (size_t e = 0; e < got.size(); ++e) max_ref = std::max(max_ref, std::fabs(da[e] + db[e]));
    ASSERT_GT(max_ref, 1e-3);
    for (size_t e = 0; e < got.size(); ++e) {
      ASSERT_NEAR(got[e], da[e] + db[e], 1e-6 * max_ref) << t.layer << " " << t.module << " " << e;
    }
  }
}

TEST(SoupTest, LinearIsPeftsFormula) {
  const std::string dir = NewDir("soup_linear");
  const PeftAdapter a = RandomAdapter(4, 8, false, 3), b = RandomAdapter(4, 16, false, 4);
  const ProcessResult r = RunLorasweep(
      {"soup", "--adapters", Save(a, dir + "/a") + ":0.6," + Save(b, dir + "/b") + ":0.3",
       "--method", "linear", "--out", dir + "/soup"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<PeftAdapter> soup = ReadPeftAdapter(dir + "/soup");
  ASSERT_TRUE(soup.ok()) << soup.status();
  EXPECT_EQ(soup->rank, 4);
  EXPECT_EQ(soup->alpha, 4.0);
  // PEFT: A = sum sqrt(w_i * s_i) A_i, B = sum sqrt(w_i * s_i) B_i, with s = alpha / r.
  const double ca = std::sqrt(0.6 * 2.0), cb = std::sqrt(0.3 * 4.0);
  double cross = 0;
  for (const LoraTensor& t : soup->tensors) {
    const LoraTensor& x = Find(a, t.layer, t.module);
    const LoraTensor& y = Find(b, t.layer, t.module);
    for (size_t e = 0; e < t.a.size(); ++e) {
      ASSERT_NEAR(t.a[e], ca * x.a[e] + cb * y.a[e], 1e-6) << e;
    }
    for (size_t e = 0; e < t.b.size(); ++e) {
      ASSERT_NEAR(t.b[e], ca * x.b[e] + cb * y.b[e], 1e-6) << e;
    }
    // Not the sum of deltas: the cross terms B_a A_b and B_b A_a remain.
    const std::vector<double> got = Delta(t, 4, 1.0), da = Delta(x, 4, 0.6 * 2.0),
                              db = Delta(y, 4, 0.3 * 4.0);
    for (size_t e = 0; e < got.size(); ++e) cross = std::max(cross, std::fabs(got[e] - da[e] - db[e]));
  }
  EXPECT_GT(cross, 1e-3);
}

TEST(SoupTest, SvdErrorIsTheDiscardedSingularValues) {
  const std::string dir = NewDir("soup_svd");
  const PeftAdapter a = RandomAdapter(4, 8, false, 5), b = RandomAdapter(3, 6, false, 6);
  const ProcessResult r = RunLorasweep(
      {"soup", "--adapters", Save(a, dir + "/a") + ":0.5," + Save(b, dir + "/b") + ":1.5",
       "--method", "svd", "--rank", "3", "--out", dir + "/soup", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = LastJson(r.output);
  absl::StatusOr<PeftAdapter> soup = ReadPeftAdapter(dir + "/soup");
  ASSERT_TRUE(soup.ok()) << soup.status();
  EXPECT_EQ(soup->rank, 3);
  EXPECT_EQ(soup->alpha, 3.0);
  double total_discarded = 0, total = 0;
  for (const LoraTensor& t : soup->tensors) {
    const std::vector<double> da = Delta(Find(a, t.layer, t.module), 4, 0.5 * 2.0);
    const std::vector<double> db = Delta(Find(b, t.layer, t.module), 3, 1.5 * 2.0);
    std::vector<double> d(da.size());
    for (size_t e = 0; e < d.size(); ++e) d[e] = da[e] + db[e];
    const std::vector<double> sv = SingularValues(d, t.out_features, t.in_features);
    double discarded = 0;
    for (size_t k = 3; k < sv.size(); ++k) discarded += sv[k] * sv[k];
    for (double s : sv) total += s * s;
    total_discarded += discarded;
    const std::vector<double> got = Delta(t, 3, 1.0);
    double err = 0;
    for (size_t e = 0; e < d.size(); ++e) err += (d[e] - got[e]) * (d[e] - got[e]);
    ASSERT_GT(discarded, 1e-6) << "rank 3 of a rank-7 sum must discard something";
    EXPECT_NEAR(std::sqrt(err), std::sqrt(discarded), 1e-4 * std::sqrt(discarded) + 1e-6)
        << t.layer << " " << t.module;
  }
  EXPECT_NEAR(j["discarded_frobenius"].get<double>(), std::sqrt(total_discarded),
              1e-8 * std::sqrt(total_discarded));
  EXPECT_NEAR(j["delta_frobenius"].get<double>(), std::sqrt(total), 1e-8 * std::sqrt(total));
}

TEST(SoupTest, SvdOfProductMatchesEigenvalues) {
  std::mt19937 rng(9);
  std::normal_distribution<double> n01;
  // k < n (the QR path), k >= n (the direct path), and a rank-deficient P (two equal columns).
  for (auto [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{7, 3, 9}, {5, 8, 6}, {12, 4, 10}}) {
    std::vector<double> p(m * k), q(k * n);
    for (double& x : p) x = n01(rng);
    for (double& x : q) x = n01(rng);
    if (m == 12) {
      for (int64_t r = 0; r < m; ++r) p[r * k + 1] = p[r * k + 0];
    }
    std::vector<double> d(m * n, 0.0);
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        for (int64_t t = 0; t < k; ++t) d[r * n + c] += p[r * k + t] * q[t * n + c];
      }
    }
    const LowRankSvd svd = SvdOfProduct(p, q, m, k, n);
    const std::vector<double> ref = SingularValues(d, m, n);
    const size_t kk = svd.sigma.size();
    for (size_t j = 0; j < kk; ++j) {
      // Compared as squares: the Gram-matrix reference resolves eigenvalues of D^T D to about
      // 1e-16 * sigma_max^2, so a zero singular value reads as ~1e-8 * sigma_max.
      EXPECT_NEAR(svd.sigma[j] * svd.sigma[j], ref[j] * ref[j], 1e-12 * ref[0] * ref[0])
          << m << "x" << k << "x" << n << " " << j;
    }
    // us * v^T reproduces d.
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        double sum = 0;
        for (size_t j = 0; j < kk; ++j) sum += svd.us[r * kk + j] * svd.v[c * kk + j];
        ASSERT_NEAR(sum, d[r * n + c], 1e-9 * ref[0]);
      }
    }
  }
}

TEST(SoupTest, MismatchesAreRefusedNamingTheAdapter) {
  const std::string dir = NewDir("soup_errors");
  const std::string a = Save(RandomAdapter(4, 8, false, 7), dir + "/a");
  const std::string r2 = Save(RandomAdapter(2, 8, false, 8), dir + "/r2");
  ProcessResult r = RunLorasweep({"soup", "--adapters", a + "," + r2, "--method", "linear",
                                  "--out", dir + "/soup"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(r2 + ": r = 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("linear needs equal ranks"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/soup"));

  PeftAdapter other = RandomAdapter(4, 8, false, 9);
  other.base_model_name_or_path = "HuggingFaceTB/SmolLM2-135M";
  const std::string o = Save(other, dir + "/other");
  r = RunLorasweep({"soup", "--adapters", a + "," + o, "--method", "cat", "--out", dir + "/soup"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(o + ": base_model_name_or_path"), std::string::npos) << r.output;

  const std::string t = Save(RandomAdapter(4, 8, false, 10, {"q_proj", "v_proj"}), dir + "/t");
  r = RunLorasweep({"soup", "--adapters", a + "," + t, "--method", "svd", "--out", dir + "/soup"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(t + ": target_modules"), std::string::npos) << r.output;

  const std::string b = Save(RandomAdapter(4, 8, false, 11), dir + "/b");
  r = RunLorasweep({"soup", "--adapters", a + ":1," + b + ":-0.5", "--method", "linear", "--out",
                    dir + "/soup"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(b + ": weight -0.5"), std::string::npos) << r.output;

  r = RunLorasweep({"soup", "--adapters", a + "," + b, "--method", "mean", "--out", dir + "/soup"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--method"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/soup"));
}

}  // namespace
}  // namespace lorasweep
