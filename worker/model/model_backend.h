// Where a trial's numbers live and its math runs: the model and the adapter's training state
// (fp32 parameters, AdamW moments, gradient buffer). The trainer drives one step through this
// interface the same way on every device:
//   ZeroGrads; Run each micro-batch (gradients accumulate; the layer callback starts each layer's
//   all-reduce on grad_comm()); wait; GradNorm; AdamW (clipping folded into grad_scale).
// The CPU backend (MakeCpuModelBackend) is LlamaModel over host vectors; the CUDA backend
// (worker/cuda/cuda_model_backend.h) keeps everything on the GPU and all-reduces device buffers
// over NCCL.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "comm/communicator.h"
#include "kernels/adamw.h"
#include "worker/model/llama_model.h"

namespace lorasweep {

class ModelBackend {
 public:
  virtual ~ModelBackend() = default;

  // "cpu (OpenBLAS <core>)" or "cuda:<device>".
  virtual std::string Describe() const = 0;

  // Replaces the adapter state (LoraLayout order; the moments may be empty = zeros).
  virtual absl::Status SetState(const std::vector<float>& params, const std::vector<float>& exp_avg,
                                const std::vector<float>& exp_avg_sq) = 0;
  // Copies the adapter state out (for checkpoints and the adapter files).
  virtual absl::Status GetState(std::vector<float>* params, std::vector<float>* exp_avg,
                                std::vector<float>* exp_avg_sq) = 0;

  virtual absl::Status ZeroGrads() = 0;
  // One micro-batch (LlamaModel::Run semantics). `with_adapter` false runs the base model; with
  // options.training, gradients accumulate into the gradient buffer.
  virtual absl::StatusOr<RunResult> Run(const MicroBatch& batch, bool with_adapter,
                                        const RunOptions& options) = 0;
  // The gradient buffer (host or device memory, as grad_comm() expects) and the communicator that
  // all-reduces it: the trial's own for host buffers, an NCCL one for device buffers.
  virtual float* grads() = 0;
  virtual Communicator* grad_comm() = 0;
  // sqrt(sum g^2) over the whole gradient buffer.
  virtual absl::StatusOr<double> GradNorm() = 0;
  // One AdamW step over the adapter with each gradient multiplied by grad_scale first.
  virtual absl::Status AdamW(const AdamWParams& params, float grad_scale) = 0;

  // Metrics the device adds to each step's line (e.g. peak_gpu_bytes); empty on the CPU.
  virtual std::vector<std::pair<std::string, int64_t>> MemoryMetrics() const = 0;
};

// The CPU reference backend. `comm` (not owned, outlives the backend) all-reduces the gradients.
std::unique_ptr<ModelBackend> MakeCpuModelBackend(const LlamaWeights& weights,
                                                  const LoraLayout& layout, Communicator* comm);

}  // namespace lorasweep
