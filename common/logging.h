// Process-wide logging setup: spdlog to stderr with the MPI rank in every line, so interleaved
// output of several ranks can be told apart. Colour is never used: under mpirun stderr is a pty
// and ANSI codes would end up in log files.
#pragma once

#include <string>

namespace lorasweep {

// Installs the default logger. `rank` < 0 means "not part of an MPI job" and prints "-".
// `level` is one of spdlog's level names (trace, debug, info, warn, error, off).
void InitLogging(int rank, const std::string& level = "info");

}  // namespace lorasweep
