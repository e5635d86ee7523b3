#include "worker/cuda/cuda_llama_model.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "kernels/attention_cuda.h"
#include "kernels/cross_entropy_cuda.h"
#include "kernels/dequantize_4bit_cuda.h"
#include "kernels/elementwise_cuda.h"
#include "kernels/embedding_cuda.h"
#include "kernels/matmul_cuda.h"
#include "kernels/rms_norm_cuda.h"
#include "kernels/rotary.h"
#include "kernels/rotary_cuda.h"
#include "kernels/swiglu_cuda.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"
#include "worker/model/lora_dropout.h"

namespace lorasweep {
namespace {

// Host floats as bf16 (round to nearest even, as __float2bfloat16 does).
std::vector<bf16> ToBf16(const float* x, int64_t n) {
  std::vector<bf16> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = __float2bfloat16(x[i]);
  return out;
}

template <typename T>
absl::StatusOr<DeviceBuffer<T>> Upload(const T* host, int64_t n, const char* what) {
  ASSIGN_OR_RETURN(DeviceBuffer<T> b, DeviceBuffer<T>::Allocate(n, what));
  if (n > 0) RETURN_IF_ERROR(b.CopyFromHost(host, n));
  return b;
}

// One frozen linear on the device: 4-bit blocks with their scales, or bf16 values.
struct DeviceLinear {
  int64_t in = 0, out = 0;
  bool quantized = false;
  Dequantize4bitCudaArgs args;  // device pointers into the buffers below
  DeviceBuffer<uint8_t> packed, absmax_codes;
  DeviceBuffer<float> absmax, nested_absmax, nested_code;
  DeviceBuffer<bf16> dense;
  DeviceBuffer<float> bias;

  int64_t Bytes() const {
    return packed.bytes() + absmax_codes.bytes() + absmax.bytes() + nested_absmax.bytes() +
           nested_code.bytes() + dense.bytes() + bias.bytes();
  }
};

absl::StatusOr<DeviceLinear> UploadLinear(const FrozenLinear& linear) {
  DeviceLinear d;
  d.in = linear.in_features();
  d.out = linear.out_features();
  if (!linear.bias().empty()) {
    ASSIGN_OR_RETURN(d.bias, Upload(linear.bias().data(), d.out, "linear bias"));
  }
  const Quantized4bit* q = linear.quantized_weight();
  if (q == nullptr) {
    std::vector<float> scratch;
    const std::vector<bf16> w = ToBf16(linear.Weight(&scratch), d.in * d.out);
    ASSIGN_OR_RETURN(d.dense, Upload(w.data(), d.in * d.out, "bf16 base weight"));
    return d;
  }
  d.quantized = true;
  ASSIGN_OR_RETURN(d.packed, Upload(q->packed.data(), static_cast<int64_t>(q->packed.size()),
                                    "4-bit base weight"));
  d.args.packed = d.packed.data();
  if (q->double_quant) {
    ASSIGN_OR_RETURN(d.absmax_codes,
                     Upload(q->absmax_codes.data(), static_cast<int64_t>(q->absmax_codes.size()),
                            "absmax codes"));
    ASSIGN_OR_RETURN(d.nested_absmax,
                     Upload(q->nested_absmax.data(), static_cast<int64_t>(q->nested_absmax.size()),
                            "nested absmax"));
    const std::array<float, 256>& map = DynamicSignedMap();
    ASSIGN_OR_RETURN(d.nested_code, Upload(map.data(), 256, "nested code"));
    d.args.absmax_codes = d.absmax_codes.data();
    d.args.nested_absmax = d.nested_absmax.data();
    d.args.nested_code = d.nested_code.data();
    d.args.nested_offset = q->nested_offset;
  } else {
    ASSIGN_OR_RETURN(d.absmax,
                     Upload(q->absmax.data(), static_cast<int64_t>(q->absmax.size()), "absmax"));
    d.args.absmax = d.absmax.data();
  }
  const std::array<float, 16>& code = CodeTable(q->type);
  std::copy(code.begin(), code.end(), d.args.code);
  d.args.blocksize = q->blocksize;
  d.args.num_elements = q->num_elements;
  return d;
}

struct DeviceLayer {
  DeviceBuffer<float> input_norm, post_attention_norm;
  DeviceLinear linears[kNumLinearModules];
};

// What backward needs from one layer's forward (the mirror of LlamaModel::LayerActivations).
struct DeviceActivations {
  DeviceBuffer<float> inv_rms1, lse, x2, inv_rms2;
  DeviceBuffer<bf16> h1, q, k, v, att, h2, gate, up, act;

  absl::Status Ensure(const LlamaConfig& c, int64_t B, int64_t T) {
    const int64_t N = B * T, H = c.hidden_size, I = c.intermediate_size;
    const int64_t q_dim = c.num_attention_heads * c.head_dim;
    const int64_t kv_dim = c.num_key_value_heads * c.head_dim;
    RETURN_IF_ERROR(inv_rms1.EnsureSize(N, "activations"));
    RETURN_IF_ERROR(lse.EnsureSize(B * c.num_attention_heads * T, "activations"));
    RETURN_IF_ERROR(x2.EnsureSize(N * H, "activations"));
    RETURN_IF_ERROR(inv_rms2.EnsureSize(N, "activations"));
    RETURN_IF_ERROR(h1.EnsureSize(N * H, "activations"));
    RETURN_IF_ERROR(q.EnsureSize(N * q_dim, "activations"));
    RETURN_IF_ERROR(k.EnsureSize(N * kv_dim, "activations"));
    RETURN_IF_ERROR(v.EnsureSize(N * kv_dim, "activations"));
    RETURN_IF_ERROR(att.EnsureSize(N * q_dim, "activations"));
    RETURN_IF_ERROR(h2.EnsureSize(N * H, "activations"));
    RETURN_IF_ERROR(gate.EnsureSize(N * I, "activations"));
    RETURN_IF_ERROR(up.EnsureSize(N * I, "activations"));
    return act.EnsureSize(N * I, "activations");
  }
};

}  // namespace

struct CudaLlamaModel::Impl {
  const LlamaWeights& weights;
  const LoraLayout& lora;
  int device = 0;
  cudaStream_t stream = nullptr;
  CublasContext cublas;
  int64_t peak_bytes = 0;
  int64_t base_bytes = 0;

  // The frozen base.
  std::vector<DeviceLayer> layers;
  DeviceBuffer<bf16> embed, lm_head;  // lm_head empty when tied
  DeviceBuffer<float> final_norm;
  DeviceBuffer<float> rope_cos, rope_sin;
  int64_t rope_positions = 0;
  // The adapter in bf16 (LoraLayout order).
  DeviceBuffer<bf16> adapter;
  // Per-run token data.
  DeviceBuffer<int32_t> ids, positions, targets;
  DeviceBuffer<uint8_t> doc_start;
  DeviceBuffer<uint64_t> dropout_keys;  // [L * 7 * B]
  int64_t run_B = 0, run_T = 0;
  float run_dropout = 0;
  // Activations: every layer's (plain backward) or one reused set; checkpointing keeps inputs.
  std::vector<DeviceActivations> acts;
  std::vector<DeviceBuffer<float>> layer_inputs;
  // Scratch reused across layers and modules.
  DeviceBuffer<bf16> weight_ws, dropout_ws, lora_u, lora_du, dy_bf16, grad_act_bf16, dgate, dup;
  DeviceBuffer<bf16> dq, dk, dv, hidden, linear_out;
  DeviceBuffer<float> lora_dx, grad_f32, dh, dx2, x, next, dx, dprev, inv_final, dhidden, row_loss;
  DeviceBuffer<uint8_t> attention_ws, loss_ws;

  Impl(const LlamaWeights& w, const LoraLayout& l) : weights(w), lora(l) {}

  const bf16* LmHead() const { return lm_head.size() > 0 ? lm_head.data() : embed.data(); }

  absl::Status EnsureRope(int64_t max_position) {
    if (max_position < rope_positions) return absl::OkStatus();
    const LlamaConfig& c = weights.config;
    const std::vector<float> inv_freq = RopeInverseFrequenciesFor(c);
    const int64_t positions_needed = std::max<int64_t>(max_position + 1, 256);
    std::vector<float> cos(positions_needed * (c.head_dim / 2)), sin(cos.size());
    RopeTables(inv_freq, positions_needed, cos.data(), sin.data());
    ASSIGN_OR_RETURN(rope_cos, Upload(cos.data(), static_cast<int64_t>(cos.size()), "rope"));
    ASSIGN_OR_RETURN(rope_sin, Upload(sin.data(), static_cast<int64_t>(sin.size()), "rope"));
    rope_positions = positions_needed;
    // cudaMemcpy from pageable memory may return before its DMA lands; the tables are read by
    // kernels on our non-blocking stream next.
    CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return absl::OkStatus();
  }

  // The bf16 weight of (layer, module): dequantized into weight_ws, or the stored values.
  absl::StatusOr<const bf16*> Weight(int layer, int module) {
    DeviceLinear& d = layers[layer].linears[module];
    if (!d.quantized) return d.dense.data();
    CUDA_RETURN_IF_ERROR(
        Dequantize4bitCudaBf16(d.args, reinterpret_cast<uint16_t*>(weight_ws.data()), stream));
    return weight_ws.data();
  }

  const uint64_t* Keys(int layer, int module) const {
    return dropout_keys.data() + (static_cast<int64_t>(layer) * kNumLinearModules + module) * run_B;
  }

  // dropout(x) into dropout_ws (x itself when dropout is off).
  absl::StatusOr<const bf16*> Dropped(int layer, int module, const bf16* x, int64_t N, int64_t in) {
    if (run_dropout <= 0) return x;
    CUDA_RETURN_IF_ERROR(LoraDropoutCuda(x, N, in, run_dropout, Keys(layer, module), run_T,
                                         dropout_ws.data(), stream));
    return dropout_ws.data();
  }

  // y[N, out] (bf16) = x W^T + bias + scaling * dropout(x) A^T B^T.
  absl::Status LinearWithLora(int layer, int module, const bf16* x, int64_t N, bool use_adapter,
                              bf16* y) {
    const DeviceLinear& d = layers[layer].linears[module];
    ASSIGN_OR_RETURN(const bf16* w, Weight(layer, module));
    CUBLAS_RETURN_IF_ERROR(LinearForwardCuda(cublas, x, w, d.bias.size() ? d.bias.data() : nullptr,
                                             N, d.in, d.out, y));
    const LoraSlot* slot = lora.Find(layer, module);
    if (slot == nullptr || !use_adapter) return absl::OkStatus();
    const int64_t r = lora.rank();
    ASSIGN_OR_RETURN(const bf16* xd, Dropped(layer, module, x, N, d.in));
    const bf16* a = adapter.data() + slot->a_offset;
    const bf16* b = adapter.data() + slot->b_offset;
    // u[N, r] = xd A^T; y += scaling * u B^T.
    CUBLAS_RETURN_IF_ERROR(GemmBf16Bf16(cublas, false, true, N, r, d.in, 1.0f, xd, d.in, a, d.in,
                                        0.0f, lora_u.data(), r));
    CUBLAS_RETURN_IF_ERROR(GemmBf16Bf16(cublas, false, true, N, d.out, r, lora.scaling(),
                                        lora_u.data(), r, b, r, 1.0f, y, d.out));
    return absl::OkStatus();
  }

  // dx (fp32, (+)=) and the adapter gradients of one linear, given dy (bf16) and its input x.
  absl::Status LinearWithLoraBackward(int layer, int module, const bf16* x, const bf16* dy,
                                      int64_t N, float* grads, bool accumulate_dx, float* dx_out) {
    const DeviceLinear& d = layers[layer].linears[module];
    ASSIGN_OR_RETURN(const bf16* w, Weight(layer, module));
    // The frozen base only passes the gradient through: dx (+)= dy W.
    CUBLAS_RETURN_IF_ERROR(GemmBf16F32(cublas, false, false, N, d.in, d.out, 1.0f, dy, d.out, w,
                                       d.in, accumulate_dx ? 1.0f : 0.0f, dx_out, d.in));
    const LoraSlot* slot = lora.Find(layer, module);
    if (slot == nullptr) return absl::OkStatus();
    const int64_t r = lora.rank();
    const float s = lora.scaling();
    const bf16* a = adapter.data() + slot->a_offset;
    const bf16* b = adapter.data() + slot->b_offset;
    ASSIGN_OR_RETURN(const bf16* xd, Dropped(layer, module, x, N, d.in));
    // u = xd A^T; dB[out, r] += s dy^T u; du[N, r] = s dy B; dA[r, in] += du^T xd.
    CUBLAS_RETURN_IF_ERROR(GemmBf16Bf16(cublas, false, true, N, r, d.in, 1.0f, xd, d.in, a, d.in,
                                        0.0f, lora_u.data(), r));
    CUBLAS_RETURN_IF_ERROR(GemmBf16F32(cublas, true, false, d.out, r, N, s, dy, d.out,
                                       lora_u.data(), r, 1.0f, grads + slot->b_offset, r));
    CUBLAS_RETURN_IF_ERROR(GemmBf16Bf16(cublas, false, false, N, r, d.out, s, dy, d.out, b, r, 0.0f,
                                        lora_du.data(), r));
    CUBLAS_RETURN_IF_ERROR(GemmBf16F32(cublas, true, false, r, d.in, N, 1.0f, lora_du.data(), r, xd,
                                       d.in, 1.0f, grads + slot->a_offset, d.in));
    if (run_dropout > 0) {
      // dx += dropout'(du A): the forward's mask, regenerated from the same key.
      CUBLAS_RETURN_IF_ERROR(GemmBf16F32(cublas, false, false, N, d.in, r, 1.0f, lora_du.data(), r,
                                         a, d.in, 0.0f, lora_dx.data(), d.in));
      CUDA_RETURN_IF_ERROR(LoraDropoutAccumulateCuda(lora_dx.data(), N, d.in, run_dropout,
                                                     Keys(layer, module), run_T, dx_out, stream));
    } else {
      CUBLAS_RETURN_IF_ERROR(GemmBf16F32(cublas, false, false, N, d.in, r, 1.0f, lora_du.data(), r,
                                         a, d.in, 1.0f, dx_out, d.in));
    }
    return absl::OkStatus();
  }

  absl::Status LayerForward(int layer, bool use_adapter, const float* x_in, DeviceActivations* a,
                            float* x_out) {
    const LlamaConfig& c = weights.config;
    const DeviceLayer& lw = layers[layer];
    const int64_t B = run_B, T = run_T, N = B * T, H = c.hidden_size, I = c.intermediate_size;
    const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
    const float eps = static_cast<float>(c.rms_norm_eps);
    RETURN_IF_ERROR(a->Ensure(c, B, T));
    CUDA_RETURN_IF_ERROR(RmsNormForwardCuda(x_in, lw.input_norm.data(), N, H, eps, a->h1.data(),
                                            a->inv_rms1.data(), stream));
    RETURN_IF_ERROR(LinearWithLora(layer, kQProj, a->h1.data(), N, use_adapter, a->q.data()));
    RETURN_IF_ERROR(LinearWithLora(layer, kKProj, a->h1.data(), N, use_adapter, a->k.data()));
    RETURN_IF_ERROR(LinearWithLora(layer, kVProj, a->h1.data(), N, use_adapter, a->v.data()));
    CUDA_RETURN_IF_ERROR(RotaryForwardCuda(a->q.data(), positions.data(), N, Hq, D, rope_cos.data(),
                                           rope_sin.data(), stream));
    CUDA_RETURN_IF_ERROR(RotaryForwardCuda(a->k.data(), positions.data(), N, Hkv, D,
                                           rope_cos.data(), rope_sin.data(), stream));
    CUDA_RETURN_IF_ERROR(
        AttentionForwardCuda(a->q.data(), a->k.data(), a->v.data(), doc_start.data(), B, T, Hq, Hkv,
                             D, attention_ws.data(), a->att.data(), a->lse.data(), stream));
    // x2 = x_in + o_proj(att)
    RETURN_IF_ERROR(
        LinearWithLora(layer, kOProj, a->att.data(), N, use_adapter, linear_out.data()));
    CUDA_RETURN_IF_ERROR(AddBf16ToF32Cuda(x_in, linear_out.data(), N * H, a->x2.data(), stream));
    CUDA_RETURN_IF_ERROR(RmsNormForwardCuda(a->x2.data(), lw.post_attention_norm.data(), N, H, eps,
                                            a->h2.data(), a->inv_rms2.data(), stream));
    RETURN_IF_ERROR(LinearWithLora(layer, kGateProj, a->h2.data(), N, use_adapter, a->gate.data()));
    RETURN_IF_ERROR(LinearWithLora(layer, kUpProj, a->h2.data(), N, use_adapter, a->up.data()));
    CUDA_RETURN_IF_ERROR(
        SwigluForwardCuda(a->gate.data(), a->up.data(), N * I, a->act.data(), stream));
    // x_out = x2 + down_proj(act)
    RETURN_IF_ERROR(
        LinearWithLora(layer, kDownProj, a->act.data(), N, use_adapter, linear_out.data()));
    CUDA_RETURN_IF_ERROR(AddBf16ToF32Cuda(a->x2.data(), linear_out.data(), N * H, x_out, stream));
    return absl::OkStatus();
  }

  absl::Status LayerBackward(int layer, const float* x_in, const DeviceActivations& a, float* grads,
                             const float* dx_out, float* dx_in) {
    const LlamaConfig& c = weights.config;
    const DeviceLayer& lw = layers[layer];
    const int64_t B = run_B, T = run_T, N = B * T, H = c.hidden_size, I = c.intermediate_size;
    const int64_t Hq = c.num_attention_heads, Hkv = c.num_key_value_heads, D = c.head_dim;
    const int64_t q_dim = Hq * D;

    // MLP: x_out = x2 + down(silu(gate) * up)
    CUDA_RETURN_IF_ERROR(ConvertF32ToBf16Cuda(dx_out, N * H, dy_bf16.data(), stream));
    RETURN_IF_ERROR(LinearWithLoraBackward(layer, kDownProj, a.act.data(), dy_bf16.data(), N, grads,
                                           false, grad_f32.data()));
    CUDA_RETURN_IF_ERROR(
        ConvertF32ToBf16Cuda(grad_f32.data(), N * I, grad_act_bf16.data(), stream));
    CUDA_RETURN_IF_ERROR(SwigluBackwardCuda(a.gate.data(), a.up.data(), grad_act_bf16.data(), N * I,
                                            dgate.data(), dup.data(), stream));
    RETURN_IF_ERROR(LinearWithLoraBackward(layer, kGateProj, a.h2.data(), dgate.data(), N, grads,
                                           false, dh.data()));
    RETURN_IF_ERROR(
        LinearWithLoraBackward(layer, kUpProj, a.h2.data(), dup.data(), N, grads, true, dh.data()));
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dx2.data(), dx_out, N * H * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream));
    CUDA_RETURN_IF_ERROR(RmsNormBackwardCuda(a.x2.data(), lw.post_attention_norm.data(),
                                             a.inv_rms2.data(), dh.data(), N, H, true, dx2.data(),
                                             stream));

    // Attention: x2 = x_in + o(attn(rope(q), rope(k), v))
    CUDA_RETURN_IF_ERROR(ConvertF32ToBf16Cuda(dx2.data(), N * H, dy_bf16.data(), stream));
    RETURN_IF_ERROR(LinearWithLoraBackward(layer, kOProj, a.att.data(), dy_bf16.data(), N, grads,
                                           false, grad_f32.data()));
    CUDA_RETURN_IF_ERROR(
        ConvertF32ToBf16Cuda(grad_f32.data(), N * q_dim, grad_act_bf16.data(), stream));
    CUDA_RETURN_IF_ERROR(AttentionBackwardCuda(a.q.data(), a.k.data(), a.v.data(), doc_start.data(),
                                               a.att.data(), grad_act_bf16.data(), a.lse.data(), B,
                                               T, Hq, Hkv, D, attention_ws.data(), dq.data(),
                                               dk.data(), dv.data(), stream));
    CUDA_RETURN_IF_ERROR(RotaryBackwardCuda(dq.data(), positions.data(), N, Hq, D, rope_cos.data(),
                                            rope_sin.data(), stream));
    CUDA_RETURN_IF_ERROR(RotaryBackwardCuda(dk.data(), positions.data(), N, Hkv, D, rope_cos.data(),
                                            rope_sin.data(), stream));
    RETURN_IF_ERROR(
        LinearWithLoraBackward(layer, kQProj, a.h1.data(), dq.data(), N, grads, false, dh.data()));
    RETURN_IF_ERROR(
        LinearWithLoraBackward(layer, kKProj, a.h1.data(), dk.data(), N, grads, true, dh.data()));
    RETURN_IF_ERROR(
        LinearWithLoraBackward(layer, kVProj, a.h1.data(), dv.data(), N, grads, true, dh.data()));
    // dx_in = dx2 + rmsnorm1'(dh)
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dx_in, dx2.data(), N * H * sizeof(float),
                                         cudaMemcpyDeviceToDevice, stream));
    CUDA_RETURN_IF_ERROR(RmsNormBackwardCuda(x_in, lw.input_norm.data(), a.inv_rms1.data(),
                                             dh.data(), N, H, true, dx_in, stream));
    return absl::OkStatus();
  }

  // Sizes every scratch buffer for a micro-batch of B x T (grown, never shrunk).
  absl::Status EnsureScratch(int64_t B, int64_t T, int64_t chunk_rows) {
    const LlamaConfig& c = weights.config;
    const int64_t N = B * T, H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size;
    const int64_t q_dim = c.num_attention_heads * c.head_dim;
    const int64_t kv_dim = c.num_key_value_heads * c.head_dim;
    int64_t max_in = 0, max_weight = 0;
    for (const DeviceLayer& l : layers) {
      for (const DeviceLinear& d : l.linears) {
        max_in = std::max(max_in, d.in);
        max_weight = std::max(max_weight, d.in * d.out);
      }
    }
    const int64_t r = lora.rank();
    const int64_t wide = std::max(I, q_dim);
    RETURN_IF_ERROR(weight_ws.EnsureSize(max_weight, "dequantized weight workspace"));
    RETURN_IF_ERROR(dropout_ws.EnsureSize(lora.options().dropout > 0 ? N * max_in : 0, "dropout"));
    RETURN_IF_ERROR(lora_u.EnsureSize(N * r, "LoRA scratch"));
    RETURN_IF_ERROR(lora_du.EnsureSize(N * r, "LoRA scratch"));
    RETURN_IF_ERROR(lora_dx.EnsureSize(lora.options().dropout > 0 ? N * max_in : 0, "dropout"));
    RETURN_IF_ERROR(dy_bf16.EnsureSize(N * H, "gradient scratch"));
    RETURN_IF_ERROR(grad_f32.EnsureSize(N * wide, "gradient scratch"));
    RETURN_IF_ERROR(grad_act_bf16.EnsureSize(N * wide, "gradient scratch"));
    RETURN_IF_ERROR(dgate.EnsureSize(N * I, "gradient scratch"));
    RETURN_IF_ERROR(dup.EnsureSize(N * I, "gradient scratch"));
    RETURN_IF_ERROR(dq.EnsureSize(N * q_dim, "gradient scratch"));
    RETURN_IF_ERROR(dk.EnsureSize(N * kv_dim, "gradient scratch"));
    RETURN_IF_ERROR(dv.EnsureSize(N * kv_dim, "gradient scratch"));
    RETURN_IF_ERROR(dh.EnsureSize(N * H, "gradient scratch"));
    RETURN_IF_ERROR(dx2.EnsureSize(N * H, "gradient scratch"));
    RETURN_IF_ERROR(linear_out.EnsureSize(N * H, "activations"));
    RETURN_IF_ERROR(hidden.EnsureSize(N * H, "activations"));
    for (DeviceBuffer<float>* b : {&x, &next, &dx, &dprev, &dhidden}) {
      RETURN_IF_ERROR(b->EnsureSize(N * H, "residual stream"));
    }
    RETURN_IF_ERROR(inv_final.EnsureSize(N, "activations"));
    RETURN_IF_ERROR(row_loss.EnsureSize(N, "loss"));
    RETURN_IF_ERROR(attention_ws.EnsureSize(
        AttentionWorkspaceBytes(B, T, c.num_attention_heads, c.num_key_value_heads, c.head_dim),
        "attention workspace"));
    RETURN_IF_ERROR(loss_ws.EnsureSize(CrossEntropyWorkspaceBytes(std::min(chunk_rows, N), V),
                                       "loss workspace"));
    return absl::OkStatus();
  }

  absl::Status UploadTokens(const MicroBatch& batch, const TokenLayout& tokens, bool use_adapter,
                            const RunOptions& options) {
    const int64_t B = batch.batch, T = batch.seq_len, N = B * T;
    RETURN_IF_ERROR(ids.EnsureSize(N, "token ids"));
    RETURN_IF_ERROR(positions.EnsureSize(N, "token positions"));
    RETURN_IF_ERROR(targets.EnsureSize(N, "token targets"));
    RETURN_IF_ERROR(doc_start.EnsureSize(N, "document starts"));
    RETURN_IF_ERROR(ids.CopyFromHostAsync(batch.ids, N, stream));
    RETURN_IF_ERROR(positions.CopyFromHostAsync(tokens.positions.data(), N, stream));
    RETURN_IF_ERROR(targets.CopyFromHostAsync(tokens.targets.data(), N, stream));
    RETURN_IF_ERROR(doc_start.CopyFromHostAsync(tokens.doc_start.data(), N, stream));
    run_dropout =
        (options.training && use_adapter) ? static_cast<float>(lora.options().dropout) : 0.0f;
    if (run_dropout <= 0) return absl::OkStatus();
    // The CPU model's keys: one per (layer, module, sequence), from the sequence's seed.
    std::vector<uint64_t> seeds = options.sequence_seeds;
    if (static_cast<int64_t>(seeds.size()) != B) {
      seeds.resize(B);
      for (int64_t b = 0; b < B; ++b) seeds[b] = options.dropout_seed + b;
    }
    const int64_t L = static_cast<int64_t>(layers.size());
    std::vector<uint64_t> keys(L * kNumLinearModules * B);
    for (int64_t l = 0; l < L; ++l) {
      for (int m = 0; m < kNumLinearModules; ++m) {
        for (int64_t b = 0; b < B; ++b) {
          keys[(l * kNumLinearModules + m) * B + b] =
              LoraDropoutKey(seeds[b], static_cast<int>(l), m);
        }
      }
    }
    RETURN_IF_ERROR(dropout_keys.EnsureSize(static_cast<int64_t>(keys.size()), "dropout keys"));
    return dropout_keys.CopyFromHostAsync(keys.data(), static_cast<int64_t>(keys.size()), stream);
  }

  absl::StatusOr<RunResult> Run(const MicroBatch& batch, bool use_adapter, float* grads,
                                const RunOptions& options) {
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
    const LlamaConfig& c = weights.config;
    const int64_t B = batch.batch, T = batch.seq_len, N = B * T, H = c.hidden_size;
    const int64_t V = c.vocab_size, L = c.num_hidden_layers;
    const bool backward = options.training && grads != nullptr;
    const TokenLayout tokens = MakeTokenLayout(batch);
    RETURN_IF_ERROR(EnsureRope(tokens.max_position));
    run_B = B;
    run_T = T;
    RETURN_IF_ERROR(UploadTokens(batch, tokens, use_adapter, options));
    RETURN_IF_ERROR(EnsureScratch(B, T, options.loss_chunk_rows));

    const bool keep_all = backward && !options.activation_checkpointing;
    if (static_cast<int64_t>(acts.size()) < (keep_all ? L : 1)) acts.resize(keep_all ? L : 1);
    // Backward reads every layer's input (checkpointing also recomputes the layer from it).
    if (backward) {
      layer_inputs.resize(L);
      for (DeviceBuffer<float>& b : layer_inputs) {
        RETURN_IF_ERROR(b.EnsureSize(N * H, "layer inputs kept for backward"));
      }
    }

    CUDA_RETURN_IF_ERROR(EmbeddingForwardCuda(ids.data(), embed.data(), N, H, V, x.data(), stream));
    for (int64_t l = 0; l < L; ++l) {
      if (backward) {
        CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(layer_inputs[l].data(), x.data(),
                                             N * H * sizeof(float), cudaMemcpyDeviceToDevice,
                                             stream));
      }
      RETURN_IF_ERROR(LayerForward(static_cast<int>(l), use_adapter, x.data(),
                                   &acts[keep_all ? l : 0], next.data()));
      std::swap(x, next);
    }
    CUDA_RETURN_IF_ERROR(RmsNormForwardCuda(x.data(), final_norm.data(), N, H,
                                            static_cast<float>(c.rms_norm_eps), hidden.data(),
                                            inv_final.data(), stream));
    CUDA_RETURN_IF_ERROR(CrossEntropyForwardBackwardCuda(
        cublas, hidden.data(), LmHead(), targets.data(), N, H, V,
        std::min<int64_t>(options.loss_chunk_rows, N), options.grad_scale, loss_ws.data(),
        row_loss.data(), backward ? dhidden.data() : nullptr));
    RunResult result;
    result.num_targets = tokens.num_targets;
    std::vector<float> losses(N);
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(losses.data(), row_loss.data(), N * sizeof(float),
                                         cudaMemcpyDeviceToHost, stream));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    for (float v : losses) result.loss_sum += v;
    if (backward) {
      CUDA_RETURN_IF_ERROR(RmsNormBackwardCuda(x.data(), final_norm.data(), inv_final.data(),
                                               dhidden.data(), N, H, false, dx.data(), stream));
      for (int64_t l = L - 1; l >= 0; --l) {
        DeviceActivations* a = &acts[keep_all ? l : 0];
        if (!keep_all) {
          // Recompute this layer's forward from its saved input (the dropout masks are keyed).
          RETURN_IF_ERROR(LayerForward(static_cast<int>(l), use_adapter, layer_inputs[l].data(), a,
                                       next.data()));
        }
        RETURN_IF_ERROR(LayerBackward(static_cast<int>(l), layer_inputs[l].data(), *a, grads,
                                      dx.data(), dprev.data()));
        if (options.on_layer_gradients) options.on_layer_gradients(static_cast<int>(l));
        std::swap(dx, dprev);
      }
    }
    // A fault inside a kernel surfaces here, attributed to this micro-batch.
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    size_t free_bytes = 0, total_bytes = 0;
    if (cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
      peak_bytes = std::max(peak_bytes, static_cast<int64_t>(total_bytes - free_bytes));
    }
    return result;
  }
};

CudaLlamaModel::CudaLlamaModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CudaLlamaModel::~CudaLlamaModel() {
  if (!impl_) return;
  cudaSetDevice(impl_->device);
  if (impl_->stream) cudaStreamSynchronize(impl_->stream);
  DestroyCublasContext(&impl_->cublas);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

absl::StatusOr<std::unique_ptr<CudaLlamaModel>> CudaLlamaModel::Create(const LlamaWeights& weights,
                                                                       const LoraLayout& lora,
                                                                       int device) {
  const LlamaConfig& c = weights.config;
  if (!AttentionCudaSupportsHeadDim(c.head_dim)) {
    return absl::UnimplementedError(absl::StrFormat(
        "device: cuda: head_dim %d is not supported by the CUDA attention kernels (32, 64, 96, "
        "128); use device: cpu",
        c.head_dim));
  }
  auto impl = std::make_unique<Impl>(weights, lora);
  impl->device = device;
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking));
  CUBLAS_RETURN_IF_ERROR(CreateCublasContext(impl->stream, &impl->cublas));
  std::unique_ptr<CudaLlamaModel> model(new CudaLlamaModel(std::move(impl)));
  Impl& m = *model->impl_;

  const int64_t H = c.hidden_size, V = c.vocab_size;
  {
    const std::vector<bf16> embed = ToBf16(weights.embed_tokens.data(), V * H);
    ASSIGN_OR_RETURN(m.embed, Upload(embed.data(), V * H, "embeddings"));
  }
  if (!weights.lm_head.empty()) {
    const std::vector<bf16> head = ToBf16(weights.lm_head.data(), V * H);
    ASSIGN_OR_RETURN(m.lm_head, Upload(head.data(), V * H, "lm_head"));
  }
  ASSIGN_OR_RETURN(m.final_norm, Upload(weights.final_norm.data(), H, "final norm"));
  m.base_bytes = m.embed.bytes() + m.lm_head.bytes() + m.final_norm.bytes();
  m.layers.resize(weights.layers.size());
  for (size_t l = 0; l < weights.layers.size(); ++l) {
    const LlamaLayerWeights& src = weights.layers[l];
    DeviceLayer& dst = m.layers[l];
    ASSIGN_OR_RETURN(dst.input_norm, Upload(src.input_norm.data(), H, "norm"));
    ASSIGN_OR_RETURN(dst.post_attention_norm, Upload(src.post_attention_norm.data(), H, "norm"));
    m.base_bytes += 2 * H * static_cast<int64_t>(sizeof(float));
    for (int module = 0; module < kNumLinearModules; ++module) {
      ASSIGN_OR_RETURN(dst.linears[module], UploadLinear(src.linears[module]));
      m.base_bytes += dst.linears[module].Bytes();
    }
  }
  ASSIGN_OR_RETURN(m.adapter, DeviceBuffer<bf16>::Allocate(lora.num_parameters(), "adapter"));
  RETURN_IF_ERROR(m.EnsureRope(c.max_position_embeddings > 0
                                   ? std::min<int64_t>(c.max_position_embeddings, 8192) - 1
                                   : 255));
  // The uploads above went through the legacy stream; the model works on its own non-blocking one.
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return model;
}

absl::Status CudaLlamaModel::SyncAdapter(const float* params) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(impl_->device));
  CUDA_RETURN_IF_ERROR(ConvertF32ToBf16Cuda(params, impl_->lora.num_parameters(),
                                            impl_->adapter.data(), impl_->stream));
  return absl::OkStatus();
}

absl::StatusOr<RunResult> CudaLlamaModel::Run(const MicroBatch& batch, bool use_adapter,
                                              float* grads, const RunOptions& options) {
  return impl_->Run(batch, use_adapter, grads, options);
}

void* CudaLlamaModel::stream() const { return impl_->stream; }
int CudaLlamaModel::device() const { return impl_->device; }
int64_t CudaLlamaModel::PeakDeviceBytes() const { return impl_->peak_bytes; }
int64_t CudaLlamaModel::BaseDeviceBytes() const { return impl_->base_bytes; }

}  // namespace lorasweep
