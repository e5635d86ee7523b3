// Tokenizer::FromGguf: the tokenizer.ggml.* metadata of a GGUF file.
//
//   tokenizer.ggml.model "gpt2":  byte-level BPE, built as the Hugging Face tokenizer.json the
//       converter started from would be (tokenizer.ggml.pre names that file's split rules), so ids
//       match the Hugging Face tokenizer.
//   tokenizer.ggml.model "llama": SentencePiece-style BPE as llama.cpp runs it (merge priority from
//       the token scores, byte fallback, a space prefix, special tokens split out first).
//
// Token types (llama.cpp's llama_token_type): 1 normal, 2 unknown, 3 control, 4 user-defined,
// 5 unused, 6 byte. Control and unknown tokens are special tokens; user-defined ones are added
// tokens that are not special (always matched in the text, as llama.cpp does).
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/data/tokenizer.h"
#include "worker/data/tokenizer_impl.h"
#include "worker/formats/gguf.h"

namespace lorasweep {
namespace tokenizer_internal {
namespace {

constexpr int64_t kTypeUnknown = 2;
constexpr int64_t kTypeControl = 3;
constexpr int64_t kTypeUserDefined = 4;

class GgufReader {
 public:
  explicit GgufReader(const GgufFile& file) : file_(file) {}

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(file_.path(), ": ", what));
  }
  bool Has(const std::string& key) const { return file_.metadata().count(key) > 0; }

  template <typename T, typename Convert>
  absl::StatusOr<T> Get(const std::string& key, Convert convert) const {
    ASSIGN_OR_RETURN(const GgufValue* v, file_.Find(key));
    auto r = convert(*v);
    if (!r.ok()) return Error(absl::StrCat(key, ": ", r.status().message()));
    return *std::move(r);
  }
  absl::StatusOr<std::string> String(const std::string& key) const {
    return Get<std::string>(key, [](const GgufValue& v) { return v.AsString(); });
  }
  absl::StatusOr<std::vector<std::string>> Strings(const std::string& key) const {
    return Get<std::vector<std::string>>(key, [](const GgufValue& v) { return v.AsStringArray(); });
  }
  absl::StatusOr<std::vector<int64_t>> Ints(const std::string& key) const {
    return Get<std::vector<int64_t>>(key, [](const GgufValue& v) { return v.AsIntArray(); });
  }
  absl::StatusOr<std::vector<double>> Doubles(const std::string& key) const {
    return Get<std::vector<double>>(key, [](const GgufValue& v) { return v.AsDoubleArray(); });
  }
  // An optional token id; absent keys and negative values (some converters write -1) give nullopt.
  absl::StatusOr<std::optional<int32_t>> OptionalId(const std::string& key, size_t vocab) const {
    if (!Has(key)) return std::nullopt;
    ASSIGN_OR_RETURN(const int64_t id,
                     Get<int64_t>(key, [](const GgufValue& v) { return v.AsInt(); }));
    if (id < 0) return std::nullopt;
    if (static_cast<uint64_t>(id) >= vocab) {
      return Error(absl::StrCat(key, " = ", id, " is outside the vocabulary of ", vocab));
    }
    return static_cast<int32_t>(id);
  }
  absl::StatusOr<bool> OptionalBool(const std::string& key, bool dflt) const {
    if (!Has(key)) return dflt;
    return Get<bool>(key, [](const GgufValue& v) { return v.AsBool(); });
  }

 private:
  const GgufFile& file_;
};

// tokenizer.ggml.pre -> the pre-tokenization of the Hugging Face tokenizer it was converted from.
absl::Status ByteLevelPipeline(const GgufReader& r, const std::string& pre, TokenizerParts* parts,
                               BpeOptions* options) {
  if (pre == "default" || pre == "gpt2" || pre == "gpt-2" || pre == "olmo" || pre == "mpt") {
    parts->pre_tokenizer.Add(MakeByteLevel(/*add_prefix_space=*/false, /*use_regex=*/true));
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell" ||
             pre == "command-r") {
    parts->pre_tokenizer.Add(MakeDigits(/*individual_digits=*/true));
    parts->pre_tokenizer.Add(MakeByteLevel(false, true));
  } else if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3" || pre == "smaug-bpe" ||
             pre == "dbrx") {
    parts->pre_tokenizer.Add(MakeRuleSplit(SplitRule::kLlama3, SplitBehavior::kIsolated, false));
    parts->pre_tokenizer.Add(MakeByteLevel(false, /*use_regex=*/false));
    options->ignore_merges = pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3";
  } else if (pre == "qwen2") {
    parts->normalizer.Add(MakeNfc());
    parts->pre_tokenizer.Add(MakeRuleSplit(SplitRule::kQwen2, SplitBehavior::kIsolated, false));
    parts->pre_tokenizer.Add(MakeByteLevel(false, false));
  } else {
    return r.Error(
        absl::StrCat("unsupported tokenizer.ggml.pre \"", pre,
                     "\" (supported: default, gpt2, gpt-2, olmo, mpt, smollm, starcoder, refact, "
                     "codeshell, command-r, llama3, llama-bpe, llama-v3, smaug-bpe, dbrx, "
                     "qwen2)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadGguf(const GgufFile& file) {
  const GgufReader r(file);
  TokenizerParts parts;
  parts.source = file.path();
  if (!r.Has("tokenizer.ggml.model"))
    return r.Error("no tokenizer (tokenizer.ggml.model is missing)");
  ASSIGN_OR_RETURN(const std::string model, r.String("tokenizer.ggml.model"));
  if (model != "gpt2" && model != "llama") {
    return r.Error(
        absl::StrCat("unsupported tokenizer.ggml.model \"", model, "\" (supported: gpt2, llama)"));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> tokens, r.Strings("tokenizer.ggml.tokens"));
  if (tokens.empty() || tokens.size() > INT32_MAX) return r.Error("tokenizer.ggml.tokens is empty");
  std::vector<int64_t> types(tokens.size(), 1);
  if (r.Has("tokenizer.ggml.token_type")) {
    ASSIGN_OR_RETURN(types, r.Ints("tokenizer.ggml.token_type"));
    if (types.size() != tokens.size()) {
      return r.Error(absl::StrCat("tokenizer.ggml.token_type has ", types.size(), " entries for ",
                                  tokens.size(), " tokens"));
    }
  }
  ASSIGN_OR_RETURN(parts.bos_id, r.OptionalId("tokenizer.ggml.bos_token_id", tokens.size()));
  ASSIGN_OR_RETURN(parts.eos_id, r.OptionalId("tokenizer.ggml.eos_token_id", tokens.size()));
  if (r.Has("tokenizer.chat_template")) {
    ASSIGN_OR_RETURN(parts.chat_template, r.String("tokenizer.chat_template"));
  }
  for (size_t id = 0; id < tokens.size(); ++id) {
    const int64_t t = types[id];
    if (t != kTypeControl && t != kTypeUnknown && t != kTypeUserDefined) continue;
    if (tokens[id].empty()) continue;
    AddedTokenSpec spec;
    spec.content = tokens[id];
    spec.id = static_cast<int32_t>(id);
    spec.special = t != kTypeUserDefined;
    parts.added_tokens.push_back(std::move(spec));
  }
  parts.vocab.reserve(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id)
    parts.vocab.emplace_back(tokens[id], static_cast<int32_t>(id));

  if (model == "gpt2") {
    ASSIGN_OR_RETURN(const std::vector<std::string> merge_lines,
                     r.Strings("tokenizer.ggml.merges"));
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merge_lines.size());
    for (size_t i = 0; i < merge_lines.size(); ++i) {
      const std::string& s = merge_lines[i];
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return r.Error(
            absl::StrCat("tokenizer.ggml.merges[", i, "] \"", s, "\" is not two tokens"));
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    }
    std::string pre = "default";
    if (r.Has("tokenizer.ggml.pre")) {
      ASSIGN_OR_RETURN(pre, r.String("tokenizer.ggml.pre"));
    }
    BpeOptions options;
    RETURN_IF_ERROR(ByteLevelPipeline(r, pre, &parts, &options));
    options.byte_level = true;
    std::vector<std::pair<std::string, int32_t>> vocab;
    vocab.reserve(tokens.size());
    for (size_t id = 0; id < tokens.size(); ++id)
      vocab.emplace_back(tokens[id], static_cast<int32_t>(id));
    auto bpe = BpeModel::Create(vocab, merges, options);
    if (!bpe.ok()) return r.Error(std::string(bpe.status().message()));
    parts.model_description = DescribeBpeModel(vocab, *bpe, options);
    parts.model.emplace(std::move(*bpe));
    parts.decoder.Add(MakeByteLevelDecoder());
  } else {
    ASSIGN_OR_RETURN(const std::vector<double> scores64, r.Doubles("tokenizer.ggml.scores"));
    if (scores64.size() != tokens.size()) {
      return r.Error(absl::StrCat("tokenizer.ggml.scores has ", scores64.size(), " entries for ",
                                  tokens.size(), " tokens"));
    }
    const std::vector<float> scores(scores64.begin(), scores64.end());
    ASSIGN_OR_RETURN(std::optional<int32_t> unk,
                     r.OptionalId("tokenizer.ggml.unknown_token_id", tokens.size()));
    ASSIGN_OR_RETURN(parts.add_space_prefix,
                     r.OptionalBool("tokenizer.ggml.add_space_prefix", true));
    parts.spm = true;
    auto bpe = BpeModel::CreateFromScores(tokens, scores, unk);
    if (!bpe.ok()) return r.Error(std::string(bpe.status().message()));
    parts.model_description = DescribeSpmModel(tokens, scores);
    parts.model.emplace(std::move(*bpe));
    // The decoder of Hugging Face's Llama tokenizer.json: spaces back, bytes reassembled, and the
    // space the encoder prefixed dropped.
    parts.decoder.Add(MakeReplaceDecoder("\xE2\x96\x81", " "));
    parts.decoder.Add(MakeByteFallbackDecoder());
    parts.decoder.Add(MakeFuseDecoder());
    if (parts.add_space_prefix) parts.decoder.Add(MakeStripDecoder(' ', 1, 0));
  }
  return std::unique_ptr<Tokenizer>(std::make_unique<HfTokenizer>(std::move(parts)));
}

}  // namespace
}  // namespace tokenizer_internal

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& gguf) {
  return tokenizer_internal::LoadGguf(gguf);
}

}  // namespace lorasweep
