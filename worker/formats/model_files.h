// Opens whatever a user points lorasweep at as "a model": a Hugging Face folder (config.json +
// safetensors, sharded or not), a .gguf file, or a bare .safetensors file (tensors only, no config).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/formats/hf_config.h"
#include "worker/formats/tensor_source.h"

namespace lorasweep {

enum class ModelFileKind { kHfFolder, kGguf, kSafetensorsFile };
const char* ModelFileKindName(ModelFileKind kind);

struct ModelFiles {
  std::string path;
  ModelFileKind kind = ModelFileKind::kHfFolder;
  std::optional<LlamaConfig> config;  // absent for a bare .safetensors file
  std::unique_ptr<TensorSource> tensors;
  // The folder's config.json text (HF folders only), kept so that writers can preserve fields that
  // lorasweep does not model.
  std::string config_json;
};

// Detects the kind from the path (a directory, or a file's magic bytes) and opens it. Errors name the
// path and what was expected.
absl::StatusOr<ModelFiles> OpenModelFiles(const std::string& path);

}  // namespace lorasweep
