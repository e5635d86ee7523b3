#include "worker/model/random_llama.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/parallel_for.h"
#include "common/status_macros.h"

namespace lorasweep {
namespace {

uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// n normal(0, std) values, value i a pure function of (seed, i) (Box-Muller on two hashed
// uniforms), so the result does not depend on the thread count.
std::vector<float> Normal(int64_t n, uint64_t seed, double std) {
  std::vector<float> v(n);
  ParallelFor(n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t a = Mix(seed ^ Mix(static_cast<uint64_t>(i)));
      const uint64_t b = Mix(a);
      const double u1 = (static_cast<double>(a >> 11) + 1.0) / 9007199254740993.0;  // (0, 1]
      const double u2 = static_cast<double>(b >> 11) / 9007199254740992.0;
      v[i] = static_cast<float>(std * std::sqrt(-2.0 * std::log(u1)) *
                                std::cos(6.283185307179586 * u2));
    }
  });
  return v;
}

}  // namespace

absl::StatusOr<LlamaWeights> RandomLlamaWeights(const LlamaConfig& c,
                                                const BaseQuantization& quantization, uint64_t seed,
                                                double std) {
  if (c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.num_key_value_heads <= 0 || c.head_dim <= 0 ||
      c.vocab_size <= 0) {
    return absl::InvalidArgumentError("RandomLlamaWeights: incomplete config");
  }
  LlamaWeights w;
  w.config = c;
  w.quantization = quantization;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  uint64_t stream = Mix(seed);
  auto next = [&] { return stream = Mix(stream); };
  w.embed_tokens = Normal(V * H, next(), std);
  if (!c.tie_word_embeddings) w.lm_head = Normal(V * H, next(), std);
  w.final_norm.assign(H, 1.0f);
  const int64_t shapes[kNumLinearModules][2] = {{q, H}, {kv, H}, {kv, H}, {H, q},
                                                {I, H}, {I, H},  {H, I}};  // [out, in]
  w.layers.resize(c.num_hidden_layers);
  for (LlamaLayerWeights& layer : w.layers) {
    layer.input_norm.assign(H, 1.0f);
    layer.post_attention_norm.assign(H, 1.0f);
    for (int m = 0; m < kNumLinearModules; ++m) {
      const int64_t out = shapes[m][0], in = shapes[m][1];
      std::vector<float> bias;
      if (c.attention_bias && m < 3) bias = Normal(out, next(), std);
      ASSIGN_OR_RETURN(layer.linears[m], FrozenLinear::Create(Normal(out * in, next(), std), out,
                                                              in, quantization, std::move(bias)));
    }
  }
  return w;
}

}  // namespace lorasweep
