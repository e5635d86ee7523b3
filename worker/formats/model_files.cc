#include "worker/formats/model_files.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "worker/formats/gguf_model.h"
#include "worker/formats/safetensors.h"

namespace lorasweep {

const char* ModelFileKindName(ModelFileKind kind) {
  switch (kind) {
    case ModelFileKind::kHfFolder: return "hf-folder";
    case ModelFileKind::kGguf: return "gguf";
    case ModelFileKind::kSafetensorsFile: return "safetensors";
  }
  return "?";
}

absl::StatusOr<ModelFiles> OpenModelFiles(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file or folder"));
  ModelFiles model;
  model.path = path;
  if (fs::is_directory(path, ec)) {
    model.kind = ModelFileKind::kHfFolder;
    const std::string config_path = path + "/config.json";
    if (!fs::exists(config_path, ec)) {
      // A folder holding exactly one .gguf file is taken as that file (what fetch-model writes).
      std::vector<std::string> ggufs;
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        if (entry.path().extension() == ".gguf") ggufs.push_back(entry.path().string());
      }
      if (ggufs.size() == 1) return OpenModelFiles(ggufs[0]);
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": not a model folder (expected config.json with safetensors weights, or one .gguf file)"));
    }
    ASSIGN_OR_RETURN(model.config_json, ReadFileToString(config_path));
    ASSIGN_OR_RETURN(LlamaConfig config, ParseHfConfig(model.config_json, config_path));
    model.config = config;
    ASSIGN_OR_RETURN(model.tensors, SafetensorsCheckpoint::Open(path));
    return model;
  }
  char magic[4] = {};
  {
    std::ifstream in(path, std::ios::binary);
    in.read(magic, 4);
  }
  if (std::string(magic, 4) == "GGUF") {
    model.kind = ModelFileKind::kGguf;
    ASSIGN_OR_RETURN(std::unique_ptr<GgufModel> gguf, GgufModel::Open(path));
    ASSIGN_OR_RETURN(LlamaConfig config, ConfigFromGguf(gguf->gguf()));
    model.config = config;
    model.tensors = std::move(gguf);
    return model;
  }
  if (fs::path(path).extension() == ".safetensors") {
    model.kind = ModelFileKind::kSafetensorsFile;
    ASSIGN_OR_RETURN(model.tensors, SafetensorsFile::Open(path));
    return model;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, ": unrecognised model file (expected a HF folder, a .gguf file or a .safetensors file)"));
}

}  // namespace lorasweep
