#include "worker/adapters/soup.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/formats/hf_config.h"

namespace lorasweep {
namespace {

// The modules target_modules names, "all-linear" expanded (ReadPeftAdapter validated the names).
std::set<std::string> ExpandTargets(const std::vector<std::string>& targets) {
  std::set<std::string> set;
  for (const std::string& t : targets) {
    if (t == "all-linear") {
      set.insert(LlamaLinearModules().begin(), LlamaLinearModules().end());
    } else {
      set.insert(t);
    }
  }
  return set;
}

// Householder QR of x [n, k] (row-major, n >= k): returns the thin Q [n, k] (orthonormal columns
// even when x is rank-deficient, which Gram-Schmidt would not give) and R [k, k].
void HouseholderQr(std::vector<double> x, int64_t n, int64_t k, std::vector<double>* q,
                   std::vector<double>* r) {
  std::vector<std::vector<double>> reflectors(k);
  for (int64_t j = 0; j < k; ++j) {
    double norm = 0;
    for (int64_t i = j; i < n; ++i) norm += x[i * k + j] * x[i * k + j];
    norm = std::sqrt(norm);
    std::vector<double>& v = reflectors[j];
    v.assign(n - j, 0.0);
    if (norm == 0) continue;  // a zero column: the identity reflector
    const double alpha = x[j * k + j] > 0 ? -norm : norm;
    for (int64_t i = j; i < n; ++i) v[i - j] = x[i * k + j];
    v[0] -= alpha;
    double vnorm = 0;
    for (double e : v) vnorm += e * e;
    vnorm = std::sqrt(vnorm);
    if (vnorm == 0) {
      v.assign(n - j, 0.0);
      continue;
    }
    for (double& e : v) e /= vnorm;
    for (int64_t c = j; c < k; ++c) {
      double dot = 0;
      for (int64_t i = j; i < n; ++i) dot += v[i - j] * x[i * k + c];
      for (int64_t i = j; i < n; ++i) x[i * k + c] -= 2 * dot * v[i - j];
    }
  }
  r->assign(k * k, 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t c = i; c < k; ++c) (*r)[i * k + c] = x[i * k + c];
  }
  // Q = H_0 ... H_{k-1} applied to the first k columns of the identity.
  q->assign(n * k, 0.0);
  for (int64_t i = 0; i < k; ++i) (*q)[i * k + i] = 1.0;
  for (int64_t j = k - 1; j >= 0; --j) {
    const std::vector<double>& v = reflectors[j];
    for (int64_t c = 0; c < k; ++c) {
      double dot = 0;
      for (int64_t i = j; i < n; ++i) dot += v[i - j] * (*q)[i * k + c];
      if (dot == 0) continue;
      for (int64_t i = j; i < n; ++i) (*q)[i * k + c] -= 2 * dot * v[i - j];
    }
  }
}

// One-sided (Hestenes) Jacobi: rotates the k columns of g (stored column-major, m rows each) until
// they are mutually orthogonal, accumulating the rotations in v (k x k, column-major). Then
// g = U Sigma and the input equals g v^T.
void OneSidedJacobi(std::vector<double>* g, int64_t m, int64_t k, std::vector<double>* v) {
  v->assign(k * k, 0.0);
  for (int64_t i = 0; i < k; ++i) (*v)[i * k + i] = 1.0;
  constexpr double kEps = 1e-15;
  for (int sweep = 0; sweep < 100; ++sweep) {
    bool rotated = false;
    for (int64_t p = 0; p < k; ++p) {
      for (int64_t q = p + 1; q < k; ++q) {
        double* gp = g->data() + p * m;
        double* gq = g->data() + q * m;
        double alpha = 0, beta = 0, gamma = 0;
        for (int64_t i = 0; i < m; ++i) {
          alpha += gp[i] * gp[i];
          beta += gq[i] * gq[i];
          gamma += gp[i] * gq[i];
        }
        if (gamma == 0 || std::fabs(gamma) <= kEps * std::sqrt(alpha * beta)) continue;
        rotated = true;
        const double zeta = (beta - alpha) / (2 * gamma);
        const double t = (zeta >= 0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::sqrt(1 + zeta * zeta));
        const double c = 1 / std::sqrt(1 + t * t), s = c * t;
        for (int64_t i = 0; i < m; ++i) {
          const double a = gp[i], b = gq[i];
          gp[i] = c * a - s * b;
          gq[i] = s * a + c * b;
        }
        double* vp = v->data() + p * k;
        double* vq = v->data() + q * k;
        for (int64_t i = 0; i < k; ++i) {
          const double a = vp[i], b = vq[i];
          vp[i] = c * a - s * b;
          vq[i] = s * a + c * b;
        }
      }
    }
    if (!rotated) break;
  }
}

struct ModuleKey {
  int layer;
  std::string module;
  bool operator<(const ModuleKey& o) const {
    return layer != o.layer ? layer < o.layer : module < o.module;
  }
};

}  // namespace

absl::StatusOr<SoupMethod> ParseSoupMethod(const std::string& name) {
  if (name == "cat") return SoupMethod::kCat;
  if (name == "linear") return SoupMethod::kLinear;
  if (name == "svd") return SoupMethod::kSvd;
  return absl::InvalidArgumentError(
      absl::StrCat("--method: expected cat, linear or svd, got '", name, "'"));
}

const char* SoupMethodName(SoupMethod method) {
  switch (method) {
    case SoupMethod::kCat: return "cat";
    case SoupMethod::kLinear: return "linear";
    case SoupMethod::kSvd: return "svd";
  }
  return "?";
}

absl::StatusOr<std::pair<std::string, double>> ParseAdapterWeight(const std::string& spec) {
  const size_t colon = spec.rfind(':');
  if (colon != std::string::npos) {
    double weight = 0;
    if (absl::SimpleAtod(spec.substr(colon + 1), &weight)) {
      if (!std::isfinite(weight)) {
        return absl::InvalidArgumentError(absl::StrCat("'", spec, "': weight must be finite"));
      }
      if (colon == 0) return absl::InvalidArgumentError(absl::StrCat("'", spec, "': no path"));
      return std::make_pair(spec.substr(0, colon), weight);
    }
  }
  if (spec.empty()) return absl::InvalidArgumentError("empty adapter spec");
  return std::make_pair(spec, 1.0);
}

LowRankSvd SvdOfProduct(const std::vector<double>& p, const std::vector<double>& q, int64_t m,
                        int64_t k, int64_t n) {
  LowRankSvd out;
  int64_t kk = k;
  std::vector<double> g;  // column-major [m, kk]
  std::vector<double> qa;  // [n, kk]: maps the kk coordinates back to R^n
  if (k < n) {
    // D = P Q = P (Qa Ra)^T = (P Ra^T) Qa^T with Q^T = Qa Ra.
    std::vector<double> qt(n * k), ra;
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < n; ++j) qt[j * k + i] = q[i * n + j];
    }
    HouseholderQr(std::move(qt), n, k, &qa, &ra);
    g.assign(m * k, 0.0);
    for (int64_t row = 0; row < m; ++row) {
      for (int64_t c = 0; c < k; ++c) {
        double sum = 0;
        for (int64_t t = c; t < k; ++t) sum += p[row * k + t] * ra[c * k + t];  // (Ra^T)[t, c]
        g[c * m + row] = sum;
      }
    }
  } else {
    // Rank k >= n: D itself is the small side.
    kk = n;
    g.assign(m * n, 0.0);
    for (int64_t row = 0; row < m; ++row) {
      for (int64_t t = 0; t < k; ++t) {
        const double a = p[row * k + t];
        if (a == 0) continue;
        for (int64_t c = 0; c < n; ++c) g[c * m + row] += a * q[t * n + c];
      }
    }
    qa.assign(n * n, 0.0);
    for (int64_t i = 0; i < n; ++i) qa[i * n + i] = 1.0;
  }
  std::vector<double> v;
  OneSidedJacobi(&g, m, kk, &v);
  std::vector<double> norms(kk);
  for (int64_t c = 0; c < kk; ++c) {
    double s = 0;
    for (int64_t i = 0; i < m; ++i) s += g[c * m + i] * g[c * m + i];
    norms[c] = std::sqrt(s);
  }
  std::vector<int64_t> order(kk);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return norms[a] > norms[b]; });
  out.us.assign(m * kk, 0.0);
  out.v.assign(n * kk, 0.0);
  out.sigma.resize(kk);
  for (int64_t j = 0; j < kk; ++j) {
    const int64_t c = order[j];
    out.sigma[j] = norms[c];
    for (int64_t i = 0; i < m; ++i) out.us[i * kk + j] = g[c * m + i];
    // V column = Qa @ (Jacobi V column c).
    for (int64_t i = 0; i < n; ++i) {
      double sum = 0;
      for (int64_t t = 0; t < kk; ++t) sum += qa[i * kk + t] * v[c * kk + t];
      out.v[i * kk + j] = sum;
    }
  }
  return out;
}

absl::StatusOr<PeftAdapter> MakeSoup(const std::vector<SoupInput>& inputs, SoupMethod method,
                                     int svd_rank, SoupReport* report) {
  SoupReport local;
  if (report == nullptr) report = &local;
  *report = SoupReport();
  if (inputs.empty()) return absl::InvalidArgumentError("soup: no adapters given");
  const SoupInput& first = inputs[0];
  const std::set<std::string> first_targets = ExpandTargets(first.adapter.target_modules);
  std::map<ModuleKey, const LoraTensor*> first_tensors;
  for (const LoraTensor& t : first.adapter.tensors) first_tensors[{t.layer, t.module}] = &t;
  // Per input, its tensors by (layer, module), after checking it matches the first input.
  std::vector<std::map<ModuleKey, const LoraTensor*>> by_key(inputs.size());
  by_key[0] = first_tensors;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const SoupInput& in = inputs[i];
    if (!std::isfinite(in.weight)) {
      return absl::InvalidArgumentError(absl::StrCat(in.path, ": weight must be finite"));
    }
    if (i == 0) continue;
    const PeftAdapter& a = in.adapter;
    if (!a.base_model_name_or_path.empty() && !first.adapter.base_model_name_or_path.empty() &&
        a.base_model_name_or_path != first.adapter.base_model_name_or_path) {
      return absl::InvalidArgumentError(absl::StrCat(
          in.path, ": base_model_name_or_path '", a.base_model_name_or_path, "' differs from '",
          first.adapter.base_model_name_or_path, "' of ", first.path,
          " (adapters of different base models cannot be combined)"));
    }
    if (ExpandTargets(a.target_modules) != first_targets) {
      return absl::InvalidArgumentError(absl::StrCat(
          in.path, ": target_modules [", absl::StrJoin(a.target_modules, ", "), "] differ from [",
          absl::StrJoin(first.adapter.target_modules, ", "), "] of ", first.path));
    }
    for (const LoraTensor& t : a.tensors) {
      auto it = first_tensors.find({t.layer, t.module});
      if (it == first_tensors.end()) {
        return absl::InvalidArgumentError(absl::StrCat(in.path, ": layer ", t.layer, " ", t.module,
                                                       " has no counterpart in ", first.path));
      }
      if (it->second->in_features != t.in_features || it->second->out_features != t.out_features) {
        return absl::InvalidArgumentError(absl::StrCat(
            in.path, ": layer ", t.layer, " ", t.module, " is [", t.out_features, ", ",
            t.in_features, "] but [", it->second->out_features, ", ", it->second->in_features,
            "] in ", first.path, " (adapters of different base models?)"));
      }
      by_key[i][{t.layer, t.module}] = &t;
    }
    if (by_key[i].size() != first_tensors.size()) {
      return absl::InvalidArgumentError(absl::StrCat(in.path, ": adapts ", by_key[i].size(),
                                                     " modules, ", first.path, " adapts ",
                                                     first_tensors.size()));
    }
  }

  int rank = 0;
  switch (method) {
    case SoupMethod::kCat:
      for (const SoupInput& in : inputs) rank += in.adapter.rank;
      break;
    case SoupMethod::kLinear:
      for (const SoupInput& in : inputs) {
        if (in.adapter.rank != first.adapter.rank) {
          return absl::InvalidArgumentError(absl::StrCat(
              in.path, ": r = ", in.adapter.rank, " but r = ", first.adapter.rank, " in ",
              first.path, "; method linear needs equal ranks (use cat or svd)"));
        }
        const double ws = in.weight * LoraScaling(in.adapter.alpha, in.adapter.rank,
                                                  in.adapter.rslora);
        if (ws < 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              in.path, ": weight ", in.weight, " x scaling is negative; method linear takes its "
              "square root (as PEFT does), use cat or svd for negative weights"));
        }
      }
      rank = first.adapter.rank;
      break;
    case SoupMethod::kSvd:
      if (svd_rank < 0) return absl::InvalidArgumentError("--rank must be >= 0");
      for (const SoupInput& in : inputs) rank = std::max(rank, in.adapter.rank);
      if (svd_rank > 0) rank = svd_rank;
      break;
  }

  PeftAdapter soup;
  soup.base_model_name_or_path = first.adapter.base_model_name_or_path;
  soup.rank = rank;
  soup.alpha = rank;
  soup.dropout = first.adapter.dropout;
  soup.rslora = false;
  soup.target_modules = first.adapter.target_modules;
  soup.trained_quantization = first.adapter.trained_quantization;
  soup.blocksize = first.adapter.blocksize;
  soup.double_quant = first.adapter.double_quant;
  for (const SoupInput& in : inputs) {
    if (in.adapter.trained_quantization != first.adapter.trained_quantization ||
        in.adapter.blocksize != first.adapter.blocksize ||
        in.adapter.double_quant != first.adapter.double_quant) {
      // No single base quantization fits all inputs: record none rather than a wrong one.
      soup.trained_quantization = "none";
      soup.blocksize = 0;
      soup.double_quant = false;
    }
  }
  std::vector<double> scale(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const PeftAdapter& a = inputs[i].adapter;
    scale[i] = inputs[i].weight * LoraScaling(a.alpha, a.rank, a.rslora);
  }

  double delta_squares = 0, discarded_squares = 0;
  for (const auto& [key, first_t] : first_tensors) {
    const int64_t in_f = first_t->in_features, out_f = first_t->out_features;
    LoraTensor t;
    t.layer = key.layer;
    t.module = key.module;
    t.in_features = in_f;
    t.out_features = out_f;
    t.a.assign(rank * in_f, 0.0f);
    t.b.assign(out_f * rank, 0.0f);
    if (method == SoupMethod::kCat) {
      int64_t offset = 0;
      for (size_t i = 0; i < inputs.size(); ++i) {
        const LoraTensor& x = *by_key[i].at(key);
        const int64_t r = inputs[i].adapter.rank;
        for (int64_t k = 0; k < r; ++k) {
          for (int64_t c = 0; c < in_f; ++c) {
            t.a[(offset + k) * in_f + c] = static_cast<float>(scale[i] * x.a[k * in_f + c]);
          }
          for (int64_t o = 0; o < out_f; ++o) t.b[o * rank + offset + k] = x.b[o * r + k];
        }
        offset += r;
      }
    } else if (method == SoupMethod::kLinear) {
      std::vector<double> a(t.a.size(), 0.0), b(t.b.size(), 0.0);
      for (size_t i = 0; i < inputs.size(); ++i) {
        const LoraTensor& x = *by_key[i].at(key);
        const double c = std::sqrt(scale[i]);
        for (size_t j = 0; j < a.size(); ++j) a[j] += c * x.a[j];
        for (size_t j = 0; j < b.size(); ++j) b[j] += c * x.b[j];
      }
      for (size_t j = 0; j < a.size(); ++j) t.a[j] = static_cast<float>(a[j]);
      for (size_t j = 0; j < b.size(); ++j) t.b[j] = static_cast<float>(b[j]);
    } else {
      if (rank > std::min(in_f, out_f)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--rank ", rank, " exceeds min(out, in) = ", std::min(in_f, out_f), " of layer ",
            key.layer, " ", key.module));
      }
      // D = P Q with P = [w_i s_i B_i] side by side and Q = [A_i] stacked: the cat soup.
      int64_t total = 0;
      for (const SoupInput& in : inputs) total += in.adapter.rank;
      std::vector<double> p(out_f * total), q(total * in_f);
      int64_t offset = 0;
      for (size_t i = 0; i < inputs.size(); ++i) {
        const LoraTensor& x = *by_key[i].at(key);
        const int64_t r = inputs[i].adapter.rank;
        for (int64_t o = 0; o < out_f; ++o) {
          for (int64_t k = 0; k < r; ++k) p[o * total + offset + k] = scale[i] * x.b[o * r + k];
        }
        for (int64_t k = 0; k < r; ++k) {
          for (int64_t c = 0; c < in_f; ++c) q[(offset + k) * in_f + c] = x.a[k * in_f + c];
        }
        offset += r;
      }
      const LowRankSvd svd = SvdOfProduct(p, q, out_f, total, in_f);
      const int64_t kk = static_cast<int64_t>(svd.sigma.size());
      const int64_t keep = std::min<int64_t>(rank, kk);
      double module_total = 0, module_discarded = 0;
      for (int64_t j = 0; j < kk; ++j) {
        const double s2 = svd.sigma[j] * svd.sigma[j];
        module_total += s2;
        if (j >= keep) module_discarded += s2;
      }
      for (int64_t j = 0; j < keep; ++j) {
        for (int64_t o = 0; o < out_f; ++o) t.b[o * rank + j] = static_cast<float>(svd.us[o * kk + j]);
        for (int64_t c = 0; c < in_f; ++c) t.a[j * in_f + c] = static_cast<float>(svd.v[c * kk + j]);
      }
      delta_squares += module_total;
      discarded_squares += module_discarded;
      if (module_total > 0) {
        report->max_module_relative_error = std::max(report->max_module_relative_error,
                                                     std::sqrt(module_discarded / module_total));
      }
    }
    soup.tensors.push_back(std::move(t));
  }
  report->rank = rank;
  report->modules = static_cast<int64_t>(soup.tensors.size());
  report->delta_frobenius = std::sqrt(delta_squares);
  report->discarded_frobenius = std::sqrt(discarded_squares);
  return soup;
}

}  // namespace lorasweep
