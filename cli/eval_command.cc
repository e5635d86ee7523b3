// `lorasweep eval --model M [--adapter A] --data D [--quant nf4|fp4|none] [--json]`
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "cli/model_loading.h"
#include "nlohmann/json.hpp"
#include "worker/train/evaluate.h"

namespace lorasweep::cli {
namespace {

int RunEval(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportError("eval", "unexpected argument " + positional[0]);
  const std::string data = absl::GetFlag(FLAGS_data);
  if (data.empty()) return ReportError("eval", "--data is required (a prepare-data folder)");
  absl::StatusOr<LoadedModel> loaded = LoadModelForInference("eval");
  if (!loaded.ok()) return ReportError("eval", std::string(loaded.status().message()));
  absl::StatusOr<EvalResult> result =
      EvaluateLoss(*loaded->model, loaded->params_or_null(), data, absl::GetFlag(FLAGS_micro_batch),
                   absl::GetFlag(FLAGS_max_batches), 256);
  if (!result.ok()) return ReportError("eval", std::string(result.status().message()));
  std::printf("eval: loss %.4f, perplexity %.3f over %lld tokens (%lld sequences)%s%s\n",
              result->loss, result->perplexity, static_cast<long long>(result->tokens),
              static_cast<long long>(result->sequences), loaded->adapter_path.empty() ? "" : ", adapter ",
              loaded->adapter_path.c_str());
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json j = {{"loss", result->loss},
                        {"perplexity", result->perplexity},
                        {"tokens", result->tokens},
                        {"sequences", result->sequences},
                        {"quant", loaded->quant_name}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

Command EvalCommand() {
  return {"eval", "Mean loss and perplexity of a model (+ adapter) on a dataset's eval split",
          "lorasweep eval --model M [--adapter A] --data DIR [--quant nf4|fp4|none] "
          "[--micro-batch 4] [--max-batches 0] [--json]",
          {"model", "adapter", "data", "quant", "micro_batch", "max_batches", "threads", "json"},
          RunEval};
}

}  // namespace lorasweep::cli
