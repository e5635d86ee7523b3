// A prepared dataset folder's manifest.json: what prepare-data made, from what, and how. The
// trainer checks it before loading a model (seq_len vs the model's context, vocabulary size, the
// tokenizer fingerprint) and the loader finds the shard files through it.
//
//   {"format": "lorasweep-dataset", "version": 1, "seq_len": 256, "packing": "pack",
//    "chat_template": "chatml", "format_detected": {"faq.jsonl": "chat"},
//    "tokenizer": {"path": ..., "fingerprint": ..., "vocab_size": 49152},
//    "seed": 0, "eval_fraction": 0.1,
//    "sources": [{"path", "sha256", "lines", "records", "skipped_lines"}],
//    "shards": [{"name", "file", "sequences", "documents", "tokens", "loss_tokens"}],
//    "eval": {"file": "eval.tok", "sequences", "documents", "tokens", "loss_tokens"}}
// Counts: sequences of seq_len tokens; documents (records) that start in the file; tokens that
// are not padding; loss_tokens = training targets (token_shard.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lorasweep {

inline constexpr char kDatasetManifestFile[] = "manifest.json";
inline constexpr char kDatasetFormatName[] = "lorasweep-dataset";
inline constexpr int kDatasetFormatVersion = 1;

struct DatasetShardInfo {
  std::string name;  // "all", a --shard-by value (sanitized), "part-K"; "eval" for the eval split
  std::string file;  // relative to the dataset folder
  int64_t sequences = 0;
  int64_t documents = 0;
  int64_t tokens = 0;
  int64_t loss_tokens = 0;
};

struct DatasetSourceInfo {
  std::string path;
  std::string sha256;
  std::string format;  // text, alpaca or chat (as read; "auto" resolved)
  int64_t lines = 0;   // non-blank lines
  int64_t records = 0;
  int64_t skipped_lines = 0;
};

struct DatasetManifest {
  std::string dir;  // the folder it was loaded from (not stored)
  int64_t seq_len = 0;
  std::string packing;        // "pack" or "pad"
  std::string chat_template;  // chatml | llama3 | llama2 | alpaca
  std::string tokenizer_path;
  std::string tokenizer_fingerprint;
  int64_t vocab_size = 0;
  uint64_t seed = 0;
  double eval_fraction = 0;
  std::vector<DatasetSourceInfo> sources;
  std::vector<DatasetShardInfo> shards;
  DatasetShardInfo eval;  // eval.sequences == 0 when there is no eval split

  // The shard named `name`, or null.
  const DatasetShardInfo* FindShard(const std::string& name) const;
};

std::string DatasetManifestToJson(const DatasetManifest& manifest);
// Reads DIR/manifest.json; errors name the file and the field.
absl::StatusOr<DatasetManifest> LoadDatasetManifest(const std::string& dir);

}  // namespace lorasweep
