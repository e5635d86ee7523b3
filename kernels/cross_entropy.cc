#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/parallel_for.h"
#include "kernels/matmul.h"

namespace lorasweep {

double CrossEntropyForwardBackward(const float* hidden, const float* lm_head,
                                   const int32_t* targets, int64_t N, int64_t H, int64_t V,
                                   int64_t chunk_rows, float grad_scale, float* dhidden,
                                   int64_t* counted_rows) {
  chunk_rows = std::max<int64_t>(1, chunk_rows);
  // Gather the counted rows first so the chunks hold only rows that matter.
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < N; ++i) {
    if (targets[i] >= 0) rows.push_back(i);
  }
  if (counted_rows) *counted_rows = static_cast<int64_t>(rows.size());
  if (dhidden) std::memset(dhidden, 0, N * H * sizeof(float));
  const int64_t chunk = std::min<int64_t>(chunk_rows, std::max<size_t>(rows.size(), 1));
  std::vector<float> x(chunk * H), logits(chunk * V), dx(chunk * H);
  std::vector<double> row_loss(chunk);
  double total = 0;
  for (size_t first = 0; first < rows.size(); first += chunk) {
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(rows.size() - first));
    for (int64_t j = 0; j < n; ++j) {
      std::memcpy(&x[j * H], hidden + rows[first + j] * H, H * sizeof(float));
    }
    Sgemm(false, true, n, V, H, 1.0f, x.data(), H, lm_head, H, 0.0f, logits.data(), V);
    ParallelFor(n, 4, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        float* row = &logits[j * V];
        const int32_t target = targets[rows[first + j]];
        const float target_logit = row[target];
        float mx = -INFINITY;
        for (int64_t c = 0; c < V; ++c) mx = std::max(mx, row[c]);
        // One float exp per logit, kept in place for the gradient; the sum runs in double.
        double sum = 0;
        for (int64_t c = 0; c < V; ++c) {
          row[c] = std::exp(row[c] - mx);
          sum += row[c];
        }
        row_loss[j] = static_cast<double>(mx) + std::log(sum) - target_logit;
        if (dhidden) {
          // d loss / d logits = softmax - onehot, scaled.
          const float scale = static_cast<float>(grad_scale / sum);
          for (int64_t c = 0; c < V; ++c) row[c] *= scale;
          row[target] -= grad_scale;
        }
      }
    });
    for (int64_t j = 0; j < n; ++j) total += row_loss[j];
    if (dhidden) {
      Sgemm(false, false, n, H, V, 1.0f, logits.data(), V, lm_head, H, 0.0f, dx.data(), H);
      for (int64_t j = 0; j < n; ++j) {
        std::memcpy(dhidden + rows[first + j] * H, &dx[j * H], H * sizeof(float));
      }
    }
  }
  return total;
}

void LmHeadLogits(const float* hidden, const float* lm_head, int64_t N, int64_t H, int64_t V,
                  float* logits) {
  Sgemm(false, true, N, V, H, 1.0f, hidden, H, lm_head, H, 0.0f, logits, V);
}

}  // namespace lorasweep
