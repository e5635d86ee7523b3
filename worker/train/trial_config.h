// The trial config: a YAML file (also the `base` of a sweep spec) mapped onto the TrialConfig
// protobuf message (proto/trial_config.proto), so every field is typed, unknown keys are rejected
// and every value is range-checked before any work starts.
//
//   model: models/smollm2-135m-instruct                    # HF folder or .gguf
//   quantization: {type: nf4, blocksize: 64, double_quant: true}
//   lora: {rank: 16, alpha: 16, dropout: 0.05, target_modules: all-linear, rslora: false}
//   data: {path: data/faq, eval_path: data/faq}
//   train: {steps: 200, learning_rate: 2.0e-4, schedule: cosine, warmup_steps: 10}
//   device: auto
//
// The YAML -> message mapping is generic (protobuf reflection): keys are the proto field names,
// nested maps are sub-messages, `key: [a, b]` fills a repeated field and a lone scalar is accepted
// as a one-element list (`target_modules: all-linear`). Numbers must be plain YAML scalars (a
// quoted "100" is a string, not a number). Errors read "FILE:LINE: ..." and name the full dotted
// key.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/trial_config.pb.h"

namespace YAML {
class Node;
}  // namespace YAML

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace lorasweep {

// Every default of a trial config: quantization nf4/64/double_quant; lora rank 16, alpha 16,
// dropout 0.05, all-linear, no rsLoRA; train steps 100, micro_batch 4, grad_accum 1, lr 2e-4,
// cosine, no warmup, no weight decay, max_grad_norm 1.0, seed 0, eval and checkpoint only at the
// end, activation checkpointing, all cores, AdamW betas 0.9/0.999, eps 1e-8, the whole eval split,
// loss_chunk_rows 256; device auto. `model` and `data.path` have no default.
TrialConfig DefaultTrialConfig();

// Fills what depends on other fields after every value is set: an empty data.eval_path becomes
// data.path, and `data.shards: [all]` becomes [] (all shards). Idempotent; the sweep calls it after
// applying its overrides.
void FinalizeTrialConfig(TrialConfig* config);

// Parses YAML text into a TrialConfig with defaults filled (DefaultTrialConfig, then the YAML, then
// FinalizeTrialConfig). `source_name` is used in error messages. Does not range-check: call
// ValidateTrialConfig.
absl::StatusOr<TrialConfig> ParseTrialConfigYaml(const std::string& yaml_text,
                                                 const std::string& source_name);
// Reads and parses the file at `path` (errors name the path).
absl::StatusOr<TrialConfig> LoadTrialConfig(const std::string& path);

// Applies a YAML map onto `message` field by field (a field missing from the map keeps its value; a
// repeated field given in the map is replaced). `prefix` is the dotted path of `message` itself
// ("" at the top) for error messages.
absl::Status ApplyYamlToMessage(const YAML::Node& node, google::protobuf::Message* message,
                                const std::string& prefix, const std::string& source_name);

// Sets one field named by a dotted path ("lora.rank", "train.learning_rate") to `value` (a scalar,
// a list for a repeated field, or a map for a message field, which is merged). Errors name the
// path.
absl::Status SetFieldByDottedPath(google::protobuf::Message* message,
                                  const std::string& dotted_path, const YAML::Node& value,
                                  const std::string& source_name);

// Range checks that need no model (rank >= 1, alpha > 0, 0 <= dropout < 1, lr > 0 and finite,
// steps >= 1, warmup_steps in [0, steps], known schedule / device / quantization / modules, ...).
// Every problem found is reported (joined by "; "), each naming the dotted field, what was expected
// and the value given.
absl::Status ValidateTrialConfig(const TrialConfig& config);

// The LoRA target modules in the canonical order q, k, v, o, gate, up, down, without duplicates;
// all-linear stands for all seven.
std::vector<std::string> ExpandTargetModules(const LoraConfig& lora);
// The seven linear module names lorasweep can adapt, in canonical order.
const std::vector<std::string>& AllLinearModules();

// The config as JSON (proto field names, every field printed; 64-bit integers are JSON strings as
// in proto3's JSON mapping), for saving next to a run.
std::string TrialConfigToJson(const TrialConfig& config);
// The config as YAML text that ParseTrialConfigYaml reads back to the same message.
std::string TrialConfigToYaml(const TrialConfig& config);

}  // namespace lorasweep
