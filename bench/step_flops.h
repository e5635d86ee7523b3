// The matrix FLOPs of one QLoRA training step, the numerator of the training benchmarks' rate
// (bench/train_step_bench.cc on the CPU, bench/gpu/train_step_bench.cc on the GPU).
//
// Per decoder linear: forward 2*N*in*out and backward (input gradient only, the base is frozen)
// 2*N*in*out; LoRA forward 2*N*r*(in+out), backward 2*N*r*(3*in+2*out) (u recomputed, dB, du, dA,
// dx); attention 4*B*Hq*T*T*D forward (QK^T and PV) and 8*B*Hq*T*T*D backward, times
// `attention_fraction` (1 = the full T x T products, 0.5 = only the causal half that a tiled kernel
// computes); LM head 2*N*H*V forward + 2*N*H*V backward. Recomputation under activation
// checkpointing is not counted (the model-FLOPs-utilisation convention).
#pragma once

#include <cstdint>

#include "worker/formats/hf_config.h"

namespace lorasweep {

inline double StepFlops(const LlamaConfig& c, int64_t B, int64_t T, int64_t r,
                        double attention_fraction) {
  const double N = static_cast<double>(B * T), H = c.hidden_size, I = c.intermediate_size;
  const double q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const double shapes[7][2] = {{H, q}, {H, kv}, {H, kv}, {q, H}, {H, I}, {H, I}, {I, H}};
  double per_layer = 0;
  for (const auto& s : shapes) {
    per_layer += 4 * N * s[0] * s[1];                // base forward + input gradient
    per_layer += 2 * N * r * (s[0] + s[1]);          // LoRA forward
    per_layer += 2 * N * r * (3 * s[0] + 2 * s[1]);  // LoRA backward
  }
  per_layer += attention_fraction * 12.0 * B * c.num_attention_heads * T * T * c.head_dim;
  return per_layer * c.num_hidden_layers + 4 * N * H * c.vocab_size;
}

}  // namespace lorasweep
