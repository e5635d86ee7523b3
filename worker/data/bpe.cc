#include "worker/data/bpe.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "worker/data/unicode.h"

namespace lorasweep::tokenizer_internal {
namespace {

constexpr int32_t kDead = INT32_MIN;  // Symbol::id of a symbol merged into its left neighbour
constexpr int32_t kUnknown = -1;      // Symbol::id of a character outside the vocabulary
// Words up to this many symbols merge with a quadratic scan, which beats a heap on short words.
constexpr size_t kSmallWord = 24;

absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string ByteTokenName(int b) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
  return buf;
}

// The raw bytes a byte-level spelling stands for, or nullopt when some character is outside the
// byte alphabet (such a token can never come out of a byte-level word).
std::optional<std::string> DecodeByteLevel(std::string_view spelled) {
  std::string out;
  out.reserve(spelled.size());
  for (size_t pos = 0; pos < spelled.size();) {
    size_t len;
    const int b = unicode::UnicodeToByte(unicode::DecodeUtf8(spelled, pos, &len));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
    pos += len;
  }
  return out;
}

// Words up to this many bytes are remembered per thread; longer ones rarely repeat.
constexpr size_t kMaxCachedWordBytes = 48;
// The cache starts over when it holds this many words, which bounds its memory (a few MB).
constexpr size_t kMaxCachedWords = 1 << 16;

std::atomic<uint64_t> g_next_instance_id{1};

// The ids of words a thread encoded lately, for one model at a time.
struct WordCache {
  uint64_t owner = 0;
  absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> words;  // -> ids[first, +count]
  std::vector<int32_t> ids;
};

}  // namespace

BpeModel::BpeModel() : instance_id_(g_next_instance_id.fetch_add(1)) {}

void BpeModel::PairMap::Reserve(size_t n) {
  size_t cap = 16;
  shift_ = 60;
  while (cap < 2 * n + 16) {
    cap <<= 1;
    --shift_;
  }
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
}

void BpeModel::PairMap::Set(int32_t a, int32_t b, Merge m) {
  const uint64_t key = Key(a, b);
  for (size_t i = Hash(key);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key || s.key == kEmpty) {
      s.key = key;
      s.merge = m;
      return;
    }
  }
}

absl::StatusOr<BpeModel> BpeModel::Create(
    const std::vector<std::pair<std::string, int32_t>>& vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, const BpeOptions& options) {
  BpeModel model;
  model.options_ = options;
  absl::flat_hash_map<std::string, int32_t> spelled;
  spelled.reserve(vocab.size());
  for (const auto& [token, id] : vocab) {
    if (id < 0)
      return absl::InvalidArgumentError(absl::StrCat("negative id for token '", token, "'"));
    spelled[token] = id;
  }
  model.token_ids_.reserve(vocab.size());
  for (const auto& [token, id] : spelled) {
    if (!options.byte_level) {
      model.token_ids_.emplace(token, id);
    } else if (auto raw = DecodeByteLevel(token)) {
      model.token_ids_.emplace(std::move(*raw), id);
    }
  }
  model.merges_.Reserve(merges.size());
  model.merge_list_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto ia = spelled.find(a);
    const auto ib = spelled.find(b);
    if (ia == spelled.end() || ib == spelled.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge #", rank + 1, " ('", a, "' '", b,
                                                     "') uses a token missing from the vocab"));
    }
    joined = a;
    joined += b;
    const auto im = spelled.find(joined);
    if (im == spelled.end()) {
      return absl::InvalidArgumentError(absl::StrCat("merge #", rank + 1, " ('", a, "' '", b,
                                                     "') makes '", joined,
                                                     "', which is missing from the vocab"));
    }
    // As in the reference, a repeated pair keeps its last rank.
    model.merges_.Set(ia->second, ib->second, Merge{static_cast<int32_t>(rank), im->second});
    model.merge_list_.emplace_back(ia->second, ib->second);
  }
  for (int b = 0; b < 256; ++b) {
    std::string sym;
    unicode::AppendUtf8(unicode::ByteToUnicode(static_cast<uint8_t>(b)), &sym);
    const auto is = spelled.find(sym);
    model.byte_symbol_[b] = is == spelled.end() ? -1 : is->second;
    const auto ifb = spelled.find(ByteTokenName(b));
    model.byte_fallback_[b] = ifb == spelled.end() ? -1 : ifb->second;
  }
  model.FillAsciiSymbols();
  if (options.unk_id && *options.unk_id < 0) {
    return absl::InvalidArgumentError("the unk token is missing from the vocab");
  }
  return model;
}

absl::StatusOr<BpeModel> BpeModel::CreateFromScores(const std::vector<std::string>& tokens,
                                                    const std::vector<float>& scores,
                                                    std::optional<int32_t> unk_id) {
  if (scores.size() != tokens.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokens.size(), " tokens but ", scores.size(), " scores"));
  }
  BpeModel model;
  model.options_.unk_id = unk_id;
  model.late_byte_fallback_ = true;
  model.token_ids_.reserve(tokens.size());
  // Like llama.cpp's token_to_id, a repeated text maps to its last id.
  for (size_t i = 0; i < tokens.size(); ++i) model.token_ids_[tokens[i]] = static_cast<int32_t>(i);
  // llama.cpp merges the pair whose concatenation has the highest score; ranks number the distinct
  // scores from the highest, so equal scores tie and the leftmost pair wins, as there.
  std::vector<float> distinct(scores);
  std::sort(distinct.begin(), distinct.end(), std::greater<float>());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  const auto rank_of = [&](float score) {
    return static_cast<int32_t>(
        std::lower_bound(distinct.begin(), distinct.end(), score, std::greater<float>()) -
        distinct.begin());
  };
  size_t pairs = 0;
  for (const auto& t : tokens) pairs += t.size();
  model.merges_.Reserve(pairs);
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string_view text = tokens[id];
    if (model.token_ids_.find(AbslView(text))->second != static_cast<int32_t>(id)) continue;
    // Every split at a character boundary into two tokens is a way to form this token.
    for (size_t k = unicode::Utf8Length(text, 0); k < text.size();
         k += unicode::Utf8Length(text, k)) {
      const auto ia = model.token_ids_.find(AbslView(text.substr(0, k)));
      const auto ib = model.token_ids_.find(AbslView(text.substr(k)));
      if (ia == model.token_ids_.end() || ib == model.token_ids_.end()) continue;
      model.merges_.Set(ia->second, ib->second,
                        Merge{rank_of(scores[id]), static_cast<int32_t>(id)});
    }
  }
  for (int b = 0; b < 256; ++b) {
    model.byte_symbol_[b] = -1;
    const auto it = model.token_ids_.find(ByteTokenName(b));
    model.byte_fallback_[b] = it == model.token_ids_.end() ? -1 : it->second;
  }
  model.FillAsciiSymbols();
  return model;
}

void BpeModel::FillAsciiSymbols() {
  for (int c = 0; c < 128; ++c) {
    const auto it = token_ids_.find(std::string(1, static_cast<char>(c)));
    ascii_symbol_[c] = it == token_ids_.end() ? kUnknown : it->second;
  }
}

void BpeModel::AppendByteTokens(std::string_view bytes, std::vector<int32_t>* out) const {
  for (char c : bytes) {
    const int32_t id = byte_fallback_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      out->push_back(id);
    } else if (options_.unk_id) {
      out->push_back(*options_.unk_id);
    }
  }
}

void BpeModel::Encode(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (word.size() > kMaxCachedWordBytes) {
    EncodeUncached(word, out);
    return;
  }
  thread_local WordCache cache;
  if (cache.owner != instance_id_ || cache.words.size() >= kMaxCachedWords) {
    cache.words.clear();
    cache.ids.clear();
    cache.owner = instance_id_;
  }
  const auto it = cache.words.find(AbslView(word));
  if (it != cache.words.end()) {
    const auto [first, count] = it->second;
    out->insert(out->end(), cache.ids.begin() + first, cache.ids.begin() + first + count);
    return;
  }
  const size_t before = out->size();
  EncodeUncached(word, out);
  cache.words.emplace(std::string(word),
                      std::make_pair(static_cast<uint32_t>(cache.ids.size()),
                                     static_cast<uint32_t>(out->size() - before)));
  cache.ids.insert(cache.ids.end(), out->begin() + before, out->end());
}

void BpeModel::EncodeUncached(std::string_view word, std::vector<int32_t>* out) const {
  if (options_.ignore_merges) {
    const auto it = token_ids_.find(AbslView(word));
    if (it != token_ids_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  const auto add = [&](int32_t id, size_t begin, size_t end) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back(
        Symbol{id, n - 1, -1, static_cast<uint32_t>(begin), static_cast<uint32_t>(end)});
    if (n > 0) symbols[n - 1].next = n;
  };
  // A pending unknown token, flushed before the next known symbol (the reference's order).
  bool unk_pending = false;
  size_t unk_begin = 0;
  std::string unit_spelling;
  for (size_t pos = 0; pos < word.size();) {
    size_t len;
    int32_t id;
    if (options_.byte_level) {
      len = 1;
      id = byte_symbol_[static_cast<uint8_t>(word[pos])];
    } else if (static_cast<uint8_t>(word[pos]) < 0x80) {
      len = 1;
      id = ascii_symbol_[static_cast<uint8_t>(word[pos])];
    } else {
      len = unicode::Utf8Length(word, pos);
      const auto it = token_ids_.find(AbslView(word.substr(pos, len)));
      id = it == token_ids_.end() ? kUnknown : it->second;
    }
    if (id >= 0 || late_byte_fallback_) {
      if (unk_pending) {
        add(*options_.unk_id, unk_begin, pos);
        unk_pending = false;
      }
      add(id, pos, pos + len);
      pos += len;
      continue;
    }
    // The unit's spelling in the vocab's alphabet is what byte fallback spells out.
    std::string_view spelling = word.substr(pos, len);
    if (options_.byte_level) {
      unit_spelling.clear();
      unicode::AppendUtf8(unicode::ByteToUnicode(static_cast<uint8_t>(word[pos])), &unit_spelling);
      spelling = unit_spelling;
    }
    bool fell_back = false;
    if (options_.byte_fallback) {
      fell_back = std::all_of(spelling.begin(), spelling.end(),
                              [&](char c) { return byte_fallback_[static_cast<uint8_t>(c)] >= 0; });
      if (fell_back) {
        for (char c : spelling) add(byte_fallback_[static_cast<uint8_t>(c)], pos, pos + len);
      }
    }
    if (!fell_back && options_.unk_id) {
      if (unk_pending && !options_.fuse_unk) add(*options_.unk_id, unk_begin, pos);
      if (!unk_pending || !options_.fuse_unk) unk_begin = pos;
      unk_pending = true;
    }
    pos += len;
  }
  if (unk_pending) add(*options_.unk_id, unk_begin, word.size());
  if (symbols.empty()) return;

  if (symbols.size() <= kSmallWord) {
    MergeSmall(&symbols);
  } else {
    MergeLarge(&symbols);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    if (s.id >= 0) {
      out->push_back(s.id);
    } else {
      AppendByteTokens(word.substr(s.begin, s.end - s.begin), out);
    }
  }
}

void BpeModel::MergeSmall(std::vector<Symbol>* symbols) const {
  std::vector<Symbol>& sym = *symbols;
  // rank[i]: the merge of symbol i with its right neighbour, INT_MAX when there is none.
  int32_t rank[kSmallWord];
  int32_t merged[kSmallWord];
  const auto refresh = [&](int32_t i) {
    const Merge* m = sym[i].next >= 0 ? merges_.Find(sym[i].id, sym[sym[i].next].id) : nullptr;
    rank[i] = m ? m->rank : INT_MAX;
    merged[i] = m ? m->id : 0;
  };
  for (size_t i = 0; i < sym.size(); ++i) refresh(static_cast<int32_t>(i));
  while (true) {
    int32_t best = -1;
    int32_t best_rank = INT_MAX;
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
      if (rank[i] < best_rank) {
        best_rank = rank[i];
        best = i;
      }
    }
    if (best < 0) break;
    const int32_t right = sym[best].next;
    sym[best].id = merged[best];
    sym[best].end = sym[right].end;
    sym[best].next = sym[right].next;
    if (sym[right].next >= 0) sym[sym[right].next].prev = best;
    sym[right].id = kDead;
    refresh(best);
    if (sym[best].prev >= 0) refresh(sym[best].prev);
  }
}

void BpeModel::MergeLarge(std::vector<Symbol>* symbols) const {
  std::vector<Symbol>& sym = *symbols;
  struct Entry {
    int32_t rank;
    int32_t pos;
    int32_t id;
  };
  // Lowest rank first, then leftmost.
  const auto later = [](const Entry& a, const Entry& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(later)> queue(later);
  const auto push = [&](int32_t i) {
    if (i < 0 || sym[i].next < 0) return;
    if (const Merge* m = merges_.Find(sym[i].id, sym[sym[i].next].id))
      queue.push(Entry{m->rank, i, m->id});
  };
  for (size_t i = 0; i + 1 < sym.size(); ++i) push(static_cast<int32_t>(i));
  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (left.id == kDead || left.next < 0) continue;
    // Stale entries (a neighbour merged since) no longer make the same token.
    const Merge* m = merges_.Find(left.id, sym[left.next].id);
    if (m == nullptr || m->id != top.id) continue;
    const int32_t right = left.next;
    left.id = top.id;
    left.end = sym[right].end;
    left.next = sym[right].next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    sym[right].id = kDead;
    push(left.prev);
    push(top.pos);
  }
}

}  // namespace lorasweep::tokenizer_internal
