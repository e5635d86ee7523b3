#include "worker/data/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "worker/data/tokenizer_impl.h"
#include "worker/data/unicode.h"
#include "worker/formats/gguf.h"

namespace lorasweep {
namespace tokenizer_internal {
namespace {

// A reused per-thread buffer pair for pre-tokenization, so Encode does not allocate per word.
struct ThreadScratch {
  PieceList pieces;
  PieceList scratch;
};

ThreadScratch& Scratch() {
  thread_local ThreadScratch scratch;
  return scratch;
}

bool IsWordChar(uint32_t cp) { return (unicode::Flags(cp) & unicode::kWord) != 0; }
bool IsSpace(uint32_t cp) { return (unicode::Flags(cp) & unicode::kWhiteSpace) != 0; }

// Start of the character that ends at `end` (end > 0).
size_t PrevCharStart(std::string_view s, size_t end) {
  size_t start = end - 1;
  while (start > 0 && end - start < 4 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
  size_t len;
  unicode::DecodeUtf8(s, start, &len);
  return start + len == end ? start : end - 1;
}

uint32_t CharBefore(std::string_view s, size_t end) {
  size_t len;
  return unicode::DecodeUtf8(s, PrevCharStart(s, end), &len);
}

}  // namespace

void AddedTokenMatcher::Build(const std::vector<std::string>& patterns,
                              const std::vector<int>& tokens) {
  nodes_.assign(1, Node{});
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
  for (size_t i = 0; i < patterns.size(); ++i) {
    const std::string& p = patterns[i];
    if (p.empty()) continue;
    first_byte_[static_cast<uint8_t>(p[0])] = true;
    int32_t node = 0;
    for (char c : p) {
      const auto b = static_cast<uint8_t>(c);
      int32_t next = Child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        auto& children = nodes_[node].children;
        children.insert(
            std::lower_bound(children.begin(), children.end(), std::make_pair(b, int32_t{-1})),
            {b, next});
        nodes_.push_back(Node{});
      }
      node = next;
    }
    // The first of identical patterns wins, like the first-listed Aho-Corasick pattern.
    if (nodes_[node].token < 0) nodes_[node].token = tokens[i];
  }
}

int32_t AddedTokenMatcher::Child(int32_t node, uint8_t byte) const {
  const auto& children = nodes_[node].children;
  const auto it =
      std::lower_bound(children.begin(), children.end(), std::make_pair(byte, int32_t{-1}));
  return it != children.end() && it->first == byte ? it->second : -1;
}

bool AddedTokenMatcher::Find(std::string_view text, size_t from, size_t* begin, size_t* end,
                             int* token) const {
  if (empty()) return false;
  for (size_t pos = from; pos < text.size(); ++pos) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) continue;
    int32_t node = 0;
    int best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      node = Child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_end = i + 1;
      }
    }
    if (best >= 0) {
      *begin = pos;
      *end = best_end;
      *token = best;
      return true;
    }
  }
  return false;
}

HfTokenizer::HfTokenizer(TokenizerParts parts) : parts_(std::move(parts)) {
  // Special tokens come first in the reference's tries, then the others, each in listed order.
  std::vector<int> order;
  for (size_t i = 0; i < parts_.added_tokens.size(); ++i) {
    if (parts_.added_tokens[i].special) order.push_back(static_cast<int>(i));
  }
  for (size_t i = 0; i < parts_.added_tokens.size(); ++i) {
    if (!parts_.added_tokens[i].special) order.push_back(static_cast<int>(i));
  }
  int32_t max_id = -1;
  for (const auto& [token, id] : parts_.vocab) max_id = std::max(max_id, id);
  for (const AddedTokenSpec& t : parts_.added_tokens) max_id = std::max(max_id, t.id);
  tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
  valid_id_.assign(tokens_.size(), 0);
  for (const auto& [token, id] : parts_.vocab) {
    tokens_[id] = token;
    valid_id_[id] = 1;
  }

  std::vector<std::string> raw_patterns, norm_patterns;
  std::vector<int> raw_tokens, norm_tokens;
  for (int i : order) {
    const AddedTokenSpec& t = parts_.added_tokens[i];
    if (t.normalized && !parts_.spm) {
      norm_patterns.push_back(parts_.normalizer.Normalize(t.content));
      norm_tokens.push_back(i);
      // The reference spells such a token normalized when it turns ids back into strings.
      tokens_[t.id] = norm_patterns.back();
    } else {
      raw_patterns.push_back(t.content);
      raw_tokens.push_back(i);
      tokens_[t.id] = t.content;
    }
    valid_id_[t.id] = 1;
  }
  raw_matcher_.Build(raw_patterns, raw_tokens);
  normalized_matcher_.Build(norm_patterns, norm_tokens);
  longest_first_ = order;
  std::stable_sort(longest_first_.begin(), longest_first_.end(), [&](int a, int b) {
    return parts_.added_tokens[a].content.size() > parts_.added_tokens[b].content.size();
  });

  // Lookups by string try the added tokens first, then the model vocabulary, as the reference does.
  for (const AddedTokenSpec& t : parts_.added_tokens) token_to_id_.emplace(t.content, t.id);
  for (const auto& [token, id] : parts_.vocab) token_to_id_.emplace(token, id);
  if (parts_.decoder.size() == 1 && parts_.decoder.Describe() == "[ByteLevel();]") {
    byte_level_bytes_.resize(tokens_.size());
    for (size_t id = 0; id < tokens_.size(); ++id) {
      byte_level_bytes_[id] = ByteLevelTokenBytes(tokens_[id]);
    }
  }
  parts_.vocab.clear();
  parts_.vocab.shrink_to_fit();

  std::string material = "lorasweep-tokenizer/1\n";
  absl::StrAppend(&material, "normalizer ", parts_.normalizer.Describe(), "\n");
  absl::StrAppend(&material, "pre_tokenizer ", parts_.pre_tokenizer.Describe(), "\n");
  absl::StrAppend(&material, "spm ", parts_.spm ? 1 : 0, " ", parts_.add_space_prefix ? 1 : 0,
                  "\n");
  std::vector<const AddedTokenSpec*> added;
  for (const AddedTokenSpec& t : parts_.added_tokens) added.push_back(&t);
  std::stable_sort(added.begin(), added.end(),
                   [](const AddedTokenSpec* a, const AddedTokenSpec* b) { return a->id < b->id; });
  for (const AddedTokenSpec* t : added) {
    absl::StrAppend(&material, "added ", t->id, " ", t->special, t->lstrip, t->rstrip,
                    t->single_word, t->normalized, " ", t->content, "\n");
  }
  material += parts_.model_description;
  fingerprint_ = Sha256Hex(material);
  parts_.model_description.clear();
  parts_.model_description.shrink_to_fit();
}

void HfTokenizer::SplitAdded(std::string_view text, const AddedTokenMatcher& matcher,
                             bool parse_special, std::vector<Span>* out) const {
  out->clear();
  size_t start_offset = 0;
  size_t pos = 0;
  size_t b, e;
  int tok;
  while (matcher.Find(text, pos, &b, &e, &tok)) {
    // Like the reference's match iterator, the search resumes after this match even when the
    // match is then discarded.
    pos = e;
    const AddedTokenSpec& t = parts_.added_tokens[tok];
    if (!parse_special && t.special) continue;
    if (t.single_word) {
      const bool start_space = b == 0 || !IsWordChar(CharBefore(text, b));
      size_t len;
      const bool stop_space = e == text.size() || !IsWordChar(unicode::DecodeUtf8(text, e, &len));
      if (!start_space || !stop_space) continue;
    }
    size_t start = b;
    size_t stop = e;
    if (t.lstrip) {
      size_t s = start;
      while (s > 0 && IsSpace(CharBefore(text, s))) s = PrevCharStart(text, s);
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      while (stop < text.size()) {
        size_t len;
        if (!IsSpace(unicode::DecodeUtf8(text, stop, &len))) break;
        stop += len;
      }
    }
    if (start_offset < start) out->push_back(Span{start_offset, start, -1});
    out->push_back(Span{start, stop, tok});
    start_offset = stop;
  }
  if (start_offset < text.size()) out->push_back(Span{start_offset, text.size(), -1});
}

void HfTokenizer::SplitSpecialLongestFirst(std::string_view text, bool parse_special,
                                           std::vector<Span>* out) const {
  out->clear();
  if (!text.empty()) out->push_back(Span{0, text.size(), -1});
  std::vector<Span> next;
  for (int tok : longest_first_) {
    const AddedTokenSpec& t = parts_.added_tokens[tok];
    if ((!parse_special && t.special) || t.content.empty()) continue;
    next.clear();
    for (const Span& s : *out) {
      if (s.token >= 0) {
        next.push_back(s);
        continue;
      }
      size_t prev = s.begin;
      const std::string_view frag = text.substr(0, s.end);
      for (size_t at = frag.find(t.content, prev); at != std::string_view::npos;
           at = frag.find(t.content, prev)) {
        if (at > prev) next.push_back(Span{prev, at, -1});
        next.push_back(Span{at, at + t.content.size(), tok});
        prev = at + t.content.size();
      }
      if (prev < s.end) next.push_back(Span{prev, s.end, -1});
    }
    out->swap(next);
  }
}

void HfTokenizer::EncodeSegment(std::string_view text, bool at_start,
                                std::vector<int32_t>* ids) const {
  if (text.empty()) return;
  ThreadScratch& ts = Scratch();
  if (parts_.pre_tokenizer.empty()) {
    parts_.model->Encode(text, ids);
    return;
  }
  parts_.pre_tokenizer.Run(text, at_start, &ts.pieces, &ts.scratch);
  const std::string& buffer = ts.pieces.text;
  for (const Piece& p : ts.pieces.pieces) {
    parts_.model->Encode(std::string_view(buffer.data() + p.begin, p.end - p.begin), ids);
  }
}

std::vector<int32_t> HfTokenizer::Encode(std::string_view text, bool parse_special) const {
  if (parts_.spm) return EncodeSpm(text, parse_special);
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<Span> raw_spans;
  std::vector<Span> norm_spans;
  SplitAdded(text, raw_matcher_, parse_special, &raw_spans);
  for (const Span& raw : raw_spans) {
    if (raw.token >= 0) {
      ids.push_back(parts_.added_tokens[raw.token].id);
      continue;
    }
    const std::string_view segment = text.substr(raw.begin, raw.end - raw.begin);
    std::string normalized;
    std::string_view view = segment;
    if (!parts_.normalizer.empty()) {
      normalized = parts_.normalizer.Normalize(segment);
      view = normalized;
    }
    if (normalized_matcher_.empty()) {
      EncodeSegment(view, raw.begin == 0, &ids);
      continue;
    }
    SplitAdded(view, normalized_matcher_, parse_special, &norm_spans);
    for (const Span& s : norm_spans) {
      if (s.token >= 0) {
        ids.push_back(parts_.added_tokens[s.token].id);
      } else {
        EncodeSegment(view.substr(s.begin, s.end - s.begin), raw.begin == 0 && s.begin == 0, &ids);
      }
    }
  }
  return ids;
}

std::vector<int32_t> HfTokenizer::EncodeSpm(std::string_view text, bool parse_special) const {
  std::vector<int32_t> ids;
  std::vector<Span> spans;
  SplitSpecialLongestFirst(text, parse_special, &spans);
  bool prev_special = true;
  std::string fragment;
  for (const Span& s : spans) {
    if (s.token >= 0) {
      ids.push_back(parts_.added_tokens[s.token].id);
      prev_special = true;
      continue;
    }
    fragment.clear();
    if (parts_.add_space_prefix && prev_special) fragment = "\xE2\x96\x81";
    for (char c : text.substr(s.begin, s.end - s.begin)) {
      if (c == ' ') {
        fragment += "\xE2\x96\x81";
      } else {
        fragment.push_back(c);
      }
    }
    parts_.model->Encode(fragment, &ids);
    prev_special = false;
  }
  return ids;
}

std::string HfTokenizer::Decode(std::span<const int32_t> ids) const {
  const auto valid = [&](int32_t id) {
    return id >= 0 && static_cast<size_t>(id) < valid_id_.size() && valid_id_[id];
  };
  if (!byte_level_bytes_.empty()) {
    std::string bytes;
    for (int32_t id : ids) {
      if (valid(id)) bytes += byte_level_bytes_[id];
    }
    return unicode::ToValidUtf8Lossy(bytes);
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (valid(id)) tokens.push_back(tokens_[id]);
  }
  return parts_.decoder.Decode(std::move(tokens));
}

std::optional<int32_t> HfTokenizer::TokenToId(std::string_view token) const {
  const auto it = token_to_id_.find(absl::string_view(token.data(), token.size()));
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> HfTokenizer::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= valid_id_.size() || !valid_id_[id]) return std::nullopt;
  return tokens_[id];
}

}  // namespace tokenizer_internal

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromModel(const std::string& model_path) {
  std::error_code ec;
  const std::filesystem::path path(model_path);
  if (std::filesystem::is_directory(path, ec)) {
    const std::filesystem::path json = path / "tokenizer.json";
    if (std::filesystem::exists(json, ec)) return FromTokenizerJson(json.string());
    // A folder holding a single GGUF file is a GGUF model too.
    std::vector<std::filesystem::path> ggufs;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      if (entry.path().extension() == ".gguf") ggufs.push_back(entry.path());
    }
    if (ggufs.size() == 1) return FromModel(ggufs[0].string());
    return absl::NotFoundError(absl::StrCat(model_path, ": no tokenizer.json in this folder",
                                            ggufs.size() > 1 ? " (and several .gguf files)" : ""));
  }
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(model_path, ": no such file or folder"));
  }
  if (path.extension() == ".gguf") {
    ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(model_path));
    return FromGguf(*gguf);
  }
  if (path.extension() == ".json") return FromTokenizerJson(model_path);
  return absl::InvalidArgumentError(
      absl::StrCat(model_path, ": not a model folder, a tokenizer.json or a .gguf file"));
}

}  // namespace lorasweep
