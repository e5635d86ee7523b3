// Decoders of Hugging Face `tokenizers`: each step rewrites the list of token strings, and the
// decoded text is their concatenation (the reference's decode_chain).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorasweep::tokenizer_internal {

class DecoderStep {
 public:
  virtual ~DecoderStep() = default;
  virtual void Apply(std::vector<std::string>* tokens) const = 0;
  virtual std::string Describe() const = 0;
};

// GPT-2's byte alphabet back to bytes; all tokens become one lossily UTF-8-validated string.
std::unique_ptr<DecoderStep> MakeByteLevelDecoder();
// Every occurrence of `pattern` in each token becomes `content`.
std::unique_ptr<DecoderStep> MakeReplaceDecoder(std::string pattern, std::string content);
// Runs of <0xXX> tokens become the text they spell (one U+FFFD per byte when not valid UTF-8).
std::unique_ptr<DecoderStep> MakeByteFallbackDecoder();
// All tokens joined into one.
std::unique_ptr<DecoderStep> MakeFuseDecoder();
// Removes up to `start` leading and `stop` trailing `content` characters from each token.
std::unique_ptr<DecoderStep> MakeStripDecoder(uint32_t content, int start, int stop);
// The replacement character becomes a space, except in the first token where (unless the prepend
// scheme is "never") it is dropped.
std::unique_ptr<DecoderStep> MakeMetaspaceDecoder(uint32_t replacement, bool prepend);

class Decoder {
 public:
  void Add(std::unique_ptr<DecoderStep> step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  size_t size() const { return steps_.size(); }
  // Without steps the reference joins the tokens with spaces.
  std::string Decode(std::vector<std::string> tokens) const;
  std::string Describe() const;

 private:
  std::vector<std::unique_ptr<DecoderStep>> steps_;
};

// The bytes a ByteLevel decoder makes of one token: its characters' bytes when all are in the byte
// alphabet, else the token's own UTF-8 (what the reference does).
std::string ByteLevelTokenBytes(const std::string& token);

}  // namespace lorasweep::tokenizer_internal
