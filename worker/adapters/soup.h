// `lorasweep soup`: one LoRA adapter from a weighted combination of several, with the semantics of
// PEFT's `LoraModel.add_weighted_adapter` (../shared/notes/formats.md), so a soup made here equals
// the one PEFT would make. Per adapted linear, with s_i = adapter i's scaling (alpha/r or
// alpha/sqrt(r)) and w_i its weight:
//   cat:    A = concat_rows(w_i s_i A_i), B = concat_cols(B_i); rank sum r_i. B A is exactly
//           sum_i w_i s_i B_i A_i.
//   linear: all r_i equal; A = sum_i sqrt(w_i s_i) A_i, B = sum_i sqrt(w_i s_i) B_i (NOT the sum of
//           deltas: cross terms B_i A_j appear). PEFT takes math.sqrt(w_i s_i), which fails for a
//           negative product; so does this.
//   svd:    the exact sum of deltas D = sum_i w_i s_i B_i A_i truncated to rank R by its SVD,
//           B = U_R S_R, A = V_R^T (R defaults to the largest input rank, as PEFT's svd_rank=None).
// The result has lora_alpha = r (scaling 1) and use_rslora false. (PEFT copies the first input's
// use_rslora, which with rsLoRA inputs would scale the soup by sqrt(r); lorasweep keeps scaling 1 so
// that the delta is the one stated above.)
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {

enum class SoupMethod { kCat, kLinear, kSvd };
absl::StatusOr<SoupMethod> ParseSoupMethod(const std::string& name);
const char* SoupMethodName(SoupMethod method);

struct SoupInput {
  std::string path;  // for error messages
  PeftAdapter adapter;
  double weight = 1.0;
};

struct SoupReport {
  int rank = 0;
  int64_t modules = 0;
  // svd only: Frobenius norms over all modules of the exact weighted sum of deltas and of what the
  // truncation discarded (sqrt of the sum of the discarded squared singular values), and the worst
  // relative error of one module.
  double delta_frobenius = 0;
  double discarded_frobenius = 0;
  double max_module_relative_error = 0;
};

// Parses "PATH:WEIGHT" (the last ':' when what follows is a number) or "PATH" (weight 1).
absl::StatusOr<std::pair<std::string, double>> ParseAdapterWeight(const std::string& spec);

// Combines the inputs. All must adapt the same (layer, module) set with the same shapes and, when
// both record one, the same base_model_name_or_path; errors name the adapter that differs.
// `svd_rank` 0 = the largest input rank. `report` may be null.
absl::StatusOr<PeftAdapter> MakeSoup(const std::vector<SoupInput>& inputs, SoupMethod method,
                                     int svd_rank, SoupReport* report);

// The singular value decomposition of the m x n matrix D = P Q (P [m, k], Q [k, n], row-major,
// double) without forming D: a Householder QR of Q^T and a one-sided Jacobi SVD of the m x k
// product, O((m + n) k^2). Returns k triples sorted by decreasing singular value:
// `us` [m, k] holds the columns U_j * sigma_j, `v` [n, k] the columns V_j, `sigma` [k].
struct LowRankSvd {
  std::vector<double> us, v, sigma;
};
LowRankSvd SvdOfProduct(const std::vector<double>& p, const std::vector<double>& q, int64_t m,
                        int64_t k, int64_t n);

}  // namespace lorasweep
