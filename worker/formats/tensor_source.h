// A read-only collection of named tensors presented with Hugging Face names and layouts, whatever file
// format holds them: a safetensors file, a sharded HF checkpoint, or a GGUF file (whose llama.cpp names
// and permuted q/k rows are translated by gguf_model.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/tensor.h"

namespace lorasweep {

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // HF layout ([out, in] for linear weights)
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // Every tensor, in a stable order (sorted by name).
  virtual std::vector<TensorInfo> List() const = 0;
  virtual bool Contains(const std::string& name) const = 0;
  // The stored tensor as is (a view into the mapped file; may be block-quantized for GGUF).
  virtual absl::StatusOr<Tensor> Get(const std::string& name) const = 0;
  // The tensor as float32 values in HF layout (dequantized / converted / un-permuted as needed).
  virtual absl::StatusOr<std::vector<float>> GetFloats(const std::string& name) const = 0;
  // A human-readable description of where the tensors come from (a path), for error messages.
  virtual std::string Describe() const = 0;
};

}  // namespace lorasweep
