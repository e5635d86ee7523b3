// `lorasweep merge --model BASE --adapter A --out DIR [--dtype auto|f32|bf16|f16]
//   [--quant nf4|fp4|none] [--merge-into trained|original] [--json]`
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "common/byte_size.h"
#include "common/parallel_for.h"
#include "nlohmann/json.hpp"
#include "worker/adapters/merge.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep::cli {
namespace {

int RunMerge(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportError("merge", "unexpected argument " + positional[0]);
  const std::string model_path = absl::GetFlag(FLAGS_model), out = absl::GetFlag(FLAGS_out);
  const std::string adapter_path = absl::GetFlag(FLAGS_adapter);
  if (model_path.empty()) return ReportError("merge", "--model is required");
  if (adapter_path.empty()) return ReportError("merge", "--adapter is required");
  if (out.empty()) return ReportError("merge", "--out is required");
  MergeOptions options;
  const std::string into = absl::GetFlag(FLAGS_merge_into);
  if (into != "trained" && into != "original") {
    return ReportError("merge", "--merge-into: expected trained or original, got '" + into + "'");
  }
  options.into_trained_base = into == "trained";
  const std::string quant = absl::GetFlag(FLAGS_quant);
  if (!quant.empty() && quant != "none") {
    absl::StatusOr<QuantType> type = ParseQuantType(quant);
    if (!type.ok()) return ReportError("merge", "--quant: expected nf4, fp4 or none, got '" + quant + "'");
    options.quant = *type;
  }
  options.dtype = absl::GetFlag(FLAGS_dtype);
  options.blocksize = absl::GetFlag(FLAGS_blocksize);
  options.double_quant = absl::GetFlag(FLAGS_double_quant);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<uint64_t> shard_bytes = ParseByteSize(absl::GetFlag(FLAGS_max_shard_size));
  if (!shard_bytes.ok()) {
    return ReportError("merge", "--max-shard-size: " + std::string(shard_bytes.status().message()));
  }
  options.max_shard_bytes = *shard_bytes;

  absl::StatusOr<PeftAdapter> adapter = ReadPeftAdapter(adapter_path);
  if (!adapter.ok()) return ReportError("merge", std::string(adapter.status().message()));
  absl::StatusOr<ModelFiles> model = OpenModelFiles(model_path);
  if (!model.ok()) return ReportError("merge", std::string(model.status().message()));
  absl::StatusOr<MergeReport> report = MergeAdapter(*model, *adapter, adapter_path, out, options);
  if (!report.ok()) return ReportError("merge", std::string(report.status().message()));
  std::printf("merged %lld LoRA modules (%lld params, delta rms %.3g, max %.3g) into the %s base; ",
              static_cast<long long>(report->merged_modules),
              static_cast<long long>(report->merged_params), report->delta_rms,
              report->delta_max_abs, report->base.c_str());
  if (report->requantized) {
    std::printf("re-quantized to %s: %.4f bits/param, added error rmse %.3g, max |error| %.3g; ",
                QuantTypeName(*options.quant), report->bits_per_param, report->quant_rmse,
                report->quant_max_abs_error);
  } else if (report->storage_max_abs_error > 0) {
    std::printf("%s rounding rmse %.3g, max %.3g; ", options.dtype.c_str(), report->storage_rmse,
                report->storage_max_abs_error);
  }
  std::printf("%.1f MB written to %s\n", static_cast<double>(report->bytes_written) / 1e6,
              out.c_str());
  if (report->requantized && report->quant_rmse >= 0.5 * report->delta_rms) {
    // Measured on SmolLM2-135M: at rmse ~ delta rms, re-quantizing gave back 97% of the adapter's
    // eval-loss gain (docs/adapters.md), so say so rather than leave it to a later eval.
    std::fprintf(stderr,
                 "lorasweep merge: warning: the re-quantization error (rmse %.3g) is not small "
                 "against the LoRA delta (rms %.3g): much of the adapter's effect may be lost; "
                 "evaluate it, or keep the merged model unquantized, or serve the adapter unmerged\n",
                 report->quant_rmse, report->delta_rms);
  }
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json j = {{"out", out},
                        {"base", report->base},
                        {"merged_modules", report->merged_modules},
                        {"merged_params", report->merged_params},
                        {"delta_rms", report->delta_rms},
                        {"delta_max_abs", report->delta_max_abs},
                        {"storage_rmse", report->storage_rmse},
                        {"storage_max_abs_error", report->storage_max_abs_error},
                        {"quant", options.quant ? QuantTypeName(*options.quant) : "none"},
                        {"bytes_written", report->bytes_written}};
    if (report->requantized) {
      j["quant_rmse"] = report->quant_rmse;
      j["quant_max_abs_error"] = report->quant_max_abs_error;
      j["bits_per_param"] = report->bits_per_param;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

Command MergeCommand() {
  return {"merge", "Fold a LoRA adapter into its base model and write a HF folder",
          "lorasweep merge --model BASE --adapter A --out DIR [--dtype auto|f32|bf16|f16] "
          "[--quant none|nf4|fp4] [--blocksize 64] [--double-quant true|false] "
          "[--merge-into trained|original] [--max-shard-size 5GB] [--json]",
          {"model", "adapter", "out", "dtype", "quant", "blocksize", "double_quant", "merge_into",
           "threads", "max_shard_size", "json"},
          RunMerge};
}

}  // namespace lorasweep::cli
