// `lorasweep slurm SPEC --out RUN_DIR --nodes N --gpus-per-node G [--tasks-per-node T]
// [--overcommit] [--partition P] [--time T] [--account A] [--submit]`: writes RUN_DIR/sweep.sbatch
// (coordinator/slurm_script.h) and, with --submit, submits it.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "common/file_util.h"
#include "coordinator/slurm_script.h"

namespace lorasweep::cli {
namespace {

// The job runs this same binary from the compute nodes: its absolute path, not argv[0].
std::string SelfPath() {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "" : p.string();
}

int RunSlurm(const std::vector<std::string>& positional) {
  if (positional.size() != 1) return ReportError("slurm", "expected one argument: the spec file");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return ReportError("slurm", "--out is required (the run folder)");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(positional[0], ec)) {
    return ReportError("slurm", positional[0] + " is not a file (the sweep spec)");
  }
  SlurmJobOptions options;
  options.binary = SelfPath();
  options.spec_path = std::filesystem::absolute(positional[0]).lexically_normal().string();
  options.run_dir = std::filesystem::absolute(out).lexically_normal().string();
  while (options.run_dir.size() > 1 && options.run_dir.back() == '/') options.run_dir.pop_back();
  options.nodes = absl::GetFlag(FLAGS_nodes);
  options.gpus_per_node = absl::GetFlag(FLAGS_gpus_per_node);
  options.tasks_per_node = absl::GetFlag(FLAGS_tasks_per_node);
  if (options.tasks_per_node == 0) {
    options.tasks_per_node = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  options.overcommit = absl::GetFlag(FLAGS_overcommit);
  options.partition = absl::GetFlag(FLAGS_partition);
  options.time_limit = absl::GetFlag(FLAGS_time);
  options.account = absl::GetFlag(FLAGS_account);
  // Slurm opens RUN_DIR/slurm-%j.out before the script runs: the folder must exist.
  if (absl::Status s = MakeDirectories(options.run_dir); !s.ok()) {
    return ReportError("slurm", std::string(s.message()));
  }
  const std::string script = options.run_dir + "/sweep.sbatch";
  if (absl::Status s = WriteSlurmScript(options, script); !s.ok()) {
    return ReportError("slurm", std::string(s.message()));
  }
  std::printf("wrote %s (%d node(s), %d task(s))\n", script.c_str(), options.nodes,
              SlurmTaskCount(options));
  if (absl::GetFlag(FLAGS_submit)) {
    absl::StatusOr<std::string> id = SubmitSlurmScript(script);
    if (!id.ok()) return ReportError("slurm", std::string(id.status().message()));
    std::printf("submitted job %s (log: %s/slurm-%s.out)\n", id->c_str(), options.run_dir.c_str(),
                id->c_str());
  } else {
    std::printf("submit with: sbatch %s\n", script.c_str());
  }
  return 0;
}

}  // namespace

Command SlurmCommand() {
  return {"slurm",
          "Write (and with --submit, submit) the sbatch script that runs a sweep on Slurm",
          "lorasweep slurm SPEC --out RUN_DIR --nodes N --gpus-per-node G [--tasks-per-node T] "
          "[--overcommit] [--partition P] [--time T] [--account A] [--submit]   (srun --mpi=pmix, "
          "one task per GPU + the coordinator; requeued on USR1 before the time limit)",
          {"out", "nodes", "gpus_per_node", "tasks_per_node", "overcommit", "partition", "time",
           "account", "submit"},
          RunSlurm};
}

}  // namespace lorasweep::cli
