#include "worker/data/prepare_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "spdlog/spdlog.h"
#include "worker/data/chat_template.h"
#include "worker/data/jsonl_records.h"
#include "worker/data/token_shard.h"
#include "worker/data/tokenizer.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;

struct Document {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss;  // 1 = trained on (before the document/sequence-start rule)
  std::string shard;          // training shard name
};

absl::Status CheckOptions(const PrepareDataOptions& o) {
  if (o.tokenizer_path.empty()) return absl::InvalidArgumentError("--tokenizer is required");
  if (o.inputs.empty()) return absl::InvalidArgumentError("--input is required");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out is required");
  if (o.seq_len < 2 || o.seq_len > (int64_t{1} << 24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--seq-len must be in 2..16777216, got ", o.seq_len));
  }
  if (!(o.eval_fraction >= 0 && o.eval_fraction < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--eval-fraction must be in [0, 1), got ", o.eval_fraction));
  }
  if (o.packing != "pack" && o.packing != "pad") {
    return absl::InvalidArgumentError(
        absl::StrCat("--packing must be pack or pad, got '", o.packing, "'"));
  }
  if (o.num_shards < 0) return absl::InvalidArgumentError("--shards must be positive");
  if (o.num_shards > 0 && !o.shard_by.empty()) {
    return absl::InvalidArgumentError("--shard-by and --shards are exclusive; pass one");
  }
  if (o.format != "auto") RETURN_IF_ERROR(ParseRecordFormat(o.format).status());
  if (!o.chat_template.empty() && o.chat_template != "auto") {
    RETURN_IF_ERROR(ParseChatTemplateKind(o.chat_template).status());
  }
  return absl::OkStatus();
}

// Turns records into documents (ids + loss flags) for the tokenizer and template.
class DocumentBuilder {
 public:
  DocumentBuilder(const Tokenizer& tokenizer, ChatTemplateKind kind)
      : tokenizer_(tokenizer), kind_(kind) {
    bos_ = TokenizerPrependsBos(tokenizer) ? tokenizer.bos_id() : std::nullopt;
    eos_ = tokenizer.eos_id();
    if (eos_.has_value()) eos_text_ = tokenizer.IdToToken(*eos_).value_or("");
  }

  Document Build(const Record& record, RecordFormat format) const {
    Document doc;
    if (format == RecordFormat::kText) {
      if (bos_.has_value()) doc.ids.push_back(*bos_);
      const std::vector<int32_t> ids = tokenizer_.Encode(record.text, /*parse_special=*/true);
      doc.ids.insert(doc.ids.end(), ids.begin(), ids.end());
      if (eos_.has_value()) doc.ids.push_back(*eos_);
      doc.loss.assign(doc.ids.size(), 1);
      return doc;
    }
    std::vector<RenderedSegment> segments;
    if (format == RecordFormat::kAlpaca && kind_ == kAlpaca) {
      segments = RenderAlpaca(record.instruction, record.input, record.output, eos_text_);
    } else if (format == RecordFormat::kAlpaca) {
      segments =
          RenderChat(kind_, AlpacaToMessages(record.instruction, record.input, record.output),
                     /*add_generation_prompt=*/false, eos_text_);
    } else {
      segments = RenderChat(kind_, record.messages, /*add_generation_prompt=*/false, eos_text_);
    }
    // Llama-2/3 templates write BOS themselves; for Alpaca it is added as for text.
    if (kind_ == kAlpaca && bos_.has_value()) {
      doc.ids.push_back(*bos_);
      doc.loss.push_back(0);
    }
    TokenizedText tokens = TokenizeSegments(tokenizer_, segments);
    doc.ids.insert(doc.ids.end(), tokens.ids.begin(), tokens.ids.end());
    doc.loss.insert(doc.loss.end(), tokens.loss.begin(), tokens.loss.end());
    return doc;
  }

 private:
  const Tokenizer& tokenizer_;
  ChatTemplateKind kind_;
  std::optional<int32_t> bos_, eos_;
  std::string eos_text_;
};

// Lays documents out in sequences and writes them to one shard file.
class SequencePacker {
 public:
  SequencePacker(TokenShardWriter* writer, int64_t seq_len, bool pack, int32_t pad_id)
      : writer_(writer), seq_len_(seq_len), pack_(pack), pad_id_(pad_id) {}

  void Add(const Document& doc) {
    const size_t n = pack_ ? doc.ids.size() : std::min<size_t>(doc.ids.size(), seq_len_);
    if (n < doc.ids.size()) ++truncated_;
    for (size_t i = 0; i < n; ++i) {
      const bool sequence_start = ids_.empty();
      uint8_t f = 0;
      if (i == 0) f |= kTokenDocStart;
      // A target needs an earlier token of the same document in the same sequence.
      if (doc.loss[i] && i > 0 && !sequence_start) f |= kTokenLoss;
      ids_.push_back(doc.ids[i]);
      flags_.push_back(f);
      if (static_cast<int64_t>(ids_.size()) == seq_len_) Flush();
    }
    if (!pack_) Flush();
  }

  // Pads and writes a partial last sequence.
  void Flush() {
    if (ids_.empty()) return;
    while (static_cast<int64_t>(ids_.size()) < seq_len_) {
      ids_.push_back(pad_id_);
      flags_.push_back(kTokenPad);
    }
    writer_->AddSequence(ids_.data(), flags_.data());
    ids_.clear();
    flags_.clear();
  }

  int64_t truncated() const { return truncated_; }

 private:
  TokenShardWriter* writer_;
  int64_t seq_len_;
  bool pack_;
  int32_t pad_id_;
  std::vector<int32_t> ids_;
  std::vector<uint8_t> flags_;
  int64_t truncated_ = 0;
};

DatasetShardInfo InfoFrom(const std::string& name, const std::string& file,
                          const TokenShardCounts& c) {
  return {name, file, c.sequences, c.documents, c.tokens, c.loss_tokens};
}

// Writes the dataset into `dir` (the staging folder).
absl::Status WriteDataset(const std::string& dir, const PrepareDataOptions& options,
                          const std::vector<Document>& docs, const std::vector<bool>& is_eval,
                          const std::vector<std::string>& shard_names, TokenShardDtype dtype,
                          int32_t pad_id, PrepareDataReport* report) {
  const bool pack = options.packing == "pack";
  auto write = [&](const std::string& name, const std::string& file, bool eval,
                   const std::string& shard) -> absl::StatusOr<DatasetShardInfo> {
    TokenShardWriter writer(absl::StrCat(dir, "/", file), options.seq_len, dtype);
    SequencePacker packer(&writer, options.seq_len, pack, pad_id);
    for (size_t i = 0; i < docs.size(); ++i) {
      if (is_eval[i] == eval && (eval || docs[i].shard == shard)) packer.Add(docs[i]);
    }
    packer.Flush();
    report->truncated_documents += packer.truncated();
    RETURN_IF_ERROR(writer.Finish());
    return InfoFrom(name, file, writer.counts());
  };
  for (const std::string& name : shard_names) {
    ASSIGN_OR_RETURN(DatasetShardInfo info, write(name, name + ".tok", false, name));
    report->manifest.shards.push_back(info);
  }
  ASSIGN_OR_RETURN(report->manifest.eval, write("eval", "eval.tok", true, ""));
  return WriteFileAtomically(absl::StrCat(dir, "/", kDatasetManifestFile),
                             DatasetManifestToJson(report->manifest));
}

}  // namespace

bool TokenizerPrependsBos(const Tokenizer& tokenizer) {
  const std::optional<int32_t> bos = tokenizer.bos_id();
  if (!bos.has_value()) return false;
  const std::optional<std::string> text = tokenizer.IdToToken(*bos);
  return text.has_value() && (*text == "<s>" || *text == "<|begin_of_text|>");
}

std::string SanitizeShardName(const std::string& value) {
  std::string name;
  for (char c : value) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    name.push_back(ok ? c : '_');
  }
  if (name.size() > 100) name.resize(100);
  // No hidden files, no "." or "..".
  if (name.empty() || name[0] == '.') name.insert(name.begin(), '_');
  return name;
}

std::vector<int64_t> ChooseEvalDocuments(int64_t num_documents, double eval_fraction,
                                         uint64_t seed) {
  if (eval_fraction <= 0 || num_documents < 2) return {};
  int64_t count = std::llround(eval_fraction * static_cast<double>(num_documents));
  count = std::clamp<int64_t>(count, 1, num_documents - 1);
  std::vector<int64_t> order(num_documents);
  for (int64_t i = 0; i < num_documents; ++i) order[i] = i;
  // Fisher-Yates by hand: std::shuffle's algorithm is implementation-defined, and the split must
  // be the same with every standard library.
  std::mt19937_64 rng(seed);
  for (int64_t i = num_documents - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  order.resize(count);
  std::sort(order.begin(), order.end());
  return order;
}

absl::StatusOr<PrepareDataReport> PrepareData(const PrepareDataOptions& options) {
  RETURN_IF_ERROR(CheckOptions(options));
  std::string out = options.out_dir;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  std::error_code ec;
  if (fs::exists(out, ec)) {
    return absl::AlreadyExistsError(
        absl::StrCat(out, " already exists; remove it or choose another --out"));
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromModel(options.tokenizer_path);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat("--tokenizer: ", tokenizer.status().message()));
  }
  const Tokenizer& tok = **tokenizer;
  ChatTemplateKind kind = DetectChatTemplate(tok);
  if (!options.chat_template.empty() && options.chat_template != "auto") {
    ASSIGN_OR_RETURN(kind, ParseChatTemplateKind(options.chat_template));
  }

  PrepareDataReport report;
  DatasetManifest& m = report.manifest;
  m.seq_len = options.seq_len;
  m.packing = options.packing;
  m.chat_template = ChatTemplateName(kind);
  m.tokenizer_path = options.tokenizer_path;
  m.tokenizer_fingerprint = tok.Fingerprint();
  m.vocab_size = tok.vocab_size();
  m.seed = options.seed;
  m.eval_fraction = options.eval_fraction;

  // Read every input before writing anything: bad lines fail early.
  RecordReadOptions read_options;
  read_options.format = options.format;
  read_options.shard_by = options.shard_by;
  read_options.skip_bad_lines = options.skip_bad_lines;
  DocumentBuilder builder(tok, kind);
  std::vector<Document> docs;
  for (const std::string& path : options.inputs) {
    ASSIGN_OR_RETURN(RecordFile file, ReadJsonlRecords(path, read_options));
    ASSIGN_OR_RETURN(std::string sha256, Sha256FileHex(path));
    m.sources.push_back({path, sha256, RecordFormatName(file.format), file.lines,
                         static_cast<int64_t>(file.records.size()), file.skipped_lines});
    report.skipped_lines += file.skipped_lines;
    for (const Record& record : file.records) {
      docs.push_back(builder.Build(record, file.format));
      docs.back().shard = record.shard_key;  // the raw value; named below
    }
  }
  if (docs.empty()) return absl::InvalidArgumentError("the inputs hold no records");
  report.documents = static_cast<int64_t>(docs.size());

  std::vector<bool> is_eval(docs.size(), false);
  for (int64_t i : ChooseEvalDocuments(report.documents, options.eval_fraction, options.seed)) {
    is_eval[i] = true;
  }
  // Shard names. std::map keeps them sorted, the order of the manifest.
  std::map<std::string, std::string> value_of_name;
  std::vector<std::string> shard_names;
  if (!options.shard_by.empty()) {
    for (Document& doc : docs) {
      const std::string name = SanitizeShardName(doc.shard);
      if (name == "eval") {
        return absl::InvalidArgumentError(absl::StrCat(
            "--shard-by ", options.shard_by, ": the value \"", doc.shard,
            "\" would name a shard \"eval\", the name of the eval split; rename it in the data"));
      }
      auto [it, inserted] = value_of_name.emplace(name, doc.shard);
      if (!inserted && it->second != doc.shard) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--shard-by ", options.shard_by, ": the values \"", it->second, "\" and \"", doc.shard,
            "\" both make the shard name \"", name, "\"; make them differ in [A-Za-z0-9._-]"));
      }
      doc.shard = name;
    }
    for (const auto& [name, value] : value_of_name) shard_names.push_back(name);
  } else if (options.num_shards > 0) {
    int64_t train_index = 0;
    for (size_t i = 0; i < docs.size(); ++i) {
      if (!is_eval[i]) docs[i].shard = absl::StrCat("part-", train_index++ % options.num_shards);
    }
    for (int64_t k = 0; k < options.num_shards; ++k)
      shard_names.push_back(absl::StrCat("part-", k));
  } else {
    for (Document& doc : docs) doc.shard = "all";
    shard_names.push_back("all");
  }

  const TokenShardDtype dtype = TokenShardDtypeFor(tok.vocab_size());
  const int32_t pad_id = tok.eos_id().value_or(0);
  const fs::path parent = fs::path(out).parent_path();
  if (!parent.empty()) RETURN_IF_ERROR(MakeDirectories(parent.string()));
  ASSIGN_OR_RETURN(std::string staging, MakeStagingDirectory(out));
  absl::Status written =
      WriteDataset(staging, options, docs, is_eval, shard_names, dtype, pad_id, &report);
  if (written.ok() && fs::exists(out, ec)) {
    written =
        absl::AlreadyExistsError(absl::StrCat(out, " appeared while preparing; not replaced"));
  }
  if (written.ok()) {
    fs::rename(staging, out, ec);
    if (ec) {
      written = absl::UnavailableError(
          absl::StrCat("cannot rename ", staging, " to ", out, ": ", ec.message()));
    }
  }
  if (!written.ok()) {
    fs::remove_all(staging, ec);  // nothing half-written stays behind
    return written;
  }
  m.dir = out;
  return report;
}

}  // namespace lorasweep
