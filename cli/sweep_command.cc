// `lorasweep sweep SPEC --out RUN_DIR [--resume]` (alone, or under mpirun/srun: rank 0 coordinates,
// the other ranks train in slots) and `lorasweep status RUN_DIR`.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "comm/communicator.h"
#include "common/logging.h"
#include "common/stop_signal.h"
#include "coordinator/results_store.h"
#include "coordinator/sweep_runner.h"
#include "nlohmann/json.hpp"

namespace lorasweep::cli {
namespace {

int RunSweepCommand(const std::vector<std::string>& positional) {
  if (positional.size() != 1) return ReportError("sweep", "expected one argument: the spec file");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return ReportError("sweep", "--out is required (the run folder)");
  // SIGUSR1 / SIGTERM (Slurm's warning before a time limit, requeue, preemption): checkpoint and
  // stop at the next step boundary.
  InstallStopSignalHandlers();
  absl::StatusOr<std::unique_ptr<Communicator>> world = MakeWorldCommunicator();
  if (!world.ok()) return ReportError("sweep", std::string(world.status().message()));
  (*world)->set_timeout_seconds(absl::GetFlag(FLAGS_comm_timeout));
  const int rank = (*world)->rank(), size = (*world)->size();
  InitLogging(size > 1 ? rank : -1);
  SweepOptions options;
  options.spec_path = positional[0];
  options.run_dir = out;
  options.resume = absl::GetFlag(FLAGS_resume);
  options.world = world->get();
  options.trial_index = absl::GetFlag(FLAGS_trial_index);
  if (options.trial_index >= 0 && size > 1) {
    return ReportError("sweep", "--trial-index runs one trial alone: launch it without mpirun/srun");
  }
  const absl::Status status = RunSweep(options);
  if (!status.ok()) {
    const int code = ReportError(
        "sweep", size > 1 ? absl::StrFormat("rank %d: %s", rank, status.message())
                          : std::string(status.message()));
    if (size > 1) (*world)->Abort(code);
    return code;
  }
  return 0;
}

std::string Fixed(const std::optional<double>& v) {
  return v ? absl::StrFormat("%.4f", *v) : "-";
}

int RunStatus(const std::vector<std::string>& positional) {
  if (positional.size() != 1) return ReportError("status", "expected one argument: RUN_DIR");
  const std::string db = positional[0] + "/sweep.db";
  if (FILE* f = std::fopen(db.c_str(), "r")) {
    std::fclose(f);
  } else {
    return ReportError("status", db + " does not exist (not a sweep run folder)");
  }
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(db);
  if (!store.ok()) return ReportError("status", std::string(store.status().message()));
  absl::StatusOr<std::vector<TrialRow>> rows = (*store)->Trials();
  if (!rows.ok()) return ReportError("status", std::string(rows.status().message()));
  absl::StatusOr<std::optional<std::string>> name = (*store)->GetValue("name");
  absl::StatusOr<std::optional<std::string>> base = (*store)->GetValue("base_eval_loss");
  std::printf("sweep %s: %zu trials", name.ok() && *name ? (*name)->c_str() : "?", rows->size());
  if (base.ok() && *base) std::printf(", base eval_loss %.4f", std::stod(**base));
  std::printf("\n%-12s %-13s %6s %8s %10s %10s %4s  %s\n", "trial", "status", "steps", "loss",
              "eval_loss", "best_eval", "try", "params / failure");
  nlohmann::json all = nlohmann::json::array();
  for (const TrialRow& r : *rows) {
    std::string detail = r.params_json;
    if (!r.failure.empty()) detail += "  " + r.failure;
    std::printf("%-12s %-13s %6lld %8s %10s %10s %4lld  %s\n", r.id.c_str(),
                TrialStatusName(r.status), static_cast<long long>(r.steps_done),
                Fixed(r.final_train_loss).c_str(), Fixed(r.final_eval_loss).c_str(),
                Fixed(r.best_eval_loss).c_str(), static_cast<long long>(r.attempts),
                detail.c_str());
    all.push_back({{"id", r.id},
                   {"status", TrialStatusName(r.status)},
                   {"steps", r.steps_done},
                   {"attempts", r.attempts},
                   {"params", nlohmann::json::parse(r.params_json, nullptr, false)},
                   {"final_eval_loss", r.final_eval_loss ? nlohmann::json(*r.final_eval_loss)
                                                         : nlohmann::json()}});
  }
  if (absl::GetFlag(FLAGS_json)) std::printf("%s\n", all.dump().c_str());
  return 0;
}

}  // namespace

Command SweepCommand() {
  return {"sweep",
          "Run a sweep (spec YAML): trials on worker slots, results in RUN_DIR/sweep.db",
          "lorasweep sweep SPEC --out RUN_DIR [--resume] [--comm-timeout 300] [--trial-index K]   "
          "(alone, or "
          "mpirun -np N lorasweep sweep ...: rank 0 coordinates, slots of workers_per_trial train)",
          {"out", "resume", "comm_timeout", "trial_index"},
          RunSweepCommand};
}

Command StatusCommand() {
  return {"status", "Show the trials of a sweep run folder from its database",
          "lorasweep status RUN_DIR [--json]", {"json"}, RunStatus};
}

}  // namespace lorasweep::cli
