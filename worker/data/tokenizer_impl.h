// The one Tokenizer implementation behind Tokenizer::FromTokenizerJson and Tokenizer::FromGguf:
// the Hugging Face `tokenizers` pipeline (added tokens, normalizer, pre-tokenizer, BPE, decoder),
// plus llama.cpp's SentencePiece-style mode for GGUF "llama" vocabularies.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/sha256.h"
#include "worker/data/bpe.h"
#include "worker/data/pretokenizer.h"
#include "worker/data/tokenizer.h"
#include "worker/data/tokenizer_decoder.h"

namespace lorasweep::tokenizer_internal {

struct AddedTokenSpec {
  std::string content;
  int32_t id = 0;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Finds added tokens in text, leftmost first and longest among those starting there (the
// reference's Aho-Corasick MatchKind::LeftmostLongest), with a byte trie.
class AddedTokenMatcher {
 public:
  // `tokens` index into the caller's list; patterns are the strings to find.
  void Build(const std::vector<std::string>& patterns, const std::vector<int>& tokens);
  bool empty() const { return nodes_.size() <= 1; }
  // The first match starting at or after `from`: true with [*begin, *end) and its token index.
  bool Find(std::string_view text, size_t from, size_t* begin, size_t* end, int* token) const;

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int token = -1;
  };
  int32_t Child(int32_t node, uint8_t byte) const;
  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
};

// Everything a tokenizer is made of, as the loaders assemble it.
struct TokenizerParts {
  std::string source;  // the file, for messages
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  std::optional<BpeModel> model;
  Decoder decoder;
  std::vector<AddedTokenSpec> added_tokens;
  // The model vocabulary: (spelling, id), spelled as in the source (GPT-2's byte alphabet for
  // byte-level vocabularies). Added tokens come on top.
  std::vector<std::pair<std::string, int32_t>> vocab;
  // llama.cpp SentencePiece mode (GGUF "llama"): special tokens are split out longest first, a
  // space is prepended to text after a special token (or at the start) when add_space_prefix, and
  // spaces become U+2581; no normalizer or pre-tokenizer.
  bool spm = false;
  bool add_space_prefix = false;
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
  std::optional<std::string> chat_template;
  // What besides the pipeline descriptions determines the ids (vocab, merges or scores), as text.
  std::string model_description;
};

class HfTokenizer : public Tokenizer {
 public:
  explicit HfTokenizer(TokenizerParts parts);

  std::vector<int32_t> Encode(std::string_view text, bool parse_special) const override;
  std::string Decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  std::optional<int32_t> TokenToId(std::string_view token) const override;
  std::optional<std::string> IdToToken(int32_t id) const override;
  std::optional<int32_t> bos_id() const override { return parts_.bos_id; }
  std::optional<int32_t> eos_id() const override { return parts_.eos_id; }
  std::optional<std::string> chat_template() const override { return parts_.chat_template; }
  std::string Fingerprint() const override { return fingerprint_; }

 private:
  struct Span {
    size_t begin;
    size_t end;
    int token;  // index into parts_.added_tokens, or -1 for text
  };
  // The reference's AddedVocabulary::find_matches: splits `text` into added tokens and the text
  // between them, applying single_word / lstrip / rstrip.
  void SplitAdded(std::string_view text, const AddedTokenMatcher& matcher, bool parse_special,
                  std::vector<Span>* out) const;
  // llama.cpp's tokenizer_st_partition: special tokens taken longest first over the whole text.
  void SplitSpecialLongestFirst(std::string_view text, bool parse_special,
                                std::vector<Span>* out) const;
  void EncodeSegment(std::string_view text, bool at_start, std::vector<int32_t>* ids) const;
  std::vector<int32_t> EncodeSpm(std::string_view text, bool parse_special) const;

  TokenizerParts parts_;
  AddedTokenMatcher raw_matcher_;         // tokens matched in the input as written
  AddedTokenMatcher normalized_matcher_;  // tokens matched after normalization
  std::vector<int> longest_first_;        // added token indices by decreasing length (spm)
  absl::flat_hash_map<std::string, int32_t> token_to_id_;
  // Each id's string as the reference's id_to_token gives it (what the decoder sees): an added
  // token's content (normalized, for normalized ones) or the vocabulary spelling.
  std::vector<std::string> tokens_;
  std::vector<uint8_t> valid_id_;
  // Decoding bytes of each id when the decoder is a lone ByteLevel (the common case, made fast).
  std::vector<std::string> byte_level_bytes_;
  std::string fingerprint_;
};

// Moved to common/sha256.h; kept visible here for the tokenizer code and its tests.
using ::lorasweep::Sha256Hex;

// The part of the fingerprint material that describes a BPE model: its options, vocabulary (by id)
// and merges, or for llama.cpp-style models the scores. Loaders of the same tokenizer from
// different files describe it identically.
std::string DescribeBpeModel(const std::vector<std::pair<std::string, int32_t>>& vocab,
                             const BpeModel& model, const BpeOptions& options);
std::string DescribeSpmModel(const std::vector<std::string>& tokens,
                             const std::vector<float>& scores);

}  // namespace lorasweep::tokenizer_internal
