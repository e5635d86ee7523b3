// `lorasweep soup --adapters A1:w1,A2:w2,... --method cat|linear|svd [--rank R] --out DIR [--json]`
//
// One flag holding a comma-separated list, because absl flags do not repeat (a second --adapter
// would silently replace the first).
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "nlohmann/json.hpp"
#include "worker/adapters/soup.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep::cli {
namespace {

int RunSoup(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportError("soup", "unexpected argument " + positional[0]);
  const std::vector<std::string> specs = absl::GetFlag(FLAGS_adapters);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (specs.empty()) return ReportError("soup", "--adapters is required (A1:w1,A2:w2,...)");
  if (out.empty()) return ReportError("soup", "--out is required");
  absl::StatusOr<SoupMethod> method = ParseSoupMethod(absl::GetFlag(FLAGS_method));
  if (!method.ok()) return ReportError("soup", std::string(method.status().message()));
  std::vector<SoupInput> inputs;
  for (const std::string& spec : specs) {
    absl::StatusOr<std::pair<std::string, double>> parsed = ParseAdapterWeight(spec);
    if (!parsed.ok()) return ReportError("soup", "--adapters: " + std::string(parsed.status().message()));
    absl::StatusOr<PeftAdapter> adapter = ReadPeftAdapter(parsed->first);
    if (!adapter.ok()) return ReportError("soup", std::string(adapter.status().message()));
    inputs.push_back({parsed->first, *std::move(adapter), parsed->second});
  }
  SoupReport report;
  absl::StatusOr<PeftAdapter> soup =
      MakeSoup(inputs, *method, absl::GetFlag(FLAGS_rank), &report);
  if (!soup.ok()) return ReportError("soup", std::string(soup.status().message()));
  absl::Status written = WritePeftAdapter(*soup, out);
  if (!written.ok()) return ReportError("soup", std::string(written.message()));
  std::printf("soup (%s) of %zu adapters: r = %d, lora_alpha = %d, %lld modules",
              SoupMethodName(*method), inputs.size(), report.rank, report.rank,
              static_cast<long long>(report.modules));
  if (*method == SoupMethod::kSvd) {
    std::printf("; truncation error %.4g of %.4g (Frobenius, relative %.3g; worst module %.3g)",
                report.discarded_frobenius, report.delta_frobenius,
                report.delta_frobenius > 0 ? report.discarded_frobenius / report.delta_frobenius : 0.0,
                report.max_module_relative_error);
  }
  std::printf("; written to %s\n", out.c_str());
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json j = {{"out", out},
                        {"method", SoupMethodName(*method)},
                        {"adapters", inputs.size()},
                        {"rank", report.rank},
                        {"modules", report.modules}};
    if (*method == SoupMethod::kSvd) {
      j["delta_frobenius"] = report.delta_frobenius;
      j["discarded_frobenius"] = report.discarded_frobenius;
      j["max_module_relative_error"] = report.max_module_relative_error;
    }
    std::printf("%s\n", j.dump().c_str());
  }
  return 0;
}

}  // namespace

Command SoupCommand() {
  return {"soup", "Combine LoRA adapters with weights (PEFT add_weighted_adapter: cat, linear, svd)",
          "lorasweep soup --adapters A1:w1,A2:w2,... --method cat|linear|svd [--rank R] --out DIR "
          "[--json]",
          {"adapters", "method", "rank", "out", "json"},
          RunSoup};
}

}  // namespace lorasweep::cli
