// The BPE model: turns one pre-tokenized word into token ids by repeatedly merging the adjacent
// pair with the best priority, the leftmost one on ties.
//
// Two sources of priorities share the merge engine:
//   - Hugging Face `tokenizers` BPE: the rank of the pair in the merges list (lower merges first);
//     only listed pairs merge; unknown characters become <0xXX> byte tokens before merging
//     (byte_fallback) or the unk token.
//   - llama.cpp's SentencePiece-style tokenizer for GGUF "llama" vocabularies: any two adjacent
//     symbols whose concatenation is a token merge, the token with the highest score first;
//     characters outside the vocabulary become byte tokens after merging.
//
// Thread-safety: immutable after construction; Encode may run concurrently (each thread keeps its
// own cache of recently encoded words).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace lorasweep::tokenizer_internal {

struct BpeOptions {
  // Words are byte strings and the vocabulary is spelled in GPT-2's byte alphabet (each byte is one
  // initial symbol).
  bool byte_level = false;
  // Characters missing from the vocabulary become their UTF-8 bytes' <0xXX> tokens.
  bool byte_fallback = false;
  // A word that is itself a token is emitted whole, without merging (Llama 3).
  bool ignore_merges = false;
  // Id of the unknown token; characters that are neither in the vocabulary nor byte-fallback-able
  // become it (or vanish without one). fuse_unk makes a run of them one unknown token.
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;
};

class BpeModel {
 public:
  // Hugging Face BPE. `vocab` maps token spellings to ids; `merges` lists pairs by priority. Errors
  // describe the offending entry (the caller adds the file name).
  static absl::StatusOr<BpeModel> Create(
      const std::vector<std::pair<std::string, int32_t>>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, const BpeOptions& options);

  // llama.cpp SentencePiece BPE. tokens[i] is the text of id i (U+2581 for spaces, "<0xXX>" byte
  // tokens), scores[i] its score.
  static absl::StatusOr<BpeModel> CreateFromScores(const std::vector<std::string>& tokens,
                                                   const std::vector<float>& scores,
                                                   std::optional<int32_t> unk_id);

  // Appends the ids of `word` to *out.
  void Encode(std::string_view word, std::vector<int32_t>* out) const;

  // Merge rule count (for diagnostics) and the merged pairs in priority order (for fingerprints).
  size_t num_merges() const { return merge_list_.size(); }
  const std::vector<std::pair<int32_t, int32_t>>& merge_list() const { return merge_list_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  // Open-addressing map from an id pair to its merge; the hot lookup of the merge loop.
  class PairMap {
   public:
    void Reserve(size_t n);
    void Set(int32_t a, int32_t b, Merge m);
    const Merge* Find(int32_t a, int32_t b) const {
      if (a < 0 || b < 0) return nullptr;
      const uint64_t key = Key(a, b);
      for (size_t i = Hash(key);; i = (i + 1) & mask_) {
        const Slot& s = slots_[i];
        if (s.key == key) return &s.merge;
        if (s.key == kEmpty) return nullptr;
      }
    }

   private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    struct Slot {
      uint64_t key = kEmpty;
      Merge merge{};
    };
    static uint64_t Key(int32_t a, int32_t b) {
      return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
    }
    size_t Hash(uint64_t key) const { return (key * 0x9E3779B97F4A7C15ull) >> shift_; }
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    int shift_ = 64;
  };
  struct Symbol {
    int32_t id;  // < 0: a character outside the vocabulary, kept for late byte fallback
    int32_t prev;
    int32_t next;
    uint32_t begin;  // byte range in the word
    uint32_t end;
  };

  BpeModel();
  void EncodeUncached(std::string_view word, std::vector<int32_t>* out) const;
  void MergeSmall(std::vector<Symbol>* symbols) const;
  void MergeLarge(std::vector<Symbol>* symbols) const;
  void AppendByteTokens(std::string_view bytes, std::vector<int32_t>* out) const;
  void FillAsciiSymbols();

  // Distinguishes models in the per-thread word caches (addresses can be reused).
  uint64_t instance_id_ = 0;
  BpeOptions options_;
  bool late_byte_fallback_ = false;  // llama.cpp: bytes for leftover unknown characters
  absl::flat_hash_map<std::string, int32_t> token_ids_;  // spelling (raw bytes if byte_level)
  int32_t byte_symbol_[256];    // byte_level: id of the token spelling each byte, or -1
  int32_t ascii_symbol_[128];   // otherwise: id of each ASCII character's token, or -1
  int32_t byte_fallback_[256];  // id of <0xXX>, or -1
  PairMap merges_;
  std::vector<std::pair<int32_t, int32_t>> merge_list_;
};

}  // namespace lorasweep::tokenizer_internal
