#include "worker/formats/storage_dtype.h"

#include <span>

#include "absl/strings/str_cat.h"

namespace lorasweep {

bool IsPlainFloat(DType d) { return d == DType::kF32 || d == DType::kBF16 || d == DType::kF16; }

const char* TorchDTypeName(DType d) {
  switch (d) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    default: return "float32";
  }
}

absl::StatusOr<DType> ResolveStorageDType(const std::string& option, DType stored) {
  if (option == "auto") return IsPlainFloat(stored) ? stored : DType::kF32;
  if (option == "f32") return DType::kF32;
  if (option == "bf16") return DType::kBF16;
  if (option == "f16") return DType::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("--dtype: expected auto, f32, bf16 or f16, got '", option, "'"));
}

Tensor FloatsAs(DType dtype, const std::vector<int64_t>& shape, const std::vector<float>& values) {
  if (dtype == DType::kF32) return Tensor::FromFloats(shape, values);
  Tensor t = Tensor::Allocate(dtype, shape);
  std::span<uint16_t> out = t.mutable_data<uint16_t>();
  for (size_t i = 0; i < values.size(); ++i) {
    out[i] = dtype == DType::kBF16 ? FloatToBf16(values[i]) : FloatToF16(values[i]);
  }
  return t;
}

}  // namespace lorasweep
