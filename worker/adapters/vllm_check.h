// `lorasweep export`: checks that an adapter folder is what a serving target loads, and says what to
// pass or what to change. Rules are named so that scripts (and the tests) can tell them apart.
//
// vLLM (../shared/notes/formats.md):
//   max-lora-rank   r (the largest of rank_pattern too) <= 512; vLLM's --max-lora-rank must be one of
//                   {1, 8, 16, 32, 64, 128, 256, 320, 512} and >= r: the smallest such is suggested
//   packed-qkv      q_proj, k_proj, v_proj targeted together (vLLM serves them as one qkv_proj)
//   packed-gate-up  gate_proj and up_proj targeted together (one gate_up_proj)
//   no-dora         use_dora false
//   no-modules-to-save  modules_to_save null or empty
//   bias-none       bias "none"
//   peft-format     everything `--for peft` checks
// PEFT:
//   config          adapter_config.json parses; peft_type LORA, task_type CAUSAL_LM when present,
//                   r, lora_alpha, target_modules present and valid
//   peft-format     keys, A/B pairs, shapes [r, in] / [out, r], dtypes (ReadPeftAdapter)
//   targets-have-weights  every adapted layer carries every targeted module
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lorasweep {

enum class ExportTarget { kVllm, kPeft };
absl::StatusOr<ExportTarget> ParseExportTarget(const std::string& name);

struct RuleViolation {
  std::string rule;     // e.g. "packed-qkv"
  std::string message;  // what is wrong and what to change
};

struct ExportCheck {
  std::vector<RuleViolation> violations;
  int rank = 0;             // largest rank in the adapter
  int max_lora_rank = 0;    // vLLM: the flag value to pass (0 when the rank is too large)
  std::vector<std::string> notes;  // advice that is not a violation
  bool ok() const { return violations.empty(); }
};

// vLLM's accepted --max-lora-rank values.
const std::vector<int>& VllmMaxLoraRanks();

// Checks the adapter folder `dir` for `target`. IO errors (no folder) are errors; rule violations
// are reported in the result.
absl::StatusOr<ExportCheck> CheckAdapterForExport(const std::string& dir, ExportTarget target);

// Copies the adapter folder's files into `out_dir` atomically (staged beside it, then put in
// place of a previous folder).
absl::Status CopyAdapterFolder(const std::string& dir, const std::string& out_dir);

}  // namespace lorasweep
