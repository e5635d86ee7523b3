// `lorasweep train --config FILE --out DIR [--resume] [--stop-after N] [--threads N]`
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "comm/communicator.h"
#include "common/logging.h"
#include "common/stop_signal.h"
#include "worker/train/trainer.h"
#include "worker/train/trial_config.h"

namespace lorasweep::cli {
namespace {

int RunTrain(const std::vector<std::string>& positional) {
  if (!positional.empty()) return ReportError("train", "unexpected argument " + positional[0]);
  const std::string config_path = absl::GetFlag(FLAGS_config), out = absl::GetFlag(FLAGS_out);
  if (config_path.empty()) return ReportError("train", "--config is required");
  if (out.empty()) return ReportError("train", "--out is required");
  absl::StatusOr<TrialConfig> config = LoadTrialConfig(config_path);
  if (!config.ok()) return ReportError("train", std::string(config.status().message()));
  if (absl::GetFlag(FLAGS_threads) > 0) {
    config->mutable_train()->set_threads(absl::GetFlag(FLAGS_threads));
  }
  // The world this process was launched in: mpirun/srun ranks train one trial together.
  // SIGUSR1 / SIGTERM (Slurm's warning before a time limit, requeue, preemption): checkpoint and
  // stop at the next step boundary; --resume continues.
  InstallStopSignalHandlers();
  absl::StatusOr<std::unique_ptr<Communicator>> comm = MakeWorldCommunicator();
  if (!comm.ok()) return ReportError("train", std::string(comm.status().message()));
  (*comm)->set_timeout_seconds(absl::GetFlag(FLAGS_comm_timeout));
  const int rank = (*comm)->rank(), world = (*comm)->size();
  InitLogging(world > 1 ? rank : -1);
  TrainOptions options;
  options.out_dir = out;
  options.resume = absl::GetFlag(FLAGS_resume);
  options.stop_after_steps = absl::GetFlag(FLAGS_stop_after);
  options.comm = comm->get();
  const absl::Status status = Train(*config, options);
  if (absl::IsCancelled(status) && StopSignalReceived()) {
    // Preempted (SIGUSR1/SIGTERM): the checkpoint is saved; not an error.
    std::fprintf(stderr, "lorasweep train: %s; continue with --resume\n",
                 std::string(status.message()).c_str());
    return 0;
  }
  if (!status.ok()) {
    const int code = ReportError(
        "train", world > 1 ? "rank " + std::to_string(rank) + ": " + std::string(status.message())
                           : std::string(status.message()));
    // Peers would otherwise wait in their next collective until the timeout.
    if (world > 1) (*comm)->Abort(code);
    return code;
  }
  return 0;
}

}  // namespace

Command TrainCommand() {
  return {"train",
          "Fine-tune one trial (QLoRA) from a YAML trial config; writes metrics, checkpoint, adapter",
          "lorasweep train --config FILE --out DIR [--resume] [--stop-after N] [--threads N] "
          "[--comm-timeout 300]   (data parallel: mpirun -np N lorasweep train ...)",
          {"config", "out", "resume", "stop_after", "threads", "comm_timeout"},
          RunTrain};
}

}  // namespace lorasweep::cli
