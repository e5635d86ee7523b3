// safetensors files (https://huggingface.co/docs/safetensors): 8-byte little-endian header length N,
// N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then
// the data. Offsets are relative to the end of the header.
//
// The reader memory-maps the file and validates everything before handing out a tensor: header length
// against the file size, JSON syntax and types, known dtypes, shape x dtype size == byte range, byte
// ranges inside the data section, no overlapping ranges. Every error names the file and the problem.
//
// The writer lays tensors out like the reference `safetensors` library (sorted by dtype alignment,
// then name; header padded with spaces to a multiple of 8) and writes atomically (temp + rename).
//
// A sharded checkpoint is a folder with `model.safetensors.index.json` ({"metadata": {"total_size": N},
// "weight_map": {tensor: file}}) and its shard files; SafetensorsCheckpoint opens either form.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/file_util.h"
#include "common/tensor.h"
#include "worker/formats/tensor_source.h"

namespace lorasweep {

// One .safetensors file.
class SafetensorsFile : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  std::vector<TensorInfo> List() const override;
  bool Contains(const std::string& name) const override;
  absl::StatusOr<Tensor> Get(const std::string& name) const override;
  absl::StatusOr<std::vector<float>> GetFloats(const std::string& name) const override;
  std::string Describe() const override { return file_->path(); }

  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Entry {
    TensorInfo info;
    uint64_t begin = 0;  // absolute offsets in the file
    uint64_t end = 0;
  };
  SafetensorsFile() = default;
  std::shared_ptr<MappedFile> file_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (names must be unique; plain dtypes only) to `path` atomically.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// A HF checkpoint folder: `model.safetensors`, or shards listed in `model.safetensors.index.json`.
class SafetensorsCheckpoint : public TensorSource {
 public:
  // `path` is a folder (single file or index inside), an index json file, or a .safetensors file.
  static absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> Open(const std::string& path);

  std::vector<TensorInfo> List() const override;
  bool Contains(const std::string& name) const override;
  absl::StatusOr<Tensor> Get(const std::string& name) const override;
  absl::StatusOr<std::vector<float>> GetFloats(const std::string& name) const override;
  std::string Describe() const override { return description_; }

 private:
  SafetensorsCheckpoint() = default;
  std::string description_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, size_t> shard_of_;  // tensor name -> index into shards_
};

// Writes `tensors` into `dir` as `model.safetensors` when their data fits in `max_shard_bytes`, else as
// `model-0000K-of-0000N.safetensors` shards plus `model.safetensors.index.json` (the transformers
// naming). Each file is written atomically.
absl::Status WriteSafetensorsCheckpoint(const std::string& dir, const NamedTensors& tensors,
                                        uint64_t max_shard_bytes = 5ull << 30,
                                        const std::map<std::string, std::string>& metadata = {
                                            {"format", "pt"}});

}  // namespace lorasweep
