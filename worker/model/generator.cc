#include "worker/model/generator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/cross_entropy.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary.h"
#include "kernels/swiglu.h"

namespace lorasweep {

Generator::Generator(LlamaModel& model, const float* params) : model_(model), params_(params) {
  const size_t layers = model.weights().layers.size();
  k_cache_.resize(layers);
  v_cache_.resize(layers);
}

std::vector<float> Generator::Feed(std::span<const int32_t> tokens) {
  const LlamaWeights& w = model_.weights();
  const LlamaConfig& c = w.config;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const int64_t q_dim = Hq * D, kv_dim = Hkv * D, group = Hq / Hkv;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const int64_t start = length_;
  model_.EnsureRope(start + n);
  std::vector<int32_t> positions(n);
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(start));

  std::vector<float> x(n * H), h(n * H), inv(n), q(n * q_dim), k(n * kv_dim), v(n * kv_dim);
  std::vector<float> att(n * q_dim), o(n * H), gate(n * I), up(n * I), act(n * I);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = tokens[i] >= 0 && tokens[i] < V ? tokens[i] : 0;
    std::memcpy(&x[i * H], &w.embed_tokens[id * H], H * sizeof(float));
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> scores;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const int layer = static_cast<int>(l);
    RmsNormForward(x.data(), w.layers[l].input_norm.data(), n, H, eps, h.data(), inv.data());
    model_.LinearWithLora(layer, kQProj, h.data(), n, params_, {}, q.data());
    model_.LinearWithLora(layer, kKProj, h.data(), n, params_, {}, k.data());
    model_.LinearWithLora(layer, kVProj, h.data(), n, params_, {}, v.data());
    RotaryForward(q.data(), positions.data(), n, Hq, D, model_.rope_cos(), model_.rope_sin());
    RotaryForward(k.data(), positions.data(), n, Hkv, D, model_.rope_cos(), model_.rope_sin());
    std::vector<float>& kc = k_cache_[l];
    std::vector<float>& vc = v_cache_[l];
    kc.insert(kc.end(), k.begin(), k.end());
    vc.insert(vc.end(), v.begin(), v.end());
    // Token i (position start + i) attends to cached positions [0, start + i].
    for (int64_t i = 0; i < n; ++i) {
      const int64_t keys = start + i + 1;
      scores.resize(keys);
      for (int64_t head = 0; head < Hq; ++head) {
        const float* qi = &q[i * q_dim + head * D];
        const int64_t kv_head = head / group;
        float max_score = -INFINITY;
        for (int64_t j = 0; j < keys; ++j) {
          const float* kj = &kc[j * kv_dim + kv_head * D];
          float dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qi[d] * kj[d];
          scores[j] = dot * scale;
          max_score = std::max(max_score, scores[j]);
        }
        double total = 0;
        for (int64_t j = 0; j < keys; ++j) {
          scores[j] = std::exp(scores[j] - max_score);
          total += scores[j];
        }
        float* out = &att[i * q_dim + head * D];
        std::fill(out, out + D, 0.0f);
        for (int64_t j = 0; j < keys; ++j) {
          const float p = static_cast<float>(scores[j] / total);
          const float* vj = &vc[j * kv_dim + kv_head * D];
          for (int64_t d = 0; d < D; ++d) out[d] += p * vj[d];
        }
      }
    }
    model_.LinearWithLora(layer, kOProj, att.data(), n, params_, {}, o.data());
    for (int64_t i = 0; i < n * H; ++i) x[i] += o[i];
    RmsNormForward(x.data(), w.layers[l].post_attention_norm.data(), n, H, eps, h.data(),
                   inv.data());
    model_.LinearWithLora(layer, kGateProj, h.data(), n, params_, {}, gate.data());
    model_.LinearWithLora(layer, kUpProj, h.data(), n, params_, {}, up.data());
    SwigluForward(gate.data(), up.data(), n * I, act.data());
    model_.LinearWithLora(layer, kDownProj, act.data(), n, params_, {}, o.data());
    for (int64_t i = 0; i < n * H; ++i) x[i] += o[i];
  }
  length_ += n;
  // Only the last token's logits are needed.
  std::vector<float> last(H), last_inv(1), logits(V);
  RmsNormForward(&x[(n - 1) * H], w.final_norm.data(), 1, H, eps, last.data(), last_inv.data());
  LmHeadLogits(last.data(), w.LmHead(), 1, H, V, logits.data());
  return logits;
}

int32_t SampleToken(std::span<const float> logits, const SamplingOptions& options,
                    uint64_t* rng_state) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (options.temperature <= 0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const float max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<std::pair<double, int32_t>> probs(V);
  double total = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double p = std::exp((logits[i] - max_logit) / options.temperature);
    probs[i] = {p, static_cast<int32_t>(i)};
    total += p;
  }
  std::sort(probs.begin(), probs.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  // Nucleus: the smallest prefix whose mass reaches top_p.
  double kept = 0;
  size_t cut = 0;
  while (cut < probs.size() && (cut == 0 || kept < options.top_p * total)) kept += probs[cut++].first;
  // splitmix64 step -> uniform in [0, kept).
  uint64_t z = (*rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  double target = static_cast<double>(z >> 11) * 0x1.0p-53 * kept;
  for (size_t i = 0; i < cut; ++i) {
    target -= probs[i].first;
    if (target < 0) return probs[i].second;
  }
  return probs[cut - 1].second;
}

std::vector<int32_t> Generator::Generate(std::span<const int32_t> prompt,
                                         std::span<const int32_t> stop_ids,
                                         const SamplingOptions& options) {
  std::vector<int32_t> generated;
  uint64_t rng_state = options.seed;
  std::vector<float> logits = Feed(prompt);
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    const int32_t next = SampleToken(logits, options, &rng_state);
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) break;
    generated.push_back(next);
    const int32_t one[1] = {next};
    logits = Feed(one);
  }
  return generated;
}

}  // namespace lorasweep
