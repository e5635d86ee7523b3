// `lorasweep export --for vllm|peft`: every rule, violated on purpose, is reported by name with a
// non-zero exit and nothing copied; a good adapter passes, prints the flags to serve it with, and
// is copied byte for byte.
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/train_test_util.h"
#include "worker/adapters/vllm_check.h"
#include "worker/formats/safetensors.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {
namespace {

std::pair<int64_t, int64_t> TinyShape(const std::string& module) {
  if (module == "k_proj" || module == "v_proj") return {20, 40};
  if (module == "gate_proj" || module == "up_proj") return {100, 40};
  if (module == "down_proj") return {40, 100};
  return {40, 40};
}

const std::vector<std::string> kAll = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                       "gate_proj", "up_proj", "down_proj"};

std::string MakeAdapter(const std::string& dir, int rank, const std::vector<std::string>& modules,
                        int layers = 2) {
  std::mt19937 rng(rank);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  PeftAdapter a;
  a.base_model_name_or_path = kTinyModel;
  a.rank = rank;
  a.alpha = 2 * rank;
  a.target_modules = modules;
  for (int layer = 0; layer < layers; ++layer) {
    for (const std::string& m : modules) {
      LoraTensor t;
      t.layer = layer;
      t.module = m;
      std::tie(t.out_features, t.in_features) = TinyShape(m);
      t.a.resize(rank * t.in_features);
      t.b.resize(t.out_features * rank);
      for (float& x : t.a) x = u(rng);
      for (float& x : t.b) x = u(rng);
      a.tensors.push_back(std::move(t));
    }
  }
  EXPECT_TRUE(WritePeftAdapter(a, dir).ok());
  return dir;
}

// Rewrites fields of DIR/adapter_config.json.
void EditConfig(const std::string& dir, const nlohmann::json& changes) {
  nlohmann::json config = nlohmann::json::parse(ReadBytes(dir + "/adapter_config.json"));
  for (const auto& [key, value] : changes.items()) config[key] = value;
  ASSERT_TRUE(WriteFileAtomically(dir + "/adapter_config.json", config.dump(2)).ok());
}

ProcessResult Export(const std::string& adapter, const std::string& target,
                     const std::string& out = "") {
  std::vector<std::string> args = {"export", "--adapter", adapter, "--for", target, "--json"};
  if (!out.empty()) {
    args.push_back("--out");
    args.push_back(out);
  }
  return RunLorasweep(args);
}

void ExpectViolation(const std::string& adapter, const std::string& target,
                     const std::string& rule, const std::string& out) {
  const ProcessResult r = Export(adapter, target, out);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("rule " + rule + " violated"), std::string::npos) << r.output;
  nlohmann::json j;  // the --json line (stderr lines are interleaved in the output)
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] == '{') j = nlohmann::json::parse(line);
  }
  ASSERT_TRUE(j.is_object()) << r.output;
  EXPECT_FALSE(j["ok"].get<bool>());
  bool named = false;
  for (const nlohmann::json& v : j["violations"]) named |= v["rule"] == rule;
  EXPECT_TRUE(named) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out)) << "nothing is copied when a rule is violated";
}

TEST(ExportTest, GoodAdapterPassesAndIsCopied) {
  const std::string dir = NewDir("export_good");
  const std::string a = MakeAdapter(dir + "/a", 12, kAll);
  ProcessResult r = Export(a, "vllm", dir + "/served");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--enable-lora --max-lora-rank 16"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("served padded to 16"), std::string::npos) << r.output;
  for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "lorasweep_training.json"}) {
    EXPECT_EQ(ReadBytes(dir + "/served/" + f), ReadBytes(a + "/" + f)) << f;
  }
  r = Export(MakeAdapter(dir + "/r8", 8, {"q_proj", "k_proj", "v_proj", "o_proj"}), "vllm");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--max-lora-rank 8 "), std::string::npos) << r.output;
  r = Export(a, "peft", dir + "/peft");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir + "/peft/adapter_model.safetensors"));
  // Buckets: the smallest of vLLM's values >= r.
  EXPECT_EQ(VllmMaxLoraRanks().back(), 512);
}

TEST(ExportTest, EachVllmRuleIsNamed) {
  const std::string dir = NewDir("export_vllm");
  std::string a = MakeAdapter(dir + "/dora", 8, kAll);
  EditConfig(a, {{"use_dora", true}});
  ExpectViolation(a, "vllm", "no-dora", dir + "/out");

  a = MakeAdapter(dir + "/save", 8, kAll);
  EditConfig(a, {{"modules_to_save", {"lm_head"}}});
  ExpectViolation(a, "vllm", "no-modules-to-save", dir + "/out");

  a = MakeAdapter(dir + "/bias", 8, kAll);
  EditConfig(a, {{"bias", "lora_only"}});
  ExpectViolation(a, "vllm", "bias-none", dir + "/out");

  ExpectViolation(MakeAdapter(dir + "/qv", 8, {"q_proj", "v_proj"}), "vllm", "packed-qkv",
                  dir + "/out");
  ExpectViolation(MakeAdapter(dir + "/gate", 8, {"q_proj", "k_proj", "v_proj", "gate_proj"}),
                  "vllm", "packed-gate-up", dir + "/out");
  ExpectViolation(MakeAdapter(dir + "/big", 600, {"q_proj", "k_proj", "v_proj"}, 1), "vllm",
                  "max-lora-rank", dir + "/out");

  // Several at once: all reported.
  a = MakeAdapter(dir + "/many", 8, {"q_proj", "v_proj"});
  EditConfig(a, {{"use_dora", true}, {"bias", "all"}});
  const ProcessResult r = Export(a, "vllm");
  EXPECT_EQ(r.exit_code, 1);
  for (const char* rule : {"no-dora", "bias-none", "packed-qkv"}) {
    EXPECT_NE(r.output.find(std::string("rule ") + rule + " violated"), std::string::npos)
        << rule << "\n" << r.output;
  }
}

TEST(ExportTest, EachPeftRuleIsNamed) {
  const std::string dir = NewDir("export_peft");
  std::string a = MakeAdapter(dir + "/task", 4, kAll);
  EditConfig(a, {{"task_type", "SEQ_CLS"}});
  ExpectViolation(a, "peft", "config", dir + "/out");

  // A key that is not a LoRA matrix: the key is named.
  a = MakeAdapter(dir + "/key", 4, {"q_proj", "k_proj"});
  {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
        SafetensorsFile::Open(a + "/adapter_model.safetensors");
    ASSERT_TRUE(f.ok());
    NamedTensors tensors;
    for (const TensorInfo& info : (*f)->List()) {
      std::string name = info.name;
      if (name == "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight") {
        name = "base_model.model.model.layers.1.self_attn.k_proj.lora_C.weight";
      }
      tensors.emplace_back(name, *(*f)->Get(info.name));
    }
    f->reset();
    ASSERT_TRUE(WriteSafetensors(a + "/adapter_model.safetensors", tensors).ok());
  }
  ExpectViolation(a, "peft", "peft-format", dir + "/out");
  EXPECT_NE(Export(a, "peft").output.find("lora_C"), std::string::npos);
  // vLLM checks the PEFT format too.
  ExpectViolation(a, "vllm", "peft-format", dir + "/out");

  // Layer 1 lacks a targeted module.
  PeftAdapter partial = *ReadPeftAdapter(MakeAdapter(dir + "/p0", 4, {"q_proj", "k_proj", "v_proj"}));
  partial.tensors.pop_back();  // layer 1 v_proj
  ASSERT_TRUE(WritePeftAdapter(partial, dir + "/partial").ok());
  ExpectViolation(dir + "/partial", "peft", "targets-have-weights", dir + "/out");

  const ProcessResult r = Export(a, "tensorrt");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--for: expected vllm or peft"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace lorasweep
