// The QLoRA training model on the GPU: the mirror of worker/model/llama_model.h, op for op, on the
// kernels in kernels/*_cuda.h. The base stays 4-bit on the device (bitsandbytes layout) and each
// linear is dequantized into one reused bf16 workspace right before its product: no bf16 copy of
// the whole base is ever held. Embeddings / LM head in bf16, norms in fp32.
//
// Precision (docs/cuda.md): activations and matrix operands bf16, accumulation fp32; the residual
// stream, norm statistics, softmax/loss, adapter master weights, gradients and AdamW states fp32.
// The adapter's matrices are used in bf16 (a copy refreshed by SyncAdapter after each update), the
// way a bf16-autocast PEFT model computes them.
//
// Dimension legend: B sequences, T tokens each, N = B*T, H hidden, I intermediate, V vocab,
// Hq / Hkv query / key-value heads, D head_dim, r LoRA rank.
//
// Thread-safety: one model per thread of control; all work is queued on stream().
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "worker/model/llama_model.h"

namespace lorasweep {

class CudaLlamaModel {
 public:
  // Uploads the frozen base to `device` (the current device is set to it). Fails with
  // kResourceExhausted, naming the bytes requested and free, when it does not fit; kUnimplemented
  // when the model's head_dim is not one the attention kernels support.
  static absl::StatusOr<std::unique_ptr<CudaLlamaModel>> Create(const LlamaWeights& weights,
                                                                const LoraLayout& lora, int device);
  ~CudaLlamaModel();
  CudaLlamaModel(const CudaLlamaModel&) = delete;
  CudaLlamaModel& operator=(const CudaLlamaModel&) = delete;

  // Refreshes the bf16 copy of the adapter the products use from the fp32 master `params`
  // (device, LoraLayout order). Call after every change of params, before Run.
  absl::Status SyncAdapter(const float* params);

  // One micro-batch, as LlamaModel::Run: forward, and when options.training and `grads` (device,
  // fp32, LoraLayout order) is non-null, backward accumulating into grads. The adapter used is the
  // one last given to SyncAdapter (none when `use_adapter` is false: the base model).
  // options.on_layer_gradients is called from this thread once layer l's gradient slice is
  // queued on stream() (the caller orders its collectives after it).
  absl::StatusOr<RunResult> Run(const MicroBatch& batch, bool use_adapter, float* grads,
                                const RunOptions& options);

  // The stream all the model's work runs on (a cudaStream_t).
  void* stream() const;
  int device() const;
  // Bytes of device memory in use on this device, the most seen after any Run (cudaMemGetInfo:
  // includes the CUDA context and cuBLAS workspaces, as nvidia-smi counts them).
  int64_t PeakDeviceBytes() const;
  // Bytes of the frozen base as held on the device (4-bit codes + scales, bf16 embeddings, norms).
  int64_t BaseDeviceBytes() const;

 private:
  struct Impl;
  explicit CudaLlamaModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lorasweep
