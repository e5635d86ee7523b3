// A named, typed, shaped block of bytes: what the file formats read and write.
//
// A Tensor either owns its bytes or views bytes kept alive by `keepalive` (a memory-mapped file):
// readers hand out views, so opening a model never copies its weights. Tensors are cheap to copy
// (the bytes are shared) and immutable through this interface except via MutableBytes() on owned data.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace lorasweep {

// Number of elements of a shape (1 for a scalar shape {}).
int64_t NumElements(const std::vector<int64_t>& shape);
// "[576, 1536]"
std::string ShapeToString(const std::vector<int64_t>& shape);

class Tensor {
 public:
  Tensor() = default;
  // Owned, zero-filled storage of `byte_size` bytes (for block-quantized dtypes the caller gives the size).
  static Tensor Allocate(DType dtype, std::vector<int64_t> shape, size_t byte_size);
  // Owned storage of a plain dtype, size from the shape.
  static Tensor Allocate(DType dtype, std::vector<int64_t> shape);
  // A view of `bytes`, valid while `keepalive` lives.
  static Tensor View(DType dtype, std::vector<int64_t> shape, std::span<const uint8_t> bytes,
                     std::shared_ptr<const void> keepalive);
  // Owned f32 tensor from values.
  static Tensor FromFloats(std::vector<int64_t> shape, std::span<const float> values);

  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t num_elements() const { return NumElements(shape_); }
  std::span<const uint8_t> bytes() const { return bytes_; }
  // Writable bytes; only valid on tensors made by Allocate/FromFloats.
  std::span<uint8_t> MutableBytes();

  // Typed views; the dtype size must match sizeof(T).
  template <typename T>
  std::span<const T> data() const {
    return {reinterpret_cast<const T*>(bytes_.data()), bytes_.size() / sizeof(T)};
  }
  template <typename T>
  std::span<T> mutable_data() {
    std::span<uint8_t> b = MutableBytes();
    return {reinterpret_cast<T*>(b.data()), b.size() / sizeof(T)};
  }

  // Converts F32/F16/BF16/F64 (and integer types) to f32 values. Block-quantized types are handled
  // by their format (gguf.h), so this fails on them.
  absl::StatusOr<std::vector<float>> ToFloats() const;

 private:
  DType dtype_ = DType::kF32;
  std::vector<int64_t> shape_;
  std::span<const uint8_t> bytes_;
  std::shared_ptr<const void> keepalive_;
  std::shared_ptr<std::vector<uint8_t>> owned_;
};

}  // namespace lorasweep
