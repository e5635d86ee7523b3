// Shared by the training tests: the tiny Llama checkpoint, a synthetic dataset written through the
// shard writer (every document follows next = (token + 5) mod 64), trial configs and running the
// lorasweep binary.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/data/dataset_manifest.h"
#include "worker/data/token_shard.h"

namespace lorasweep {

inline const std::string kTinyModel = std::string(LORASWEEP_TEST_DATA_DIR) + "/tiny_llama";
inline constexpr int64_t kSeqLen = 32;

inline std::string NewDir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/train_test_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Writes a prepare-data style folder: shard "all" with `train` sequences, eval.tok with `eval`.
// Each sequence packs two documents (the second starts at position 20).
inline std::string MakeDataset(const std::string& name, int train, int eval) {
  const std::string dir = NewDir(name);
  std::mt19937 rng(17);
  DatasetManifest manifest;
  manifest.seq_len = kSeqLen;
  manifest.packing = "pack";
  manifest.chat_template = "chatml";
  manifest.tokenizer_path = "synthetic";
  manifest.tokenizer_fingerprint = "synthetic";
  manifest.vocab_size = 64;
  auto write = [&](const std::string& file, int count, DatasetShardInfo* info) {
    TokenShardWriter writer(dir + "/" + file, kSeqLen, kTokenIdsU16);
    std::vector<int32_t> ids(kSeqLen);
    std::vector<uint8_t> flags(kSeqLen);
    for (int s = 0; s < count; ++s) {
      int32_t token = static_cast<int32_t>(rng() % 64);
      for (int64_t t = 0; t < kSeqLen; ++t) {
        if (t == 20) token = static_cast<int32_t>(rng() % 64);
        ids[t] = token;
        flags[t] = kTokenLoss | ((t == 0 || t == 20) ? kTokenDocStart : 0);
        token = (token + 5) % 64;
      }
      writer.AddSequence(ids.data(), flags.data());
    }
    ASSERT_TRUE(writer.Finish().ok());
    info->file = file;
    info->sequences = writer.counts().sequences;
    info->documents = writer.counts().documents;
    info->tokens = writer.counts().tokens;
    info->loss_tokens = writer.counts().loss_tokens;
  };
  DatasetShardInfo all;
  all.name = "all";
  write("all.tok", train, &all);
  manifest.shards.push_back(all);
  manifest.eval.name = "eval";
  write("eval.tok", eval, &manifest.eval);
  EXPECT_TRUE(WriteFileAtomically(dir + "/manifest.json", DatasetManifestToJson(manifest)).ok());
  return dir;
}

inline std::string WriteConfig(const std::string& dir, const std::string& data, const std::string& extra,
                        const std::string& train) {
  const std::string path = dir + "/config.yaml";
  std::ofstream(path) << "model: " << kTinyModel << "\n"
                      << "quantization: {type: nf4, blocksize: 64, double_quant: true}\n"
                      << "data: {path: " << data << "}\n"
                      << extra << "train: {" << train << "}\n";
  return path;
}

// The binary under test: the build's, or $LORASWEEP_BINARY when set (bench/gpu/check.sh runs
// prebuilt test programs from a pack, away from the build folder they were linked in).
inline ProcessResult RunLorasweep(const std::vector<std::string>& args) {
  const char* binary = std::getenv("LORASWEEP_BINARY");
  std::vector<std::string> argv = {binary != nullptr && *binary ? binary : LORASWEEP_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<ProcessResult> result = RunProcess(argv);
  EXPECT_TRUE(result.ok());
  return *result;
}

inline std::vector<nlohmann::json> ReadMetrics(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<nlohmann::json> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

inline std::string ReadBytes(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFileToString(path);
  EXPECT_TRUE(s.ok()) << path;
  return s.ok() ? *s : "";
}

}  // namespace lorasweep
