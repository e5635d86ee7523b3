// Chat templates: the rendered strings against hand-written copies of each family's HF template
// output, template detection, and loss masks that cover exactly the assistant tokens.
#include "worker/data/chat_template.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/data/tokenizer.h"

namespace lorasweep {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TokenizerPath(const std::string& name) {
  return absl::StrCat(LORASWEEP_TEST_DATA_DIR, "/tokenizer/", name);
}

std::unique_ptr<Tokenizer> Load(const std::string& name) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromModel(TokenizerPath(name));
  EXPECT_TRUE(tok.ok()) << tok.status();
  return tok.ok() ? std::move(*tok) : nullptr;
}

std::string Joined(const std::vector<RenderedSegment>& segments) {
  std::string out;
  for (const RenderedSegment& s : segments) out += s.text;
  return out;
}

std::vector<std::string> Trainable(const std::vector<RenderedSegment>& segments) {
  std::vector<std::string> out;
  for (const RenderedSegment& s : segments) {
    if (s.trainable) out.push_back(s.text);
  }
  return out;
}

const std::vector<ChatMessage> kTwoTurns = {{"system", "Be brief."},
                                            {"user", "What is Debian?"},
                                            {"assistant", " An OS. "},
                                            {"user", "Free?"},
                                            {"assistant", "Yes."}};

TEST(ChatTemplateTest, ParsesNames) {
  EXPECT_EQ(*ParseChatTemplateKind("chatml"), kChatML);
  EXPECT_EQ(*ParseChatTemplateKind("llama3"), kLlama3);
  EXPECT_EQ(*ParseChatTemplateKind("llama2"), kLlama2);
  EXPECT_EQ(*ParseChatTemplateKind("alpaca"), kAlpaca);
  absl::StatusOr<ChatTemplateKind> bad = ParseChatTemplateKind("vicuna");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("vicuna"));
  for (ChatTemplateKind k : {kChatML, kLlama3, kLlama2, kAlpaca}) {
    EXPECT_EQ(*ParseChatTemplateKind(ChatTemplateName(k)), k);
  }
}

TEST(ChatTemplateTest, ChatML) {
  const auto segments = RenderChat(kChatML, kTwoTurns, false);
  EXPECT_EQ(Joined(segments),
            "<|im_start|>system\nBe brief.<|im_end|>\n"
            "<|im_start|>user\nWhat is Debian?<|im_end|>\n"
            "<|im_start|>assistant\n An OS. <|im_end|>\n"
            "<|im_start|>user\nFree?<|im_end|>\n"
            "<|im_start|>assistant\nYes.<|im_end|>\n");
  EXPECT_THAT(Trainable(segments), ElementsAre(" An OS. <|im_end|>", "Yes.<|im_end|>"));
  EXPECT_EQ(Joined(RenderChat(kChatML, {{"user", "Hi"}}, true)),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, Llama3) {
  const auto segments = RenderChat(kLlama3, kTwoTurns, false);
  EXPECT_EQ(Joined(segments),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is Debian?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nAn OS.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nFree?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nYes.<|eot_id|>");
  EXPECT_THAT(Trainable(segments), ElementsAre("An OS.<|eot_id|>", "Yes.<|eot_id|>"));
  EXPECT_EQ(Joined(RenderChat(kLlama3, {{"user", "Hi"}}, true)),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama2) {
  const auto segments = RenderChat(kLlama2, kTwoTurns, false);
  EXPECT_EQ(Joined(segments),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhat is Debian? [/INST] An OS. </s>"
            "<s>[INST] Free? [/INST] Yes. </s>");
  EXPECT_THAT(Trainable(segments), ElementsAre(" An OS. </s>", " Yes. </s>"));
  // Without a system message; the EOS spelling is the tokenizer's.
  EXPECT_EQ(Joined(RenderChat(kLlama2, {{"user", "Hi"}, {"assistant", "Hello"}}, true, "<eos>")),
            "<s>[INST] Hi [/INST] Hello <eos>");
}

TEST(ChatTemplateTest, Alpaca) {
  const std::string preamble =
      "Below is an instruction that describes a task. Write a response that appropriately "
      "completes the request.\n\n";
  const auto chat = RenderChat(kAlpaca, {{"user", "List files."}, {"assistant", "ls"}}, false);
  EXPECT_EQ(Joined(chat), preamble + "### Instruction:\nList files.\n\n### Response:\nls</s>");
  EXPECT_THAT(Trainable(chat), ElementsAre("ls</s>"));
  EXPECT_EQ(Joined(RenderChat(kAlpaca, {{"user", "List files."}}, true)),
            preamble + "### Instruction:\nList files.\n\n### Response:\n");

  const auto no_input = RenderAlpaca("List files.", "", "ls", "<|endoftext|>");
  EXPECT_EQ(Joined(no_input),
            preamble + "### Instruction:\nList files.\n\n### Response:\nls<|endoftext|>");
  EXPECT_THAT(Trainable(no_input), ElementsAre("ls<|endoftext|>"));
  const auto with_input = RenderAlpaca("Translate.", "Hallo", "Hello");
  EXPECT_EQ(Joined(with_input),
            "Below is an instruction that describes a task, paired with an input that provides "
            "further context. Write a response that appropriately completes the request.\n\n"
            "### Instruction:\nTranslate.\n\n### Input:\nHallo\n\n### Response:\nHello</s>");
  EXPECT_THAT(Trainable(with_input), ElementsAre("Hello</s>"));

  const std::vector<ChatMessage> as_chat = AlpacaToMessages("Translate.", "Hallo", "Hello");
  ASSERT_EQ(as_chat.size(), 2u);
  EXPECT_EQ(as_chat[0].role, "user");
  EXPECT_EQ(as_chat[0].content, "Translate.\n\nHallo");
  EXPECT_EQ(as_chat[1].role, "assistant");
  EXPECT_EQ(as_chat[1].content, "Hello");
}

// A copy of a tokenizer.json with a tokenizer_config.json naming a chat template beside it.
std::string WithTemplate(const std::string& source, const std::string& jinja) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/chat_template_test_", getpid(), "_",
                                       std::hash<std::string>()(jinja));
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(TokenizerPath(source), dir + "/tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir + "/tokenizer_config.json") << nlohmann::json{{"chat_template", jinja}}.dump();
  return dir;
}

TEST(ChatTemplateTest, DetectsTheModelsFamily) {
  auto smol = Load("smollm2_tokenizer.json");
  auto llama = Load("llama2_tokenizer.json");
  ASSERT_NE(smol, nullptr);
  ASSERT_NE(llama, nullptr);
  EXPECT_EQ(DetectChatTemplate(*smol), kChatML);   // no template, but <|im_start|> in the vocab
  EXPECT_EQ(DetectChatTemplate(*llama), kAlpaca);  // neither
  const std::vector<std::pair<std::string, ChatTemplateKind>> cases = {
      {"{{ '<|im_start|>' + message['role'] }}", kChatML},
      {"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}", kLlama3},
      {"{{ bos_token + '[INST] ' + content + ' [/INST]' }}", kLlama2},
      {"{{ message['content'] }}", kAlpaca}};
  for (const auto& [jinja, kind] : cases) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok =
        Tokenizer::FromModel(WithTemplate("llama2_tokenizer.json", jinja) + "/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status();
    ASSERT_TRUE((*tok)->chat_template().has_value());
    EXPECT_EQ(DetectChatTemplate(**tok), kind) << jinja;
  }
}

// The ids that carry the loss flag.
std::vector<int32_t> LossIds(const TokenizedText& t) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < t.ids.size(); ++i) {
    if (t.loss[i]) out.push_back(t.ids[i]);
  }
  return out;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(ChatTemplateTest, ChatMLMaskCoversExactlyTheAssistantTokens) {
  auto tok = Load("smollm2_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  const std::optional<int32_t> im_end = tok->TokenToId("<|im_end|>");
  ASSERT_TRUE(im_end.has_value());
  const auto segments = RenderChat(kChatML, kTwoTurns, false);
  const TokenizedText t = TokenizeSegments(*tok, segments);
  ASSERT_EQ(t.ids.size(), t.loss.size());
  // Same ids as the whole rendered text.
  EXPECT_EQ(t.ids, tok->Encode(Joined(segments)));
  // The trained ids are the two replies, each with its end marker, tokenized on their own.
  std::vector<int32_t> expected = tok->Encode(" An OS. ");
  expected.push_back(*im_end);
  expected = Concat(expected, tok->Encode("Yes."));
  expected.push_back(*im_end);
  EXPECT_EQ(LossIds(t), expected);
  // And the masked-out tokens are the prompt text exactly.
  std::vector<int32_t> context;
  for (size_t i = 0; i < t.ids.size(); ++i) {
    if (!t.loss[i]) context.push_back(t.ids[i]);
  }
  EXPECT_EQ(
      tok->Decode(context),
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is Debian?<|im_end|>\n"
      "<|im_start|>assistant\n\n<|im_start|>user\nFree?<|im_end|>\n<|im_start|>assistant\n\n");
}

TEST(ChatTemplateTest, Llama2MaskMatchesWholeTextTokenization) {
  // The Llama-2-style fixture prepends "▁" to every piece of text; segment-wise tokenization must
  // still give the ids of the whole text.
  auto tok = Load("llama2_tokenizer.json");
  ASSERT_NE(tok, nullptr);
  EXPECT_TRUE(AddsDummyPrefix(*tok));
  auto smol = Load("smollm2_tokenizer.json");
  ASSERT_NE(smol, nullptr);
  EXPECT_FALSE(AddsDummyPrefix(*smol));
  const std::vector<ChatMessage> chat = {{"user", "the license terms"},
                                         {"assistant", "you may copy the program"}};
  const auto segments = RenderChat(kLlama2, chat, false);
  const TokenizedText t = TokenizeSegments(*tok, segments);
  const std::vector<int32_t> whole = tok->Encode(Joined(segments));
  EXPECT_EQ(t.ids, whole);
  // The trained tokens are what the reply adds to the prompt's tokens.
  const std::vector<int32_t> prompt = tok->Encode("<s>[INST] the license terms [/INST]");
  ASSERT_LT(prompt.size(), whole.size());
  ASSERT_TRUE(std::equal(prompt.begin(), prompt.end(), whole.begin()));
  EXPECT_EQ(LossIds(t), std::vector<int32_t>(whole.begin() + prompt.size(), whole.end()));
  EXPECT_EQ(std::count(t.loss.begin(), t.loss.end(), 1),
            static_cast<long>(whole.size() - prompt.size()));
  // (The SentencePiece decoder drops the leading space of its first token.)
  EXPECT_EQ(tok->Decode(LossIds(t)), "you may copy the program </s>");
}

}  // namespace
}  // namespace lorasweep
