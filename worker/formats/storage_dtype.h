// The dtype in which unquantized tensors are written to a HF folder (`--dtype auto|f32|bf16|f16`),
// shared by `lorasweep quantize` and `lorasweep merge`.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/tensor.h"

namespace lorasweep {

bool IsPlainFloat(DType d);
// "bfloat16" / "float16" / "float32", as config.json's torch_dtype spells it.
const char* TorchDTypeName(DType d);
// auto keeps a plain float dtype as stored (f32 for anything else).
absl::StatusOr<DType> ResolveStorageDType(const std::string& option, DType stored);
// `values` converted (round to nearest even) into a tensor of `dtype`.
Tensor FloatsAs(DType dtype, const std::vector<int64_t>& shape, const std::vector<float>& values);

}  // namespace lorasweep
