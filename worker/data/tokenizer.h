// Tokenizers that give the token ids Hugging Face `tokenizers` gives, bit for bit:
//   - byte-level BPE (GPT-2 style: SmolLM2, Llama 3, Qwen2) with the model's normalizer,
//     pre-tokenizer split rules and added tokens;
//   - Llama-2 / Mistral style BPE with byte fallback and the U+2581 space marker (legacy
//     Prepend/Replace normalizer or the Metaspace pre-tokenizer).
// Loaded from a `tokenizer.json` (HF folder) or from GGUF metadata (`tokenizer.ggml.*`; "gpt2"
// vocabularies as the HF tokenizer they were converted from, "llama" ones as llama.cpp tokenizes
// them). Unsupported model types, pipeline steps or regexes are load errors naming the file and
// what is unsupported. Implementation notes: worker/data/tokenizer_impl.h.
//
// Thread-safety: a loaded Tokenizer is immutable; Encode/Decode may be called from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lorasweep {

class GgufFile;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // From a tokenizer.json file. BOS/EOS and the chat template come from a tokenizer_config.json
  // beside it when there is one (else BOS/EOS are guessed from the usual special token names).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromTokenizerJson(const std::string& path);
  // From the tokenizer.ggml.* metadata of a GGUF file.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& gguf);
  // From a model path: a HF folder (its tokenizer.json), a folder holding one .gguf file, a .gguf
  // file or a tokenizer.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromModel(const std::string& model_path);

  // Token ids of `text`, without BOS/EOS (the caller adds them where the format wants them), as
  // HF's encode(text, add_special_tokens=False). With `parse_special`, special tokens written in
  // the text (e.g. "<|im_start|>") map to their ids, as HF does by default; without it they are
  // tokenized as plain text (HF's encode_special_tokens), while non-special added tokens still
  // match. Invalid UTF-8 does not fail: stray bytes are tokenized as bytes where the vocabulary
  // allows it.
  virtual std::vector<int32_t> Encode(std::string_view text, bool parse_special = true) const = 0;
  // HF's decode(ids, skip_special_tokens=False): special tokens are kept, unknown ids skipped, and
  // byte sequences that are not valid UTF-8 (a prefix of a character) become U+FFFD.
  // decode(encode(text)) == text for any valid UTF-8 text whose bytes (byte-level vocabularies) or
  // characters (byte fallback) the vocabulary can spell, except that U+2581 reads back as a space
  // in SentencePiece-style vocabularies. (SmolLM2's vocabulary lacks 21 byte symbols, e.g. those of
  // U+0004 and of the lead bytes 0xF1/0xF2; HF drops such bytes too.)
  virtual std::string Decode(std::span<const int32_t> ids) const = 0;

  // One past the largest token id (the embedding rows the ids need).
  virtual int32_t vocab_size() const = 0;
  // Vocabulary lookups by the token's spelling in the tokenizer file (GPT-2 byte alphabet for
  // byte-level vocabularies, e.g. "Ġthe"; added tokens by their content).
  virtual std::optional<int32_t> TokenToId(std::string_view token) const = 0;
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // The Jinja chat template the model ships, when it has one.
  virtual std::optional<std::string> chat_template() const = 0;
  // A stable hex digest (SHA-256) of everything that determines the ids (vocab, merges or scores,
  // normalizer, split rules, added tokens; not the decoder), recorded in dataset manifests so a
  // dataset is never used with another tokenizer. The same tokenizer read from its tokenizer.json
  // or from its GGUF has the same fingerprint.
  virtual std::string Fingerprint() const = 0;
};

}  // namespace lorasweep
