#include "worker/model/llama_model.h"

#include <algorithm>
#include <cstring>

#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/rotary.h"
#include "kernels/swiglu.h"
#include "worker/model/lora_dropout.h"

namespace lorasweep {

// Everything backward needs from one layer's forward. [N, ...] row-major.
struct LlamaModel::LayerActivations {
  std::vector<float> inv_rms1;  // [N]
  std::vector<float> h1;        // [N, H] normed input of q/k/v
  std::vector<float> q;         // [N, Hq*D] after RoPE
  std::vector<float> k;         // [N, Hkv*D] after RoPE
  std::vector<float> v;         // [N, Hkv*D]
  std::vector<float> att;       // [N, Hq*D] attention output (o_proj input)
  std::vector<float> lse;       // [B, Hq, T]
  std::vector<float> x2;        // [N, H] residual after attention
  std::vector<float> inv_rms2;  // [N]
  std::vector<float> h2;        // [N, H] normed input of gate/up
  std::vector<float> gate;      // [N, I]
  std::vector<float> up;        // [N, I]
  std::vector<float> act;       // [N, I] silu(gate) * up (down_proj input)

  void Resize(const LlamaConfig& c, int64_t B, int64_t T) {
    const int64_t N = B * T, H = c.hidden_size, I = c.intermediate_size;
    const int64_t q_dim = c.num_attention_heads * c.head_dim;
    const int64_t kv_dim = c.num_key_value_heads * c.head_dim;
    inv_rms1.resize(N);
    h1.resize(N * H);
    q.resize(N * q_dim);
    k.resize(N * kv_dim);
    v.resize(N * kv_dim);
    att.resize(N * q_dim);
    lse.resize(B * c.num_attention_heads * T);
    x2.resize(N * H);
    inv_rms2.resize(N);
    h2.resize(N * H);
    gate.resize(N * I);
    up.resize(N * I);
    act.resize(N * I);
  }
  int64_t Bytes() const {
    return static_cast<int64_t>((inv_rms1.size() + h1.size() + q.size() + k.size() + v.size() +
                                 att.size() + lse.size() + x2.size() + inv_rms2.size() +
                                 h2.size() + gate.size() + up.size() + act.size()) *
                                sizeof(float));
  }
};

namespace {

int64_t Capacity(const std::vector<float>& v) {
  return static_cast<int64_t>(v.capacity() * sizeof(float));
}

void Grow(std::vector<float>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(n);
}

}  // namespace

std::vector<float> RopeInverseFrequenciesFor(const LlamaConfig& c) {
  RopeScalingParams scaling;
  scaling.type = c.rope_scaling.type;
  scaling.factor = c.rope_scaling.factor;
  scaling.low_freq_factor = c.rope_scaling.low_freq_factor;
  scaling.high_freq_factor = c.rope_scaling.high_freq_factor;
  scaling.original_max_position_embeddings = c.rope_scaling.original_max_position_embeddings;
  return RopeInverseFrequencies(c.head_dim, c.rope_theta, scaling);
}

LlamaModel::LlamaModel(const LlamaWeights& weights, const LoraLayout& lora)
    : weights_(weights), lora_(lora) {}

LlamaModel::~LlamaModel() = default;

void LlamaModel::EnsureRope(int64_t max_position) {
  if (max_position < rope_positions_) return;
  const LlamaConfig& c = weights_.config;
  const std::vector<float> inv_freq = RopeInverseFrequenciesFor(c);
  rope_positions_ = std::max<int64_t>(max_position + 1, 256);
  rope_cos_.resize(rope_positions_ * (c.head_dim / 2));
  rope_sin_.resize(rope_positions_ * (c.head_dim / 2));
  RopeTables(inv_freq, rope_positions_, rope_cos_.data(), rope_sin_.data());
}

LlamaModel::Dropout LlamaModel::DropoutFor(int layer, int module, float p) {
  Dropout d;
  if (p <= 0) return d;
  dropout_keys_.resize(sequence_seeds_.size());
  for (size_t b = 0; b < sequence_seeds_.size(); ++b) {
    dropout_keys_[b] = LoraDropoutKey(sequence_seeds_[b], layer, module);
  }
  d.p = p;
  d.keys = dropout_keys_.data();
  d.rows_per_key = run_seq_len_;
  return d;
}

const float* LlamaModel::ApplyDropout(const float* x, int64_t N, int64_t in,
                                      const Dropout& dropout) {
  if (dropout.p <= 0) return x;
  Grow(&dropout_scratch_, N * in);
  const int64_t chunk = dropout.rows_per_key * in;
  for (int64_t b = 0; b * dropout.rows_per_key < N; ++b) {
    ApplyLoraDropout(x + b * chunk, std::min(chunk, N * in - b * chunk), dropout.p,
                     dropout.keys[b], dropout_scratch_.data() + b * chunk);
  }
  return dropout_scratch_.data();
}

void LlamaModel::LinearWithLora(int layer, int module, const float* x, int64_t N,
                                const float* params, const Dropout& dropout, float* y) {
  const FrozenLinear& linear = weights_.layers[layer].linears[module];
  const int64_t in = linear.in_features(), out = linear.out_features();
  const float* w = linear.Weight(&weight_scratch_);
  LinearForward(x, w, linear.bias().empty() ? nullptr : linear.bias().data(), N, in, out, y);
  const LoraSlot* slot = lora_.Find(layer, module);
  if (slot == nullptr || params == nullptr) return;
  const int64_t r = lora_.rank();
  const float* xd = ApplyDropout(x, N, in, dropout);
  Grow(&lora_u_, N * r);
  // u[N, r] = xd A^T; y += scaling * u B^T.
  Sgemm(false, true, N, r, in, 1.0f, xd, in, params + slot->a_offset, in, 0.0f, lora_u_.data(), r);
  Sgemm(false, true, N, out, r, lora_.scaling(), lora_u_.data(), r, params + slot->b_offset, r,
        1.0f, y, out);
}

void LlamaModel::LinearWithLoraBackward(int layer, int module, const float* x, const float* dy,
                                        int64_t N, const float* params, float* grads,
                                        const Dropout& dropout, bool accumulate_dx, float* dx) {
  const FrozenLinear& linear = weights_.layers[layer].linears[module];
  const int64_t in = linear.in_features(), out = linear.out_features();
  const float* w = linear.Weight(&weight_scratch_);
  // The frozen base only passes the gradient through: dx (+)= dy W.
  LinearBackwardInput(dy, w, N, in, out, accumulate_dx, dx);
  const LoraSlot* slot = lora_.Find(layer, module);
  if (slot == nullptr) return;
  const int64_t r = lora_.rank();
  const float s = lora_.scaling();
  const float* a = params + slot->a_offset;
  const float* b = params + slot->b_offset;
  const float* xd = ApplyDropout(x, N, in, dropout);
  Grow(&lora_u_, N * r);
  Grow(&lora_du_, N * r);
  Sgemm(false, true, N, r, in, 1.0f, xd, in, a, in, 0.0f, lora_u_.data(), r);  // u = xd A^T
  // dB[out, r] += s dy^T u ; du[N, r] = s dy B ; dA[r, in] += du^T xd.
  Sgemm(true, false, out, r, N, s, dy, out, lora_u_.data(), r, 1.0f, grads + slot->b_offset, r);
  Sgemm(false, false, N, r, out, s, dy, out, b, r, 0.0f, lora_du_.data(), r);
  Sgemm(true, false, r, in, N, 1.0f, lora_du_.data(), r, xd, in, 1.0f, grads + slot->a_offset, in);
  // dx += dropout'(du A): the mask of the forward, recomputed from the same key.
  if (dropout.p > 0) {
    Grow(&lora_dx_, N * in);
    Sgemm(false, false, N, in, r, 1.0f, lora_du_.data(), r, a, in, 0.0f, lora_dx_.data(), in);
    const float* masked = ApplyDropout(lora_dx_.data(), N, in, dropout);
    for (int64_t i = 0; i < N * in; ++i) dx[i] += masked[i];
  } else {
    Sgemm(false, false, N, in, r, 1.0f, lora_du_.data(), r, a, in, 1.0f, dx, in);
  }
}

void LlamaModel::LayerForward(int layer, const TokenLayout& tokens, int64_t B, int64_t T,
                              const float* x_in, const float* params, float p,
                              LayerActivations* act, float* x_out) {
  const LlamaConfig& c = weights_.config;
  const LlamaLayerWeights& lw = weights_.layers[layer];
  const int64_t N = B * T, H = c.hidden_size, I = c.intermediate_size;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  act->Resize(c, B, T);
  auto drop = [&](int module) { return DropoutFor(layer, module, p); };

  RmsNormForward(x_in, lw.input_norm.data(), N, H, eps, act->h1.data(), act->inv_rms1.data());
  LinearWithLora(layer, kQProj, act->h1.data(), N, params, drop(kQProj), act->q.data());
  LinearWithLora(layer, kKProj, act->h1.data(), N, params, drop(kKProj), act->k.data());
  LinearWithLora(layer, kVProj, act->h1.data(), N, params, drop(kVProj), act->v.data());
  RotaryForward(act->q.data(), tokens.positions.data(), N, Hq, D, rope_cos_.data(),
                rope_sin_.data());
  RotaryForward(act->k.data(), tokens.positions.data(), N, Hkv, D, rope_cos_.data(),
                rope_sin_.data());
  AttentionForward(act->q.data(), act->k.data(), act->v.data(), tokens.doc_start.data(), B, T, Hq,
                   Hkv, D, act->att.data(), act->lse.data());
  // x2 = x_in + o_proj(att)
  LinearWithLora(layer, kOProj, act->att.data(), N, params, drop(kOProj), act->x2.data());
  for (int64_t i = 0; i < N * H; ++i) act->x2[i] += x_in[i];
  RmsNormForward(act->x2.data(), lw.post_attention_norm.data(), N, H, eps, act->h2.data(),
                 act->inv_rms2.data());
  LinearWithLora(layer, kGateProj, act->h2.data(), N, params, drop(kGateProj), act->gate.data());
  LinearWithLora(layer, kUpProj, act->h2.data(), N, params, drop(kUpProj), act->up.data());
  SwigluForward(act->gate.data(), act->up.data(), N * I, act->act.data());
  // x_out = x2 + down_proj(act)
  LinearWithLora(layer, kDownProj, act->act.data(), N, params, drop(kDownProj), x_out);
  for (int64_t i = 0; i < N * H; ++i) x_out[i] += act->x2[i];
}

void LlamaModel::LayerBackward(int layer, const TokenLayout& tokens, int64_t B, int64_t T,
                               const float* x_in, const LayerActivations& act,
                               const float* params, float* grads, const float* dx_out,
                               float* dx_in) {
  const LlamaConfig& c = weights_.config;
  const LlamaLayerWeights& lw = weights_.layers[layer];
  const int64_t N = B * T, H = c.hidden_size, I = c.intermediate_size;
  const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
  const float p = static_cast<float>(lora_.options().dropout);
  auto drop = [&](int module) { return DropoutFor(layer, module, p); };
  Grow(&grad_a_, N * std::max(I, Hq * D));  // d(act), later d(att)
  Grow(&grad_b_, N * I);                    // d(gate)
  Grow(&grad_c_, N * I);                    // d(up)
  Grow(&grad_d_, N * H);                    // dx2 / dh

  // MLP: x_out = x2 + down(silu(gate) * up)
  float* d_act = grad_a_.data();
  LinearWithLoraBackward(layer, kDownProj, act.act.data(), dx_out, N, params, grads, drop(kDownProj), false, d_act);
  SwigluBackward(act.gate.data(), act.up.data(), d_act, N * I, grad_b_.data(), grad_c_.data());
  // dh2 collects into dx_in (used as scratch until the end).
  float* dh = dx_in;
  LinearWithLoraBackward(layer, kGateProj, act.h2.data(), grad_b_.data(), N, params, grads, drop(kGateProj), false, dh);
  LinearWithLoraBackward(layer, kUpProj, act.h2.data(), grad_c_.data(), N, params, grads, drop(kUpProj), true, dh);
  float* dx2 = grad_d_.data();
  std::memcpy(dx2, dx_out, N * H * sizeof(float));
  RmsNormBackward(act.x2.data(), lw.post_attention_norm.data(), act.inv_rms2.data(), dh, N, H,
                  true, dx2);

  // Attention: x2 = x_in + o(attn(rope(q), rope(k), v))
  float* d_att = grad_a_.data();
  LinearWithLoraBackward(layer, kOProj, act.att.data(), dx2, N, params, grads, drop(kOProj), false, d_att);
  const int64_t q_dim = Hq * D, kv_dim = Hkv * D;
  float* dq = grad_b_.data();  // N*I >= N*q_dim holds for every Llama shape; checked below
  float* dk = grad_c_.data();
  float* dv = grad_c_.data() + N * kv_dim;
  std::vector<float> fallback;
  if (I < q_dim || I < 2 * kv_dim) {
    fallback.resize(N * (q_dim + 2 * kv_dim));
    dq = fallback.data();
    dk = dq + N * q_dim;
    dv = dk + N * kv_dim;
  }
  AttentionBackward(act.q.data(), act.k.data(), act.v.data(), tokens.doc_start.data(),
                    act.att.data(), d_att, act.lse.data(), B, T, Hq, Hkv, D, dq, dk, dv);
  RotaryBackward(dq, tokens.positions.data(), N, Hq, D, rope_cos_.data(), rope_sin_.data());
  RotaryBackward(dk, tokens.positions.data(), N, Hkv, D, rope_cos_.data(), rope_sin_.data());
  LinearWithLoraBackward(layer, kQProj, act.h1.data(), dq, N, params, grads, drop(kQProj), false,
                         dh);
  LinearWithLoraBackward(layer, kKProj, act.h1.data(), dk, N, params, grads, drop(kKProj), true,
                         dh);
  LinearWithLoraBackward(layer, kVProj, act.h1.data(), dv, N, params, grads, drop(kVProj), true,
                         dh);
  // dx_in = dx2 + rmsnorm1'(dh); dh aliases dx_in, so go through grad_a_.
  float* dnorm = grad_a_.data();
  std::memcpy(dnorm, dx2, N * H * sizeof(float));
  RmsNormBackward(x_in, lw.input_norm.data(), act.inv_rms1.data(), dh, N, H, true, dnorm);
  std::memcpy(dx_in, dnorm, N * H * sizeof(float));
}

RunResult LlamaModel::Run(const MicroBatch& batch, const float* params, float* grads,
                          const RunOptions& options) {
  const LlamaConfig& c = weights_.config;
  const int64_t B = batch.batch, T = batch.seq_len, N = B * T, H = c.hidden_size;
  const int64_t V = c.vocab_size, L = c.num_hidden_layers;
  const bool backward = options.training && grads != nullptr;
  const TokenLayout tokens = MakeTokenLayout(batch);
  EnsureRope(tokens.max_position);
  const float p = options.training ? static_cast<float>(lora_.options().dropout) : 0.0f;
  run_seq_len_ = T;
  sequence_seeds_ = options.sequence_seeds;
  if (static_cast<int64_t>(sequence_seeds_.size()) != B) {
    sequence_seeds_.resize(B);
    for (int64_t b = 0; b < B; ++b) sequence_seeds_[b] = options.dropout_seed + b;
  }

  // Which activations are kept: all layers (plain backward), one reused set (checkpointing or
  // forward only).
  const bool keep_all = backward && !options.activation_checkpointing;
  acts_.resize(keep_all ? L : 1);
  if (backward && options.activation_checkpointing) {
    layer_inputs_.resize(L);
  } else {
    layer_inputs_.clear();
  }

  std::vector<float> x(N * H), next(N * H);
  for (int64_t i = 0; i < N; ++i) {
    const int32_t id = batch.ids[i];
    const int32_t safe = (id >= 0 && id < V) ? id : 0;
    std::memcpy(&x[i * H], &weights_.embed_tokens[safe * H], H * sizeof(float));
  }
  std::vector<std::vector<float>> inputs_kept;  // plain backward: each layer's input
  if (keep_all) inputs_kept.resize(L);
  for (int64_t l = 0; l < L; ++l) {
    if (keep_all) inputs_kept[l] = x;
    if (backward && options.activation_checkpointing) layer_inputs_[l] = x;
    LayerForward(static_cast<int>(l), tokens, B, T, x.data(), params, p,
                 &acts_[keep_all ? l : 0], next.data());
    x.swap(next);
  }
  // Final norm, LM head and loss in row chunks.
  std::vector<float> inv_final(N), hidden(N * H);
  RmsNormForward(x.data(), weights_.final_norm.data(), N, H, static_cast<float>(c.rms_norm_eps),
                 hidden.data(), inv_final.data());
  RunResult result;
  std::vector<float> dhidden(backward ? N * H : 0);
  result.loss_sum = CrossEntropyForwardBackward(
      hidden.data(), weights_.LmHead(), tokens.targets.data(), N, H, V, options.loss_chunk_rows,
      options.grad_scale, backward ? dhidden.data() : nullptr, &result.num_targets);
  if (!backward) return result;

  std::vector<float> dx(N * H), dprev(N * H);
  RmsNormBackward(x.data(), weights_.final_norm.data(), inv_final.data(), dhidden.data(), N, H,
                  false, dx.data());
  for (int64_t l = L - 1; l >= 0; --l) {
    const float* x_in;
    LayerActivations* act;
    if (keep_all) {
      x_in = inputs_kept[l].data();
      act = &acts_[l];
    } else {
      // Recompute this layer's forward from its saved input (same dropout masks: they are keyed).
      x_in = layer_inputs_[l].data();
      act = &acts_[0];
      LayerForward(static_cast<int>(l), tokens, B, T, x_in, params, p, act, next.data());
    }
    LayerBackward(static_cast<int>(l), tokens, B, T, x_in, *act, params, grads, dx.data(),
                  dprev.data());
    if (options.on_layer_gradients) options.on_layer_gradients(static_cast<int>(l));
    dx.swap(dprev);
  }
  return result;
}

int64_t LlamaModel::WorkspaceBytes() const {
  int64_t bytes = Capacity(weight_scratch_) + Capacity(dropout_scratch_) + Capacity(lora_u_) +
                  Capacity(lora_du_) + Capacity(lora_dx_) + Capacity(grad_a_) +
                  Capacity(grad_b_) + Capacity(grad_c_) + Capacity(grad_d_);
  for (const LayerActivations& a : acts_) bytes += a.Bytes();
  for (const std::vector<float>& v : layer_inputs_) bytes += Capacity(v);
  return bytes;
}

}  // namespace lorasweep
