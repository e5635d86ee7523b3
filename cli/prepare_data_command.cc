// `lorasweep prepare-data --tokenizer MODEL --input F1.jsonl[,F2...] --out DIR --seq-len N
//  [--format auto|text|alpaca|chat] [--eval-fraction 0.1] [--shard-by FIELD | --shards K]
//  [--seed S] [--packing pack|pad] [--chat-template NAME] [--skip-bad-lines] [--json]`
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "nlohmann/json.hpp"
#include "worker/data/prepare_data.h"

namespace lorasweep::cli {
namespace {

void PrintShard(const DatasetShardInfo& s, int width) {
  std::printf("  %-*s %8lld sequences %8lld documents %10lld tokens %10lld loss tokens\n", width,
              s.name.c_str(), static_cast<long long>(s.sequences),
              static_cast<long long>(s.documents), static_cast<long long>(s.tokens),
              static_cast<long long>(s.loss_tokens));
}

nlohmann::json ShardJson(const DatasetShardInfo& s) {
  return {{"name", s.name},           {"file", s.file},     {"sequences", s.sequences},
          {"documents", s.documents}, {"tokens", s.tokens}, {"loss_tokens", s.loss_tokens}};
}

int RunPrepareData(const std::vector<std::string>& positional) {
  if (!positional.empty())
    return ReportError("prepare-data", "unexpected argument " + positional[0]);
  const auto start = std::chrono::steady_clock::now();
  PrepareDataOptions options;
  options.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_input), ',', absl::SkipEmpty())) {
    options.inputs.emplace_back(part);
  }
  options.format = absl::GetFlag(FLAGS_format);
  options.out_dir = absl::GetFlag(FLAGS_out);
  options.seq_len = absl::GetFlag(FLAGS_seq_len);
  options.eval_fraction = absl::GetFlag(FLAGS_eval_fraction);
  options.shard_by = absl::GetFlag(FLAGS_shard_by);
  options.num_shards = absl::GetFlag(FLAGS_shards);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.packing = absl::GetFlag(FLAGS_packing);
  options.chat_template = absl::GetFlag(FLAGS_chat_template);
  options.skip_bad_lines = absl::GetFlag(FLAGS_skip_bad_lines);
  if (options.seq_len == 0) return ReportError("prepare-data", "--seq-len is required");

  absl::StatusOr<PrepareDataReport> report = PrepareData(options);
  if (!report.ok()) return ReportError("prepare-data", std::string(report.status().message()));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const DatasetManifest& m = report->manifest;
  int64_t train_sequences = 0, train_tokens = 0, train_loss = 0;
  for (const DatasetShardInfo& s : m.shards) {
    train_sequences += s.sequences;
    train_tokens += s.tokens;
    train_loss += s.loss_tokens;
  }
  std::printf(
      "prepared %s: %lld documents from %zu file(s) (%lld bad lines skipped), seq_len %lld, "
      "%s, chat template %s, in %.2f s\n",
      m.dir.c_str(), static_cast<long long>(report->documents), m.sources.size(),
      static_cast<long long>(report->skipped_lines), static_cast<long long>(m.seq_len),
      m.packing.c_str(), m.chat_template.c_str(), seconds);
  int width = 4;
  for (const DatasetShardInfo& s : m.shards)
    width = std::max(width, static_cast<int>(s.name.size()));
  for (const DatasetShardInfo& s : m.shards) PrintShard(s, width);
  PrintShard(m.eval, width);
  std::printf(
      "train: %lld sequences, %lld tokens, %lld loss tokens in %zu shard(s)%s\n",
      static_cast<long long>(train_sequences), static_cast<long long>(train_tokens),
      static_cast<long long>(train_loss), m.shards.size(),
      report->truncated_documents > 0
          ? (", " + std::to_string(report->truncated_documents) + " documents truncated").c_str()
          : "");
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json shards = nlohmann::json::array();
    for (const DatasetShardInfo& s : m.shards) shards.push_back(ShardJson(s));
    nlohmann::json j = {{"out", m.dir},
                        {"documents", report->documents},
                        {"skipped_lines", report->skipped_lines},
                        {"truncated_documents", report->truncated_documents},
                        {"seq_len", m.seq_len},
                        {"chat_template", m.chat_template},
                        {"shards", shards},
                        {"eval", ShardJson(m.eval)},
                        {"seconds", seconds}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

Command PrepareDataCommand() {
  return {"prepare-data",
          "Tokenize JSONL (text, alpaca or chat records) into packed, named shards + an eval split",
          "lorasweep prepare-data --tokenizer MODEL --input F1.jsonl[,F2...] --out DIR --seq-len N "
          "[--format auto|text|alpaca|chat] [--eval-fraction 0.1] [--shard-by FIELD | --shards K] "
          "[--seed 0] [--packing pack|pad] [--chat-template chatml|llama3|llama2|alpaca] "
          "[--skip-bad-lines] [--json]",
          {"tokenizer", "input", "format", "out", "seq_len", "eval_fraction", "shard_by", "shards",
           "seed", "packing", "chat_template", "skip_bad_lines", "json"},
          RunPrepareData};
}

}  // namespace lorasweep::cli
