#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/parallel_for.h"
#include "kernels/matmul.h"

namespace lorasweep {
namespace {

// Queries go through the products in blocks of this many rows; a block reads only the keys from
// its first query's document start to its last query, so the causal upper triangle (and earlier
// documents) is mostly never multiplied: at T = 256, 62% of the full T x T products.
constexpr int64_t kRowBlock = 64;

// first_key[t]: the first position of t's document within its sequence (position 0 always starts
// one). Nondecreasing in t, so a block's first query has the block's smallest first key.
void DocumentStarts(const uint8_t* doc_start, int64_t T, std::vector<int64_t>* first_key) {
  first_key->resize(T);
  int64_t start = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (t == 0 || doc_start[t]) start = t;
    (*first_key)[t] = start;
  }
}

// Key columns [lo, hi) that the block holding query t computes.
struct KeySpan {
  int64_t lo, hi;
};
KeySpan BlockSpan(const std::vector<int64_t>& first_key, int64_t t, int64_t T) {
  const int64_t r0 = t / kRowBlock * kRowBlock;
  return {first_key[r0], std::min(T, r0 + kRowBlock)};
}

}  // namespace

void AttentionForward(const float* q, const float* k, const float* v, const uint8_t* doc_start,
                      int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, float* out,
                      float* lse) {
  const int64_t group = Hq / Hkv, q_stride = Hq * D, kv_stride = Hkv * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> scores(T * T);  // (query t, key u) at t * T + u; only block spans are valid
  std::vector<int64_t> first_key;
  for (int64_t b = 0; b < B; ++b) {
    DocumentStarts(doc_start + b * T, T, &first_key);
    for (int64_t h = 0; h < Hq; ++h) {
      const float* qh = q + b * T * q_stride + h * D;
      const float* kh = k + b * T * kv_stride + (h / group) * D;
      const float* vh = v + b * T * kv_stride + (h / group) * D;
      float* oh = out + b * T * q_stride + h * D;
      float* lse_h = lse + (b * Hq + h) * T;
      // S = scale * Q K^T over each block's key span.
      for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
        const KeySpan span = BlockSpan(first_key, r0, T);
        Sgemm(false, true, span.hi - r0, span.hi - span.lo, D, scale, qh + r0 * q_stride, q_stride,
              kh + span.lo * kv_stride, kv_stride, 0.0f, &scores[r0 * T + span.lo], T);
      }
      // Masked softmax per row over keys first_key[t]..t; the rest of the span becomes 0.
      ParallelFor(T, 32, [&](int64_t begin, int64_t end) {
        for (int64_t t = begin; t < end; ++t) {
          float* row = scores.data() + t * T;
          const KeySpan span = BlockSpan(first_key, t, T);
          const int64_t lo = first_key[t];
          float mx = -INFINITY;
          for (int64_t u = lo; u <= t; ++u) mx = std::max(mx, row[u]);
          double sum = 0;
          for (int64_t u = lo; u <= t; ++u) {
            row[u] = std::exp(row[u] - mx);
            sum += row[u];
          }
          const float inv = static_cast<float>(1.0 / sum);
          for (int64_t u = span.lo; u < lo; ++u) row[u] = 0;
          for (int64_t u = lo; u <= t; ++u) row[u] *= inv;
          for (int64_t u = t + 1; u < span.hi; ++u) row[u] = 0;
          lse_h[t] = mx + static_cast<float>(std::log(sum));
        }
      });
      // O = P V, block by block.
      for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
        const KeySpan span = BlockSpan(first_key, r0, T);
        Sgemm(false, false, span.hi - r0, D, span.hi - span.lo, 1.0f, &scores[r0 * T + span.lo], T,
              vh + span.lo * kv_stride, kv_stride, 0.0f, oh + r0 * q_stride, q_stride);
      }
    }
  }
}

void AttentionBackward(const float* q, const float* k, const float* v, const uint8_t* doc_start,
                       const float* out, const float* dout, const float* lse, int64_t B, int64_t T,
                       int64_t Hq, int64_t Hkv, int64_t D, float* dq, float* dk, float* dv) {
  const int64_t group = Hq / Hkv, q_stride = Hq * D, kv_stride = Hkv * D;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> p(T * T), dp(T * T);  // same layout and valid spans as the forward's scores
  std::vector<int64_t> first_key;
  for (int64_t b = 0; b < B; ++b) {
    DocumentStarts(doc_start + b * T, T, &first_key);
    // The query heads of one kv head run one after another: their dk/dv sums never race.
    for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
      const float* kh = k + b * T * kv_stride + kvh * D;
      const float* vh = v + b * T * kv_stride + kvh * D;
      float* dkh = dk + b * T * kv_stride + kvh * D;
      float* dvh = dv + b * T * kv_stride + kvh * D;
      for (int64_t t = 0; t < T; ++t) {
        std::memset(dkh + t * kv_stride, 0, D * sizeof(float));
        std::memset(dvh + t * kv_stride, 0, D * sizeof(float));
      }
      for (int64_t h = kvh * group; h < (kvh + 1) * group; ++h) {
        const float* qh = q + b * T * q_stride + h * D;
        const float* oh = out + b * T * q_stride + h * D;
        const float* doh = dout + b * T * q_stride + h * D;
        float* dqh = dq + b * T * q_stride + h * D;
        const float* lse_h = lse + (b * Hq + h) * T;
        // S = scale Q K^T (P recomputed from it and lse), dP = dO V^T.
        for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
          const KeySpan span = BlockSpan(first_key, r0, T);
          const int64_t rows = span.hi - r0, keys = span.hi - span.lo;
          Sgemm(false, true, rows, keys, D, scale, qh + r0 * q_stride, q_stride,
                kh + span.lo * kv_stride, kv_stride, 0.0f, &p[r0 * T + span.lo], T);
          Sgemm(false, true, rows, keys, D, 1.0f, doh + r0 * q_stride, q_stride,
                vh + span.lo * kv_stride, kv_stride, 0.0f, &dp[r0 * T + span.lo], T);
        }
        ParallelFor(T, 32, [&](int64_t begin, int64_t end) {
          for (int64_t t = begin; t < end; ++t) {
            float* prow = p.data() + t * T;
            float* dprow = dp.data() + t * T;
            const KeySpan span = BlockSpan(first_key, t, T);
            const int64_t lo = first_key[t];
            // delta_t = sum_u P[t, u] dP[t, u] = dO[t] . O[t]
            double d = 0;
            for (int64_t i = 0; i < D; ++i) {
              d += static_cast<double>(doh[t * q_stride + i]) * oh[t * q_stride + i];
            }
            const float delta = static_cast<float>(d);
            for (int64_t u = span.lo; u < span.hi; ++u) {
              if (u < lo || u > t) {
                prow[u] = 0;
                dprow[u] = 0;
                continue;
              }
              prow[u] = std::exp(prow[u] - lse_h[t]);
              dprow[u] = prow[u] * (dprow[u] - delta);  // dS, stored in dp
            }
          }
        });
        // dV += P^T dO ; dQ = scale dS K ; dK += scale dS^T Q, block by block.
        for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
          const KeySpan span = BlockSpan(first_key, r0, T);
          const int64_t rows = span.hi - r0, keys = span.hi - span.lo;
          Sgemm(true, false, keys, D, rows, 1.0f, &p[r0 * T + span.lo], T, doh + r0 * q_stride,
                q_stride, 1.0f, dvh + span.lo * kv_stride, kv_stride);
          Sgemm(false, false, rows, D, keys, scale, &dp[r0 * T + span.lo], T,
                kh + span.lo * kv_stride, kv_stride, 0.0f, dqh + r0 * q_stride, q_stride);
          Sgemm(true, false, keys, D, rows, scale, &dp[r0 * T + span.lo], T, qh + r0 * q_stride,
                q_stride, 1.0f, dkh + span.lo * kv_stride, kv_stride);
        }
      }
    }
  }
}

}  // namespace lorasweep
