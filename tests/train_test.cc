// `lorasweep train` / `eval` end to end on the tiny Llama checkpoint (tests/data/tiny_llama), with a
// synthetic dataset written here through the shard writer: every document follows the rule
// next = (token + 5) mod 64, which the adapter can learn and the frozen random base does not know.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/subprocess.h"
#include "tests/train_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/data/dataset_manifest.h"
#include "worker/data/token_shard.h"
#include "worker/model/llama_model.h"
#include "worker/train/adapter_params.h"
#include "worker/train/peft_adapter.h"
#include "worker/train/training_checkpoint.h"

namespace lorasweep {
namespace {

TEST(TrainTest, TinyModelOverfitsTheSuccessorRule) {
  const std::string data = MakeDataset("overfit", 16, 4);
  const std::string dir = NewDir("overfit_run");
  const std::string config = WriteConfig(
      dir, data, "lora: {rank: 16, alpha: 32, dropout: 0.0, target_modules: all-linear}\n",
      "steps: 300, micro_batch: 4, learning_rate: 2.0e-2, schedule: constant, warmup_steps: 5, "
      "max_grad_norm: 1.0, eval_every: 50, threads: 1");
  const ProcessResult r = RunLorasweep({"train", "--config", config, "--out", dir + "/run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> losses, evals;
  for (const nlohmann::json& j : ReadMetrics(dir + "/run")) {
    if (j.contains("loss")) losses.push_back(j["loss"].get<double>());
    if (j.contains("eval_loss")) evals.push_back(j["eval_loss"].get<double>());
  }
  ASSERT_EQ(losses.size(), 300u);
  ASSERT_EQ(evals.size(), 6u);
  // The random base predicts ~uniformly: ln 64 = 4.16 nats.
  EXPECT_GT(losses.front(), 3.5);
  EXPECT_LT(losses.back(), losses.front() / 5) << "first " << losses.front() << " last "
                                              << losses.back();
  EXPECT_LT(evals.back(), evals.front());
  // The adapter folder re-reads and matches the checkpoint's parameters exactly.
  absl::StatusOr<PeftAdapter> adapter = ReadPeftAdapter(dir + "/run/adapter");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  EXPECT_EQ(adapter->rank, 16);
  EXPECT_EQ(adapter->trained_quantization, "nf4");
  absl::StatusOr<TrainingState> state = LoadTrainingCheckpoint(dir + "/run/checkpoint");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->step, 300);
  absl::StatusOr<LlamaWeights> weights = LoadLlamaWeights(kTinyModel, BaseQuantization{});
  ASSERT_TRUE(weights.ok());
  absl::StatusOr<LoraLayout> layout =
      LoraLayout::Create(*weights, LoraOptionsFromAdapter(*adapter));
  ASSERT_TRUE(layout.ok());
  absl::StatusOr<std::vector<float>> params = ParamsFromAdapter(*adapter, *layout);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(*params, state->params);

  // `lorasweep eval` with the adapter reproduces the last eval line; without it, the base is worse.
  const ProcessResult with = RunLorasweep({"eval", "--model", kTinyModel, "--adapter", dir + "/run/adapter",
                                  "--data", data, "--json"});
  ASSERT_EQ(with.exit_code, 0) << with.output;
  const nlohmann::json wj = nlohmann::json::parse(with.output.substr(with.output.rfind('{')));
  EXPECT_NEAR(wj["loss"].get<double>(), evals.back(), 1e-9);
  EXPECT_EQ(wj["quant"], "nf4");
  const ProcessResult base =
      RunLorasweep({"eval", "--model", kTinyModel, "--data", data, "--quant", "nf4", "--json"});
  ASSERT_EQ(base.exit_code, 0) << base.output;
  const nlohmann::json bj = nlohmann::json::parse(base.output.substr(base.output.rfind('{')));
  EXPECT_GT(bj["loss"].get<double>(), 3.5);
  EXPECT_NEAR(bj["perplexity"].get<double>(), std::exp(bj["loss"].get<double>()), 1e-9);
}

TEST(TrainTest, ResumeEqualsUninterruptedBitForBit) {
  const std::string data = MakeDataset("resume", 10, 2);
  const std::string lora = "lora: {rank: 4, alpha: 8, dropout: 0.1, target_modules: [q_proj, v_proj, down_proj]}\n";
  const std::string train =
      "steps: 9, micro_batch: 2, grad_accum: 2, learning_rate: 5.0e-3, schedule: cosine, "
      "warmup_steps: 2, weight_decay: 0.01, max_grad_norm: 0.5, eval_every: 4, threads: 1";
  const std::string a = NewDir("resume_a"), b = NewDir("resume_b");
  ASSERT_EQ(RunLorasweep({"train", "--config", WriteConfig(a, data, lora, train), "--out", a + "/run"})
                .exit_code,
            0);
  const std::string config_b = WriteConfig(b, data, lora, train);
  const ProcessResult first = RunLorasweep({"train", "--config", config_b, "--out", b + "/run", "--stop-after", "5"});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_FALSE(std::filesystem::exists(b + "/run/adapter"));
  const ProcessResult second =
      RunLorasweep({"train", "--config", config_b, "--out", b + "/run", "--resume"});
  ASSERT_EQ(second.exit_code, 0) << second.output;
  const std::vector<nlohmann::json> ma = ReadMetrics(a + "/run"), mb = ReadMetrics(b + "/run");
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    for (const char* key : {"step", "loss", "lr", "grad_norm", "tokens", "eval_loss"}) {
      EXPECT_EQ(ma[i].contains(key), mb[i].contains(key)) << i << " " << key;
      if (ma[i].contains(key)) {
        EXPECT_EQ(ma[i][key], mb[i][key]) << "line " << i << " " << key;
      }
    }
  }
  EXPECT_EQ(ReadBytes(a + "/run/adapter/adapter_model.safetensors"),
            ReadBytes(b + "/run/adapter/adapter_model.safetensors"));
}

TEST(TrainTest, DivergenceStopsWithTheStep) {
  const std::string data = MakeDataset("diverge", 8, 2);
  const std::string dir = NewDir("diverge_run");
  const std::string config = WriteConfig(
      dir, data, "lora: {rank: 4, alpha: 4000, dropout: 0.0}\n",
      "steps: 30, micro_batch: 4, learning_rate: 1.0e+30, schedule: constant, max_grad_norm: 0, "
      "threads: 1");
  const ProcessResult r = RunLorasweep({"train", "--config", config, "--out", dir + "/run"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, testing::HasSubstr("diverged at step"));
}

TEST(TrainTest, BadConfigsAreRejectedBeforeAnyWork) {
  const std::string data = MakeDataset("bad", 4, 2);
  struct Case {
    std::string extra, train, expected;
  };
  const std::vector<Case> cases = {
      {"lora: {rank: 0}\n", "steps: 2", "lora.rank"},
      {"", "steps: 0", "train.steps"},
      {"", "steps: 2, learning_rate: -1.0", "train.learning_rate"},
      {"lora: {rank: 4, target_modules: [qkv_proj]}\n", "steps: 2", "qkv_proj"},
      {"lora: {rnak: 4}\n", "steps: 2", "lora.rnak"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string dir = NewDir("bad_" + std::to_string(i));
    const ProcessResult r = RunLorasweep({"train", "--config", WriteConfig(dir, data, cases[i].extra, cases[i].train),
                                 "--out", dir + "/run"});
    EXPECT_NE(r.exit_code, 0) << i;
    EXPECT_THAT(r.output, testing::HasSubstr(cases[i].expected)) << i;
    EXPECT_FALSE(std::filesystem::exists(dir + "/run/metrics.jsonl")) << i;
  }
  // A sequence longer than the model's context (128 positions).
  const std::string long_dir = NewDir("bad_long");
  DatasetManifest m;
  {
    absl::StatusOr<DatasetManifest> loaded = LoadDatasetManifest(data);
    ASSERT_TRUE(loaded.ok());
    m = *loaded;
  }
  m.seq_len = 4096;
  const std::string long_data = NewDir("bad_long_data");
  std::filesystem::copy(data, long_data, std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(WriteFileAtomically(long_data + "/manifest.json", DatasetManifestToJson(m)).ok());
  const ProcessResult r = RunLorasweep({"train", "--config", WriteConfig(long_dir, long_data, "", "steps: 2"),
                               "--out", long_dir + "/run"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, testing::HasSubstr("max_position_embeddings"));
}

}  // namespace
}  // namespace lorasweep
