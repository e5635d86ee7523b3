// Normalizers and pre-tokenizers of Hugging Face `tokenizers`, reimplemented with the reference's
// exact splitting semantics (SplitDelimiterBehavior, empty pieces dropped, Metaspace prepend
// schemes).
//
// Regex splits are not run through a regex engine: the three pattern families byte-level models
// use (GPT-2's, Llama 3's = tiktoken cl100k's, Qwen2's) are recognized by their exact text and
// matched by hand-written scanners that reproduce Oniguruma's leftmost-first backtracking result.
// Any other pattern is rejected when the tokenizer is loaded.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lorasweep::tokenizer_internal {

// A non-empty byte range of PieceList::text.
struct Piece {
  uint32_t begin = 0;
  uint32_t end = 0;
  // The piece begins where the whole input began (Metaspace's "first" prepend scheme needs it).
  bool at_start = false;
};

// The text under pre-tokenization and its current split.
struct PieceList {
  std::string text;
  std::vector<Piece> pieces;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// The regex split rules the scanners implement.
enum class SplitRule {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
  // \s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} (single digits) instead of \p{N}{1,3}.
  kQwen2,
};

// The rule whose regex is exactly `pattern`, or nullopt.
std::optional<SplitRule> SplitRuleFromPattern(std::string_view pattern);
const char* SplitRulePattern(SplitRule rule);

// Byte length of the match of `rule` at `pos` (pos < s.size()). These rules match somewhere at
// every position, so consecutive matches tile the text; the result is always > 0.
size_t MatchSplitRule(SplitRule rule, std::string_view s, size_t pos);

enum class PrependScheme { kAlways, kFirst, kNever };

class PreTokenizerStep {
 public:
  virtual ~PreTokenizerStep() = default;
  // Replaces list's pieces (and possibly its text) by their split; `scratch` is working storage.
  virtual void Apply(PieceList* list, PieceList* scratch) const = 0;
  // A canonical description (for the tokenizer fingerprint).
  virtual std::string Describe() const = 0;
  // Whether this step maps the text to GPT-2's byte alphabet (the ByteLevel pre-tokenizer).
  virtual bool byte_level() const { return false; }
};

std::unique_ptr<PreTokenizerStep> MakeRuleSplit(SplitRule rule, SplitBehavior behavior,
                                                bool invert);
std::unique_ptr<PreTokenizerStep> MakeLiteralSplit(std::string literal, SplitBehavior behavior,
                                                   bool invert);
std::unique_ptr<PreTokenizerStep> MakeDigits(bool individual_digits);
std::unique_ptr<PreTokenizerStep> MakeByteLevel(bool add_prefix_space, bool use_regex);
std::unique_ptr<PreTokenizerStep> MakeMetaspace(uint32_t replacement, PrependScheme scheme,
                                                bool split);
std::unique_ptr<PreTokenizerStep> MakeWhitespaceSplit();

// A sequence of steps applied to one added-token-free segment of the input.
class PreTokenizer {
 public:
  void Add(std::unique_ptr<PreTokenizerStep> step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  bool byte_level() const { return !steps_.empty() && steps_.back()->byte_level(); }
  const std::vector<std::unique_ptr<PreTokenizerStep>>& steps() const { return steps_; }
  // Splits `text` into out->pieces (out->text holds the possibly rewritten text).
  void Run(std::string_view text, bool at_start, PieceList* out, PieceList* scratch) const;
  std::string Describe() const;

 private:
  std::vector<std::unique_ptr<PreTokenizerStep>> steps_;
};

class NormalizerStep {
 public:
  virtual ~NormalizerStep() = default;
  virtual void Apply(std::string* text) const = 0;
  virtual std::string Describe() const = 0;
};

std::unique_ptr<NormalizerStep> MakeNfc();
std::unique_ptr<NormalizerStep> MakeNfd();
std::unique_ptr<NormalizerStep> MakePrepend(std::string prefix);
std::unique_ptr<NormalizerStep> MakeReplace(std::string pattern, std::string content);
std::unique_ptr<NormalizerStep> MakeStrip(bool left, bool right);

class Normalizer {
 public:
  void Add(std::unique_ptr<NormalizerStep> step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  std::string Normalize(std::string_view text) const;
  std::string Describe() const;

 private:
  std::vector<std::unique_ptr<NormalizerStep>> steps_;
};

}  // namespace lorasweep::tokenizer_internal
