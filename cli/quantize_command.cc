// `lorasweep quantize --model PATH --out DIR [--quant nf4|fp4] [--blocksize 64] [--double-quant true|false] [--json]`
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "common/byte_size.h"
#include "nlohmann/json.hpp"
#include "worker/formats/bnb_export.h"

namespace lorasweep::cli {
namespace {

int RunQuantize(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportError("quantize", "unexpected argument " + positional[0]);
  const std::string model_path = absl::GetFlag(FLAGS_model), out = absl::GetFlag(FLAGS_out);
  if (model_path.empty()) return ReportError("quantize", "--model is required");
  if (out.empty()) return ReportError("quantize", "--out is required");
  const std::string quant = absl::GetFlag(FLAGS_quant);
  absl::StatusOr<QuantType> type = ParseQuantType(quant.empty() ? "nf4" : quant);
  if (!type.ok()) return ReportError("quantize", "--quant: " + std::string(type.status().message()));
  BnbExportOptions options;
  options.type = *type;
  options.blocksize = absl::GetFlag(FLAGS_blocksize);
  options.double_quant = absl::GetFlag(FLAGS_double_quant);
  options.dtype = absl::GetFlag(FLAGS_dtype);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  absl::StatusOr<uint64_t> shard_bytes = ParseByteSize(absl::GetFlag(FLAGS_max_shard_size));
  if (!shard_bytes.ok()) {
    return ReportError("quantize", "--max-shard-size: " + std::string(shard_bytes.status().message()));
  }
  options.max_shard_bytes = *shard_bytes;

  absl::StatusOr<ModelFiles> model = OpenModelFiles(model_path);
  if (!model.ok()) return ReportError("quantize", std::string(model.status().message()));
  absl::StatusOr<BnbExportReport> report = ExportBnb4bit(*model, out, options);
  if (!report.ok()) return ReportError("quantize", std::string(report.status().message()));
  std::printf("quantized %lld linear weights (%lld params) to %s%s, blocksize %lld: "
              "%.4f bits/param, rmse %.3g, max |error| %.3g; %lld params left unquantized; "
              "%.1f MB written to %s\n",
              static_cast<long long>(report->quantized_tensors),
              static_cast<long long>(report->quantized_params), QuantTypeName(options.type),
              options.double_quant ? "+DQ" : "", static_cast<long long>(options.blocksize),
              report->bits_per_param, report->rmse, report->max_abs_error,
              static_cast<long long>(report->unquantized_params),
              static_cast<double>(report->bytes_written) / 1e6, out.c_str());
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json j = {{"out", out},
                        {"quant_type", QuantTypeName(options.type)},
                        {"blocksize", options.blocksize},
                        {"double_quant", options.double_quant},
                        {"quantized_tensors", report->quantized_tensors},
                        {"quantized_params", report->quantized_params},
                        {"unquantized_params", report->unquantized_params},
                        {"bits_per_param", report->bits_per_param},
                        {"rmse", report->rmse},
                        {"max_abs_error", report->max_abs_error},
                        {"bytes_written", report->bytes_written}};
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

Command QuantizeCommand() {
  return {"quantize",
          "Write a HF folder whose decoder linear weights are 4-bit in bitsandbytes format",
          "lorasweep quantize --model PATH --out DIR [--quant nf4|fp4] [--blocksize 64] "
          "[--double-quant true|false] [--dtype auto|f32|bf16|f16] [--max-shard-size 5GB] [--json]",
          {"model", "out", "quant", "blocksize", "double_quant", "dtype", "threads", "max_shard_size",
           "json"},
          RunQuantize};
}

}  // namespace lorasweep::cli
