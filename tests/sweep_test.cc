// The sweep coordinator: spec parsing and expansion, early-stopping decisions on hand-worked
// curves, and real sweeps of the tiny model (alone and under `mpirun -np 5` with two slots of two
// ranks) recorded in a real SQLite file, including kill -9 of a worker and of the coordinator
// followed by --resume.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "coordinator/early_stopping.h"
#include "coordinator/results_store.h"
#include "coordinator/sweep_spec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/train_test_util.h"

namespace lorasweep {
namespace {

using testing::HasSubstr;

std::string SpecYaml(const std::string& data, const std::string& space,
                     const std::string& extra = "", const std::string& train = "steps: 6") {
  return "name: tiny\n"
         "base:\n"
         "  model: " + kTinyModel + "\n"
         "  lora: {rank: 4, alpha: 8, dropout: 0.0}\n"
         "  data: {path: " + data + "}\n"
         "  train: {" + train + ", micro_batch: 2, learning_rate: 1.0e-2, eval_every: 2, "
         "checkpoint_every: 1, threads: 1}\n"
         "search:\n" + space + extra;
}

TEST(SweepSpecTest, GridExpansionIsTheCartesianProductWithStableIds) {
  absl::StatusOr<SweepSpec> spec = ParseSweepSpecYaml(
      SpecYaml("/data", "  space:\n    lora.rank: [2, 4, 8]\n    train.learning_rate: [1.0e-3, 2.0e-3]\n"),
      "spec.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<std::vector<TrialPlan>> a = ExpandSweep(*spec), b = ExpandSweep(*spec);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 6u);
  std::set<std::string> ids;
  for (size_t i = 0; i < a->size(); ++i) {
    ids.insert((*a)[i].id);
    EXPECT_EQ((*a)[i].id, (*b)[i].id);
    EXPECT_EQ((*a)[i].id.size(), 12u);
  }
  EXPECT_EQ(ids.size(), 6u);
  // The last key varies fastest.
  EXPECT_EQ((*a)[0].config.lora().rank(), 2);
  EXPECT_DOUBLE_EQ((*a)[0].config.train().learning_rate(), 1e-3);
  EXPECT_DOUBLE_EQ((*a)[1].config.train().learning_rate(), 2e-3);
  EXPECT_EQ((*a)[2].config.lora().rank(), 4);
  EXPECT_EQ((*a)[5].params["lora.rank"], 8);
}

TEST(SweepSpecTest, RandomSearchIsDeterministicBySeed) {
  auto expand = [](int seed) {
    absl::StatusOr<SweepSpec> spec = ParseSweepSpecYaml(
        SpecYaml("/data", "  method: random\n  trials: 5\n  seed: " + std::to_string(seed) +
                              "\n  space:\n    train.learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}\n"
                              "    lora.rank: [4, 8]\n"),
        "spec.yaml");
    EXPECT_TRUE(spec.ok()) << spec.status();
    return *ExpandSweep(*spec);
  };
  const std::vector<TrialPlan> a = expand(1), b = expand(1), c = expand(2);
  ASSERT_EQ(a.size(), 5u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    const double lr = a[i].config.train().learning_rate();
    EXPECT_GE(lr, 1e-5);
    EXPECT_LE(lr, 1e-3);
  }
  EXPECT_NE(a[0].id, c[0].id);
}

TEST(SweepSpecTest, BadSpecsNameTheKeyAndLine) {
  struct Case {
    std::string yaml, expected;
  };
  const std::vector<Case> cases = {
      {SpecYaml("/d", "  space:\n    lora.rank: [2]\n", "colour: red\n"), "spec.yaml:10: 'colour'"},
      {SpecYaml("/d", "  method: best\n  space:\n    lora.rank: [2]\n"), "search.method"},
      {SpecYaml("/d", "  space:\n    lora.rnak: [2]\n"), "lora.rnak"},
      {SpecYaml("/d", "  space:\n    train.learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}\n"),
       "method: random"},
      {SpecYaml("/d", "  space:\n    lora.rank: [2]\n",
                "early_stopping: {method: asha, grace_steps: 0}\n"),
       "early_stopping.grace_steps"},
      {SpecYaml("/d", "  space:\n    lora.rank: [0]\n"), "lora.rank"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<SweepSpec> spec = ParseSweepSpecYaml(c.yaml, "spec.yaml");
    absl::Status status = spec.status();
    if (spec.ok()) status = ExpandSweep(*spec).status();
    EXPECT_FALSE(status.ok()) << c.expected;
    EXPECT_THAT(std::string(status.message()), HasSubstr(c.expected));
  }
}

TEST(EarlyStoppingTest, AshaMatchesHandWorkedRungs) {
  EarlyStoppingConfig config;
  config.set_method("asha");
  config.set_grace_steps(1);
  config.set_reduction_factor(3);
  std::unique_ptr<EarlyStopper> asha = EarlyStopper::Create(config, 27);  // rungs 1, 3, 9
  // Rung 0 (step 1): the first trial always continues.
  EXPECT_FALSE(asha->OnReport("a", 1, 1.0).stop);
  // {1.0}: cutoff = percentile([1.0], 33.3) = 1.0; 2.0 is worse.
  const StopDecision b = asha->OnReport("b", 1, 2.0);
  EXPECT_TRUE(b.stop);
  EXPECT_EQ(b.rung, 0);
  // {1.0, 2.0}: cutoff = 1 + (1/3)(2 - 1) = 1.333; 1.3 continues, 1.4 stops.
  EXPECT_FALSE(asha->OnReport("c", 1, 1.3).stop);
  EXPECT_TRUE(asha->OnReport("d", 1, 1.4).stop);
  // A trial reports once per rung: "a" again at step 2 decides nothing new.
  EXPECT_FALSE(asha->OnReport("a", 2, 9.0).stop);
  // Rung 1 (step 3): a first, then c worse -> stopped at rung 1.
  EXPECT_FALSE(asha->OnReport("a", 3, 0.8).stop);
  const StopDecision c = asha->OnReport("c", 4, 0.9);
  EXPECT_TRUE(c.stop);
  EXPECT_EQ(c.rung, 1);
  // A report past several rungs records at the highest one reached (rung 2 at step 9).
  EXPECT_FALSE(asha->OnReport("e", 10, 5.0).stop);
  EXPECT_TRUE(asha->OnReport("a", 9, 6.0).stop);
}

TEST(EarlyStoppingTest, MedianRuleMatchesHandWorkedCurves) {
  EarlyStoppingConfig config;
  config.set_method("median");
  config.set_grace_steps(2);
  config.set_min_samples(2);
  std::unique_ptr<EarlyStopper> median = EarlyStopper::Create(config, 100);
  // Before grace nothing stops; with fewer than 2 other trials nothing stops.
  EXPECT_FALSE(median->OnReport("a", 1, 3.0).stop);
  EXPECT_FALSE(median->OnReport("a", 2, 2.0).stop);  // a: mean up to 2 = 2.5
  EXPECT_FALSE(median->OnReport("b", 2, 1.0).stop);  // only one other trial
  // c at step 2: best 2.4; others' running means up to step 2: a 2.5, b 1.0 -> median 1.75.
  const StopDecision c = median->OnReport("c", 2, 2.4);
  EXPECT_TRUE(c.stop);
  EXPECT_EQ(c.rung, 2);
  // d at step 2 with 1.5 <= median of {2.5, 1.0, 2.4} = 2.4: continues.
  EXPECT_FALSE(median->OnReport("d", 2, 1.5).stop);
  EXPECT_DOUBLE_EQ(Percentile({4, 1, 3, 2}, 50), 2.5);
  EXPECT_DOUBLE_EQ(Percentile({1, 2}, 100.0 / 3), 1.0 + 1.0 / 3);
}

ProcessResult Mpi(int ranks, const std::vector<std::string>& args) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  std::vector<std::string> argv = {"mpirun", "-np", std::to_string(ranks), "--oversubscribe",
                                   "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1",
                                   LORASWEEP_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<ProcessResult> r = RunProcess(argv);
  EXPECT_TRUE(r.ok());
  return *r;
}

std::string WriteSpec(const std::string& dir, const std::string& yaml) {
  const std::string path = dir + "/spec.yaml";
  std::ofstream(path) << yaml;
  return path;
}

// Every trial finished exactly once, and the database holds every metrics.jsonl line's numbers.
void ExpectCompleteSweep(const std::string& run, size_t trials) {
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
  ASSERT_TRUE(store.ok());
  absl::StatusOr<std::vector<TrialRow>> rows = (*store)->Trials();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), trials);
  for (const TrialRow& row : *rows) {
    EXPECT_TRUE(row.status == TrialStatus::kCompleted || row.status == TrialStatus::kStoppedEarly)
        << row.id << " " << TrialStatusName(row.status) << " " << row.failure;
    EXPECT_TRUE(std::filesystem::exists(run + "/" + row.adapter_path + "/adapter_config.json"));
    size_t numbers = 0;
    for (const nlohmann::json& line : ReadMetrics(run + "/trials/" + row.id)) {
      for (const auto& [name, value] : line.items()) numbers += name != "step" && value.is_number();
    }
    absl::StatusOr<std::vector<MetricPoint>> points = (*store)->Metrics(row.id);
    ASSERT_TRUE(points.ok());
    EXPECT_EQ(points->size(), numbers) << row.id;
    EXPECT_GT(numbers, 0u);
  }
  absl::StatusOr<std::optional<std::string>> base = (*store)->GetValue("base_eval_loss");
  ASSERT_TRUE(base.ok() && base->has_value());
}

const std::string kGrid = "  space:\n    lora.rank: [2, 4]\n    train.learning_rate: [1.0e-2, 3.0e-3]\n";

TEST(SweepRunTest, AloneRunsEveryTrialOnceAndStatusShowsThem) {
  const std::string data = MakeDataset("sweep_alone_data", 8, 2);
  const std::string dir = NewDir("sweep_alone");
  const std::string spec = WriteSpec(
      dir, SpecYaml(data, kGrid, "early_stopping: {method: asha, grace_steps: 2, reduction_factor: 2}\n"));
  const ProcessResult r = RunLorasweep({"sweep", spec, "--out", dir + "/run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ExpectCompleteSweep(dir + "/run", 4);
  const ProcessResult status = RunLorasweep({"status", dir + "/run"});
  ASSERT_EQ(status.exit_code, 0);
  EXPECT_THAT(status.output, HasSubstr("4 trials"));
  // Running it again without --resume refuses; with --resume there is nothing left to do.
  EXPECT_NE(RunLorasweep({"sweep", spec, "--out", dir + "/run"}).exit_code, 0);
  const ProcessResult again = RunLorasweep({"sweep", spec, "--out", dir + "/run", "--resume"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("(4 finished, 0 to run)"));
}

TEST(SweepRunTest, SoupStageEvaluatesWeightedCombinationsOfTheBestTrials) {
  const std::string data = MakeDataset("sweep_soup_data", 8, 2);
  const std::string dir = NewDir("sweep_soup");
  const std::string spec = WriteSpec(
      dir, SpecYaml(data, kGrid,
                    "soup: {top: 2, method: cat, weights: [[1.0, 0.0], [0.5, 0.5]]}\n"));
  const ProcessResult r = RunLorasweep({"sweep", spec, "--out", dir + "/run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(dir + "/run/sweep.db");
  ASSERT_TRUE(store.ok());
  const std::vector<TrialRow> rows = *(*store)->Trials();
  std::vector<TrialRow> trained, soups;
  for (const TrialRow& row : rows) (row.kind == "soup" ? soups : trained).push_back(row);
  ASSERT_EQ(trained.size(), 4u);
  ASSERT_EQ(soups.size(), 2u);
  const TrialRow* best = &trained[0];
  for (const TrialRow& t : trained) {
    if (*t.final_eval_loss < *best->final_eval_loss) best = &t;
  }
  for (const TrialRow& soup : soups) {
    EXPECT_EQ(soup.status, TrialStatus::kCompleted) << soup.failure;
    ASSERT_TRUE(soup.final_eval_loss.has_value());
    const nlohmann::json params = nlohmann::json::parse(soup.params_json);
    EXPECT_EQ(params["soup.inputs"][0], best->id);
    EXPECT_TRUE(std::filesystem::exists(dir + "/run/" + soup.adapter_path + "/adapter_model.safetensors"));
    // Weight 1 on the best trial and 0 on the other: the soup is that trial's adapter again (a
    // cat soup keeps its delta exactly; only float rounding of the scaling differs).
    if (params["soup.weights"][0] == 1.0) {
      EXPECT_NEAR(*soup.final_eval_loss, *best->final_eval_loss, 1e-5 * *best->final_eval_loss);
    }
  }
  EXPECT_THAT(ReadBytes(dir + "/run/report.md"), HasSubstr("soup"));
  // Resuming finds the soups done and redoes nothing.
  const ProcessResult again = RunLorasweep({"sweep", spec, "--out", dir + "/run", "--resume"});
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, testing::Not(HasSubstr("] soup soup-")));
}

TEST(SweepRunTest, ArrayTasksRunOneTrialEachIntoOneRunDir) {
  const std::string data = MakeDataset("sweep_array_data", 8, 2);
  const std::string dir = NewDir("sweep_array");
  const std::string spec = WriteSpec(dir, SpecYaml(data, kGrid));
  const std::string run = dir + "/run";
  // Four processes at once, as four Slurm array tasks on one machine would run.
  std::vector<pid_t> tasks;
  for (int k = 0; k < 4; ++k) {
    const pid_t pid = fork();
    if (pid == 0) {
      const std::string log = dir + "/task" + std::to_string(k) + ".log";
      freopen(log.c_str(), "w", stdout);
      dup2(fileno(stdout), STDERR_FILENO);
      const std::string index = std::to_string(k);
      execl(LORASWEEP_BINARY, LORASWEEP_BINARY, "sweep", spec.c_str(), "--out", run.c_str(),
            "--resume", "--trial-index", index.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    tasks.push_back(pid);
  }
  for (int k = 0; k < 4; ++k) {
    int status = 0;
    waitpid(tasks[k], &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << ReadBytes(dir + "/task" + std::to_string(k) + ".log");
  }
  ExpectCompleteSweep(run, 4);
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
  const std::vector<TrialRow> rows = *(*store)->Trials();
  for (const TrialRow& row : rows) EXPECT_EQ(row.attempts, 1) << row.id;
  EXPECT_TRUE(std::filesystem::exists(run + "/report.html"));
  // An index past the expansion is an error naming the range.
  const ProcessResult bad =
      RunLorasweep({"sweep", spec, "--out", run, "--resume", "--trial-index", "4"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, HasSubstr("0..3"));
}

TEST(SweepRunTest, ADivergingTrialFailsAndTheOthersComplete) {
  const std::string data = MakeDataset("sweep_fail_data", 8, 2);
  const std::string dir = NewDir("sweep_fail");
  const std::string spec = WriteSpec(
      dir, SpecYaml(data, "  space:\n    train.learning_rate: [1.0e-2, 1.0e+30]\n",
                    "max_failures_per_trial: 1\n", "steps: 6, max_grad_norm: 0"));
  const ProcessResult r = RunLorasweep({"sweep", spec, "--out", dir + "/run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(dir + "/run/sweep.db");
  ASSERT_TRUE(store.ok());
  std::vector<TrialRow> rows = *(*store)->Trials();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].status, TrialStatus::kCompleted);
  EXPECT_EQ(rows[1].status, TrialStatus::kFailed);
  EXPECT_THAT(rows[1].failure, HasSubstr("diverged at step"));
  EXPECT_EQ(rows[1].attempts, 2);  // tried once more (max_failures_per_trial: 1)
}

TEST(SweepRunTest, FiveRanksRunTwoSlotsOfTwo) {
  const std::string data = MakeDataset("sweep_mpi_data", 8, 2);
  const std::string dir = NewDir("sweep_mpi");
  const std::string spec = WriteSpec(dir, SpecYaml(data, kGrid, "resources: {workers_per_trial: 2}\n"));
  const ProcessResult r = Mpi(5, {"sweep", spec, "--out", dir + "/run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("2 slot(s) of 2 rank(s)"));
  ExpectCompleteSweep(dir + "/run", 4);
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(dir + "/run/sweep.db");
  std::set<int64_t> slots;
  const std::vector<TrialRow> rows = *(*store)->Trials();
  for (const TrialRow& row : rows) {
    EXPECT_EQ(row.attempts, 1);
    EXPECT_GT(row.comm_bytes, 0);  // two ranks per trial all-reduced gradients
    slots.insert(row.slot);
  }
  EXPECT_EQ(slots, (std::set<int64_t>{0, 1}));
}

// Kills (SIGKILL) the process that is MPI rank `rank` of the job writing into `marker` once the
// sweep database holds `after_points` metric rows; returns whether it did.
bool KillRankWhen(int rank, const std::string& marker, const std::string& db, size_t after_points,
                  pid_t launcher) {
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(90)) {
    if (waitpid(launcher, nullptr, WNOHANG) != 0) return false;  // finished before the kill
    absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(db);
    if (store.ok()) {
      absl::StatusOr<std::vector<MetricPoint>> points = (*store)->Metrics();
      if (points.ok() && points->size() >= after_points) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmd(entry.path() / "cmdline"), env(entry.path() / "environ");
    const std::string cmdline((std::istreambuf_iterator<char>(cmd)), {});
    const std::string environ_text((std::istreambuf_iterator<char>(env)), {});
    if (cmdline.find(marker) == std::string::npos || cmdline.find("mpirun") != std::string::npos) {
      continue;
    }
    if (environ_text.find("OMPI_COMM_WORLD_RANK=" + std::to_string(rank) + '\0') !=
        std::string::npos) {
      kill(static_cast<pid_t>(std::stol(name)), SIGKILL);
      return true;
    }
  }
  return false;
}

TEST(SweepRunTest, KilledWorkerOrCoordinatorThenResumeFinishesEveryTrialExactlyAsUninterrupted) {
  const std::string data = MakeDataset("sweep_kill_data", 8, 2);
  const std::string yaml = SpecYaml(data, kGrid, "resources: {workers_per_trial: 1}\n", "steps: 8");
  // The reference: the same sweep, never interrupted.
  const std::string ref = NewDir("sweep_kill_ref");
  ASSERT_EQ(Mpi(3, {"sweep", WriteSpec(ref, yaml), "--out", ref + "/run"}).exit_code, 0);
  std::mt19937 rng(2026);
  int kills = 0;
  for (int round = 0; round < 3; ++round) {
    const int victim = round == 1 ? 0 : 1 + round / 2;  // worker, coordinator, worker
    const std::string dir = NewDir("sweep_kill_" + std::to_string(round));
    const std::string spec = WriteSpec(dir, yaml);
    const std::string run = dir + "/run";
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const pid_t launcher = fork();
    if (launcher == 0) {
      freopen((dir + "/first.log").c_str(), "w", stdout);
      dup2(fileno(stdout), STDERR_FILENO);
      execlp("mpirun", "mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", "-x",
             "OPENBLAS_NUM_THREADS=1", LORASWEEP_BINARY, "sweep", spec.c_str(), "--out",
             run.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    const size_t after = 10 + rng() % 60;  // a random point in the sweep
    if (KillRankWhen(victim, run, run + "/sweep.db", after, launcher)) ++kills;
    int status = 0;
    waitpid(launcher, &status, 0);
    const ProcessResult resumed = Mpi(3, {"sweep", spec, "--out", run, "--resume"});
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    ExpectCompleteSweep(run, 4);
    absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
    const std::vector<TrialRow> rows = *(*store)->Trials();
    for (const TrialRow& row : rows) {
      // Bit for bit the adapter of the uninterrupted sweep, whether or not it was interrupted.
      EXPECT_EQ(ReadBytes(run + "/trials/" + row.id + "/adapter/adapter_model.safetensors"),
                ReadBytes(ref + "/run/trials/" + row.id + "/adapter/adapter_model.safetensors"))
          << "round " << round << " trial " << row.id;
      EXPECT_EQ(row.status, TrialStatus::kCompleted);
    }
  }
  EXPECT_GE(kills, 2) << "the kills should land while the sweep runs";
}

TEST(SweepRunTest, SignalledSweepCheckpointsStopsAndResumesExactly) {
  const std::string data = MakeDataset("sweep_signal_data", 8, 2);
  const std::string yaml = SpecYaml(data, kGrid, "resources: {workers_per_trial: 1}\n", "steps: 8");
  const std::string ref = NewDir("sweep_signal_ref");
  ASSERT_EQ(Mpi(3, {"sweep", WriteSpec(ref, yaml), "--out", ref + "/run"}).exit_code, 0);
  const std::string dir = NewDir("sweep_signal");
  const std::string spec = WriteSpec(dir, yaml);
  const std::string run = dir + "/run";
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const pid_t launcher = fork();
  if (launcher == 0) {
    freopen((dir + "/first.log").c_str(), "w", stdout);
    dup2(fileno(stdout), STDERR_FILENO);
    execlp("mpirun", "mpirun", "-np", "3", "--oversubscribe", "--bind-to", "none", "-x",
           "OPENBLAS_NUM_THREADS=1", LORASWEEP_BINARY, "sweep", spec.c_str(), "--out",
           run.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Once training runs, SIGUSR1 to mpirun, which forwards it to every rank (as srun does).
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
    if (store.ok()) {
      absl::StatusOr<std::vector<MetricPoint>> points = (*store)->Metrics();
      if (points.ok() && points->size() >= 20) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(kill(launcher, SIGUSR1), 0);
  int status = 0;
  waitpid(launcher, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadBytes(dir + "/first.log");
  {
    absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
    ASSERT_TRUE(store.ok());
    const std::vector<TrialRow> rows = *(*store)->Trials();
    int unfinished = 0;
    for (const TrialRow& row : rows) {
      EXPECT_NE(row.status, TrialStatus::kRunning) << row.id;  // never left "running"
      unfinished += row.status == TrialStatus::kPending;
    }
    EXPECT_GT(unfinished, 0) << "the signal should land before the sweep ends";
  }
  const ProcessResult resumed = Mpi(3, {"sweep", spec, "--out", run, "--resume"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  ExpectCompleteSweep(run, 4);
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run + "/sweep.db");
  const std::vector<TrialRow> rows = *(*store)->Trials();
  for (const TrialRow& row : rows) {
    EXPECT_EQ(row.attempts, 1) << row.id;  // a preemption is not a failed attempt
    EXPECT_EQ(ReadBytes(run + "/trials/" + row.id + "/adapter/adapter_model.safetensors"),
              ReadBytes(ref + "/run/trials/" + row.id + "/adapter/adapter_model.safetensors"))
        << row.id;
  }
}

}  // namespace
}  // namespace lorasweep
