#include "worker/data/dataset_manifest.h"

#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lorasweep {
namespace {

using json = nlohmann::json;

json ShardToJson(const DatasetShardInfo& s, bool with_name) {
  json j = json::object();
  if (with_name) j["name"] = s.name;
  j["file"] = s.file;
  j["sequences"] = s.sequences;
  j["documents"] = s.documents;
  j["tokens"] = s.tokens;
  j["loss_tokens"] = s.loss_tokens;
  return j;
}

DatasetShardInfo ShardFromJson(const json& j, bool with_name) {
  DatasetShardInfo s;
  if (with_name) s.name = j.at("name").get<std::string>();
  s.file = j.at("file").get<std::string>();
  s.sequences = j.at("sequences").get<int64_t>();
  s.documents = j.at("documents").get<int64_t>();
  s.tokens = j.at("tokens").get<int64_t>();
  s.loss_tokens = j.at("loss_tokens").get<int64_t>();
  return s;
}

}  // namespace

const DatasetShardInfo* DatasetManifest::FindShard(const std::string& name) const {
  for (const DatasetShardInfo& s : shards) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string DatasetManifestToJson(const DatasetManifest& m) {
  json sources = json::array();
  for (const DatasetSourceInfo& s : m.sources) {
    sources.push_back({{"path", s.path},
                       {"sha256", s.sha256},
                       {"format", s.format},
                       {"lines", s.lines},
                       {"records", s.records},
                       {"skipped_lines", s.skipped_lines}});
  }
  json shards = json::array();
  for (const DatasetShardInfo& s : m.shards) shards.push_back(ShardToJson(s, true));
  // nlohmann's json object keeps keys sorted, so the bytes depend only on the values.
  json j = {{"format", kDatasetFormatName},
            {"version", kDatasetFormatVersion},
            {"seq_len", m.seq_len},
            {"packing", m.packing},
            {"chat_template", m.chat_template},
            {"tokenizer",
             {{"path", m.tokenizer_path},
              {"fingerprint", m.tokenizer_fingerprint},
              {"vocab_size", m.vocab_size}}},
            {"seed", m.seed},
            {"eval_fraction", m.eval_fraction},
            {"sources", sources},
            {"shards", shards},
            {"eval", ShardToJson(m.eval, false)}};
  return j.dump(2) + "\n";
}

absl::StatusOr<DatasetManifest> LoadDatasetManifest(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kDatasetManifestFile);
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::NotFoundError(
        absl::StrCat(dir, " is not a prepared dataset (no readable ", kDatasetManifestFile,
                     "; make one with `lorasweep prepare-data`): ", text.status().message()));
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": not valid JSON"));
  }
  if (j.value("format", "") != kDatasetFormatName) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": \"format\" is not \"", kDatasetFormatName, "\""));
  }
  if (!j.contains("version") || !j["version"].is_number_integer() ||
      j["version"].get<int>() != kDatasetFormatVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unsupported \"version\" (this build reads version 1)"));
  }
  DatasetManifest m;
  m.dir = dir;
  // nlohmann reports a missing or mistyped field as an exception naming it; one catch keeps the
  // field-by-field reading short.
  try {
    m.seq_len = j.at("seq_len").get<int64_t>();
    m.packing = j.at("packing").get<std::string>();
    m.chat_template = j.at("chat_template").get<std::string>();
    const json& tok = j.at("tokenizer");
    m.tokenizer_path = tok.at("path").get<std::string>();
    m.tokenizer_fingerprint = tok.at("fingerprint").get<std::string>();
    m.vocab_size = tok.at("vocab_size").get<int64_t>();
    m.seed = j.at("seed").get<uint64_t>();
    m.eval_fraction = j.at("eval_fraction").get<double>();
    for (const json& s : j.at("sources")) {
      DatasetSourceInfo info;
      info.path = s.at("path").get<std::string>();
      info.sha256 = s.at("sha256").get<std::string>();
      info.format = s.value("format", "");
      info.lines = s.at("lines").get<int64_t>();
      info.records = s.value("records", int64_t{0});
      info.skipped_lines = s.at("skipped_lines").get<int64_t>();
      m.sources.push_back(std::move(info));
    }
    for (const json& s : j.at("shards")) m.shards.push_back(ShardFromJson(s, true));
    m.eval = ShardFromJson(j.at("eval"), false);
    m.eval.name = "eval";
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
  if (m.seq_len <= 0) return absl::InvalidArgumentError(absl::StrCat(path, ": seq_len <= 0"));
  return m;
}

}  // namespace lorasweep
