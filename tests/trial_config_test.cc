// Tests of the trial config: YAML -> TrialConfig mapping (defaults, types, unknown keys with file
// and line), range validation, target-module expansion, dotted-path overrides, JSON / YAML output.
#include "worker/train/trial_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "google/protobuf/util/message_differencer.h"
#include "yaml-cpp/yaml.h"

namespace lorasweep {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kConfigDir = std::string(LORASWEEP_TEST_DATA_DIR) + "/configs";

TrialConfig MustParse(const std::string& yaml) {
  absl::StatusOr<TrialConfig> config = ParseTrialConfigYaml(yaml, "test.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : TrialConfig();
}

std::string ParseError(const std::string& yaml, const std::string& source = "test.yaml") {
  absl::StatusOr<TrialConfig> config = ParseTrialConfigYaml(yaml, source);
  EXPECT_FALSE(config.ok()) << "parsed:\n" << yaml;
  if (config.ok()) return "";
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

bool Equal(const TrialConfig& a, const TrialConfig& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

TEST(TrialConfigTest, MinimalConfigGetsEveryDefault) {
  absl::StatusOr<TrialConfig> loaded = LoadTrialConfig(kConfigDir + "/minimal.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const TrialConfig& c = *loaded;
  EXPECT_EQ(c.model(), "models/smollm2-135m-instruct");
  EXPECT_EQ(c.device(), "auto");
  EXPECT_EQ(c.quantization().type(), "nf4");
  EXPECT_EQ(c.quantization().blocksize(), 64);
  EXPECT_TRUE(c.quantization().double_quant());
  EXPECT_EQ(c.lora().rank(), 16);
  EXPECT_EQ(c.lora().alpha(), 16.0);
  EXPECT_EQ(c.lora().dropout(), 0.05);
  EXPECT_THAT(c.lora().target_modules(), ElementsAre("all-linear"));
  EXPECT_FALSE(c.lora().rslora());
  EXPECT_EQ(c.data().path(), "data/faq");
  EXPECT_TRUE(c.data().shards().empty());
  EXPECT_EQ(c.data().eval_path(), "data/faq");  // defaults to data.path
  const TrainConfig& t = c.train();
  EXPECT_EQ(t.steps(), 100);
  EXPECT_EQ(t.micro_batch(), 4);
  EXPECT_EQ(t.grad_accum(), 1);
  EXPECT_EQ(t.learning_rate(), 2e-4);
  EXPECT_EQ(t.schedule(), "cosine");
  EXPECT_EQ(t.warmup_steps(), 0);
  EXPECT_EQ(t.weight_decay(), 0.0);
  EXPECT_EQ(t.max_grad_norm(), 1.0);
  EXPECT_EQ(t.seed(), 0u);
  EXPECT_EQ(t.eval_every(), 0);
  EXPECT_EQ(t.checkpoint_every(), 0);
  EXPECT_TRUE(t.activation_checkpointing());
  EXPECT_EQ(t.threads(), 0);
  EXPECT_EQ(t.adam_beta1(), 0.9);
  EXPECT_EQ(t.adam_beta2(), 0.999);
  EXPECT_EQ(t.adam_eps(), 1e-8);
  EXPECT_EQ(t.eval_batches(), 0);
  EXPECT_EQ(t.loss_chunk_rows(), 256);
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
  EXPECT_TRUE(Equal(c, [] {
    TrialConfig d = DefaultTrialConfig();
    d.set_model("models/smollm2-135m-instruct");
    d.mutable_data()->set_path("data/faq");
    d.mutable_data()->set_eval_path("data/faq");
    return d;
  }()));
}

TEST(TrialConfigTest, EveryFieldIsRead) {
  absl::StatusOr<TrialConfig> loaded = LoadTrialConfig(kConfigDir + "/full.yaml");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const TrialConfig& c = *loaded;
  EXPECT_EQ(c.device(), "cpu");
  EXPECT_EQ(c.quantization().type(), "fp4");
  EXPECT_EQ(c.quantization().blocksize(), 128);
  EXPECT_FALSE(c.quantization().double_quant());
  EXPECT_EQ(c.lora().rank(), 8);
  EXPECT_EQ(c.lora().alpha(), 32.0);
  EXPECT_EQ(c.lora().dropout(), 0.1);
  EXPECT_THAT(c.lora().target_modules(), ElementsAre("q_proj", "v_proj"));
  EXPECT_TRUE(c.lora().rslora());
  EXPECT_THAT(c.data().shards(), ElementsAre("train-00000", "train-00001"));
  EXPECT_EQ(c.data().eval_path(), "data/faq-eval");
  const TrainConfig& t = c.train();
  EXPECT_EQ(t.steps(), 200);
  EXPECT_EQ(t.micro_batch(), 2);
  EXPECT_EQ(t.grad_accum(), 8);
  EXPECT_EQ(t.learning_rate(), 1e-4);
  EXPECT_EQ(t.schedule(), "linear");
  EXPECT_EQ(t.warmup_steps(), 10);
  EXPECT_EQ(t.weight_decay(), 0.01);
  EXPECT_EQ(t.max_grad_norm(), 0.3);
  EXPECT_EQ(t.seed(), 1234u);
  EXPECT_EQ(t.eval_every(), 50);
  EXPECT_EQ(t.checkpoint_every(), 25);
  EXPECT_FALSE(t.activation_checkpointing());
  EXPECT_EQ(t.threads(), 2);
  EXPECT_EQ(t.adam_beta1(), 0.85);
  EXPECT_EQ(t.adam_beta2(), 0.95);
  EXPECT_EQ(t.adam_eps(), 1e-6);
  EXPECT_EQ(t.eval_batches(), 16);
  EXPECT_EQ(t.loss_chunk_rows(), 128);
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
}

TEST(TrialConfigTest, IssueExampleAndShippedExampleParseAndValidate) {
  absl::StatusOr<TrialConfig> issue = LoadTrialConfig(kConfigDir + "/issue_example.yaml");
  ASSERT_TRUE(issue.ok()) << issue.status();
  EXPECT_TRUE(ValidateTrialConfig(*issue).ok()) << ValidateTrialConfig(*issue);
  EXPECT_TRUE(issue->data().shards().empty());  // [all] means every shard
  EXPECT_EQ(issue->train().max_grad_norm(), 0.3);
  EXPECT_THAT(issue->lora().target_modules(), ElementsAre("all-linear"));

  absl::StatusOr<TrialConfig> example =
      LoadTrialConfig(std::string(LORASWEEP_SOURCE_DIR) + "/examples/configs/smollm2_faq.yaml");
  ASSERT_TRUE(example.ok()) << example.status();
  EXPECT_TRUE(ValidateTrialConfig(*example).ok()) << ValidateTrialConfig(*example);
  EXPECT_THAT(example->model(), HasSubstr(".gguf"));
}

TEST(TrialConfigTest, EmptyTextAndNullSectionsKeepDefaults) {
  EXPECT_TRUE(Equal(MustParse(""), DefaultTrialConfig()));
  EXPECT_TRUE(Equal(MustParse("# only a comment\n"), DefaultTrialConfig()));
  const TrialConfig c = MustParse("lora:\ntrain:\n");
  EXPECT_EQ(c.lora().rank(), 16);
  EXPECT_EQ(c.train().steps(), 100);
}

TEST(TrialConfigTest, UnknownKeysNameTheDottedKeyFileAndLine) {
  absl::StatusOr<TrialConfig> config = LoadTrialConfig(kConfigDir + "/unknown_key.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr(kConfigDir + "/unknown_key.yaml:7: unknown key 'lora.rnak'"));
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("rank, alpha, dropout, target_modules, rslora"));

  EXPECT_THAT(ParseError("model: m\nlr: 0.1\n", "config.yaml"),
              HasSubstr("config.yaml:2: unknown key 'lr'"));
  EXPECT_THAT(ParseError("train:\n  steps: 5\n  lerning_rate: 1\n"),
              HasSubstr("test.yaml:3: unknown key 'train.lerning_rate'"));
  EXPECT_THAT(ParseError("data: {path: x, evalpath: y}\n"),
              HasSubstr("test.yaml:1: unknown key 'data.evalpath'"));
}

TEST(TrialConfigTest, WrongTypesNameTheKeyAndTheExpectedType) {
  absl::StatusOr<TrialConfig> config = LoadTrialConfig(kConfigDir + "/wrong_type.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("wrong_type.yaml:4: 'train.steps' expects an "
                        "integer, got the string \"100\""));

  EXPECT_THAT(ParseError("lora:\n  rank: [1, 2]\n"),
              HasSubstr("test.yaml:2: 'lora.rank' expects an integer, got a list"));
  EXPECT_THAT(ParseError("lora: {rank: {a: 1}}\n"),
              HasSubstr("'lora.rank' expects an integer, got a map"));
  EXPECT_THAT(ParseError("train: {steps: 1.5}\n"),
              HasSubstr("'train.steps' expects an integer, got '1.5'"));
  EXPECT_THAT(ParseError("train: {steps: ten}\n"), HasSubstr("'train.steps' expects an integer"));
  EXPECT_THAT(ParseError("train: {learning_rate: fast}\n"),
              HasSubstr("'train.learning_rate' expects a number, got 'fast'"));
  EXPECT_THAT(ParseError("train: {learning_rate: '2e-4'}\n"),
              HasSubstr("'train.learning_rate' expects a number, got the string \"2e-4\""));
  EXPECT_THAT(ParseError("train: {learning_rate: inf}\n"), HasSubstr("expects a number"));
  EXPECT_THAT(ParseError("lora: {rslora: yes}\n"),
              HasSubstr("'lora.rslora' expects true or false"));
  EXPECT_THAT(ParseError("lora: {rslora: 'true'}\n"),
              HasSubstr("'lora.rslora' expects true or false"));
  EXPECT_THAT(ParseError("lora: 5\n"), HasSubstr("'lora' expects a map, got '5'"));
  EXPECT_THAT(ParseError("model: [a, b]\n"), HasSubstr("'model' expects a string, got a list"));
  EXPECT_THAT(ParseError("model:\n"), HasSubstr("'model' expects a string, got no value (null)"));
  EXPECT_THAT(ParseError("lora: {rank: 99999999999}\n"),
              HasSubstr("'lora.rank' expects an integer"));
  EXPECT_THAT(ParseError("train: {seed: -1}\n"),
              HasSubstr("'train.seed' expects a non-negative integer, got '-1'"));
  EXPECT_THAT(ParseError("lora: {target_modules: [q_proj, [k_proj]]}\n"),
              HasSubstr("'lora.target_modules[1]' expects a string, got a list"));
  EXPECT_THAT(ParseError("lora: {target_modules: {q: 1}}\n"),
              HasSubstr("'lora.target_modules' expects a list of strings, got a map"));
  EXPECT_THAT(ParseError("- a\n- b\n"), HasSubstr("expected a map of settings at the top level"));
}

TEST(TrialConfigTest, NumbersInYamlSpellings) {
  EXPECT_EQ(MustParse("train: {learning_rate: 2e-4}").train().learning_rate(), 2e-4);
  EXPECT_EQ(MustParse("train: {learning_rate: 2.0E-4}").train().learning_rate(), 2e-4);
  EXPECT_EQ(MustParse("train: {learning_rate: .5}").train().learning_rate(), 0.5);
  EXPECT_EQ(MustParse("lora: {alpha: 32}").lora().alpha(), 32.0);
  EXPECT_EQ(MustParse("train: {steps: +7}").train().steps(), 7);
  EXPECT_EQ(MustParse("train: {seed: 18446744073709551615}").train().seed(),
            18446744073709551615ull);
  EXPECT_TRUE(std::isinf(MustParse("train: {learning_rate: .inf}").train().learning_rate()));
  EXPECT_TRUE(std::isnan(MustParse("train: {learning_rate: .nan}").train().learning_rate()));
  EXPECT_FALSE(MustParse("lora: {rslora: False}").lora().rslora());
  EXPECT_TRUE(MustParse("lora: {rslora: TRUE}").lora().rslora());
  EXPECT_EQ(MustParse("model: 123").model(), "123");  // a string field takes any scalar
}

TEST(TrialConfigTest, TargetModulesScalarIsAOneElementListAndListsReplace) {
  EXPECT_THAT(MustParse("lora: {target_modules: q_proj}").lora().target_modules(),
              ElementsAre("q_proj"));
  EXPECT_THAT(MustParse("lora: {target_modules: all-linear}").lora().target_modules(),
              ElementsAre("all-linear"));
  EXPECT_THAT(MustParse("lora: {target_modules: [k_proj, up_proj]}").lora().target_modules(),
              ElementsAre("k_proj", "up_proj"));
  EXPECT_THAT(MustParse("lora: {target_modules: []}").lora().target_modules(), ElementsAre());
  EXPECT_THAT(ParseError("lora: {target_modules: }"), HasSubstr("write [] for none"));
}

TEST(TrialConfigTest, DuplicateKeysAndBrokenYamlAreErrors) {
  EXPECT_THAT(ParseError("train:\n  steps: 1\n  steps: 2\n"),
              HasSubstr("test.yaml:3: duplicate key 'train.steps'"));
  EXPECT_THAT(ParseError("model: m\nlora: {rank: 4\n"), HasSubstr("test.yaml:"));
  EXPECT_THAT(ParseError("model: m\nlora: {rank: 4\n"), HasSubstr("invalid YAML"));
  EXPECT_THAT(ParseError("model: m\n  bad indent: 1\n"), HasSubstr("invalid YAML"));
}

TEST(TrialConfigTest, MissingFileNamesThePath) {
  absl::StatusOr<TrialConfig> config = LoadTrialConfig("/nonexistent/trial.yaml");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr("/nonexistent/trial.yaml"));
}

TrialConfig ValidBase() {
  TrialConfig c = DefaultTrialConfig();
  c.set_model("models/m.gguf");
  c.mutable_data()->set_path("data/faq");
  FinalizeTrialConfig(&c);
  return c;
}

struct RangeCase {
  std::string name;
  std::function<void(TrialConfig*)> mutate;
  std::string expected;  // substring of the error
};

TEST(TrialConfigTest, RangeChecksNameFieldExpectationAndValue) {
  const std::vector<RangeCase> cases = {
      {"rank0", [](TrialConfig* c) { c->mutable_lora()->set_rank(0); },
       "lora.rank: expected an integer >= 1, got 0"},
      {"alpha0", [](TrialConfig* c) { c->mutable_lora()->set_alpha(0); },
       "lora.alpha: expected a finite number > 0, got 0"},
      {"dropout1", [](TrialConfig* c) { c->mutable_lora()->set_dropout(1.0); },
       "lora.dropout: expected a number in [0, 1), got 1"},
      {"dropoutneg", [](TrialConfig* c) { c->mutable_lora()->set_dropout(-0.1); },
       "lora.dropout: expected a number in [0, 1), got -0.1"},
      {"lrneg", [](TrialConfig* c) { c->mutable_train()->set_learning_rate(-1e-4); },
       "train.learning_rate: expected a finite number > 0, got -0.0001"},
      {"lr0", [](TrialConfig* c) { c->mutable_train()->set_learning_rate(0); },
       "train.learning_rate: expected a finite number > 0, got 0"},
      {"lrinf", [](TrialConfig* c) { c->mutable_train()->set_learning_rate(INFINITY); },
       "train.learning_rate: expected a finite number > 0, got .inf"},
      {"lrnan", [](TrialConfig* c) { c->mutable_train()->set_learning_rate(NAN); },
       "train.learning_rate: expected a finite number > 0, got .nan"},
      {"steps0", [](TrialConfig* c) { c->mutable_train()->set_steps(0); },
       "train.steps: expected an integer >= 1, got 0"},
      {"micro0", [](TrialConfig* c) { c->mutable_train()->set_micro_batch(0); },
       "train.micro_batch: expected an integer >= 1, got 0"},
      {"accum0", [](TrialConfig* c) { c->mutable_train()->set_grad_accum(0); },
       "train.grad_accum: expected an integer >= 1, got 0"},
      {"warmup_over", [](TrialConfig* c) { c->mutable_train()->set_warmup_steps(101); },
       "train.warmup_steps: expected an integer in [0, train.steps = 100], got 101"},
      {"warmup_neg", [](TrialConfig* c) { c->mutable_train()->set_warmup_steps(-1); },
       "train.warmup_steps: expected an integer in [0, train.steps = 100], got -1"},
      {"wd", [](TrialConfig* c) { c->mutable_train()->set_weight_decay(-0.5); },
       "train.weight_decay: expected a finite number >= 0, got -0.5"},
      {"clip", [](TrialConfig* c) { c->mutable_train()->set_max_grad_norm(-1); },
       "train.max_grad_norm: expected a finite number >= 0 (0: no clipping), got -1"},
      {"quant", [](TrialConfig* c) { c->mutable_quantization()->set_type("int4"); },
       "quantization.type: expected one of nf4, fp4, none, got 'int4'"},
      {"blocksize", [](TrialConfig* c) { c->mutable_quantization()->set_blocksize(100); },
       "quantization.blocksize: expected one of 64, 128, 256, 512, 1024, 2048, 4096, got 100"},
      {"blocksize32", [](TrialConfig* c) { c->mutable_quantization()->set_blocksize(32); },
       "quantization.blocksize: expected one of 64"},
      {"schedule", [](TrialConfig* c) { c->mutable_train()->set_schedule("exponential"); },
       "train.schedule: expected one of constant, linear, cosine, got 'exponential'"},
      {"device", [](TrialConfig* c) { c->set_device("tpu"); },
       "device: expected one of auto, cpu, cuda, got 'tpu'"},
      {"module",
       [](TrialConfig* c) {
         c->mutable_lora()->clear_target_modules();
         c->mutable_lora()->add_target_modules("q_proj");
         c->mutable_lora()->add_target_modules("qkv_proj");
       },
       "lora.target_modules: expected names from q_proj, k_proj, v_proj, o_proj, gate_proj, "
       "up_proj, down_proj, all-linear, got 'qkv_proj'"},
      {"no_modules", [](TrialConfig* c) { c->mutable_lora()->clear_target_modules(); },
       "lora.target_modules: expected at least one module (or all-linear), got an empty list"},
      {"data", [](TrialConfig* c) { c->mutable_data()->set_path(""); },
       "data.path: expected a prepared data folder"},
      {"model", [](TrialConfig* c) { c->set_model(""); }, "model: expected a model path"},
      {"beta1", [](TrialConfig* c) { c->mutable_train()->set_adam_beta1(1.0); },
       "train.adam_beta1: expected a number in [0, 1), got 1"},
      {"beta2", [](TrialConfig* c) { c->mutable_train()->set_adam_beta2(-0.1); },
       "train.adam_beta2: expected a number in [0, 1), got -0.1"},
      {"eps", [](TrialConfig* c) { c->mutable_train()->set_adam_eps(0); },
       "train.adam_eps: expected a finite number > 0, got 0"},
      {"threads", [](TrialConfig* c) { c->mutable_train()->set_threads(-2); },
       "train.threads: expected an integer >= 0 (0: all cores), got -2"},
      {"eval_every", [](TrialConfig* c) { c->mutable_train()->set_eval_every(-1); },
       "train.eval_every: expected an integer >= 0"},
      {"ckpt", [](TrialConfig* c) { c->mutable_train()->set_checkpoint_every(-1); },
       "train.checkpoint_every: expected an integer >= 0"},
      {"eval_batches", [](TrialConfig* c) { c->mutable_train()->set_eval_batches(-1); },
       "train.eval_batches: expected an integer >= 0"},
      {"chunk", [](TrialConfig* c) { c->mutable_train()->set_loss_chunk_rows(0); },
       "train.loss_chunk_rows: expected an integer >= 1, got 0"},
  };
  ASSERT_TRUE(ValidateTrialConfig(ValidBase()).ok()) << ValidateTrialConfig(ValidBase());
  for (const RangeCase& c : cases) {
    TrialConfig config = ValidBase();
    c.mutate(&config);
    const absl::Status status = ValidateTrialConfig(config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.expected)) << c.name;
  }
}

TEST(TrialConfigTest, BoundaryValuesAreValid) {
  TrialConfig c = ValidBase();
  c.mutable_train()->set_warmup_steps(c.train().steps());  // warmup == steps
  c.mutable_train()->set_max_grad_norm(0);                 // no clipping
  c.mutable_lora()->set_dropout(0);
  c.mutable_lora()->set_rank(1);
  c.mutable_quantization()->set_type("none");
  c.mutable_quantization()->set_blocksize(4096);
  c.mutable_train()->set_schedule("constant");
  c.set_device("cuda");
  EXPECT_TRUE(ValidateTrialConfig(c).ok()) << ValidateTrialConfig(c);
}

TEST(TrialConfigTest, EveryProblemIsReported) {
  absl::StatusOr<TrialConfig> config = LoadTrialConfig(kConfigDir + "/out_of_range.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const absl::Status status = ValidateTrialConfig(*config);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("lora.rank: expected an integer >= 1, got 0"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("train.learning_rate: expected a finite number > 0"));
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("train.steps: expected an integer >= 1, got 0"));
}

TEST(TrialConfigTest, ExpandTargetModules) {
  LoraConfig lora;
  lora.add_target_modules("all-linear");
  EXPECT_THAT(ExpandTargetModules(lora), ElementsAre("q_proj", "k_proj", "v_proj", "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"));
  lora.clear_target_modules();
  for (const char* m : {"down_proj", "v_proj", "q_proj", "v_proj"}) lora.add_target_modules(m);
  EXPECT_THAT(ExpandTargetModules(lora), ElementsAre("q_proj", "v_proj", "down_proj"));
  lora.add_target_modules("all-linear");
  EXPECT_EQ(ExpandTargetModules(lora).size(), 7u);
  EXPECT_EQ(AllLinearModules().size(), 7u);
}

TEST(TrialConfigTest, SetFieldByDottedPath) {
  TrialConfig c = ValidBase();
  ASSERT_TRUE(SetFieldByDottedPath(&c, "lora.rank", YAML::Load("8"), "sweep.yaml").ok());
  EXPECT_EQ(c.lora().rank(), 8);
  ASSERT_TRUE(SetFieldByDottedPath(&c, "train.learning_rate", YAML::Load("3e-4"), "s").ok());
  EXPECT_EQ(c.train().learning_rate(), 3e-4);
  ASSERT_TRUE(
      SetFieldByDottedPath(&c, "lora.target_modules", YAML::Load("[q_proj, v_proj]"), "s").ok());
  EXPECT_THAT(c.lora().target_modules(), ElementsAre("q_proj", "v_proj"));
  ASSERT_TRUE(SetFieldByDottedPath(&c, "lora.target_modules", YAML::Load("o_proj"), "s").ok());
  EXPECT_THAT(c.lora().target_modules(), ElementsAre("o_proj"));
  ASSERT_TRUE(SetFieldByDottedPath(&c, "data.shards", YAML::Load("[s0, s1]"), "s").ok());
  EXPECT_THAT(c.data().shards(), ElementsAre("s0", "s1"));
  // A map merges into a message: alpha keeps its value.
  ASSERT_TRUE(SetFieldByDottedPath(&c, "lora", YAML::Load("{rank: 4, rslora: true}"), "s").ok());
  EXPECT_EQ(c.lora().rank(), 4);
  EXPECT_TRUE(c.lora().rslora());
  EXPECT_EQ(c.lora().alpha(), 16.0);
  ASSERT_TRUE(SetFieldByDottedPath(&c, "model", YAML::Load("other.gguf"), "s").ok());
  EXPECT_EQ(c.model(), "other.gguf");

  const YAML::Node doc = YAML::Load("overrides:\n  x: 1\n  y: [a]\n");
  absl::Status status = SetFieldByDottedPath(&c, "lora.rnak", doc["overrides"]["x"], "sweep.yaml");
  EXPECT_THAT(std::string(status.message()), HasSubstr("sweep.yaml:2: unknown key 'lora.rnak'"));
  status = SetFieldByDottedPath(&c, "lora.rank", doc["overrides"]["y"], "sweep.yaml");
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("sweep.yaml:3: 'lora.rank' expects an integer, got a list"));
  status = SetFieldByDottedPath(&c, "lora.rank.x", YAML::Load("1"), "sweep.yaml");
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown key 'lora.rank.x'"));
  status = SetFieldByDottedPath(&c, "lora..rank", YAML::Load("1"), "sweep.yaml");
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown key 'lora..rank'"));
  status = SetFieldByDottedPath(&c, "trian.steps", YAML::Load("1"), "sweep.yaml");
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown key 'trian.steps'"));
  status = SetFieldByDottedPath(&c, "lora", YAML::Load("{rnak: 2}"), "sweep.yaml");
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown key 'lora.rnak'"));
  // A node built in code has no line: the message names the source alone.
  YAML::Node built;
  built = 3;
  ASSERT_TRUE(SetFieldByDottedPath(&c, "train.grad_accum", built, "cli").ok());
  EXPECT_EQ(c.train().grad_accum(), 3);
}

TEST(TrialConfigTest, JsonHasEveryFieldWithProtoNames) {
  absl::StatusOr<TrialConfig> config = LoadTrialConfig(kConfigDir + "/minimal.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string text = TrialConfigToJson(*config);
  const nlohmann::json j = nlohmann::json::parse(text);
  EXPECT_EQ(j["model"], "models/smollm2-135m-instruct");
  EXPECT_EQ(j["device"], "auto");
  EXPECT_EQ(j["lora"]["rank"], 16);
  EXPECT_EQ(j["lora"]["target_modules"], nlohmann::json::array({"all-linear"}));
  EXPECT_EQ(j["lora"]["rslora"], false);  // printed although it is the proto default
  EXPECT_EQ(j["data"]["shards"], nlohmann::json::array());
  EXPECT_EQ(j["train"]["learning_rate"], 2e-4);
  EXPECT_EQ(j["train"]["steps"], "100");  // proto3 JSON: 64-bit integers are strings
  EXPECT_EQ(j["train"]["warmup_steps"], "0");
  EXPECT_EQ(j["train"]["loss_chunk_rows"], 256);
  EXPECT_TRUE(j["train"].contains("activation_checkpointing"));
  EXPECT_TRUE(j["quantization"].contains("double_quant"));
  EXPECT_EQ(j["train"].size(), 18u);
}

TEST(TrialConfigTest, YamlRoundTrip) {
  for (const char* file : {"minimal.yaml", "full.yaml", "issue_example.yaml"}) {
    absl::StatusOr<TrialConfig> config = LoadTrialConfig(kConfigDir + "/" + file);
    ASSERT_TRUE(config.ok()) << config.status();
    const std::string yaml = TrialConfigToYaml(*config);
    absl::StatusOr<TrialConfig> again = ParseTrialConfigYaml(yaml, "roundtrip.yaml");
    ASSERT_TRUE(again.ok()) << again.status() << "\n" << yaml;
    EXPECT_TRUE(Equal(*config, *again)) << file << "\n" << yaml;
  }
  TrialConfig odd = ValidBase();
  odd.set_model("path with: colon and \"quotes\"");
  odd.mutable_train()->set_learning_rate(1.0 / 3.0);
  odd.mutable_train()->set_seed(18446744073709551615ull);
  absl::StatusOr<TrialConfig> again = ParseTrialConfigYaml(TrialConfigToYaml(odd), "rt.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(Equal(odd, *again)) << TrialConfigToYaml(odd);
}

}  // namespace
}  // namespace lorasweep
