// `lorasweep export --adapter A --for vllm|peft [--out DIR] [--json]`
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "nlohmann/json.hpp"
#include "worker/adapters/vllm_check.h"

namespace lorasweep::cli {
namespace {

int RunExport(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportError("export", "unexpected argument " + positional[0]);
  const std::string adapter = absl::GetFlag(FLAGS_adapter), out = absl::GetFlag(FLAGS_out);
  if (adapter.empty()) return ReportError("export", "--adapter is required");
  const std::string target_name = absl::GetFlag(FLAGS_for);
  absl::StatusOr<ExportTarget> target = ParseExportTarget(target_name);
  if (!target.ok()) return ReportError("export", std::string(target.status().message()));
  absl::StatusOr<ExportCheck> check = CheckAdapterForExport(adapter, *target);
  if (!check.ok()) return ReportError("export", std::string(check.status().message()));
  for (const RuleViolation& v : check->violations) {
    std::fprintf(stderr, "lorasweep export: rule %s violated: %s\n", v.rule.c_str(), v.message.c_str());
  }
  for (const std::string& note : check->notes) std::printf("note: %s\n", note.c_str());
  if (check->ok()) {
    if (*target == ExportTarget::kVllm) {
      std::printf("%s: OK for vLLM (r = %d); serve with: --enable-lora --max-lora-rank %d "
                  "--lora-modules NAME=%s\n",
                  adapter.c_str(), check->rank, check->max_lora_rank, adapter.c_str());
    } else {
      std::printf("%s: OK for PEFT (r = %d)\n", adapter.c_str(), check->rank);
    }
    if (!out.empty()) {
      absl::Status copied = CopyAdapterFolder(adapter, out);
      if (!copied.ok()) return ReportError("export", std::string(copied.message()));
      std::printf("copied to %s\n", out.c_str());
    }
  }
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json violations = nlohmann::json::array();
    for (const RuleViolation& v : check->violations) {
      violations.push_back({{"rule", v.rule}, {"message", v.message}});
    }
    nlohmann::json j = {{"adapter", adapter},  {"for", target_name},
                        {"ok", check->ok()},    {"rank", check->rank},
                        {"violations", violations}};
    if (*target == ExportTarget::kVllm && check->max_lora_rank > 0) {
      j["max_lora_rank"] = check->max_lora_rank;
    }
    if (check->ok() && !out.empty()) j["out"] = out;
    std::printf("%s\n", j.dump().c_str());
  }
  if (!check->ok()) {
    std::fprintf(stderr, "lorasweep export: error: %zu rule(s) violated for %s%s\n",
                 check->violations.size(), target_name.c_str(),
                 out.empty() ? "" : "; nothing copied");
    return 1;
  }
  return 0;
}

}  // namespace

Command ExportCommand() {
  return {"export", "Check an adapter for a serving target (vLLM, PEFT) and copy it",
          "lorasweep export --adapter A --for vllm|peft [--out DIR] [--json]",
          {"adapter", "for", "out", "json"},
          RunExport};
}

}  // namespace lorasweep::cli
