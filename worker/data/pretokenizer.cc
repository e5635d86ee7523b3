#include "worker/data/pretokenizer.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/data/unicode.h"

namespace lorasweep::tokenizer_internal {
namespace {

using unicode::DecodeUtf8;
using unicode::Flags;

constexpr char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The classes the split rules distinguish. Every code point is exactly one of them.
enum CharClass : uint8_t { kClassLetter, kClassNumber, kClassSpace, kClassOther };

inline CharClass ClassOf(uint32_t cp) {
  if (cp < 0x80) {
    // ASCII dominates real text: classify it without the table.
    if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return kClassLetter;
    if (cp >= '0' && cp <= '9') return kClassNumber;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r')) return kClassSpace;
    return kClassOther;
  }
  const uint8_t f = Flags(cp);
  if (f & unicode::kLetter) return kClassLetter;
  if (f & unicode::kNumber) return kClassNumber;
  if (f & unicode::kWhiteSpace) return kClassSpace;
  return kClassOther;
}

// A forward reader over a piece of text.
struct Cursor {
  std::string_view s;
  // Class and byte length of the character at `pos` (pos < s.size()).
  CharClass At(size_t pos, size_t* len) const {
    const auto b = static_cast<uint8_t>(s[pos]);
    if (b < 0x80) {
      *len = 1;
      return ClassOf(b);
    }
    return ClassOf(DecodeUtf8(s, pos, len));
  }
  // End of the run of characters of class `c` starting at `pos`.
  size_t RunEnd(size_t pos, CharClass c) const {
    while (pos < s.size()) {
      size_t len;
      if (At(pos, &len) != c) break;
      pos += len;
    }
    return pos;
  }
  // End of the run of at most `max` characters of class `c` starting at `pos`.
  size_t RunEndMax(size_t pos, CharClass c, int max) const {
    for (int n = 0; n < max && pos < s.size(); ++n) {
      size_t len;
      if (At(pos, &len) != c) break;
      pos += len;
    }
    return pos;
  }
};

// \s+(?!\S) then \s+ at the start of a whitespace run [pos, end): the whole run when it ends the
// text, else all but its last character (which stays to prefix the next word), unless that leaves
// nothing.
size_t TrailingSpaceMatch(const Cursor& c, size_t pos) {
  size_t last_start = pos;
  size_t end = pos;
  while (end < c.s.size()) {
    size_t len;
    if (c.At(end, &len) != kClassSpace) break;
    last_start = end;
    end += len;
  }
  if (end == c.s.size() || last_start == pos) return end - pos;
  return last_start - pos;
}

size_t MatchGpt2(std::string_view s, size_t pos) {
  const Cursor c{s};
  const char ch = s[pos];
  if (ch == '\'' && pos + 1 < s.size()) {
    const char n = s[pos + 1];
    if (n == 's' || n == 't' || n == 'm' || n == 'd') return 2;
    if (pos + 2 < s.size()) {
      const char n2 = s[pos + 2];
      if ((n == 'r' && n2 == 'e') || (n == 'v' && n2 == 'e') || (n == 'l' && n2 == 'l')) return 3;
    }
  }
  size_t len;
  if (ch == ' ' && pos + 1 < s.size()) {
    size_t len2;
    const CharClass next = c.At(pos + 1, &len2);
    if (next != kClassSpace) return c.RunEnd(pos + 1, next) - pos;
  }
  const CharClass cls = c.At(pos, &len);
  if (cls != kClassSpace) return c.RunEnd(pos, cls) - pos;
  return TrailingSpaceMatch(c, pos);
}

// Length of a case-insensitive contraction ('s 't 're 've 'm 'll 'd) at `pos`, or 0. Oniguruma's
// case folding also lets U+017F LATIN SMALL LETTER LONG S stand for 's'.
size_t ContractionIgnoreCase(std::string_view s, size_t pos) {
  if (s[pos] != '\'' || pos + 1 >= s.size()) return 0;
  const auto b1 = static_cast<uint8_t>(s[pos + 1]);
  if (b1 == 0xC5) return pos + 2 < s.size() && static_cast<uint8_t>(s[pos + 2]) == 0xBF ? 3 : 0;
  if (b1 >= 0x80) return 0;
  // For ASCII, b | 0x20 lands in 'a'..'z' exactly for letters, giving their lower case.
  const char l1 = static_cast<char>(b1 | 0x20);
  if (l1 == 's' || l1 == 't' || l1 == 'm' || l1 == 'd') return 2;
  if (pos + 2 >= s.size() || static_cast<uint8_t>(s[pos + 2]) >= 0x80) return 0;
  const char l2 = static_cast<char>(s[pos + 2] | 0x20);
  if ((l1 == 'r' && l2 == 'e') || (l1 == 'v' && l2 == 'e') || (l1 == 'l' && l2 == 'l')) return 3;
  return 0;
}

bool IsCrOrLf(char ch) { return ch == '\r' || ch == '\n'; }

size_t MatchLlama3(std::string_view s, size_t pos, int max_digits) {
  const Cursor c{s};
  if (const size_t n = ContractionIgnoreCase(s, pos)) return n;
  size_t len;
  const CharClass cls = c.At(pos, &len);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (cls == kClassLetter) return c.RunEnd(pos, kClassLetter) - pos;
  if (cls != kClassNumber && !IsCrOrLf(s[pos]) && pos + len < s.size()) {
    size_t len2;
    if (c.At(pos + len, &len2) == kClassLetter) return c.RunEnd(pos + len, kClassLetter) - pos;
  }
  // \p{N}{1,3}
  if (cls == kClassNumber) return c.RunEndMax(pos, kClassNumber, max_digits) - pos;
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  size_t other_start = SIZE_MAX;
  if (cls == kClassOther) {
    other_start = pos;
  } else if (s[pos] == ' ' && pos + 1 < s.size()) {
    size_t len2;
    if (c.At(pos + 1, &len2) == kClassOther) other_start = pos + 1;
  }
  if (other_start != SIZE_MAX) {
    size_t end = c.RunEnd(other_start, kClassOther);
    while (end < s.size() && IsCrOrLf(s[end])) ++end;
    return end - pos;
  }
  // What is left is a whitespace run. \s*[\r\n]+ ends it after its last line break, when it has
  // one.
  size_t end = pos;
  size_t after_last_break = 0;
  while (end < s.size()) {
    size_t l;
    if (c.At(end, &l) != kClassSpace) break;
    if (IsCrOrLf(s[end])) after_last_break = end + 1;
    end += l;
  }
  if (after_last_break != 0) return after_last_break - pos;
  return TrailingSpaceMatch(c, pos);
}

// A stretch of a piece: a match of the split's delimiter pattern, or text between matches.
struct Segment {
  uint32_t begin;
  uint32_t end;
  bool is_match;
};

// Adds the pieces of one split of `piece` to `out`, following the reference's
// NormalizedString::split: `segments` cover the piece in order; `behavior` decides what becomes of
// the matches; empty pieces vanish.
void EmitSplit(const Piece& piece, const std::vector<Segment>& segments, SplitBehavior behavior,
               std::vector<Piece>* out) {
  const size_t first = out->size();
  const auto push = [&](uint32_t b, uint32_t e) {
    out->push_back(Piece{b, e, piece.at_start && b == piece.begin});
  };
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (const Segment& s : segments) push(s.begin, s.end);
      break;
    case SplitBehavior::kRemoved:
      for (const Segment& s : segments) {
        if (!s.is_match) push(s.begin, s.end);
      }
      break;
    case SplitBehavior::kContiguous: {
      bool previous = false;
      for (const Segment& s : segments) {
        if (s.is_match == previous && out->size() > first) {
          out->back().end = s.end;
        } else {
          push(s.begin, s.end);
        }
        previous = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous = false;
      for (const Segment& s : segments) {
        if (s.is_match && !previous && out->size() > first) {
          out->back().end = s.end;
        } else {
          push(s.begin, s.end);
        }
        previous = s.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      // The reference folds from the right: a delimiter joins the piece after it.
      bool next_is_match = false;
      thread_local std::vector<Piece> reversed;
      reversed.clear();
      for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
        if (it->is_match && !next_is_match && !reversed.empty()) {
          reversed.back().begin = it->begin;
        } else {
          reversed.push_back(Piece{it->begin, it->end, false});
        }
        next_is_match = it->is_match;
      }
      for (auto it = reversed.rbegin(); it != reversed.rend(); ++it) push(it->begin, it->end);
      break;
    }
  }
  // Drop empty pieces.
  size_t w = first;
  for (size_t r = first; r < out->size(); ++r) {
    if ((*out)[r].end > (*out)[r].begin) (*out)[w++] = (*out)[r];
  }
  out->resize(w);
}

const char* BehaviorName(SplitBehavior b) {
  switch (b) {
    case SplitBehavior::kRemoved:
      return "Removed";
    case SplitBehavior::kIsolated:
      return "Isolated";
    case SplitBehavior::kMergedWithPrevious:
      return "MergedWithPrevious";
    case SplitBehavior::kMergedWithNext:
      return "MergedWithNext";
    case SplitBehavior::kContiguous:
      return "Contiguous";
  }
  return "?";
}

// A split whose delimiters come from a segment generator over one piece.
class SegmentSplit : public PreTokenizerStep {
 public:
  SegmentSplit(SplitBehavior behavior, bool invert) : behavior_(behavior), invert_(invert) {}

  void Apply(PieceList* list, PieceList* scratch) const override {
    scratch->pieces.clear();
    std::vector<Segment> segments;
    for (const Piece& piece : list->pieces) {
      segments.clear();
      const std::string_view text(list->text.data() + piece.begin, piece.end - piece.begin);
      Segments(text, piece.begin, &segments);
      if (invert_) {
        for (Segment& s : segments) s.is_match = !s.is_match;
      }
      EmitSplit(piece, segments, behavior_, &scratch->pieces);
    }
    list->pieces.swap(scratch->pieces);
  }

 protected:
  // Appends segments covering `text` (which starts at `offset` in the list's text).
  virtual void Segments(std::string_view text, uint32_t offset,
                        std::vector<Segment>* out) const = 0;
  std::string BehaviorSuffix() const {
    return absl::StrCat(",behavior=", BehaviorName(behavior_), ",invert=", invert_ ? 1 : 0, ")");
  }

 private:
  SplitBehavior behavior_;
  bool invert_;
};

class RuleSplit : public SegmentSplit {
 public:
  RuleSplit(SplitRule rule, SplitBehavior behavior, bool invert)
      : SegmentSplit(behavior, invert),
        rule_(rule),
        fast_(behavior == SplitBehavior::kIsolated && !invert) {}

  void Apply(PieceList* list, PieceList* scratch) const override {
    if (!fast_) {
      SegmentSplit::Apply(list, scratch);
      return;
    }
    // Isolated matches that tile the piece are the pieces themselves.
    scratch->pieces.clear();
    for (const Piece& piece : list->pieces) {
      const std::string_view text(list->text.data() + piece.begin, piece.end - piece.begin);
      for (size_t pos = 0; pos < text.size();) {
        const size_t n = MatchSplitRule(rule_, text, pos);
        scratch->pieces.push_back(Piece{static_cast<uint32_t>(piece.begin + pos),
                                        static_cast<uint32_t>(piece.begin + pos + n),
                                        piece.at_start && pos == 0});
        pos += n;
      }
    }
    list->pieces.swap(scratch->pieces);
  }

  std::string Describe() const override {
    return absl::StrCat("Split(regex=", SplitRulePattern(rule_), BehaviorSuffix());
  }

 protected:
  void Segments(std::string_view text, uint32_t offset, std::vector<Segment>* out) const override {
    for (size_t pos = 0; pos < text.size();) {
      const size_t n = MatchSplitRule(rule_, text, pos);
      out->push_back(Segment{static_cast<uint32_t>(offset + pos),
                             static_cast<uint32_t>(offset + pos + n), true});
      pos += n;
    }
  }

 private:
  SplitRule rule_;
  bool fast_;
};

class LiteralSplit : public SegmentSplit {
 public:
  LiteralSplit(std::string literal, SplitBehavior behavior, bool invert)
      : SegmentSplit(behavior, invert), literal_(std::move(literal)) {}

  std::string Describe() const override {
    return absl::StrCat("Split(string=", literal_, BehaviorSuffix());
  }

 protected:
  void Segments(std::string_view text, uint32_t offset, std::vector<Segment>* out) const override {
    size_t prev = 0;
    for (size_t at = text.find(literal_); at != std::string_view::npos;
         at = text.find(literal_, at + literal_.size())) {
      if (at > prev)
        out->push_back(Segment{static_cast<uint32_t>(offset + prev),
                               static_cast<uint32_t>(offset + at), false});
      out->push_back(Segment{static_cast<uint32_t>(offset + at),
                             static_cast<uint32_t>(offset + at + literal_.size()), true});
      prev = at + literal_.size();
    }
    if (prev < text.size()) {
      out->push_back(Segment{static_cast<uint32_t>(offset + prev),
                             static_cast<uint32_t>(offset + text.size()), false});
    }
  }

 private:
  std::string literal_;
};

// Splits on single characters chosen by a predicate: each such character is its own delimiter, and
// the characters between them form one segment (the reference's Pattern impl for Fn(char) -> bool).
template <typename Predicate>
void CharSegments(std::string_view text, uint32_t offset, Predicate pred,
                  std::vector<Segment>* out) {
  size_t last = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t len;
    const uint32_t cp = DecodeUtf8(text, pos, &len);
    if (pred(cp)) {
      if (last < pos)
        out->push_back(Segment{static_cast<uint32_t>(offset + last),
                               static_cast<uint32_t>(offset + pos), false});
      out->push_back(Segment{static_cast<uint32_t>(offset + pos),
                             static_cast<uint32_t>(offset + pos + len), true});
      last = pos + len;
    }
    pos += len;
  }
  if (last < text.size()) {
    out->push_back(Segment{static_cast<uint32_t>(offset + last),
                           static_cast<uint32_t>(offset + text.size()), false});
  }
}

class Digits : public SegmentSplit {
 public:
  explicit Digits(bool individual)
      : SegmentSplit(individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous, false),
        individual_(individual) {}
  std::string Describe() const override {
    return absl::StrCat("Digits(individual_digits=", individual_ ? 1 : 0, ")");
  }

 protected:
  void Segments(std::string_view text, uint32_t offset, std::vector<Segment>* out) const override {
    CharSegments(
        text, offset,
        [](uint32_t cp) {
          if (cp < 0x80) return cp >= '0' && cp <= '9';
          return (Flags(cp) & unicode::kNumeric) != 0;
        },
        out);
  }

 private:
  bool individual_;
};

class WhitespaceSplit : public SegmentSplit {
 public:
  WhitespaceSplit() : SegmentSplit(SplitBehavior::kRemoved, false) {}
  std::string Describe() const override { return "WhitespaceSplit()"; }

 protected:
  void Segments(std::string_view text, uint32_t offset, std::vector<Segment>* out) const override {
    CharSegments(
        text, offset, [](uint32_t cp) { return (Flags(cp) & unicode::kWhiteSpace) != 0; }, out);
  }
};

class ByteLevel : public PreTokenizerStep {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}

  void Apply(PieceList* list, PieceList* scratch) const override {
    if (add_prefix_space_) {
      // Every piece that does not start with a space gets one (an empty piece stays empty).
      scratch->text.clear();
      scratch->pieces.clear();
      for (const Piece& p : list->pieces) {
        const auto begin = static_cast<uint32_t>(scratch->text.size());
        if (list->text[p.begin] != ' ') scratch->text.push_back(' ');
        scratch->text.append(list->text, p.begin, p.end - p.begin);
        scratch->pieces.push_back(
            Piece{begin, static_cast<uint32_t>(scratch->text.size()), p.at_start});
      }
      std::swap(*list, *scratch);
    }
    if (!use_regex_) return;
    scratch->pieces.clear();
    for (const Piece& piece : list->pieces) {
      const std::string_view text(list->text.data() + piece.begin, piece.end - piece.begin);
      for (size_t pos = 0; pos < text.size();) {
        const size_t n = MatchGpt2(text, pos);
        scratch->pieces.push_back(Piece{static_cast<uint32_t>(piece.begin + pos),
                                        static_cast<uint32_t>(piece.begin + pos + n),
                                        piece.at_start && pos == 0});
        pos += n;
      }
    }
    list->pieces.swap(scratch->pieces);
  }

  std::string Describe() const override {
    return absl::StrCat("ByteLevel(add_prefix_space=", add_prefix_space_ ? 1 : 0,
                        ",use_regex=", use_regex_ ? 1 : 0, ")");
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  bool use_regex_;
};

class Metaspace : public PreTokenizerStep {
 public:
  Metaspace(uint32_t replacement, PrependScheme scheme, bool split)
      : replacement_cp_(replacement), scheme_(scheme), split_(split) {
    unicode::AppendUtf8(replacement, &replacement_);
  }

  void Apply(PieceList* list, PieceList* scratch) const override {
    scratch->text.clear();
    scratch->pieces.clear();
    for (const Piece& p : list->pieces) {
      const auto begin = static_cast<uint32_t>(scratch->text.size());
      const std::string_view text(list->text.data() + p.begin, p.end - p.begin);
      const bool starts_with_replacement = text.substr(0, replacement_.size()) == replacement_;
      // Spaces become the replacement; the prepend test looks at the text after that rewrite.
      const bool starts_with_space = !text.empty() && text[0] == ' ';
      const bool prepend =
          !starts_with_replacement && !starts_with_space &&
          (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start));
      if (prepend) scratch->text += replacement_;
      for (char ch : text) {
        if (ch == ' ') {
          scratch->text += replacement_;
        } else {
          scratch->text.push_back(ch);
        }
      }
      scratch->pieces.push_back(
          Piece{begin, static_cast<uint32_t>(scratch->text.size()), p.at_start});
    }
    std::swap(*list, *scratch);
    if (!split_) return;
    scratch->pieces.clear();
    std::vector<Segment> segments;
    for (const Piece& piece : list->pieces) {
      segments.clear();
      const std::string_view text(list->text.data() + piece.begin, piece.end - piece.begin);
      CharSegments(
          text, piece.begin, [&](uint32_t cp) { return cp == replacement_cp_; }, &segments);
      EmitSplit(piece, segments, SplitBehavior::kMergedWithNext, &scratch->pieces);
    }
    list->pieces.swap(scratch->pieces);
  }

  std::string Describe() const override {
    const char* scheme = scheme_ == PrependScheme::kAlways  ? "always"
                         : scheme_ == PrependScheme::kFirst ? "first"
                                                            : "never";
    return absl::StrCat("Metaspace(replacement=", replacement_, ",prepend_scheme=", scheme,
                        ",split=", split_ ? 1 : 0, ")");
  }

 private:
  uint32_t replacement_cp_;
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class NfcStep : public NormalizerStep {
 public:
  void Apply(std::string* text) const override { *text = unicode::Nfc(*text); }
  std::string Describe() const override { return "NFC()"; }
};

class NfdStep : public NormalizerStep {
 public:
  void Apply(std::string* text) const override { *text = unicode::Nfd(*text); }
  std::string Describe() const override { return "NFD()"; }
};

class PrependStep : public NormalizerStep {
 public:
  explicit PrependStep(std::string prefix) : prefix_(std::move(prefix)) {}
  void Apply(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }
  std::string Describe() const override { return absl::StrCat("Prepend(", prefix_, ")"); }

 private:
  std::string prefix_;
};

class ReplaceStep : public NormalizerStep {
 public:
  ReplaceStep(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Apply(std::string* text) const override {
    if (text->find(pattern_) == std::string::npos) return;
    std::string out;
    out.reserve(text->size());
    size_t prev = 0;
    for (size_t at = text->find(pattern_); at != std::string::npos;
         at = text->find(pattern_, at + pattern_.size())) {
      out.append(*text, prev, at - prev);
      out += content_;
      prev = at + pattern_.size();
    }
    out.append(*text, prev, std::string::npos);
    *text = std::move(out);
  }
  std::string Describe() const override {
    return absl::StrCat("Replace(", pattern_, "->", content_, ")");
  }

 private:
  std::string pattern_;
  std::string content_;
};

class StripStep : public NormalizerStep {
 public:
  StripStep(bool left, bool right) : left_(left), right_(right) {}
  void Apply(std::string* text) const override {
    const std::string_view s(*text);
    size_t begin = 0;
    size_t end = s.size();
    if (left_) {
      while (begin < end) {
        size_t len;
        if (!(Flags(DecodeUtf8(s, begin, &len)) & unicode::kWhiteSpace)) break;
        begin += len;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
        size_t len;
        if (!(Flags(DecodeUtf8(s, start, &len)) & unicode::kWhiteSpace)) break;
        end = start;
      }
    }
    *text = std::string(s.substr(begin, end - begin));
  }
  std::string Describe() const override {
    return absl::StrCat("Strip(left=", left_ ? 1 : 0, ",right=", right_ ? 1 : 0, ")");
  }

 private:
  bool left_;
  bool right_;
};

}  // namespace

std::optional<SplitRule> SplitRuleFromPattern(std::string_view pattern) {
  if (pattern == kGpt2Pattern) return SplitRule::kGpt2;
  if (pattern == kLlama3Pattern) return SplitRule::kLlama3;
  if (pattern == kQwen2Pattern) return SplitRule::kQwen2;
  return std::nullopt;
}

const char* SplitRulePattern(SplitRule rule) {
  switch (rule) {
    case SplitRule::kGpt2:
      return kGpt2Pattern;
    case SplitRule::kLlama3:
      return kLlama3Pattern;
    case SplitRule::kQwen2:
      return kQwen2Pattern;
  }
  return "";
}

size_t MatchSplitRule(SplitRule rule, std::string_view s, size_t pos) {
  switch (rule) {
    case SplitRule::kGpt2:
      return MatchGpt2(s, pos);
    case SplitRule::kLlama3:
      return MatchLlama3(s, pos, 3);
    case SplitRule::kQwen2:
      return MatchLlama3(s, pos, 1);
  }
  return 1;
}

std::unique_ptr<PreTokenizerStep> MakeRuleSplit(SplitRule rule, SplitBehavior behavior,
                                                bool invert) {
  return std::make_unique<RuleSplit>(rule, behavior, invert);
}
std::unique_ptr<PreTokenizerStep> MakeLiteralSplit(std::string literal, SplitBehavior behavior,
                                                   bool invert) {
  return std::make_unique<LiteralSplit>(std::move(literal), behavior, invert);
}
std::unique_ptr<PreTokenizerStep> MakeDigits(bool individual_digits) {
  return std::make_unique<Digits>(individual_digits);
}
std::unique_ptr<PreTokenizerStep> MakeByteLevel(bool add_prefix_space, bool use_regex) {
  return std::make_unique<ByteLevel>(add_prefix_space, use_regex);
}
std::unique_ptr<PreTokenizerStep> MakeMetaspace(uint32_t replacement, PrependScheme scheme,
                                                bool split) {
  return std::make_unique<Metaspace>(replacement, scheme, split);
}
std::unique_ptr<PreTokenizerStep> MakeWhitespaceSplit() {
  return std::make_unique<WhitespaceSplit>();
}

void PreTokenizer::Run(std::string_view text, bool at_start, PieceList* out,
                       PieceList* scratch) const {
  out->text.assign(text.data(), text.size());
  out->pieces.clear();
  if (!text.empty()) out->pieces.push_back(Piece{0, static_cast<uint32_t>(text.size()), at_start});
  for (const auto& step : steps_) {
    if (out->pieces.empty()) break;
    step->Apply(out, scratch);
  }
}

std::string PreTokenizer::Describe() const {
  std::string out = "[";
  for (const auto& step : steps_) absl::StrAppend(&out, step->Describe(), ";");
  return out + "]";
}

std::unique_ptr<NormalizerStep> MakeNfc() { return std::make_unique<NfcStep>(); }
std::unique_ptr<NormalizerStep> MakeNfd() { return std::make_unique<NfdStep>(); }
std::unique_ptr<NormalizerStep> MakePrepend(std::string prefix) {
  return std::make_unique<PrependStep>(std::move(prefix));
}
std::unique_ptr<NormalizerStep> MakeReplace(std::string pattern, std::string content) {
  return std::make_unique<ReplaceStep>(std::move(pattern), std::move(content));
}
std::unique_ptr<NormalizerStep> MakeStrip(bool left, bool right) {
  return std::make_unique<StripStep>(left, right);
}

std::string Normalizer::Normalize(std::string_view text) const {
  std::string out(text);
  for (const auto& step : steps_) step->Apply(&out);
  return out;
}

std::string Normalizer::Describe() const {
  std::string out = "[";
  for (const auto& step : steps_) absl::StrAppend(&out, step->Describe(), ";");
  return out + "]";
}

}  // namespace lorasweep::tokenizer_internal
