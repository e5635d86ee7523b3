// The QLoRA training model on the CPU: a Llama-family decoder over a frozen base (LlamaWeights)
// with LoRA adapters whose parameters live in one buffer (LoraLayout). This is the reference the
// CUDA backend mirrors op for op.
//
// Dimension legend: B sequences, T tokens each, N = B*T, H hidden, I intermediate, V vocab,
// Hq / Hkv query / key-value heads, D head_dim, r LoRA rank.
//
// One Run() is one micro-batch: forward, and when gradients are wanted, backward through every op
// with gradients only for the adapter (the base is frozen). Base weights are dequantized one linear
// at a time into a reused scratch buffer. With activation checkpointing only each layer's input is
// kept and the layer is recomputed during backward.
//
// Thread-safety: a LlamaModel owns scratch buffers; use one per thread of control.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "worker/model/llama_weights.h"
#include "worker/model/lora_layout.h"
#include "worker/model/token_layout.h"

namespace lorasweep {

struct RunOptions {
  // Gradients wanted: backward runs and accumulates into `grads` (LoRA dropout is active).
  bool training = false;
  bool activation_checkpointing = true;
  // Multiplies every gradient: 1 / (target tokens of the whole global batch) gives the gradient of
  // the mean loss however the batch is split into micro-batches and ranks.
  float grad_scale = 1.0f;
  // Seeds the LoRA dropout masks, one per sequence (masks are recomputed, never stored). Keyed per
  // sequence so that a sequence gets the same masks whichever rank and micro-batch it lands in.
  // Empty: every sequence b uses dropout_seed + b.
  std::vector<uint64_t> sequence_seeds;
  uint64_t dropout_seed = 0;
  // Called during backward (of a training run) when the adapter gradients of `layer` are complete
  // for this micro-batch; the data-parallel trainer starts their all-reduce from here.
  std::function<void(int layer)> on_layer_gradients;
  // Rows of the [rows, V] logits block the loss is computed in.
  int64_t loss_chunk_rows = 256;
};

struct RunResult {
  double loss_sum = 0;      // sum of per-target cross-entropies (nats)
  int64_t num_targets = 0;  // targets that counted
};

// RoPE inverse frequencies for `config` (its rope_theta and rope_scaling), shared by the CPU and
// CUDA models.
std::vector<float> RopeInverseFrequenciesFor(const LlamaConfig& config);

class LlamaModel {
 public:
  LlamaModel(const LlamaWeights& weights, const LoraLayout& lora);
  ~LlamaModel();
  LlamaModel(const LlamaModel&) = delete;
  LlamaModel& operator=(const LlamaModel&) = delete;

  // `params` / `grads`: the adapter buffers in LoraLayout order (grads accumulated, may be null
  // when not training).
  RunResult Run(const MicroBatch& batch, const float* params, float* grads,
                const RunOptions& options);

  // Bytes of activations and scratch the last Run held (for memory reports).
  int64_t WorkspaceBytes() const;

  const LlamaWeights& weights() const { return weights_; }
  const LoraLayout& lora() const { return lora_; }

  // Pieces the generator (KV-cache decoding) shares with training.
  // y[N, out] = x W^T + bias + scaling * dropout(x) A^T B^T. Dropout (p > 0) uses one mask key
  // per run of `rows_per_key` rows (a sequence): keys[N / rows_per_key].
  struct Dropout {
    float p = 0;
    const uint64_t* keys = nullptr;
    int64_t rows_per_key = 1;
  };
  void LinearWithLora(int layer, int module, const float* x, int64_t N, const float* params,
                      const Dropout& dropout, float* y);
  // cos/sin tables covering positions [0, max_position].
  void EnsureRope(int64_t max_position);
  const float* rope_cos() const { return rope_cos_.data(); }
  const float* rope_sin() const { return rope_sin_.data(); }

 private:
  struct LayerActivations;

  void LayerForward(int layer, const TokenLayout& tokens, int64_t B, int64_t T, const float* x_in,
                    const float* params, float dropout, LayerActivations* act, float* x_out);
  void LayerBackward(int layer, const TokenLayout& tokens, int64_t B, int64_t T,
                     const float* x_in, const LayerActivations& act, const float* params,
                     float* grads, const float* dx_out, float* dx_in);
  void LinearWithLoraBackward(int layer, int module, const float* x, const float* dy, int64_t N,
                              const float* params, float* grads, const Dropout& dropout,
                              bool accumulate_dx, float* dx);
  // The dropout of (layer, module) for the current run's sequences.
  Dropout DropoutFor(int layer, int module, float p);
  // Writes dropout(x) into dropout_scratch_ and returns it (x itself when p == 0).
  const float* ApplyDropout(const float* x, int64_t N, int64_t in, const Dropout& dropout);

  const LlamaWeights& weights_;
  const LoraLayout& lora_;
  std::vector<float> rope_cos_, rope_sin_;
  // Per-sequence dropout seeds of the current Run and the keys derived for one module.
  std::vector<uint64_t> sequence_seeds_, dropout_keys_;
  int64_t run_seq_len_ = 1;
  int64_t rope_positions_ = 0;
  std::vector<LayerActivations> acts_;
  std::vector<std::vector<float>> layer_inputs_;  // checkpointing: each layer's input
  // Scratch reused across layers and modules.
  std::vector<float> weight_scratch_, dropout_scratch_, lora_u_, lora_du_, lora_dx_;
  std::vector<float> grad_a_, grad_b_, grad_c_, grad_d_;
};

}  // namespace lorasweep
