// Chat templates: how a conversation becomes the text a model was instruction-tuned on, and which
// parts of that text the loss trains on.
//
// lorasweep renders the four template families its models use, as fixed code rather than Jinja:
//   - ChatML (SmolLM2, Qwen): "<|im_start|>{role}\n{content}<|im_end|>\n" per message. Unlike
//     SmolLM2's own Jinja template, no default system message is inserted when the conversation
//     has none: the data decides (write a system message into the records to get one).
//   - Llama-3: "<|begin_of_text|>" then "<|start_header_id|>{role}<|end_header_id|>\n\n
//     {content, trimmed}<|eot_id|>" per message (the Llama-3.0 template; 3.1's date preamble is
//     not added).
//   - Llama-2 / Mistral "[INST]": "<s>[INST] {user} [/INST] {assistant} </s>" per turn, the system
//     message folded into the first user turn as "<<SYS>>\n{system}\n<</SYS>>\n\n", user and
//     assistant contents trimmed (HF's llama-2-chat template).
//   - Alpaca: the Stanford Alpaca prompt ("Below is an instruction ...### Response:\n"), then the
//     response and EOS.
// Loss masking: only the assistant's content and the end marker that closes it (<|im_end|>,
// <|eot_id|>, " </s>", Alpaca's EOS) are trainable, so the model learns to answer and to stop;
// roles, headers, prompts and user/system text are context only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace lorasweep {

class Tokenizer;

// Unscoped so that both `kChatML` and `ChatTemplateKind::kChatML` read naturally.
enum ChatTemplateKind : int { kChatML = 0, kLlama3 = 1, kLlama2 = 2, kAlpaca = 3 };

// "chatml", "llama3", "llama2" or "alpaca" (the names --chat-template and manifests use).
absl::StatusOr<ChatTemplateKind> ParseChatTemplateKind(std::string_view name);
const char* ChatTemplateName(ChatTemplateKind kind);

// The family of the model's own template (tokenizer.chat_template()): "<|im_start|>" means ChatML,
// "<|start_header_id|>" Llama-3, "[INST]" Llama-2; without a template, ChatML when the vocabulary
// has <|im_start|>, else Alpaca.
ChatTemplateKind DetectChatTemplate(const Tokenizer& tokenizer);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct RenderedSegment {
  std::string text;
  bool trainable = false;
};

// The conversation's text as the model's template renders it, cut where trainability changes. With
// `add_generation_prompt`, ends with the opening of an assistant turn (for generation). A system
// message is expected first (later ones are rendered as their template renders any role).
// `eos_token` is the model's EOS spelling for the templates that write it (Llama-2, Alpaca); empty
// means "</s>".
std::vector<RenderedSegment> RenderChat(ChatTemplateKind kind,
                                        const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt,
                                        std::string_view eos_token = {});

// An Alpaca record ({"instruction", "input", "output"}) with the Alpaca template itself: the prompt
// with or without its "### Input:" block, then `output` + EOS (trainable).
std::vector<RenderedSegment> RenderAlpaca(std::string_view instruction, std::string_view input,
                                          std::string_view output, std::string_view eos_token = {});

// The same record as a conversation, for models with a chat template: one user message
// (instruction, plus "\n\n" + input when there is one) and the output as the assistant's reply.
std::vector<ChatMessage> AlpacaToMessages(std::string_view instruction, std::string_view input,
                                          std::string_view output);

// Token ids with one loss flag (0/1) per id.
struct TokenizedText {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss;
};

// Tokenizes the segments one by one (special tokens parsed) and concatenates the ids, so every
// token belongs to exactly one segment and takes its trainability. Segment boundaries are token
// boundaries; the templates cut where the model's pre-tokenizer splits anyway (at special tokens
// and newlines), so the ids equal those of the whole text in the usual cases. One exception is
// corrected: a SentencePiece-style tokenizer that prepends "▁" to every piece of text would give a
// segment that continues the previous one's text an extra "▁"; a leading space of such a segment
// is dropped instead, as the prepended "▁" stands for it.
TokenizedText TokenizeSegments(const Tokenizer& tokenizer,
                               const std::vector<RenderedSegment>& segments);

// Whether `tokenizer` prepends the SentencePiece space marker to text (Llama-2 style).
bool AddsDummyPrefix(const Tokenizer& tokenizer);

}  // namespace lorasweep
