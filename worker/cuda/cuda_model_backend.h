// The CUDA backend of ModelBackend (worker/model/model_backend.h): CudaLlamaModel plus the
// adapter's training state on the GPU (fp32 params, AdamW moments, gradients), fused AdamW and the
// gradient norm on the device, and, with more than one rank, gradients all-reduced over NCCL on the
// communicator's own stream while backward goes on. Built with the CUDA backend only.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "worker/model/model_backend.h"

namespace lorasweep {

// Uses the GPU of this rank's local rank (among the visible ones). `comm` (not owned) is the
// trial's communicator: with more than one rank an NCCL communicator is built over a copy of it.
absl::StatusOr<std::unique_ptr<ModelBackend>> MakeCudaModelBackend(const LlamaWeights& weights,
                                                                   const LoraLayout& layout,
                                                                   Communicator* comm);

}  // namespace lorasweep
