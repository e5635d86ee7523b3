#include "worker/train/training_checkpoint.h"

#include <span>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/formats/safetensors.h"

namespace lorasweep {
namespace {

Tensor FlatTensor(const std::vector<float>& values) {
  return Tensor::FromFloats({static_cast<int64_t>(values.size())}, values);
}

absl::StatusOr<std::vector<float>> ReadFlat(const SafetensorsFile& file, const std::string& name,
                                            int64_t expected) {
  ASSIGN_OR_RETURN(std::vector<float> values, file.GetFloats(name));
  if (expected >= 0 && static_cast<int64_t>(values.size()) != expected) {
    return absl::DataLossError(absl::StrCat(file.Describe(), ": tensor '", name, "' has ",
                                            values.size(), " values, expected ", expected));
  }
  return values;
}

}  // namespace

absl::Status SaveTrainingCheckpoint(const std::string& dir, const TrainingState& state,
                                    const PeftAdapter& adapter_view) {
  ASSIGN_OR_RETURN(std::string staged, MakeStagingDirectory(dir));
  RETURN_IF_ERROR(WriteSafetensors(staged + "/optimizer.safetensors",
                                   {{"params", FlatTensor(state.params)},
                                    {"exp_avg", FlatTensor(state.exp_avg)},
                                    {"exp_avg_sq", FlatTensor(state.exp_avg_sq)}}));
  RETURN_IF_ERROR(WritePeftAdapter(adapter_view, staged + "/adapter"));
  nlohmann::json json = {
      {"format", "lorasweep-checkpoint"},
      {"version", 1},
      {"step", state.step},
      {"cursor", {{"epoch", state.cursor.epoch}, {"step", state.cursor.step}}},
      {"tokens_seen", state.tokens_seen},
      {"elapsed_s", state.elapsed_s},
      {"num_parameters", state.params.size()},
      {"config", nlohmann::json::parse(state.config_json)},
  };
  RETURN_IF_ERROR(WriteFileAtomically(staged + "/state.json", json.dump(2) + "\n"));
  return ReplaceDirectory(staged, dir);
}

absl::StatusOr<TrainingState> LoadTrainingCheckpoint(const std::string& dir) {
  ASSIGN_OR_RETURN(bool exists, RecoverReplacedDirectory(dir));
  if (!exists) return absl::NotFoundError(absl::StrCat("no checkpoint at ", dir));
  const std::string state_path = dir + "/state.json";
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(state_path));
  TrainingState state;
  try {
    const nlohmann::json json = nlohmann::json::parse(text);
    if (json.value("format", "") != "lorasweep-checkpoint" || json.value("version", 0) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(state_path, ": not a lorasweep checkpoint (format/version)"));
    }
    state.step = json.at("step").get<int64_t>();
    state.cursor.epoch = json.at("cursor").at("epoch").get<int64_t>();
    state.cursor.step = json.at("cursor").at("step").get<int64_t>();
    state.tokens_seen = json.at("tokens_seen").get<int64_t>();
    state.elapsed_s = json.at("elapsed_s").get<double>();
    state.config_json = json.at("config").dump();
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat(state_path, ": ", e.what()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                   SafetensorsFile::Open(dir + "/optimizer.safetensors"));
  ASSIGN_OR_RETURN(state.params, ReadFlat(*file, "params", -1));
  const int64_t n = static_cast<int64_t>(state.params.size());
  ASSIGN_OR_RETURN(state.exp_avg, ReadFlat(*file, "exp_avg", n));
  ASSIGN_OR_RETURN(state.exp_avg_sq, ReadFlat(*file, "exp_avg_sq", n));
  return state;
}

}  // namespace lorasweep
