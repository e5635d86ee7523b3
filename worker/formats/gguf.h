// GGUF files (llama.cpp), versions 2 and 3: header (magic "GGUF", version, tensor count, metadata
// count), typed metadata key/values, tensor infos (name, dims innermost-first, ggml type, offset),
// then the tensor data section aligned to `general.alignment` (default 32).
//
// The reader memory-maps the file and validates every count, string length, type tag, dimension and
// byte range before use; errors name the file and what was wrong. Tensor data are views into the
// map.
//
// Dequantization formulas of the block formats (32 weights per block):
//   Q4_0: f16 d, 16 bytes; w[j] = (lo_nibble(b[j]) - 8) * d, w[j+16] = (hi_nibble(b[j]) - 8) * d
//   Q4_1: f16 d, f16 m, 16 bytes; w[j] = lo_nibble(b[j]) * d + m, w[j+16] = hi_nibble(b[j]) * d + m
//   Q8_0: f16 d, 32 int8; w[j] = q[j] * d
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "common/file_util.h"
#include "common/tensor.h"

namespace lorasweep {

// ggml tensor type ids (ggml.h `enum ggml_type`) that lorasweep reads. These cover the published
// SmolLM2-135M-Instruct Q4_1 file (F32, Q4_1, Q8_0); other ids (K-quants, I-quants, ...) are
// rejected with their ggml name when a file is opened.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ8_0 = 8,
  kBF16 = 30,
};

// One metadata value. Arrays hold values of a single type.
struct GgufValue {
  using Array = std::vector<GgufValue>;
  std::variant<uint64_t, int64_t, double, bool, std::string, std::shared_ptr<Array>> value;
  uint32_t type = 0;          // gguf_type id of the stored value (for inspect)
  uint32_t element_type = 0;  // for arrays: gguf_type id of the elements (even when empty)

  // Conversions with range checks; an error names the expected type.
  absl::StatusOr<int64_t> AsInt() const;
  absl::StatusOr<double> AsDouble() const;
  absl::StatusOr<std::string> AsString() const;
  absl::StatusOr<bool> AsBool() const;
  absl::StatusOr<std::vector<std::string>> AsStringArray() const;
  absl::StatusOr<std::vector<int64_t>> AsIntArray() const;
  absl::StatusOr<std::vector<double>> AsDoubleArray() const;
  // Short rendering for inspect ("[49152 strings]" for long arrays).
  std::string ToShortString() const;
};

struct GgufTensorInfo {
  std::string name;           // llama.cpp name, e.g. "blk.0.attn_q.weight"
  std::vector<int64_t> dims;  // GGUF order: innermost (contiguous) first
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // relative to the data section
  uint64_t byte_size = 0;
  // Row-major shape as PyTorch/HF would see it (dims reversed).
  std::vector<int64_t> Shape() const;
};

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  // Absolute file offset of the tensor data section (tensor offsets are relative to it).
  uint64_t data_offset() const { return data_offset_; }
  const std::string& path() const { return file_->path(); }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  // Metadata lookup; NotFound names the key and the file.
  absl::StatusOr<const GgufValue*> Find(const std::string& key) const;
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  absl::StatusOr<const GgufTensorInfo*> FindTensor(const std::string& name) const;
  // Raw bytes of a tensor (view into the map).
  absl::StatusOr<Tensor> GetRaw(const std::string& name) const;
  // Dequantized float32 values in the stored (GGUF) row order.
  absl::StatusOr<std::vector<float>> GetFloats(const std::string& name) const;

 private:
  GgufFile() = default;
  absl::Status Parse();
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Dequantizes `count` elements of ggml `type` from `data` into `out` (block formats: count % 32 ==
// 0; `data_size` must hold at least GgmlByteSize(type, count) bytes). Results are bit-identical to
// gguf-py's gguf.quants.dequantize.
absl::Status DequantizeGgml(GgmlType type, const uint8_t* data, size_t data_size, int64_t count,
                            float* out);
// Bytes taken by `count` elements of `type`; error when the count does not fill whole blocks.
absl::StatusOr<uint64_t> GgmlByteSize(GgmlType type, int64_t count);
// ggml's name of a type id ("Q4_1", "Q6_K", ...), also for ids lorasweep cannot read; "unknown"
// for ids ggml does not define.
const char* GgmlTypeName(GgmlType type);
// The lorasweep dtype of a readable ggml type (kQ4_0 / kQ4_1 / kQ8_0 for the block formats); kU8
// (raw bytes) for a type lorasweep cannot read.
DType GgmlTypeToDType(GgmlType type);
// Name of a gguf metadata value type id ("uint32", "string", "array", ...).
const char* GgufValueTypeName(uint32_t type);

}  // namespace lorasweep
