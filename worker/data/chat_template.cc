#include "worker/data/chat_template.h"

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "worker/data/tokenizer.h"

namespace lorasweep {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Python's str.strip() for the whitespace chat data holds (the Jinja templates call it).
std::string Trim(std::string_view s) {
  return std::string(absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size())));
}

std::string_view EosOrDefault(std::string_view eos_token) {
  return eos_token.empty() ? std::string_view("</s>") : eos_token;
}

// std::string_view concatenation (Debian's absl::StrCat takes only absl::string_view).
template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

// Appends text, merging it into the last segment when the trainability is the same.
void Emit(std::vector<RenderedSegment>* out, std::string_view text, bool trainable) {
  if (text.empty()) return;
  if (!out->empty() && out->back().trainable == trainable) {
    out->back().text.append(text);
  } else {
    out->push_back({std::string(text), trainable});
  }
}

void RenderChatML(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                  std::vector<RenderedSegment>* out) {
  for (const ChatMessage& m : messages) {
    const bool assistant = m.role == "assistant";
    Emit(out, Cat("<|im_start|>", m.role, "\n"), false);
    Emit(out, m.content, assistant);
    Emit(out, "<|im_end|>", assistant);
    Emit(out, "\n", false);
  }
  if (add_generation_prompt) Emit(out, "<|im_start|>assistant\n", false);
}

void RenderLlama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                  std::vector<RenderedSegment>* out) {
  Emit(out, "<|begin_of_text|>", false);
  for (const ChatMessage& m : messages) {
    const bool assistant = m.role == "assistant";
    Emit(out, Cat("<|start_header_id|>", m.role, "<|end_header_id|>\n\n"), false);
    Emit(out, Trim(m.content), assistant);
    Emit(out, "<|eot_id|>", assistant);
  }
  if (add_generation_prompt) Emit(out, "<|start_header_id|>assistant<|end_header_id|>\n\n", false);
}

void RenderLlama2(const std::vector<ChatMessage>& messages, std::string_view eos,
                  std::vector<RenderedSegment>* out) {
  size_t first = 0;
  std::string system;
  bool has_system = false;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    has_system = true;
    first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    std::string content = m.content;
    if (i == first && has_system) {
      content = Cat("<<SYS>>\n", system, "\n<</SYS>>\n\n", m.content);
    }
    if (m.role == "assistant") {
      Emit(out, Cat(" ", Trim(content), " ", eos), true);
    } else {
      // HF's template renders only user and assistant turns; a later system message is shown as a
      // user turn rather than dropped silently.
      Emit(out, Cat("<s>[INST] ", Trim(content), " [/INST]"), false);
    }
  }
}

constexpr std::string_view kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n";
constexpr std::string_view kAlpacaPreambleWithInput =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n";

void RenderAlpacaChat(const std::vector<ChatMessage>& messages, bool add_generation_prompt,
                      std::string_view eos, std::vector<RenderedSegment>* out) {
  // A system message replaces the preamble; each user turn is an instruction block, each assistant
  // turn a response ended by EOS; turns are separated by a blank line.
  size_t first = 0;
  std::string preamble(kAlpacaPreamble);
  if (!messages.empty() && messages[0].role == "system") {
    preamble = Cat(messages[0].content, "\n\n");
    first = 1;
  }
  Emit(out, preamble, false);
  bool open_prompt = false;  // an instruction block waiting for its response
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "assistant") {
      if (!open_prompt) Emit(out, "### Response:\n", false);
      Emit(out, Cat(m.content, eos), true);
      Emit(out, "\n\n", false);
      open_prompt = false;
    } else {
      Emit(out, Cat("### Instruction:\n", m.content, "\n\n### Response:\n"), false);
      open_prompt = true;
    }
  }
  if (add_generation_prompt && !open_prompt) Emit(out, "### Response:\n", false);
  // A trailing separator after the last response carries nothing.
  if (!out->empty() && !out->back().trainable && out->back().text == "\n\n") out->pop_back();
}

}  // namespace

absl::StatusOr<ChatTemplateKind> ParseChatTemplateKind(std::string_view name) {
  if (name == "chatml") return kChatML;
  if (name == "llama3") return kLlama3;
  if (name == "llama2") return kLlama2;
  if (name == "alpaca") return kAlpaca;
  return absl::InvalidArgumentError(Cat("unknown chat template '", std::string(name),
                                        "' (expected chatml, llama3, llama2 or alpaca)"));
}

const char* ChatTemplateName(ChatTemplateKind kind) {
  switch (kind) {
    case kChatML:
      return "chatml";
    case kLlama3:
      return "llama3";
    case kLlama2:
      return "llama2";
    case kAlpaca:
      return "alpaca";
  }
  return "chatml";
}

ChatTemplateKind DetectChatTemplate(const Tokenizer& tokenizer) {
  if (std::optional<std::string> jinja = tokenizer.chat_template(); jinja.has_value()) {
    if (jinja->find("<|im_start|>") != std::string::npos) return kChatML;
    if (jinja->find("<|start_header_id|>") != std::string::npos) return kLlama3;
    if (jinja->find("[INST]") != std::string::npos) return kLlama2;
  }
  if (tokenizer.TokenToId("<|im_start|>").has_value()) return kChatML;
  return kAlpaca;
}

std::vector<RenderedSegment> RenderChat(ChatTemplateKind kind,
                                        const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, std::string_view eos_token) {
  std::vector<RenderedSegment> out;
  switch (kind) {
    case kChatML:
      RenderChatML(messages, add_generation_prompt, &out);
      break;
    case kLlama3:
      RenderLlama3(messages, add_generation_prompt, &out);
      break;
    case kLlama2:
      // HF's llama-2 template has no generation prompt: a rendered user turn ends with [/INST].
      RenderLlama2(messages, EosOrDefault(eos_token), &out);
      break;
    case kAlpaca:
      RenderAlpacaChat(messages, add_generation_prompt, EosOrDefault(eos_token), &out);
      break;
  }
  return out;
}

std::vector<RenderedSegment> RenderAlpaca(std::string_view instruction, std::string_view input,
                                          std::string_view output, std::string_view eos_token) {
  std::vector<RenderedSegment> out;
  if (input.empty()) {
    Emit(&out, Cat(kAlpacaPreamble, "### Instruction:\n", instruction, "\n\n### Response:\n"),
         false);
  } else {
    Emit(&out,
         Cat(kAlpacaPreambleWithInput, "### Instruction:\n", instruction, "\n\n### Input:\n", input,
             "\n\n### Response:\n"),
         false);
  }
  Emit(&out, Cat(output, EosOrDefault(eos_token)), true);
  return out;
}

std::vector<ChatMessage> AlpacaToMessages(std::string_view instruction, std::string_view input,
                                          std::string_view output) {
  std::string user(instruction);
  if (!input.empty()) user = Cat(user, "\n\n", input);
  return {{"user", user}, {"assistant", std::string(output)}};
}

bool AddsDummyPrefix(const Tokenizer& tokenizer) {
  const std::vector<int32_t> ids = tokenizer.Encode("a", /*parse_special=*/false);
  if (ids.empty()) return false;
  const std::optional<std::string> first = tokenizer.IdToToken(ids[0]);
  return first.has_value() && first->rfind(kSpaceMarker, 0) == 0;
}

TokenizedText TokenizeSegments(const Tokenizer& tokenizer,
                               const std::vector<RenderedSegment>& segments) {
  TokenizedText out;
  const bool dummy_prefix = AddsDummyPrefix(tokenizer);
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string_view text = segments[i].text;
    if (dummy_prefix && i > 0 && !text.empty() && text[0] == ' ') text.remove_prefix(1);
    const std::vector<int32_t> ids = tokenizer.Encode(text, /*parse_special=*/true);
    out.ids.insert(out.ids.end(), ids.begin(), ids.end());
    out.loss.insert(out.loss.end(), ids.size(), segments[i].trainable ? 1 : 0);
  }
  return out;
}

}  // namespace lorasweep
