// Runs another program (no shell: arguments are passed as they are) and waits for it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lorasweep {

struct ProcessResult {
  int exit_code = 0;   // 128 + signal number when killed by a signal
  std::string output;  // stdout and stderr together
};

// Fails only when the program cannot be started; a non-zero exit is reported in the result. The
// output is read until every holder of it has closed it: a program that starts a daemon must
// redirect the daemon's stdout/stderr (cluster/slurm/local-cluster.sh does), or this waits for it.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv);

}  // namespace lorasweep
