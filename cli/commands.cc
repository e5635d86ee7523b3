#include <cstdio>

#include "cli/command.h"

namespace lorasweep::cli {

const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {};
  return commands;
}

int ReportError(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "lorasweep %s: error: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace lorasweep::cli
