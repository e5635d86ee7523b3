// Tokenizer::FromTokenizerJson: reads a Hugging Face tokenizer.json (and, beside it,
// tokenizer_config.json for BOS/EOS and the chat template).
#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/data/tokenizer.h"
#include "worker/data/tokenizer_impl.h"
#include "worker/data/unicode.h"

namespace lorasweep {
namespace tokenizer_internal {
namespace {

using json = nlohmann::json;

// Errors name the file and the JSON location of the problem.
class JsonReader {
 public:
  explicit JsonReader(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }

  absl::Status Error(const std::string& where, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", where, ": ", what));
  }

  absl::StatusOr<std::string> String(const json& obj, const std::string& key,
                                     const std::string& where) const {
    const auto it = obj.find(key);
    if (it == obj.end() || !it->is_string())
      return Error(where, absl::StrCat("\"", key, "\" must be a string"));
    return it->get<std::string>();
  }
  absl::StatusOr<bool> Bool(const json& obj, const std::string& key, bool dflt,
                            const std::string& where) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) return Error(where, absl::StrCat("\"", key, "\" must be true or false"));
    return it->get<bool>();
  }
  absl::StatusOr<int64_t> Int(const json& obj, const std::string& key,
                              const std::string& where) const {
    const auto it = obj.find(key);
    if (it == obj.end() || !it->is_number_integer()) {
      return Error(where, absl::StrCat("\"", key, "\" must be an integer"));
    }
    return it->get<int64_t>();
  }
  absl::StatusOr<std::string> Type(const json& obj, const std::string& where) const {
    if (!obj.is_object()) return Error(where, "must be an object");
    return String(obj, "type", where);
  }
  // A {"String": s} pattern; {"Regex": r} is only accepted when the caller knows the regex.
  absl::StatusOr<std::pair<std::string, std::string>> Pattern(const json& obj,
                                                              const std::string& where) const {
    const auto it = obj.find("pattern");
    if (it == obj.end() || !it->is_object() || it->size() != 1) {
      return Error(where, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
    }
    const std::string kind = it->begin().key();
    const json& value = it->begin().value();
    if ((kind != "String" && kind != "Regex") || !value.is_string()) {
      return Error(where, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
    }
    return std::make_pair(kind, value.get<std::string>());
  }
  // A single-character field (Metaspace replacement, Strip content).
  absl::StatusOr<uint32_t> Char(const json& obj, const std::string& key, uint32_t dflt,
                                const std::string& where) const {
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return dflt;
    if (!it->is_string()) return Error(where, absl::StrCat("\"", key, "\" must be a string"));
    const std::string s = it->get<std::string>();
    size_t len = 0;
    const uint32_t cp = s.empty() ? 0 : unicode::DecodeUtf8(s, 0, &len);
    if (s.empty() || len != s.size()) {
      return Error(where, absl::StrCat("\"", key, "\" must be a single character"));
    }
    return cp;
  }

 private:
  std::string path_;
};

absl::Status AddNormalizer(const JsonReader& r, const json& node, const std::string& where,
                           Normalizer* out) {
  ASSIGN_OR_RETURN(const std::string type, r.Type(node, where));
  if (type == "Sequence") {
    const auto it = node.find("normalizers");
    if (it == node.end() || !it->is_array())
      return r.Error(where, "\"normalizers\" must be a list");
    for (size_t i = 0; i < it->size(); ++i) {
      RETURN_IF_ERROR(
          AddNormalizer(r, (*it)[i], absl::StrCat(where, ".normalizers[", i, "]"), out));
    }
  } else if (type == "NFC") {
    out->Add(MakeNfc());
  } else if (type == "NFD") {
    out->Add(MakeNfd());
  } else if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, r.String(node, "prepend", where));
    out->Add(MakePrepend(std::move(prefix)));
  } else if (type == "Replace") {
    ASSIGN_OR_RETURN(auto pattern, r.Pattern(node, where));
    ASSIGN_OR_RETURN(std::string content, r.String(node, "content", where));
    if (pattern.first != "String" || pattern.second.empty()) {
      return r.Error(where, "only non-empty {\"String\": ...} Replace patterns are supported");
    }
    out->Add(MakeReplace(std::move(pattern.second), std::move(content)));
  } else if (type == "Strip") {
    ASSIGN_OR_RETURN(const bool left, r.Bool(node, "strip_left", true, where));
    ASSIGN_OR_RETURN(const bool right, r.Bool(node, "strip_right", true, where));
    out->Add(MakeStrip(left, right));
  } else {
    return r.Error(where,
                   absl::StrCat("unsupported normalizer type \"", type,
                                "\" (supported: Sequence, NFC, NFD, Prepend, Replace, Strip)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<SplitBehavior> Behavior(const JsonReader& r, const json& node,
                                       const std::string& where) {
  ASSIGN_OR_RETURN(const std::string b, r.String(node, "behavior", where));
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return r.Error(where, absl::StrCat("unknown split behavior \"", b, "\""));
}

absl::StatusOr<PrependScheme> MetaspaceScheme(const JsonReader& r, const json& node,
                                              const std::string& where) {
  const auto it = node.find("prepend_scheme");
  if (it != node.end() && !it->is_null()) {
    if (!it->is_string()) return r.Error(where, "\"prepend_scheme\" must be a string");
    const std::string s = it->get<std::string>();
    if (s == "always") return PrependScheme::kAlways;
    if (s == "first") return PrependScheme::kFirst;
    if (s == "never") return PrependScheme::kNever;
    return r.Error(where, absl::StrCat("unknown prepend_scheme \"", s, "\""));
  }
  // Files written before prepend_scheme existed say add_prefix_space.
  ASSIGN_OR_RETURN(const bool add_prefix_space, r.Bool(node, "add_prefix_space", true, where));
  return add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
}

absl::Status AddPreTokenizer(const JsonReader& r, const json& node, const std::string& where,
                             PreTokenizer* out) {
  ASSIGN_OR_RETURN(const std::string type, r.Type(node, where));
  if (out->byte_level()) {
    // Steps after ByteLevel would see GPT-2's byte alphabet; no real tokenizer does that.
    return r.Error(where, "pre-tokenizer steps after ByteLevel are not supported");
  }
  if (type == "Sequence") {
    const auto it = node.find("pretokenizers");
    if (it == node.end() || !it->is_array())
      return r.Error(where, "\"pretokenizers\" must be a list");
    for (size_t i = 0; i < it->size(); ++i) {
      RETURN_IF_ERROR(
          AddPreTokenizer(r, (*it)[i], absl::StrCat(where, ".pretokenizers[", i, "]"), out));
    }
  } else if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(const bool add_prefix_space, r.Bool(node, "add_prefix_space", true, where));
    ASSIGN_OR_RETURN(const bool use_regex, r.Bool(node, "use_regex", true, where));
    out->Add(MakeByteLevel(add_prefix_space, use_regex));
  } else if (type == "Split") {
    ASSIGN_OR_RETURN(auto pattern, r.Pattern(node, where));
    ASSIGN_OR_RETURN(const SplitBehavior behavior, Behavior(r, node, where));
    ASSIGN_OR_RETURN(const bool invert, r.Bool(node, "invert", false, where));
    if (pattern.first == "String") {
      if (pattern.second.empty()) return r.Error(where, "empty Split pattern");
      out->Add(MakeLiteralSplit(std::move(pattern.second), behavior, invert));
    } else if (const auto rule = SplitRuleFromPattern(pattern.second)) {
      out->Add(MakeRuleSplit(*rule, behavior, invert));
    } else {
      return r.Error(where, absl::StrCat("unsupported Split regex \"", pattern.second,
                                         "\" (supported: the GPT-2, Llama 3 and Qwen2 patterns)"));
    }
  } else if (type == "Digits") {
    ASSIGN_OR_RETURN(const bool individual, r.Bool(node, "individual_digits", false, where));
    out->Add(MakeDigits(individual));
  } else if (type == "Metaspace") {
    ASSIGN_OR_RETURN(const uint32_t replacement, r.Char(node, "replacement", 0x2581, where));
    ASSIGN_OR_RETURN(const PrependScheme scheme, MetaspaceScheme(r, node, where));
    ASSIGN_OR_RETURN(const bool split, r.Bool(node, "split", true, where));
    out->Add(MakeMetaspace(replacement, scheme, split));
  } else if (type == "WhitespaceSplit") {
    out->Add(MakeWhitespaceSplit());
  } else {
    return r.Error(where, absl::StrCat("unsupported pre-tokenizer type \"", type,
                                       "\" (supported: Sequence, ByteLevel, Split, Digits, "
                                       "Metaspace, WhitespaceSplit)"));
  }
  return absl::OkStatus();
}

absl::Status AddDecoder(const JsonReader& r, const json& node, const std::string& where,
                        Decoder* out) {
  ASSIGN_OR_RETURN(const std::string type, r.Type(node, where));
  if (type == "Sequence") {
    const auto it = node.find("decoders");
    if (it == node.end() || !it->is_array()) return r.Error(where, "\"decoders\" must be a list");
    for (size_t i = 0; i < it->size(); ++i) {
      RETURN_IF_ERROR(AddDecoder(r, (*it)[i], absl::StrCat(where, ".decoders[", i, "]"), out));
    }
  } else if (type == "ByteLevel") {
    out->Add(MakeByteLevelDecoder());
  } else if (type == "Replace") {
    ASSIGN_OR_RETURN(auto pattern, r.Pattern(node, where));
    ASSIGN_OR_RETURN(std::string content, r.String(node, "content", where));
    if (pattern.first != "String")
      return r.Error(where, "only {\"String\": ...} Replace patterns are supported");
    out->Add(MakeReplaceDecoder(std::move(pattern.second), std::move(content)));
  } else if (type == "ByteFallback") {
    out->Add(MakeByteFallbackDecoder());
  } else if (type == "Fuse") {
    out->Add(MakeFuseDecoder());
  } else if (type == "Strip") {
    ASSIGN_OR_RETURN(const uint32_t content, r.Char(node, "content", ' ', where));
    ASSIGN_OR_RETURN(const int64_t start, r.Int(node, "start", where));
    ASSIGN_OR_RETURN(const int64_t stop, r.Int(node, "stop", where));
    out->Add(MakeStripDecoder(content, static_cast<int>(start), static_cast<int>(stop)));
  } else if (type == "Metaspace") {
    ASSIGN_OR_RETURN(const uint32_t replacement, r.Char(node, "replacement", 0x2581, where));
    ASSIGN_OR_RETURN(const PrependScheme scheme, MetaspaceScheme(r, node, where));
    out->Add(MakeMetaspaceDecoder(replacement, scheme != PrependScheme::kNever));
  } else {
    return r.Error(where, absl::StrCat("unsupported decoder type \"", type,
                                       "\" (supported: Sequence, ByteLevel, Replace, ByteFallback, "
                                       "Fuse, Strip, Metaspace)"));
  }
  return absl::OkStatus();
}

// BOS / EOS token names and the chat template from tokenizer_config.json, when it exists.
struct ConfigExtras {
  std::optional<std::string> bos;
  std::optional<std::string> eos;
  std::optional<std::string> chat_template;
};

absl::StatusOr<ConfigExtras> ReadTokenizerConfig(const std::string& tokenizer_json) {
  ConfigExtras extras;
  const auto path = std::filesystem::path(tokenizer_json).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return extras;
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path.string()));
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": malformed JSON"));
  }
  const auto token_name = [&](const char* key) -> std::optional<std::string> {
    const auto it = j.find(key);
    if (it == j.end()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
      return (*it)["content"].get<std::string>();
    }
    return std::nullopt;
  };
  extras.bos = token_name("bos_token");
  extras.eos = token_name("eos_token");
  const auto it = j.find("chat_template");
  if (it != j.end() && it->is_string()) {
    extras.chat_template = it->get<std::string>();
  } else if (it != j.end() && it->is_array()) {
    for (const auto& t : *it) {
      if (t.is_object() && t.contains("name") && t["name"] == "default" && t.contains("template") &&
          t["template"].is_string()) {
        extras.chat_template = t["template"].get<std::string>();
      }
    }
  }
  return extras;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizerJson(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": malformed JSON: ", e.what()));
  }
  const JsonReader r(path);
  if (!root.is_object()) return r.Error("top level", "must be an object");
  TokenizerParts parts;
  parts.source = path;

  if (const auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    RETURN_IF_ERROR(AddNormalizer(r, *it, "normalizer", &parts.normalizer));
  }
  if (const auto it = root.find("pre_tokenizer"); it != root.end() && !it->is_null()) {
    RETURN_IF_ERROR(AddPreTokenizer(r, *it, "pre_tokenizer", &parts.pre_tokenizer));
  }
  if (const auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
    RETURN_IF_ERROR(AddDecoder(r, *it, "decoder", &parts.decoder));
  }

  // The model.
  const auto model_it = root.find("model");
  if (model_it == root.end() || !model_it->is_object())
    return r.Error("model", "missing or not an object");
  const json& model = *model_it;
  std::string type = "BPE";  // very old files leave the type out
  if (const auto it = model.find("type"); it != model.end()) {
    if (!it->is_string()) return r.Error("model", "\"type\" must be a string");
    type = it->get<std::string>();
  }
  if (type != "BPE") {
    return r.Error("model", absl::StrCat("unsupported model type \"", type, "\" (supported: BPE)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty())) {
      return r.Error("model", absl::StrCat("\"", key, "\" is not supported"));
    }
  }
  if (const auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() != 0.0) {
      return r.Error("model", "BPE dropout is not supported (it makes encoding random)");
    }
  }
  const auto vocab_it = model.find("vocab");
  if (vocab_it == model.end() || !vocab_it->is_object())
    return r.Error("model.vocab", "must be an object");
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve(vocab_it->size());
  for (const auto& [token, id] : vocab_it->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      return r.Error("model.vocab", absl::StrCat("bad id for token \"", token, "\""));
    }
    vocab.emplace_back(token, static_cast<int32_t>(id.get<int64_t>()));
  }
  std::sort(vocab.begin(), vocab.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  const auto merges_it = model.find("merges");
  if (merges_it == model.end() || !merges_it->is_array())
    return r.Error("model.merges", "must be a list");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_it->size());
  for (size_t i = 0; i < merges_it->size(); ++i) {
    const json& m = (*merges_it)[i];
    if (m.is_string()) {
      // The legacy form "a b": tokens never contain the space that separates them.
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return r.Error(absl::StrCat("model.merges[", i, "]"),
                       absl::StrCat("\"", s, "\" is not two tokens"));
      }
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return r.Error(absl::StrCat("model.merges[", i, "]"), "must be \"a b\" or [\"a\", \"b\"]");
    }
  }
  BpeOptions options;
  options.byte_level = parts.pre_tokenizer.byte_level();
  ASSIGN_OR_RETURN(options.byte_fallback, r.Bool(model, "byte_fallback", false, "model"));
  ASSIGN_OR_RETURN(options.ignore_merges, r.Bool(model, "ignore_merges", false, "model"));
  ASSIGN_OR_RETURN(options.fuse_unk, r.Bool(model, "fuse_unk", false, "model"));
  if (const auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string()) return r.Error("model", "\"unk_token\" must be a string or null");
    const std::string unk = it->get<std::string>();
    const auto found =
        std::find_if(vocab.begin(), vocab.end(), [&](const auto& v) { return v.first == unk; });
    if (found == vocab.end()) {
      return r.Error("model", absl::StrCat("unk_token \"", unk, "\" is not in the vocab"));
    }
    options.unk_id = found->second;
  }
  auto bpe = BpeModel::Create(vocab, merges, options);
  if (!bpe.ok()) return r.Error("model", std::string(bpe.status().message()));
  parts.model_description = DescribeBpeModel(vocab, *bpe, options);
  parts.model.emplace(std::move(*bpe));

  // Added tokens.
  if (const auto it = root.find("added_tokens"); it != root.end() && !it->is_null()) {
    if (!it->is_array()) return r.Error("added_tokens", "must be a list");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& t = (*it)[i];
      const std::string where = absl::StrCat("added_tokens[", i, "]");
      if (!t.is_object()) return r.Error(where, "must be an object");
      AddedTokenSpec spec;
      ASSIGN_OR_RETURN(spec.content, r.String(t, "content", where));
      ASSIGN_OR_RETURN(const int64_t id, r.Int(t, "id", where));
      if (id < 0 || id > INT32_MAX) return r.Error(where, "bad id");
      spec.id = static_cast<int32_t>(id);
      ASSIGN_OR_RETURN(spec.special, r.Bool(t, "special", false, where));
      ASSIGN_OR_RETURN(spec.lstrip, r.Bool(t, "lstrip", false, where));
      ASSIGN_OR_RETURN(spec.rstrip, r.Bool(t, "rstrip", false, where));
      ASSIGN_OR_RETURN(spec.single_word, r.Bool(t, "single_word", false, where));
      ASSIGN_OR_RETURN(spec.normalized, r.Bool(t, "normalized", !spec.special, where));
      if (spec.content.empty()) continue;  // the reference ignores empty added tokens
      parts.added_tokens.push_back(std::move(spec));
    }
  }

  ASSIGN_OR_RETURN(const ConfigExtras extras, ReadTokenizerConfig(path));
  parts.chat_template = extras.chat_template;
  const auto id_of = [&](const std::string& name) -> std::optional<int32_t> {
    for (const AddedTokenSpec& t : parts.added_tokens) {
      if (t.content == name) return t.id;
    }
    for (const auto& [token, id] : vocab) {
      if (token == name) return id;
    }
    return std::nullopt;
  };
  if (extras.bos) parts.bos_id = id_of(*extras.bos);
  if (extras.eos) parts.eos_id = id_of(*extras.eos);
  if (!extras.bos && !extras.eos) {
    // Without a tokenizer_config.json, recognize the usual names among the special tokens.
    for (const AddedTokenSpec& t : parts.added_tokens) {
      if (!t.special) continue;
      if (!parts.bos_id && (t.content == "<s>" || t.content == "<|begin_of_text|>"))
        parts.bos_id = t.id;
      if (!parts.eos_id && (t.content == "</s>" || t.content == "<|end_of_text|>" ||
                            t.content == "<|endoftext|>" || t.content == "<|im_end|>")) {
        parts.eos_id = t.id;
      }
    }
  }
  parts.vocab = std::move(vocab);
  return std::unique_ptr<Tokenizer>(std::make_unique<HfTokenizer>(std::move(parts)));
}

}  // namespace

std::string DescribeBpeModel(const std::vector<std::pair<std::string, int32_t>>& vocab,
                             const BpeModel& model, const BpeOptions& options) {
  std::string out =
      absl::StrCat("bpe byte_level=", options.byte_level, " byte_fallback=", options.byte_fallback,
                   " ignore_merges=", options.ignore_merges, " fuse_unk=", options.fuse_unk,
                   " unk=", options.unk_id ? *options.unk_id : -1, "\n");
  for (const auto& [token, id] : vocab) absl::StrAppend(&out, "v ", id, " ", token, "\n");
  for (const auto& [a, b] : model.merge_list()) absl::StrAppend(&out, "m ", a, " ", b, "\n");
  return out;
}

std::string DescribeSpmModel(const std::vector<std::string>& tokens,
                             const std::vector<float>& scores) {
  std::string out = "spm\n";
  for (size_t i = 0; i < tokens.size(); ++i) {
    absl::StrAppend(&out, "v ", i, " ", scores[i], " ", tokens[i], "\n");
  }
  return out;
}

}  // namespace tokenizer_internal

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromTokenizerJson(const std::string& path) {
  return tokenizer_internal::LoadTokenizerJson(path);
}

}  // namespace lorasweep
