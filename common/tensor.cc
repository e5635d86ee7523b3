#include "common/tensor.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lorasweep {

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

Tensor Tensor::Allocate(DType dtype, std::vector<int64_t> shape, size_t byte_size) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.owned_ = std::make_shared<std::vector<uint8_t>>(byte_size, 0);
  t.bytes_ = {t.owned_->data(), t.owned_->size()};
  return t;
}

Tensor Tensor::Allocate(DType dtype, std::vector<int64_t> shape) {
  const size_t size = static_cast<size_t>(NumElements(shape)) * DTypeSize(dtype);
  return Allocate(dtype, std::move(shape), size);
}

Tensor Tensor::View(DType dtype, std::vector<int64_t> shape, std::span<const uint8_t> bytes,
                    std::shared_ptr<const void> keepalive) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.bytes_ = bytes;
  t.keepalive_ = std::move(keepalive);
  return t;
}

Tensor Tensor::FromFloats(std::vector<int64_t> shape, std::span<const float> values) {
  Tensor t = Allocate(DType::kF32, std::move(shape));
  if (!values.empty()) std::memcpy(t.owned_->data(), values.data(), values.size_bytes());
  return t;
}

std::span<uint8_t> Tensor::MutableBytes() {
  if (!owned_) return {};
  return {owned_->data(), owned_->size()};
}

absl::StatusOr<std::vector<float>> Tensor::ToFloats() const {
  const size_t n = static_cast<size_t>(num_elements());
  if (DTypeSize(dtype_) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot convert block-quantized ", DTypeName(dtype_), " with ToFloats"));
  }
  if (bytes_.size() != n * DTypeSize(dtype_)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor of shape ", ShapeToString(shape_),
                                                   " has ", bytes_.size(), " bytes"));
  }
  std::vector<float> out(n);
  // memcpy per element: views into mapped files need not be aligned.
  auto load = [&]<typename T>(T* /*tag*/, auto convert) {
    for (size_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, bytes_.data() + i * sizeof(T), sizeof(T));
      out[i] = convert(v);
    }
  };
  auto cast = [](auto v) { return static_cast<float>(v); };
  switch (dtype_) {
    case DType::kF32: load(static_cast<float*>(nullptr), cast); break;
    case DType::kF64: load(static_cast<double*>(nullptr), cast); break;
    case DType::kF16: load(static_cast<uint16_t*>(nullptr), F16ToFloat); break;
    case DType::kBF16: load(static_cast<uint16_t*>(nullptr), Bf16ToFloat); break;
    case DType::kI64: load(static_cast<int64_t*>(nullptr), cast); break;
    case DType::kI32: load(static_cast<int32_t*>(nullptr), cast); break;
    case DType::kI16: load(static_cast<int16_t*>(nullptr), cast); break;
    case DType::kI8: load(static_cast<int8_t*>(nullptr), cast); break;
    case DType::kU8:
    case DType::kBool: load(static_cast<uint8_t*>(nullptr), cast); break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("no float conversion for ", DTypeName(dtype_)));
  }
  return out;
}

}  // namespace lorasweep
