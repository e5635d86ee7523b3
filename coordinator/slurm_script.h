// `lorasweep slurm`: writes (and optionally submits) the sbatch script that runs a sweep on Slurm.
//
// Layout. With G GPUs per node the step has N*G + 1 tasks: rank 0 (node 0, local id 0) is the
// coordinator and takes no GPU; every other task takes one GPU, chosen by its local id on its node
// (node 0's workers shift by one because the coordinator sits there). The allocation asks for
// G + 1 tasks on every node (N - 1 spare CPU slots, so one layout works on every node) and, with
// several nodes, the step uses an arbitrary distribution (SLURM_HOSTFILE: node 0 once more than
// the others) so that ranks 1..G are on node 0, the next G on node 1, ... and a slot of
// workers_per_trial consecutive ranks (dividing G) never straddles two nodes. With G = 0 (CPU
// only) the step has N * tasks_per_node tasks, in block order, rank 0 coordinating.
//
// Preemption. `#SBATCH --requeue --signal=B:USR1@120`: 120 s before the time limit Slurm sends
// USR1 to the batch shell only; the script forwards it to srun (which passes it to every task),
// waits for the sweep to checkpoint and exit, then requeues its own job. `scontrol requeue` and
// preemption send SIGTERM to the tasks directly. Either way the requeued job runs the same script,
// which adds --resume because RUN_DIR/sweep.db exists, and the sweep continues from the checkpoints.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lorasweep {

struct SlurmJobOptions {
  std::string binary;     // absolute path of the lorasweep executable
  std::string spec_path;  // absolute path of the sweep spec
  std::string run_dir;    // absolute path of the run folder
  int nodes = 1;
  int gpus_per_node = 0;   // 0: CPU only
  int tasks_per_node = 1;  // CPU only: tasks on each node (coordinator included on node 0)
  bool overcommit = false;  // more tasks than CPUs (sbatch/srun -O): a small machine or test
  std::string partition;   // empty: the cluster's default
  std::string time_limit;  // empty: the partition's default; else Slurm's syntax (e.g. 4:00:00)
  std::string account;     // empty: the user's default
  int signal_seconds = 120;  // USR1 this long before the time limit
};

// The number of tasks the srun step launches.
int SlurmTaskCount(const SlurmJobOptions& options);

// The batch script's text; errors name the bad option.
absl::StatusOr<std::string> RenderSlurmScript(const SlurmJobOptions& options);

// Renders the script and writes it to `path` atomically (mode 0755).
absl::Status WriteSlurmScript(const SlurmJobOptions& options, const std::string& path);

// Runs `sbatch --parsable SCRIPT` and returns the job id.
absl::StatusOr<std::string> SubmitSlurmScript(const std::string& script_path);

}  // namespace lorasweep
