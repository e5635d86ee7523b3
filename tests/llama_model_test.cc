// The CPU training model against an independent float64 implementation written here from the
// Llama equations (RMSNorm, HF rotate-half RoPE, grouped-query causal attention within documents,
// SwiGLU, LoRA y += s * B A x), on the tiny Llama checkpoint in tests/data/tiny_llama (GQA 4/2 heads,
// head_dim 10, untied LM head).
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "worker/data/token_shard.h"
#include "worker/formats/model_files.h"
#include "worker/model/generator.h"
#include "worker/model/llama_model.h"
#include "worker/model/lora_dropout.h"

namespace lorasweep {
namespace {

const std::string kTinyModel = std::string(LORASWEEP_TEST_DATA_DIR) + "/tiny_llama";
const std::vector<std::string> kAllModules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};

using Vec = std::vector<double>;

// The float64 reference model: weights read straight from the checkpoint.
struct Reference {
  LlamaConfig c;
  Vec embed, final_norm, lm_head;
  struct Layer {
    Vec norm1, norm2, w[7];
  };
  std::vector<Layer> layers;

  static Reference Load(const std::string& path) {
    absl::StatusOr<ModelFiles> files = OpenModelFiles(path);
    EXPECT_TRUE(files.ok()) << files.status();
    Reference r;
    r.c = *files->config;
    auto get = [&](const std::string& name) {
      absl::StatusOr<std::vector<float>> v = files->tensors->GetFloats(name);
      EXPECT_TRUE(v.ok()) << name;
      return Vec(v->begin(), v->end());
    };
    r.embed = get("model.embed_tokens.weight");
    r.final_norm = get("model.norm.weight");
    r.lm_head = get("lm_head.weight");
    for (int l = 0; l < r.c.num_hidden_layers; ++l) {
      Layer layer;
      const std::string p = "model.layers." + std::to_string(l) + ".";
      layer.norm1 = get(p + "input_layernorm.weight");
      layer.norm2 = get(p + "post_attention_layernorm.weight");
      for (int m = 0; m < 7; ++m) {
        const std::string group = m < 4 ? "self_attn." : "mlp.";
        layer.w[m] = get(p + group + kAllModules[m] + ".weight");
      }
      r.layers.push_back(layer);
    }
    return r;
  }
};

// y[N, out] = x[N, in] W^T (+ s * dropout(x) A^T B^T when the slot exists).
Vec RefLinear(const Vec& x, int64_t N, const Vec& w, int64_t in, int64_t out, const LoraSlot* slot,
              const Vec& params, int rank, double s, const std::vector<double>* mask) {
  Vec y(N * out, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int64_t i = 0; i < in; ++i) acc += x[n * in + i] * w[o * in + i];
      y[n * out + o] = acc;
    }
  }
  if (slot == nullptr) return y;
  for (int64_t n = 0; n < N; ++n) {
    Vec u(rank, 0.0);
    for (int j = 0; j < rank; ++j) {
      for (int64_t i = 0; i < in; ++i) {
        const double xd = x[n * in + i] * (mask ? (*mask)[n * in + i] : 1.0);
        u[j] += xd * params[slot->a_offset + j * in + i];
      }
    }
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int j = 0; j < rank; ++j) acc += u[j] * params[slot->b_offset + o * rank + j];
      y[n * out + o] += s * acc;
    }
  }
  return y;
}

Vec RefRmsNorm(const Vec& x, int64_t N, int64_t H, const Vec& w, double eps) {
  Vec y(N * H);
  for (int64_t n = 0; n < N; ++n) {
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += x[n * H + i] * x[n * H + i];
    const double inv = 1.0 / std::sqrt(ss / H + eps);
    for (int64_t i = 0; i < H; ++i) y[n * H + i] = x[n * H + i] * inv * w[i];
  }
  return y;
}

void RefRope(Vec* x, int64_t N, int64_t heads, int64_t D, const std::vector<int32_t>& pos,
             double theta) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t h = 0; h < heads; ++h) {
      double* v = &(*x)[(n * heads + h) * D];
      for (int64_t i = 0; i < D / 2; ++i) {
        const double freq = std::pow(theta, -2.0 * i / D);
        const double a = pos[n] * freq;
        const double x1 = v[i], x2 = v[i + D / 2];
        v[i] = x1 * std::cos(a) - x2 * std::sin(a);
        v[i + D / 2] = x2 * std::cos(a) + x1 * std::sin(a);
      }
    }
  }
}

struct RefInput {
  int64_t B, T;
  std::vector<int32_t> ids;
  std::vector<uint8_t> flags;
};

// Per-token positions/doc ids and targets, straight from the documented flag rules.
void RefTokens(const RefInput& in, std::vector<int32_t>* pos, std::vector<int64_t>* doc,
               std::vector<int32_t>* targets) {
  const int64_t N = in.B * in.T;
  pos->assign(N, 0);
  doc->assign(N, 0);
  targets->assign(N, -100);
  int64_t doc_id = -1;
  for (int64_t b = 0; b < in.B; ++b) {
    int32_t p = 0;
    for (int64_t t = 0; t < in.T; ++t) {
      const int64_t i = b * in.T + t;
      if (t == 0 || (in.flags[i] & kTokenDocStart)) {
        ++doc_id;
        p = 0;
      }
      (*pos)[i] = p++;
      (*doc)[i] = doc_id;
      if (t + 1 < in.T) {
        const uint8_t f = in.flags[i + 1];
        if ((f & kTokenLoss) && !(f & kTokenDocStart) && !(f & kTokenPad)) {
          (*targets)[i] = in.ids[i + 1];
        }
      }
    }
  }
}

// The final hidden states (after the last norm) of the float64 reference.
Vec RefHidden(const Reference& r, const RefInput& in, const LoraLayout* layout, const Vec& params,
              double dropout, uint64_t dropout_seed) {
  const LlamaConfig& c = r.c;
  const int64_t N = in.B * in.T, H = c.hidden_size, I = c.intermediate_size;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  std::vector<int32_t> pos, targets;
  std::vector<int64_t> doc;
  RefTokens(in, &pos, &doc, &targets);
  Vec x(N * H);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t i = 0; i < H; ++i) x[n * H + i] = r.embed[in.ids[n] * H + i];
  }
  const int rank = layout ? layout->rank() : 0;
  const double s = layout ? layout->scaling() : 0;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const Reference::Layer& w = r.layers[l];
    auto lin = [&](int m, const Vec& input, int64_t in_f, int64_t out_f) {
      const LoraSlot* slot = layout ? layout->Find(l, m) : nullptr;
      std::vector<double> mask;
      if (slot && dropout > 0) {
        std::vector<float> ones(N * in_f, 1.0f), kept(N * in_f);
        for (int64_t b = 0; b < in.B; ++b) {
          const int64_t chunk = in.T * in_f;
          ApplyLoraDropout(ones.data() + b * chunk, chunk, static_cast<float>(dropout),
                           LoraDropoutKey(dropout_seed + b, l, m), kept.data() + b * chunk);
        }
        mask.assign(kept.begin(), kept.end());
      }
      return RefLinear(input, N, w.w[m], in_f, out_f, slot, params, rank, s,
                       mask.empty() ? nullptr : &mask);
    };
    const Vec h1 = RefRmsNorm(x, N, H, w.norm1, c.rms_norm_eps);
    Vec q = lin(0, h1, H, Hq * D), k = lin(1, h1, H, Hkv * D), v = lin(2, h1, H, Hkv * D);
    RefRope(&q, N, Hq, D, pos, c.rope_theta);
    RefRope(&k, N, Hkv, D, pos, c.rope_theta);
    Vec att(N * Hq * D, 0.0);
    for (int64_t b = 0; b < in.B; ++b) {
      for (int64_t h = 0; h < Hq; ++h) {
        const int64_t kvh = h / (Hq / Hkv);
        for (int64_t t = 0; t < in.T; ++t) {
          const int64_t i = b * in.T + t;
          std::vector<double> sc;
          std::vector<int64_t> js;
          for (int64_t u = 0; u <= t; ++u) {
            const int64_t j = b * in.T + u;
            if (doc[j] != doc[i]) continue;
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += q[(i * Hq + h) * D + d] * k[(j * Hkv + kvh) * D + d];
            sc.push_back(dot / std::sqrt(static_cast<double>(D)));
            js.push_back(j);
          }
          double mx = -1e300, total = 0;
          for (double v2 : sc) mx = std::max(mx, v2);
          for (double& v2 : sc) total += (v2 = std::exp(v2 - mx));
          for (size_t a = 0; a < js.size(); ++a) {
            for (int64_t d = 0; d < D; ++d) {
              att[(i * Hq + h) * D + d] += sc[a] / total * v[(js[a] * Hkv + kvh) * D + d];
            }
          }
        }
      }
    }
    const Vec o = lin(3, att, Hq * D, H);
    for (int64_t i = 0; i < N * H; ++i) x[i] += o[i];
    const Vec h2 = RefRmsNorm(x, N, H, w.norm2, c.rms_norm_eps);
    const Vec g = lin(4, h2, H, I), u = lin(5, h2, H, I);
    Vec a(N * I);
    for (int64_t i = 0; i < N * I; ++i) a[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    const Vec dn = lin(6, a, I, H);
    for (int64_t i = 0; i < N * H; ++i) x[i] += dn[i];
  }
  return RefRmsNorm(x, N, H, r.final_norm, c.rms_norm_eps);
}

// Sum of target cross-entropies of the reference.
double RefLossSum(const Reference& r, const RefInput& in, const LoraLayout* layout,
                  const Vec& params, double dropout = 0, uint64_t dropout_seed = 0) {
  const Vec hidden = RefHidden(r, in, layout, params, dropout, dropout_seed);
  std::vector<int32_t> pos, targets;
  std::vector<int64_t> doc;
  RefTokens(in, &pos, &doc, &targets);
  const int64_t H = r.c.hidden_size, V = r.c.vocab_size;
  double total = 0;
  for (int64_t n = 0; n < in.B * in.T; ++n) {
    if (targets[n] < 0) continue;
    Vec logits(V);
    double mx = -1e300;
    for (int64_t v = 0; v < V; ++v) {
      double acc = 0;
      for (int64_t i = 0; i < H; ++i) acc += hidden[n * H + i] * r.lm_head[v * H + i];
      logits[v] = acc;
      mx = std::max(mx, acc);
    }
    double z = 0;
    for (double l : logits) z += std::exp(l - mx);
    total += mx + std::log(z) - logits[targets[n]];
  }
  return total;
}

// Two sequences of 9 tokens; the first packs two documents (the second starts at t = 5), the
// second has a prompt whose tokens do not count and padding at the end.
RefInput MakeInput() {
  RefInput in{2, 9, {}, {}};
  std::mt19937 rng(7);
  for (int i = 0; i < 18; ++i) in.ids.push_back(static_cast<int32_t>(rng() % 64));
  in.flags.assign(18, kTokenLoss);
  in.flags[0] |= kTokenDocStart;
  in.flags[5] |= kTokenDocStart;
  in.flags[9] = kTokenDocStart;  // prompt: not in the loss
  in.flags[10] = 0;
  in.flags[11] = 0;
  in.flags[16] = kTokenPad;
  in.flags[17] = kTokenPad;
  return in;
}

struct Fixture {
  LlamaWeights weights;
  LoraLayout layout;
};

Fixture Load(const BaseQuantization& quant, const LoraOptions& options) {
  absl::StatusOr<LlamaWeights> w = LoadLlamaWeights(kTinyModel, quant);
  EXPECT_TRUE(w.ok()) << w.status();
  absl::StatusOr<LoraLayout> layout = LoraLayout::Create(*w, options);
  EXPECT_TRUE(layout.ok()) << layout.status();
  return {*std::move(w), *std::move(layout)};
}

LoraOptions AllLinear(int rank, double alpha, double dropout = 0) {
  LoraOptions o;
  o.rank = rank;
  o.alpha = alpha;
  o.dropout = dropout;
  o.target_modules = kAllModules;
  return o;
}

BaseQuantization Unquantized() {
  BaseQuantization q;
  q.type = std::nullopt;
  return q;
}

// Random A and B (B nonzero so that every adapter gradient is nonzero).
std::vector<float> RandomParams(const LoraLayout& layout, uint64_t seed, float scale) {
  std::vector<float> p = layout.InitialParameters(seed);
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<float> u(-scale, scale);
  for (const LoraSlot& s : layout.slots()) {
    for (int64_t i = 0; i < s.out_features * layout.rank(); ++i) p[s.b_offset + i] = u(rng);
  }
  return p;
}

RunResult RunModel(LlamaModel& model, const RefInput& in, const float* params, float* grads,
                   bool checkpointing, uint64_t dropout_seed = 0) {
  RunOptions o;
  o.training = grads != nullptr;
  o.activation_checkpointing = checkpointing;
  o.dropout_seed = dropout_seed;  // sequence b: dropout_seed + b
  o.loss_chunk_rows = 5;  // does not divide the 18 rows
  MicroBatch mb{in.B, in.T, in.ids.data(), in.flags.data()};
  return model.Run(mb, params, grads, o);
}

TEST(LlamaModelTest, LossMatchesFloat64Reference) {
  Fixture f = Load(Unquantized(), AllLinear(4, 8));
  const Reference ref = Reference::Load(kTinyModel);
  const RefInput in = MakeInput();
  const std::vector<float> params = RandomParams(f.layout, 3, 0.2f);
  LlamaModel model(f.weights, f.layout);
  const RunResult got = RunModel(model, in, params.data(), nullptr, false);
  const double want = RefLossSum(ref, in, &f.layout, Vec(params.begin(), params.end()));
  // Targets: seq 0 predicts tokens 1..8 except 5 (a document start); seq 1 tokens 12..15 (10 and
  // 11 are prompt, 16 and 17 padding).
  EXPECT_EQ(got.num_targets, 7 + 4);
  EXPECT_NEAR(got.loss_sum, want, 1e-5 * std::abs(want));
}

TEST(LlamaModelTest, ZeroInitialisedBLeavesTheBaseModelUnchanged) {
  Fixture f = Load(BaseQuantization{}, AllLinear(8, 16));
  const RefInput in = MakeInput();
  const std::vector<float> params = f.layout.InitialParameters(0);
  LlamaModel model(f.weights, f.layout);
  const double base = RunModel(model, in, nullptr, nullptr, false).loss_sum;
  const double with_adapter = RunModel(model, in, params.data(), nullptr, false).loss_sum;
  EXPECT_EQ(base, with_adapter);
}

// Central differences of the float64 reference vs the model's analytic adapter gradients.
void CheckGradients(double dropout, bool checkpointing) {
  Fixture f = Load(Unquantized(), AllLinear(3, 6, dropout));
  const Reference ref = Reference::Load(kTinyModel);
  const RefInput in = MakeInput();
  const std::vector<float> params = RandomParams(f.layout, 11, 0.3f);
  LlamaModel model(f.weights, f.layout);
  std::vector<float> grads(params.size(), 0.0f);
  const uint64_t seed = 99;
  RunModel(model, in, params.data(), grads.data(), checkpointing, seed);
  double max_grad = 0;
  for (float g : grads) max_grad = std::max(max_grad, std::abs(static_cast<double>(g)));
  ASSERT_GT(max_grad, 0);
  std::mt19937_64 rng(5);
  Vec p(params.begin(), params.end());
  const double h = 1e-5;
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t i = static_cast<int64_t>(rng() % params.size());
    const double saved = p[i];
    p[i] = saved + h;
    const double up = RefLossSum(ref, in, &f.layout, p, dropout, seed);
    p[i] = saved - h;
    const double down = RefLossSum(ref, in, &f.layout, p, dropout, seed);
    p[i] = saved;
    const double fd = (up - down) / (2 * h);
    EXPECT_NEAR(grads[i], fd, 2e-3 * max_grad + 1e-6) << "parameter " << i;
  }
}

TEST(LlamaModelTest, AdapterGradientsMatchFiniteDifferences) { CheckGradients(0.0, false); }

TEST(LlamaModelTest, AdapterGradientsWithDropoutAndCheckpointingMatchFiniteDifferences) {
  CheckGradients(0.25, true);
}

TEST(LlamaModelTest, ActivationCheckpointingGivesIdenticalGradients) {
  Fixture f = Load(BaseQuantization{}, AllLinear(4, 8, 0.1));
  const RefInput in = MakeInput();
  const std::vector<float> params = RandomParams(f.layout, 4, 0.2f);
  LlamaModel model(f.weights, f.layout);
  std::vector<float> plain(params.size(), 0.0f), recomputed(params.size(), 0.0f);
  const RunResult a = RunModel(model, in, params.data(), plain.data(), false, 42);
  const RunResult b = RunModel(model, in, params.data(), recomputed.data(), true, 42);
  EXPECT_EQ(a.loss_sum, b.loss_sum);
  EXPECT_EQ(plain, recomputed);
}

TEST(LlamaModelTest, Nf4BaseStaysCloseToUnquantized) {
  // NF4 with blocksize 64 has a per-weight error of at most half a code step times the block's
  // absmax; on this model that moves the mean loss by well under 2%.
  const RefInput in = MakeInput();
  Fixture exact = Load(Unquantized(), AllLinear(4, 8));
  Fixture nf4 = Load(BaseQuantization{}, AllLinear(4, 8));
  LlamaModel m1(exact.weights, exact.layout), m2(nf4.weights, nf4.layout);
  const RunResult a = RunModel(m1, in, nullptr, nullptr, false);
  const RunResult b = RunModel(m2, in, nullptr, nullptr, false);
  EXPECT_NE(a.loss_sum, b.loss_sum);  // the base really is quantized
  EXPECT_NEAR(b.loss_sum / b.num_targets, a.loss_sum / a.num_targets,
              0.02 * a.loss_sum / a.num_targets);
  EXPECT_LT(nf4.weights.StorageBytes(), exact.weights.StorageBytes());
}

TEST(LlamaModelTest, KvCacheGenerationLogitsMatchReference) {
  Fixture f = Load(Unquantized(), AllLinear(4, 8));
  const Reference ref = Reference::Load(kTinyModel);
  const std::vector<float> params = RandomParams(f.layout, 8, 0.2f);
  LlamaModel model(f.weights, f.layout);
  Generator gen(model, params.data());
  const std::vector<int32_t> ids = {5, 17, 33, 2, 60, 9, 41};
  gen.Feed(std::span<const int32_t>(ids).first(4));  // prompt, then tokens one at a time
  std::vector<float> logits;
  for (size_t t = 4; t < ids.size(); ++t) logits = gen.Feed(std::span<const int32_t>(&ids[t], 1));
  RefInput in{1, static_cast<int64_t>(ids.size()), ids,
              std::vector<uint8_t>(ids.size(), kTokenLoss)};
  const Vec hidden = RefHidden(ref, in, &f.layout, Vec(params.begin(), params.end()), 0, 0);
  const int64_t H = ref.c.hidden_size, last = static_cast<int64_t>(ids.size()) - 1;
  for (int64_t v = 0; v < ref.c.vocab_size; ++v) {
    double want = 0;
    for (int64_t i = 0; i < H; ++i) want += hidden[last * H + i] * ref.lm_head[v * H + i];
    EXPECT_NEAR(logits[v], want, 1e-4 * (1 + std::abs(want))) << v;
  }
}

TEST(LoraLayoutTest, PeftInitialisationAndLayout) {
  Fixture f = Load(BaseQuantization{}, AllLinear(4, 8));
  EXPECT_FLOAT_EQ(f.layout.scaling(), 2.0f);
  const std::vector<float> p = f.layout.InitialParameters(1);
  EXPECT_EQ(p, f.layout.InitialParameters(1));
  EXPECT_NE(p, f.layout.InitialParameters(2));
  int64_t expected_size = 0;
  for (const LoraSlot& s : f.layout.slots()) {
    EXPECT_EQ(s.a_offset, expected_size);
    expected_size += 4 * s.in_features;
    EXPECT_EQ(s.b_offset, expected_size);
    expected_size += 4 * s.out_features;
    const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.in_features)));
    float max_a = 0;
    for (int64_t i = 0; i < 4 * s.in_features; ++i) max_a = std::max(max_a, std::abs(p[s.a_offset + i]));
    EXPECT_LE(max_a, bound);
    EXPECT_GT(max_a, 0.5f * bound);
    for (int64_t i = 0; i < 4 * s.out_features; ++i) EXPECT_EQ(p[s.b_offset + i], 0.0f);
  }
  EXPECT_EQ(f.layout.num_parameters(), expected_size);
  EXPECT_EQ(f.layout.slots().size(), 2u * 7u);
  LoraOptions rs = AllLinear(16, 8);
  rs.rslora = true;
  EXPECT_FLOAT_EQ(Load(BaseQuantization{}, rs).layout.scaling(), 2.0f);  // 8 / sqrt(16)
  LoraOptions bad = AllLinear(4, 8);
  bad.target_modules = {"qkv_proj"};
  absl::StatusOr<LlamaWeights> w = LoadLlamaWeights(kTinyModel, BaseQuantization{});
  ASSERT_TRUE(w.ok());
  absl::StatusOr<LoraLayout> l = LoraLayout::Create(*w, bad);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("qkv_proj"), std::string::npos);
}

}  // namespace
}  // namespace lorasweep
