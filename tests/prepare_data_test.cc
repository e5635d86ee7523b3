// prepare-data end to end on small hand-built inputs: manifest counts against the shard files,
// shards and eval split disjoint and covering the input, loss masks on the response tokens only,
// packing rules, bad inputs (errors naming file:line from the binary), byte-identical reruns.
#include "worker/data/prepare_data.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/subprocess.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/data/chat_template.h"
#include "worker/data/dataset_manifest.h"
#include "worker/data/token_shard.h"
#include "worker/data/tokenizer.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kTokenizer =
    absl::StrCat(LORASWEEP_TEST_DATA_DIR, "/tokenizer/smollm2_tokenizer.json");

std::string Fixture(const std::string& name) {
  return absl::StrCat(LORASWEEP_TEST_DATA_DIR, "/prepare/", name);
}

// A fresh path (not created) under the test temp dir.
std::string TempPath(const std::string& name) {
  static int counter = 0;
  const std::string path = absl::StrCat(::testing::TempDir(), "/prepare_data_test_", getpid(), "_",
                                        counter++, "_", name);
  fs::remove_all(path);
  return path;
}

std::string WriteLines(const std::string& name, const std::vector<std::string>& lines) {
  const std::string path = TempPath(name);
  std::ofstream out(path);
  for (const std::string& line : lines) out << line << "\n";
  return path;
}

const Tokenizer& Tok() {
  static const Tokenizer* tok = Tokenizer::FromModel(kTokenizer)->release();
  return *tok;
}

struct Sequences {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<uint8_t>> flags;
};

Sequences ReadAll(const std::string& path) {
  absl::StatusOr<TokenShard> shard = TokenShard::Open(path);
  EXPECT_TRUE(shard.ok()) << shard.status();
  Sequences s;
  if (!shard.ok()) return s;
  for (int64_t i = 0; i < shard->num_sequences(); ++i) {
    s.ids.emplace_back(shard->seq_len());
    s.flags.emplace_back(shard->seq_len());
    shard->ReadSequence(i, s.ids.back().data(), s.flags.back().data());
  }
  return s;
}

// The non-padding ids of a shard, sequence after sequence.
std::vector<int32_t> Unpadded(const Sequences& s) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < s.ids.size(); ++i) {
    for (size_t t = 0; t < s.ids[i].size(); ++t) {
      if (!(s.flags[i][t] & kTokenPad)) out.push_back(s.ids[i][t]);
    }
  }
  return out;
}

DatasetShardInfo Recount(const std::string& path) {
  const Sequences s = ReadAll(path);
  DatasetShardInfo c;
  c.sequences = static_cast<int64_t>(s.ids.size());
  for (const auto& flags : s.flags) {
    for (uint8_t f : flags) {
      c.documents += (f & kTokenDocStart) != 0;
      c.loss_tokens += (f & kTokenLoss) != 0;
      c.tokens += (f & kTokenPad) == 0;
    }
  }
  return c;
}

void ExpectCountsMatchFiles(const DatasetManifest& m) {
  std::vector<DatasetShardInfo> all = m.shards;
  all.push_back(m.eval);
  for (const DatasetShardInfo& s : all) {
    const std::string path = absl::StrCat(m.dir, "/", s.file);
    const DatasetShardInfo c = Recount(path);
    EXPECT_EQ(s.sequences, c.sequences) << s.name;
    EXPECT_EQ(s.documents, c.documents) << s.name;
    EXPECT_EQ(s.tokens, c.tokens) << s.name;
    EXPECT_EQ(s.loss_tokens, c.loss_tokens) << s.name;
    absl::StatusOr<TokenShard> shard = TokenShard::Open(path);
    ASSERT_TRUE(shard.ok());
    EXPECT_EQ(shard->num_documents(), c.documents);
    EXPECT_EQ(shard->num_loss_tokens(), c.loss_tokens);
    EXPECT_EQ(shard->seq_len(), m.seq_len);
    EXPECT_EQ(fs::file_size(path), 64 + c.sequences * m.seq_len * 3);  // u16 ids + flags
  }
}

PrepareDataOptions Options(std::vector<std::string> inputs, int64_t seq_len) {
  PrepareDataOptions o;
  o.tokenizer_path = kTokenizer;
  o.inputs = std::move(inputs);
  o.out_dir = TempPath("out");
  o.seq_len = seq_len;
  return o;
}

// Text records "doc-N ..." with unique markers.
std::string MarkerInput(int n) {
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) {
    lines.push_back(absl::StrCat(R"({"text": "<doc-)", i, R"(> some words about packages )",
                                 std::string(i % 7, 'x'), R"( end", "topic": "t)", i % 3, R"("})"));
  }
  return WriteLines("markers.jsonl", lines);
}

std::vector<int> MarkersIn(const std::string& text) {
  std::vector<int> out;
  size_t at = 0;
  while ((at = text.find("<doc-", at)) != std::string::npos) {
    at += 5;
    out.push_back(std::stoi(text.substr(at)));
  }
  return out;
}

TEST(PrepareDataTest, ShardsAndEvalAreDisjointAndCoverTheInput) {
  const int kDocs = 40;
  for (const std::string packing : {"pack", "pad"}) {
    PrepareDataOptions o = Options({MarkerInput(kDocs)}, 24);
    o.num_shards = 3;
    o.eval_fraction = 0.25;
    o.packing = packing;
    o.seed = 7;
    absl::StatusOr<PrepareDataReport> report = PrepareData(o);
    ASSERT_TRUE(report.ok()) << report.status();
    const DatasetManifest& m = report->manifest;
    ASSERT_EQ(m.shards.size(), 3u);
    EXPECT_EQ(m.shards[0].name, "part-0");
    EXPECT_EQ(m.shards[2].name, "part-2");
    ExpectCountsMatchFiles(m);
    std::map<int, std::string> where;
    int eval_docs = 0;
    std::vector<DatasetShardInfo> all = m.shards;
    all.push_back(m.eval);
    for (const DatasetShardInfo& s : all) {
      const std::string text = Tok().Decode(Unpadded(ReadAll(absl::StrCat(m.dir, "/", s.file))));
      for (int marker : MarkersIn(text)) {
        EXPECT_EQ(where.count(marker), 0u)
            << "doc " << marker << " in " << s.name << " and " << where[marker];
        where[marker] = s.name;
        if (s.name == "eval") ++eval_docs;
      }
      EXPECT_EQ(static_cast<int>(MarkersIn(text).size()), s.documents) << s.name;
    }
    EXPECT_EQ(static_cast<int>(where.size()), kDocs);  // every document somewhere, once
    EXPECT_EQ(eval_docs, 10);                          // round(0.25 * 40)
    // Round-robin parts: training documents in input order go to part-(i % 3).
    int train_index = 0;
    for (int d = 0; d < kDocs; ++d) {
      if (where[d] == "eval") continue;
      EXPECT_EQ(where[d], absl::StrCat("part-", train_index++ % 3)) << d;
    }
    // The eval choice is the documented shuffle.
    const std::vector<int64_t> chosen = ChooseEvalDocuments(kDocs, 0.25, 7);
    for (int64_t d : chosen) EXPECT_EQ(where[d], "eval") << d;
  }
}

TEST(PrepareDataTest, TextDocumentsHoldAllTheirTokens) {
  PrepareDataOptions o = Options({Fixture("text.jsonl")}, 64);
  o.eval_fraction = 0;
  o.packing = "pad";
  absl::StatusOr<PrepareDataReport> report = PrepareData(o);
  ASSERT_TRUE(report.ok()) << report.status();
  const DatasetManifest& m = report->manifest;
  EXPECT_EQ(m.eval.sequences, 0);
  const Sequences s = ReadAll(m.dir + "/all.tok");
  ASSERT_EQ(s.ids.size(), 2u);
  const std::optional<int32_t> eos = Tok().eos_id();
  int index = 0;
  for (const std::string text : {"Debian is a free operating system.",
                                 "The stable release is updated with security fixes."}) {
    std::vector<int32_t> expected = Tok().Encode(text);  // SmolLM2: no BOS
    if (eos) expected.push_back(*eos);
    const std::vector<int32_t> got(s.ids[index].begin(), s.ids[index].begin() + expected.size());
    EXPECT_EQ(got, expected);
    for (size_t t = 0; t < s.flags[index].size(); ++t) {
      const uint8_t want = t == 0 ? kTokenDocStart : t < expected.size() ? kTokenLoss : kTokenPad;
      EXPECT_EQ(s.flags[index][t], want) << t;
    }
    ++index;
  }
}

// The ids with the loss bit, per sequence.
std::vector<int32_t> LossIds(const std::vector<int32_t>& ids, const std::vector<uint8_t>& flags) {
  std::vector<int32_t> out;
  for (size_t t = 0; t < ids.size(); ++t) {
    if (flags[t] & kTokenLoss) out.push_back(ids[t]);
  }
  return out;
}

TEST(PrepareDataTest, ChatLossCoversExactlyTheAssistantReplies) {
  PrepareDataOptions o = Options({Fixture("chat.jsonl")}, 128);
  o.eval_fraction = 0;
  o.packing = "pad";
  absl::StatusOr<PrepareDataReport> report = PrepareData(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->manifest.chat_template, "chatml");
  const Sequences s = ReadAll(report->manifest.dir + "/all.tok");
  ASSERT_EQ(s.ids.size(), 4u);
  const int32_t im_end = *Tok().TokenToId("<|im_end|>");
  const std::vector<std::vector<std::string>> replies = {
      {"Run apt install followed by the package name."},
      {"Yes: apt remove NAME keeps its configuration, apt purge removes that too."},
      {"uname -r prints it.", "dpkg --print-architecture."},
      {"In /boot."}};
  for (size_t i = 0; i < replies.size(); ++i) {
    std::vector<int32_t> expected;
    for (const std::string& reply : replies[i]) {
      const std::vector<int32_t> ids = Tok().Encode(reply);
      expected.insert(expected.end(), ids.begin(), ids.end());
      expected.push_back(im_end);
    }
    EXPECT_EQ(LossIds(s.ids[i], s.flags[i]), expected) << i;
    // The prompt starts the sequence and is not trained on.
    EXPECT_EQ(s.flags[i][0], kTokenDocStart);
    EXPECT_EQ(s.ids[i][0], *Tok().TokenToId("<|im_start|>"));
  }
}

TEST(PrepareDataTest, AlpacaResponsesAndEos) {
  const std::optional<int32_t> eos = Tok().eos_id();
  for (const std::string tmpl : {"alpaca", "chatml"}) {
    PrepareDataOptions o = Options({Fixture("alpaca.jsonl")}, 128);
    o.eval_fraction = 0;
    o.packing = "pad";
    o.chat_template = tmpl;
    absl::StatusOr<PrepareDataReport> report = PrepareData(o);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->manifest.chat_template, tmpl);
    const Sequences s = ReadAll(report->manifest.dir + "/all.tok");
    ASSERT_EQ(s.ids.size(), 2u);
    int i = 0;
    for (const std::string output : {"dpkg, with apt on top of it.", "Bonjour"}) {
      std::vector<int32_t> expected = Tok().Encode(output);
      if (tmpl == "alpaca") {
        if (eos) expected.push_back(*eos);
      } else {
        expected.push_back(*Tok().TokenToId("<|im_end|>"));
      }
      EXPECT_EQ(LossIds(s.ids[i], s.flags[i]), expected) << tmpl << " " << i;
      ++i;
    }
    // Record 2 has an input: the prompt holds it.
    const std::string second = Tok().Decode(s.ids[1]);
    EXPECT_THAT(second, HasSubstr("Good morning"));
    if (tmpl == "alpaca") {
      EXPECT_THAT(second, HasSubstr("### Input:\nGood morning"));
    }
  }
}

TEST(PrepareDataTest, PackingSplitsLongDocumentsAndKeepsBoundaries) {
  // Three text documents of known lengths into sequences of 8.
  const std::string input =
      WriteLines("pack.jsonl", {R"({"text": "one two three four five six seven eight nine ten"})",
                                R"({"text": "alpha beta"})", R"({"text": "gamma"})"});
  PrepareDataOptions o = Options({input}, 8);
  o.eval_fraction = 0;
  absl::StatusOr<PrepareDataReport> report = PrepareData(o);
  ASSERT_TRUE(report.ok()) << report.status();
  const Sequences s = ReadAll(report->manifest.dir + "/all.tok");
  std::vector<int32_t> stream;
  std::vector<size_t> starts;
  const std::optional<int32_t> eos = Tok().eos_id();
  for (const std::string text :
       {"one two three four five six seven eight nine ten", "alpha beta", "gamma"}) {
    starts.push_back(stream.size());
    std::vector<int32_t> ids = Tok().Encode(text);
    if (eos) ids.push_back(*eos);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  ASSERT_EQ(s.ids.size(), (stream.size() + 7) / 8);
  EXPECT_EQ(Unpadded(s), stream);
  for (size_t k = 0; k < stream.size(); ++k) {
    const uint8_t f = s.flags[k / 8][k % 8];
    const bool doc_start = std::find(starts.begin(), starts.end(), k) != starts.end();
    EXPECT_EQ((f & kTokenDocStart) != 0, doc_start) << k;
    // Every token but a document's first and a sequence's first is a target.
    EXPECT_EQ((f & kTokenLoss) != 0, !doc_start && k % 8 != 0) << k;
  }
  for (size_t k = stream.size(); k < s.ids.size() * 8; ++k) {
    EXPECT_EQ(s.flags[k / 8][k % 8], kTokenPad);
    EXPECT_EQ(s.ids[k / 8][k % 8], eos.value_or(0));
  }
  // pad: one document per sequence, the long one truncated.
  o.out_dir = TempPath("pad");
  o.packing = "pad";
  report = PrepareData(o);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->truncated_documents, 1);
  const Sequences p = ReadAll(report->manifest.dir + "/all.tok");
  ASSERT_EQ(p.ids.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(p.flags[i][0], kTokenDocStart);
    EXPECT_EQ(p.ids[i][0], stream[starts[i]]);
  }
  EXPECT_EQ(std::vector<int32_t>(p.ids[0].begin(), p.ids[0].end()),
            std::vector<int32_t>(stream.begin(), stream.begin() + 8));
}

TEST(PrepareDataTest, ShardByFieldNamesShardsAndRecordsSources) {
  PrepareDataOptions o = Options({Fixture("chat.jsonl"), Fixture("text.jsonl")}, 64);
  o.shard_by = "source";
  absl::StatusOr<PrepareDataReport> missing = PrepareData(o);
  ASSERT_FALSE(missing.ok());  // text.jsonl has no "source"
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("text.jsonl:1: expected a field \"source\""));
  EXPECT_FALSE(fs::exists(o.out_dir));

  o.inputs = {Fixture("chat.jsonl")};
  o.eval_fraction = 0;
  absl::StatusOr<PrepareDataReport> report = PrepareData(o);
  ASSERT_TRUE(report.ok()) << report.status();
  const DatasetManifest& m = report->manifest;
  ASSERT_EQ(m.shards.size(), 3u);
  EXPECT_EQ(m.shards[0].name, "install");
  EXPECT_EQ(m.shards[0].documents, 2);
  EXPECT_EQ(m.shards[1].name, "kernel");
  EXPECT_EQ(m.shards[2].name, "kernel_extra");  // "kernel/extra" sanitized
  EXPECT_EQ(m.shards[2].file, "kernel_extra.tok");
  ExpectCountsMatchFiles(m);
  // The manifest on disk says the same.
  absl::StatusOr<DatasetManifest> loaded = LoadDatasetManifest(m.dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->shards.size(), 3u);
  EXPECT_EQ(loaded->seq_len, 64);
  EXPECT_EQ(loaded->vocab_size, Tok().vocab_size());
  EXPECT_EQ(loaded->tokenizer_fingerprint, Tok().Fingerprint());
  ASSERT_EQ(loaded->sources.size(), 1u);
  EXPECT_EQ(loaded->sources[0].lines, 4);
  EXPECT_EQ(loaded->sources[0].format, "chat");
  // The checksum coreutils computes.
  absl::StatusOr<ProcessResult> sum = RunProcess({"sha256sum", Fixture("chat.jsonl")});
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(loaded->sources[0].sha256, sum->output.substr(0, 64));
  EXPECT_EQ(SanitizeShardName("a b/c"), "a_b_c");
  EXPECT_EQ(SanitizeShardName(".."), "_..");
}

std::map<std::string, std::string> ReadDir(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    files[entry.path().filename().string()] = ss.str();
  }
  return files;
}

TEST(PrepareDataTest, SameSeedGivesIdenticalBytes) {
  const std::string input = MarkerInput(30);
  PrepareDataOptions o = Options({input}, 32);
  o.shard_by = "topic";
  o.seed = 3;
  const std::string out1 = o.out_dir;
  ASSERT_TRUE(PrepareData(o).ok());
  o.out_dir = TempPath("again");
  ASSERT_TRUE(PrepareData(o).ok());
  // The manifest records input paths, not the output folder, so every file is the same.
  const auto a = ReadDir(out1), b = ReadDir(o.out_dir);
  EXPECT_EQ(a.size(), 5u);  // t0 t1 t2 eval manifest
  EXPECT_EQ(a, b);
  o.out_dir = TempPath("other_seed");
  o.seed = 4;
  ASSERT_TRUE(PrepareData(o).ok());
  EXPECT_NE(ReadDir(o.out_dir).at("eval.tok"), a.at("eval.tok"));
}

TEST(PrepareDataTest, RefusesAnExistingOutput) {
  PrepareDataOptions o = Options({Fixture("text.jsonl")}, 16);
  fs::create_directories(o.out_dir);
  absl::StatusOr<PrepareDataReport> report = PrepareData(o);
  ASSERT_FALSE(report.ok());
  EXPECT_THAT(std::string(report.status().message()), HasSubstr("already exists"));
}

// Runs the binary; returns exit code and output.
ProcessResult RunBinary(std::vector<std::string> args) {
  args.insert(args.begin(), {LORASWEEP_BINARY, "prepare-data", "--tokenizer", kTokenizer});
  absl::StatusOr<ProcessResult> r = RunProcess(args);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : ProcessResult{-1, ""};
}

TEST(PrepareDataTest, BadInputsNameFileAndLine) {
  struct Case {
    std::string input, format, message;
  };
  const std::vector<Case> cases = {
      {"bad_json.jsonl", "auto",
       "bad_json.jsonl:3: expected a JSON object (the line is not valid JSON)"},
      {"missing_field.jsonl", "auto", "missing_field.jsonl:2: expected a string field \"output\""},
      {"wrong_type.jsonl", "chat",
       "wrong_type.jsonl:2: expected field \"messages[0].content\" to be a string, got number"},
      {"text.jsonl", "chat", "text.jsonl:1: expected a field \"messages\""},
      {"no_such_file.jsonl", "auto", "no_such_file.jsonl: cannot read input"},
      {"text.jsonl", "csv", "unknown format 'csv'"},
  };
  for (const Case& c : cases) {
    const std::string out = TempPath("bad");
    const ProcessResult r = RunBinary(
        {"--input", Fixture(c.input), "--format", c.format, "--out", out, "--seq-len", "32"});
    EXPECT_NE(r.exit_code, 0) << c.input;
    EXPECT_THAT(r.output, HasSubstr(c.message)) << c.input;
    EXPECT_FALSE(fs::exists(out));
    // Nothing half-written beside it either.
    for (const auto& entry : fs::directory_iterator(fs::path(out).parent_path())) {
      EXPECT_THAT(entry.path().string(),
                  Not(HasSubstr(fs::path(out).filename().string() + ".partial")));
    }
  }
}

TEST(PrepareDataTest, SkipBadLinesCountsThem) {
  const std::string out = TempPath("skip");
  const ProcessResult r =
      RunBinary({"--input", Fixture("bad_json.jsonl") + "," + Fixture("wrong_type.jsonl"), "--out",
                 out, "--seq-len", "32", "--skip-bad-lines", "--eval-fraction", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("(2 bad lines skipped)"));
  absl::StatusOr<DatasetManifest> m = LoadDatasetManifest(out);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->sources.size(), 2u);
  EXPECT_EQ(m->sources[0].format, "text");
  EXPECT_EQ(m->sources[0].lines, 3);
  EXPECT_EQ(m->sources[0].records, 2);
  EXPECT_EQ(m->sources[0].skipped_lines, 1);
  EXPECT_EQ(m->sources[1].format, "chat");
  EXPECT_EQ(m->sources[1].skipped_lines, 1);
  EXPECT_EQ(m->shards[0].documents, 3);
}

TEST(PrepareDataTest, EvalSplitChoice) {
  EXPECT_TRUE(ChooseEvalDocuments(10, 0, 1).empty());
  EXPECT_TRUE(ChooseEvalDocuments(1, 0.5, 1).empty());
  EXPECT_EQ(ChooseEvalDocuments(10, 0.01, 1).size(), 1u);  // at least one
  EXPECT_EQ(ChooseEvalDocuments(3, 0.9, 1).size(), 2u);    // at least one left to train on
  // By hand: N = 4, seed 0. Fisher-Yates from the end with std::mt19937_64(0).
  std::mt19937_64 rng(0);
  std::vector<int64_t> order = {0, 1, 2, 3};
  for (int64_t i = 3; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  std::vector<int64_t> expected(order.begin(), order.begin() + 2);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ChooseEvalDocuments(4, 0.5, 0), expected);
}

}  // namespace
}  // namespace lorasweep
