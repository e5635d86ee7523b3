// `lorasweep slurm` against a real Slurm: the scripts it writes for several layouts are checked
// with `sbatch --test-only` on the local cluster (cluster/slurm/local-cluster.sh; GPU layouts on
// its simulated "gpusim" partition), a tiny sweep is submitted and must complete, and a running
// sweep is requeued with `scontrol requeue` and must finish every trial exactly once.
// Skipped when Slurm is not installed (cluster/setup.sh installs it).
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "coordinator/results_store.h"
#include "coordinator/slurm_script.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/train_test_util.h"

namespace lorasweep {
namespace {

using testing::HasSubstr;

const std::string kClusterScript =
    std::string(LORASWEEP_SOURCE_DIR) + "/cluster/slurm/local-cluster.sh";

// Every Slurm command runs under timeout(1): a client that waits on an unreachable slurmctld (it
// retries for minutes) fails the test with its output instead of hanging it until ctest's limit.
ProcessResult RunCommand(const std::vector<std::string>& argv) {
  std::vector<std::string> bounded = {"timeout", "-k", "5", "180"};
  bounded.insert(bounded.end(), argv.begin(), argv.end());
  absl::StatusOr<ProcessResult> r = RunProcess(bounded);
  EXPECT_TRUE(r.ok()) << argv[0] << ": " << r.status();
  if (r.ok() && r->exit_code == 124) ADD_FAILURE() << argv[0] << " timed out: " << r->output;
  return r.ok() ? *r : ProcessResult{127, ""};
}

class SlurmTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::error_code ec;
    if (!std::filesystem::exists("/usr/sbin/slurmctld", ec) ||
        !std::filesystem::exists("/usr/bin/sbatch", ec)) {
      skip_reason_ = "Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)";
      return;
    }
    if (geteuid() != 0) {
      skip_reason_ = "the local Slurm cluster needs root (slurmd runs jobs as their user)";
      return;
    }
    // The cluster is started once and left running: ctest runs each test in its own process, in
    // parallel, and a test that stopped it would pull slurmctld from under another test's sbatch.
    // tests/run.sh stops it after the suite when the suite started it.
    const ProcessResult start = RunCommand({kClusterScript, "start"});
    if (start.exit_code != 0) {
      skip_reason_ = "local-cluster.sh start failed: " + start.output;
      started_ok_ = false;
      return;
    }
    const ProcessResult env = RunCommand({kClusterScript, "env"});
    std::smatch m;
    if (std::regex_search(env.output, m, std::regex("export SLURM_CONF=(\\S+)"))) {
      setenv("SLURM_CONF", m[1].str().c_str(), 1);
    }
  }

  void SetUp() override {
    // A failed start is a failure (Slurm is installed); only a missing Slurm is a skip.
    ASSERT_TRUE(started_ok_) << skip_reason_;
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
  }

  static std::string skip_reason_;
  static bool started_ok_;
};

std::string SlurmTest::skip_reason_;
bool SlurmTest::started_ok_ = true;

std::string SpecYaml(const std::string& data, const std::string& train) {
  return "name: tiny\n"
         "base:\n"
         "  model: " + kTinyModel + "\n"
         "  lora: {rank: 4, alpha: 8, dropout: 0.0}\n"
         "  data: {path: " + data + "}\n"
         "  train: {" + train + ", micro_batch: 2, learning_rate: 1.0e-2, eval_every: 2, "
         "checkpoint_every: 1, threads: 1}\n"
         "search:\n"
         "  space:\n    lora.rank: [2, 4]\n    train.learning_rate: [1.0e-2, 3.0e-3]\n"
         "resources: {workers_per_trial: 1}\n";
}

std::string WriteSpec(const std::string& dir, const std::string& yaml) {
  const std::string path = dir + "/spec.yaml";
  std::ofstream(path) << yaml;
  return path;
}

// `lorasweep slurm` with these extra flags; returns the script path (and the command's output).
std::string WriteScript(const std::string& name, const std::vector<std::string>& flags,
                        std::string* output = nullptr) {
  const std::string dir = NewDir("slurm_" + name);
  const std::string spec = WriteSpec(dir, SpecYaml("/nonexistent-data", "steps: 6"));
  std::vector<std::string> args = {"slurm", spec, "--out", dir + "/run"};
  args.insert(args.end(), flags.begin(), flags.end());
  const ProcessResult r = RunLorasweep(args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  if (output) *output = r.output;
  return dir + "/run/sweep.sbatch";
}

TEST_F(SlurmTest, ScriptsForSeveralLayoutsPassSbatchTestOnly) {
  struct Layout {
    std::string name;
    std::vector<std::string> flags;
    int tasks;
  };
  const std::vector<Layout> layouts = {
      {"1node_4gpu", {"--nodes", "1", "--gpus-per-node", "4", "--partition", "gpusim",
                      "--time", "1:00:00"}, 5},
      {"2node_8gpu", {"--nodes", "2", "--gpus-per-node", "4", "--partition", "gpusim"}, 9},
      {"4node_32gpu", {"--nodes", "4", "--gpus-per-node", "8", "--partition", "gpusim"}, 33},
      {"cpu_fits", {"--gpus-per-node", "0", "--tasks-per-node", "2"}, 2},
      {"cpu_overcommit", {"--gpus-per-node", "0", "--tasks-per-node", "3", "--overcommit"}, 3},
  };
  for (const Layout& layout : layouts) {
    std::string output;
    const std::string script = WriteScript(layout.name, layout.flags, &output);
    EXPECT_THAT(output, HasSubstr(", " + std::to_string(layout.tasks) + " task(s))"));
    const std::string text = ReadBytes(script);
    EXPECT_THAT(text, HasSubstr("TASKS=" + std::to_string(layout.tasks) + "\n")) << layout.name;
    EXPECT_THAT(text, HasSubstr("srun --mpi=pmix --ntasks=$TASKS"));
    EXPECT_THAT(text, HasSubstr("#SBATCH --requeue\n"));
    EXPECT_THAT(text, HasSubstr("#SBATCH --signal=B:USR1@120\n"));
    EXPECT_THAT(text, HasSubstr("#SBATCH --open-mode=append\n"));
    const ProcessResult check = RunCommand({"sbatch", "--test-only", script});
    EXPECT_EQ(check.exit_code, 0) << layout.name << ": " << check.output;
    EXPECT_THAT(check.output, HasSubstr("to start at")) << layout.name;
  }
  // Real Slurm refuses what the machine cannot hold: 3 tasks on 2 CPUs without --overcommit, and
  // GPUs on a partition without any.
  if (std::thread::hardware_concurrency() < 3) {
    const std::string too_many = WriteScript("cpu_too_many", {"--tasks-per-node", "3"});
    EXPECT_NE(RunCommand({"sbatch", "--test-only", too_many}).exit_code, 0);
  }
  const std::string no_gpus =
      WriteScript("no_gpus", {"--gpus-per-node", "2", "--partition", "debug"});
  EXPECT_NE(RunCommand({"sbatch", "--test-only", no_gpus}).exit_code, 0);
}

TEST_F(SlurmTest, BadOptionsAreErrorsNamingTheOption) {
  SlurmJobOptions o;
  o.binary = "/bin/lorasweep";
  o.spec_path = "/s.yaml";
  o.run_dir = "/run";
  ASSERT_TRUE(RenderSlurmScript(o).ok());
  auto error = [](SlurmJobOptions bad) { return std::string(RenderSlurmScript(bad).status().message()); };
  SlurmJobOptions bad = o;
  bad.run_dir = "relative/run";
  EXPECT_THAT(error(bad), HasSubstr("--out must be an absolute path"));
  bad = o;
  bad.nodes = 0;
  EXPECT_THAT(error(bad), HasSubstr("--nodes"));
  bad = o;
  bad.partition = "gpu\n#SBATCH --x";
  EXPECT_THAT(error(bad), HasSubstr("--partition"));
  bad = o;
  bad.time_limit = "soon";
  EXPECT_THAT(error(bad), HasSubstr("--time"));
  EXPECT_NE(RunLorasweep({"slurm", "/nonexistent.yaml", "--out", "/tmp/x"}).exit_code, 0);
}

// Waits until Slurm reports the job in a final state; returns `scontrol show job`'s text.
std::string WaitForJob(const std::string& id, int seconds) {
  const auto start = std::chrono::steady_clock::now();
  std::string text;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(seconds)) {
    text = RunCommand({"scontrol", "show", "job", id}).output;
    if (std::regex_search(text, std::regex("JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT|"
                                           "NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)"))) {
      return text;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ADD_FAILURE() << "job " << id << " did not finish in " << seconds << " s: " << text;
  RunCommand({"scancel", id});
  return text;
}

std::string Submit(const std::string& spec, const std::string& run) {
  const ProcessResult r =
      RunLorasweep({"slurm", spec, "--out", run, "--gpus-per-node", "0", "--tasks-per-node", "3",
                    "--overcommit", "--submit"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::smatch m;
  EXPECT_TRUE(std::regex_search(r.output, m, std::regex("submitted job (\\d+)"))) << r.output;
  return m.size() > 1 ? m[1].str() : "";
}

// Every trial completed with all its steps; the database holds exactly the numbers of each
// trial's metrics.jsonl, whose steps never repeat (nothing was trained twice).
void ExpectCompleteSweep(const std::string& run, size_t trials, int64_t steps) {
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::vector<TrialRow>> rows = (*store)->Trials();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), trials);
  for (const TrialRow& row : *rows) {
    EXPECT_EQ(row.status, TrialStatus::kCompleted) << row.id << " " << row.failure;
    EXPECT_EQ(row.steps_done, steps) << row.id;
    EXPECT_GE(row.attempts, 1);
    EXPECT_TRUE(std::filesystem::exists(run + "/" + row.adapter_path + "/adapter_config.json"));
    size_t numbers = 0;
    int64_t last_step = 0;
    for (const nlohmann::json& line : ReadMetrics(run + "/trials/" + row.id)) {
      for (const auto& [name, value] : line.items()) numbers += name != "step" && value.is_number();
      const int64_t step = line.value("step", int64_t{0});
      EXPECT_GE(step, last_step) << row.id << ": metrics.jsonl goes back to step " << step;
      last_step = step;
    }
    absl::StatusOr<std::vector<MetricPoint>> points = (*store)->Metrics(row.id);
    ASSERT_TRUE(points.ok());
    EXPECT_EQ(points->size(), numbers) << row.id;
    EXPECT_GT(numbers, 0u);
  }
}

TEST_F(SlurmTest, SubmittedTinySweepCompletes) {
  const std::string data = MakeDataset("slurm_e2e_data", 8, 2);
  const std::string dir = NewDir("slurm_e2e");
  const std::string run = dir + "/run";
  const auto start = std::chrono::steady_clock::now();
  const std::string id = Submit(WriteSpec(dir, SpecYaml(data, "steps: 6")), run);
  ASSERT_FALSE(id.empty());
  const std::string job = WaitForJob(id, 90);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("tiny sweep: submit to done in %.1f s\n", seconds);
  const std::string log = ReadBytes(run + "/slurm-" + id + ".out");
  EXPECT_THAT(job, HasSubstr("JobState=COMPLETED")) << log;
  // 3 tasks: the coordinator and two slots of one rank.
  EXPECT_THAT(log, HasSubstr("2 slot(s) of 1 rank(s)"));
  EXPECT_THAT(log, HasSubstr("sweep step exited with 0"));
  ExpectCompleteSweep(run, 4, 6);
}

// Interrupts a running 200-step sweep with `interrupt` + the job id, then checks that the
// requeued job resumed and finished every trial exactly once.
void InterruptAndExpectResumedSweep(const std::string& name, const std::vector<std::string>& interrupt,
                                    const std::string& expected_log) {
  const std::string data = MakeDataset(name + "_data", 8, 2);
  const std::string dir = NewDir(name);
  const std::string run = dir + "/run";
  const std::string id = Submit(WriteSpec(dir, SpecYaml(data, "steps: 200")), run);
  ASSERT_FALSE(id.empty());
  // Requeue once the sweep is well under way. (Open the database only once the sweep made it:
  // opening creates the file, which would make the job think it is resuming.)
  const auto start = std::chrono::steady_clock::now();
  size_t points_at_requeue = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    if (std::filesystem::exists(run + "/sweep.db")) {
      absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
      if (store.ok()) {
        absl::StatusOr<std::vector<MetricPoint>> points = (*store)->Metrics();
        if (points.ok() && points->size() >= 40) {
          points_at_requeue = points->size();
          break;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GT(points_at_requeue, 0u) << "the sweep did not start";
  std::vector<std::string> argv = interrupt;
  argv.push_back(id);
  const ProcessResult requeue = RunCommand(argv);
  ASSERT_EQ(requeue.exit_code, 0) << requeue.output;
  const std::string job = WaitForJob(id, 150);
  const std::string log = ReadBytes(run + "/slurm-" + id + ".out");
  EXPECT_THAT(job, HasSubstr("JobState=COMPLETED")) << log;
  EXPECT_THAT(job, HasSubstr("Restarts=1"));
  // The first run stopped at a step boundary (the sweep's SIGTERM handling), the second resumed.
  EXPECT_THAT(log, HasSubstr("restart 1"));
  EXPECT_THAT(log, HasSubstr("resuming the sweep"));
  EXPECT_THAT(log, HasSubstr("preempted"));
  EXPECT_THAT(log, HasSubstr(expected_log));
  ExpectCompleteSweep(run, 4, 200);
  std::printf("%s at %zu metric points; resumed run completed all 4 trials\n",
              interrupt[0].c_str(), points_at_requeue);
}

// `scontrol requeue` (and preemption): Slurm sends SIGTERM to the tasks and requeues the job.
TEST_F(SlurmTest, RequeuedRunningSweepResumesAndCompletesEveryTrialOnce) {
  InterruptAndExpectResumedSweep("slurm_requeue", {"scontrol", "requeue"},
                                 "SIGTERM: job cancelled or requeued by Slurm");
}

// What `--signal=B:USR1@120` does before the time limit (USR1 to the batch shell only): the
// script forwards it to the sweep, which checkpoints, and then requeues its own job.
TEST_F(SlurmTest, UsrOneBeforeTheTimeLimitCheckpointsAndTheJobRequeuesItself) {
  InterruptAndExpectResumedSweep("slurm_usr1", {"scancel", "--signal=USR1", "--batch"},
                                 "requeueing job");
}

}  // namespace
}  // namespace lorasweep
