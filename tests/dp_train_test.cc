// Data-parallel training under a real `mpirun` (oversubscribed on this machine's cores): the same
// trial on 1, 2 and 3 ranks, the gradient traffic accounting, a rank killed mid-run, and resume.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/train_test_util.h"
#include "worker/model/lora_layout.h"
#include "worker/train/training_checkpoint.h"

namespace lorasweep {
namespace {

std::vector<std::string> MpiRun(int ranks, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"mpirun", "-np",           std::to_string(ranks),
                                   "--oversubscribe", "--bind-to", "none",
                                   "-x",     "OPENBLAS_NUM_THREADS=1", LORASWEEP_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

ProcessResult Launch(const std::vector<std::string>& argv) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  absl::StatusOr<ProcessResult> r = RunProcess(argv);
  EXPECT_TRUE(r.ok());
  return *r;
}

const std::string kLora = "lora: {rank: 4, alpha: 8, dropout: 0.1, target_modules: all-linear}\n";
// Global batch 6 sequences (3 x 2): 3 ranks get 2 each, 2 ranks 3 each.
const std::string kTrain =
    "steps: 6, micro_batch: 3, grad_accum: 2, learning_rate: 5.0e-3, schedule: linear, "
    "warmup_steps: 1, max_grad_norm: 1.0, eval_every: 3, threads: 1";

std::vector<float> FinalParams(const std::string& run) {
  absl::StatusOr<TrainingState> s = LoadTrainingCheckpoint(run + "/checkpoint");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? s->params : std::vector<float>{};
}

TEST(DataParallelTest, OneTwoAndThreeRanksTrainTheSameAdapter) {
  const std::string data = MakeDataset("dp_same", 18, 4);
  std::vector<std::vector<float>> params;
  std::vector<std::vector<nlohmann::json>> metrics;
  for (int ranks : {1, 2, 3}) {
    const std::string dir = NewDir("dp_same_" + std::to_string(ranks));
    const std::vector<std::string> args = {"train", "--config", WriteConfig(dir, data, kLora, kTrain),
                                           "--out", dir + "/run"};
    const ProcessResult r =
        ranks == 1 ? RunLorasweep(args) : Launch(MpiRun(ranks, args));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    params.push_back(FinalParams(dir + "/run"));
    metrics.push_back(ReadMetrics(dir + "/run"));
  }
  // Each rank sums its own sequences' gradients before the all-reduce adds the ranks' sums, so
  // the float32 additions happen in another order: relative differences of ~1e-7 per step, grown
  // a little by 6 Adam steps (whose update m / sqrt(v) is insensitive to scale but not to sign
  // flips of near-zero gradients). 2e-5 of the largest parameter bounds that with margin; a wrong
  // slice, scale or dropout seed moves parameters by ~1e-3 of it.
  for (size_t n = 1; n < params.size(); ++n) {
    ASSERT_EQ(params[n].size(), params[0].size());
    float max_abs = 0, max_diff = 0;
    for (size_t i = 0; i < params[0].size(); ++i) {
      max_abs = std::max(max_abs, std::abs(params[0][i]));
      max_diff = std::max(max_diff, std::abs(params[n][i] - params[0][i]));
    }
    std::printf("%zu ranks vs 1: max |param diff| %.3g = %.3g of max |param|\n", n + 1, max_diff,
                max_diff / max_abs);
    EXPECT_LT(max_diff, 2e-5f * max_abs) << (n + 1) << " ranks";
    ASSERT_EQ(metrics[n].size(), metrics[0].size());
    for (size_t i = 0; i < metrics[0].size(); ++i) {
      if (!metrics[0][i].contains("loss")) continue;
      EXPECT_EQ(metrics[n][i]["tokens"], metrics[0][i]["tokens"]);
      EXPECT_NEAR(metrics[n][i]["loss"].get<double>(), metrics[0][i]["loss"].get<double>(), 1e-5);
    }
  }
}

TEST(DataParallelTest, OnlyAdapterGradientsCrossTheNetwork) {
  const std::string data = MakeDataset("dp_bytes", 12, 2);
  const std::string dir = NewDir("dp_bytes_run");
  const ProcessResult r = Launch(MpiRun(
      2, {"train", "--config", WriteConfig(dir, data, kLora, kTrain), "--out", dir + "/run"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<LlamaWeights> weights = LoadLlamaWeights(kTinyModel, BaseQuantization{});
  ASSERT_TRUE(weights.ok());
  LoraOptions options;
  options.rank = 4;
  options.alpha = 8;
  options.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                            "gate_proj", "up_proj", "down_proj"};
  absl::StatusOr<LoraLayout> layout = LoraLayout::Create(*weights, options);
  ASSERT_TRUE(layout.ok());
  int steps = 0;
  for (const nlohmann::json& line : ReadMetrics(dir + "/run")) {
    if (!line.contains("loss")) continue;
    ++steps;
    // One pass per step over the f32 adapter gradients: exactly 4 bytes per trainable parameter,
    // far below the base model's size (so no base tensor is ever sent).
    EXPECT_EQ(line["comm_bytes"].get<int64_t>(), 4 * layout->num_parameters());
    EXPECT_GE(line["comm_wait_s"].get<double>(), 0.0);
  }
  EXPECT_EQ(steps, 6);
  EXPECT_LT(4 * layout->num_parameters(), weights->config.NumParameters() * 4);
}

TEST(DataParallelTest, TwoRankResumeEqualsUninterrupted) {
  const std::string data = MakeDataset("dp_resume", 12, 2);
  const std::string a = NewDir("dp_resume_a"), b = NewDir("dp_resume_b");
  ASSERT_EQ(Launch(MpiRun(2, {"train", "--config", WriteConfig(a, data, kLora, kTrain), "--out",
                              a + "/run"}))
                .exit_code,
            0);
  const std::string config_b = WriteConfig(b, data, kLora, kTrain);
  ProcessResult r = Launch(MpiRun(2, {"train", "--config", config_b, "--out", b + "/run",
                                      "--stop-after", "4"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Launch(MpiRun(2, {"train", "--config", config_b, "--out", b + "/run", "--resume"}));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<nlohmann::json> ma = ReadMetrics(a + "/run"), mb = ReadMetrics(b + "/run");
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    for (const char* key : {"step", "loss", "grad_norm", "eval_loss"}) {
      if (ma[i].contains(key)) {
        EXPECT_EQ(ma[i][key], mb[i][key]) << "line " << i << " " << key;
      }
    }
  }
  EXPECT_EQ(ReadBytes(a + "/run/adapter/adapter_model.safetensors"),
            ReadBytes(b + "/run/adapter/adapter_model.safetensors"));
}

// The pid of the process whose environment says it is MPI rank `rank` and whose command line
// mentions `marker`, or -1.
pid_t FindRank(int rank, const std::string& marker) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(entry.path() / "cmdline"), env(entry.path() / "environ");
    std::string cmdline((std::istreambuf_iterator<char>(cmd)), {});
    std::string environ_text((std::istreambuf_iterator<char>(env)), {});
    if (cmdline.find(marker) == std::string::npos ||
        cmdline.find("mpirun") != std::string::npos) {
      continue;
    }
    if (environ_text.find("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + '\0') !=
        std::string::npos) {
      return static_cast<pid_t>(std::stol(name));
    }
  }
  return -1;
}

TEST(DataParallelTest, AKilledRankFailsTheJobNamingIt) {
  const std::string data = MakeDataset("dp_kill", 12, 2);
  const std::string dir = NewDir("dp_kill_run");
  const std::string config = WriteConfig(
      dir, data, kLora,
      "steps: 100000, micro_batch: 3, grad_accum: 2, learning_rate: 1.0e-3, threads: 1");
  const std::string out = dir + "/run";
  const std::string log = dir + "/mpirun.log";
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const pid_t launcher = fork();
  if (launcher == 0) {
    const std::vector<std::string> args =
        MpiRun(2, {"train", "--config", config, "--out", out, "--comm-timeout", "20"});
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    freopen(log.c_str(), "w", stdout);
    dup2(fileno(stdout), STDERR_FILENO);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  // Wait until training runs (a metrics line exists), then kill rank 1.
  const auto start = std::chrono::steady_clock::now();
  pid_t victim = -1;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    std::ifstream metrics(out + "/metrics.jsonl");
    std::string line;
    if (std::getline(metrics, line) && (victim = FindRank(1, out)) > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GT(victim, 0) << "rank 1 not found";
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  // The job must end (not hang) well within the collective timeout plus teardown.
  int status = 0;
  pid_t done = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(120) &&
         (done = waitpid(launcher, &status, WNOHANG)) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (done == 0) {
    kill(launcher, SIGKILL);
    waitpid(launcher, &status, 0);
    FAIL() << "mpirun did not exit after rank 1 was killed";
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string output = ReadBytes(log);
  EXPECT_THAT(output, testing::ContainsRegex("rank 1"));
}

}  // namespace
}  // namespace lorasweep
