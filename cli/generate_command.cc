// `lorasweep generate --model M [--adapter A] --prompt TEXT [--system TEXT] [--chat-template NAME|none]
//  [--max-new-tokens 128] [--temperature 0] [--top-p 1] [--seed 0] [--quant nf4|fp4|none]`
#include <chrono>
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "cli/model_loading.h"
#include "nlohmann/json.hpp"
#include "worker/data/chat_template.h"
#include "worker/data/tokenizer.h"
#include "worker/model/generator.h"

namespace lorasweep::cli {
namespace {

int RunGenerate(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportError("generate", "unexpected argument " + positional[0]);
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  if (prompt.empty()) return ReportError("generate", "--prompt is required");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      Tokenizer::FromModel(absl::GetFlag(FLAGS_model));
  if (!tokenizer.ok()) return ReportError("generate", std::string(tokenizer.status().message()));
  absl::StatusOr<LoadedModel> loaded = LoadModelForInference("generate");
  if (!loaded.ok()) return ReportError("generate", std::string(loaded.status().message()));

  // The prompt as the model was trained to read it: its chat template, or raw text with "none".
  std::vector<int32_t> ids;
  std::vector<int32_t> stop;
  if ((*tokenizer)->eos_id()) stop.push_back(*(*tokenizer)->eos_id());
  const std::string template_name = absl::GetFlag(FLAGS_chat_template);
  if (template_name == "none") {
    if ((*tokenizer)->bos_id()) ids.push_back(*(*tokenizer)->bos_id());
    const std::vector<int32_t> text = (*tokenizer)->Encode(prompt);
    ids.insert(ids.end(), text.begin(), text.end());
  } else {
    ChatTemplateKind kind = DetectChatTemplate(**tokenizer);
    if (!template_name.empty() && template_name != "auto") {
      absl::StatusOr<ChatTemplateKind> parsed = ParseChatTemplateKind(template_name);
      if (!parsed.ok()) {
        return ReportError("generate", "--chat-template: " + std::string(parsed.status().message()));
      }
      kind = *parsed;
    }
    std::vector<ChatMessage> messages;
    if (!absl::GetFlag(FLAGS_system).empty()) {
      messages.push_back({"system", absl::GetFlag(FLAGS_system)});
    }
    messages.push_back({"user", prompt});
    std::string eos_token;
    if ((*tokenizer)->eos_id()) {
      eos_token = (*tokenizer)->IdToToken(*(*tokenizer)->eos_id()).value_or("");
    }
    // Tokenized exactly as prepare-data tokenizes training conversations.
    ids = TokenizeSegments(**tokenizer, RenderChat(kind, messages, true, eos_token)).ids;
    for (const char* marker : {"<|im_end|>", "<|eot_id|>", "</s>"}) {
      if (std::optional<int32_t> id = (*tokenizer)->TokenToId(marker)) stop.push_back(*id);
    }
  }
  SamplingOptions sampling;
  sampling.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  sampling.temperature = absl::GetFlag(FLAGS_temperature);
  sampling.top_p = absl::GetFlag(FLAGS_top_p);
  sampling.seed = absl::GetFlag(FLAGS_seed);
  Generator generator(*loaded->model, loaded->params_or_null());
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> out = generator.Generate(ids, stop, sampling);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string text = (*tokenizer)->Decode(out);
  std::printf("%s\n", text.c_str());
  std::fprintf(stderr, "[%zu prompt tokens, %zu generated in %.1f s]\n", ids.size(), out.size(),
               seconds);
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json j = {{"text", text},
                        {"prompt_tokens", ids.size()},
                        {"generated_tokens", out.size()},
                        {"seconds", seconds}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

Command GenerateCommand() {
  return {"generate",
          "Generate a reply with a model (+ adapter), through its chat template, with a KV cache",
          "lorasweep generate --model M [--adapter A] --prompt TEXT [--system TEXT] "
          "[--chat-template auto|chatml|llama3|llama2|alpaca|none] [--max-new-tokens 128] "
          "[--temperature 0] [--top-p 1] [--seed 0] [--quant nf4|fp4|none] [--json]",
          {"model", "adapter", "prompt", "system", "chat_template", "max_new_tokens", "temperature",
           "top_p", "seed", "quant", "threads", "json"},
          RunGenerate};
}

}  // namespace lorasweep::cli
