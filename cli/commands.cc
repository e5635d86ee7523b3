#include <cstdio>

#include "cli/command.h"

namespace lorasweep::cli {

// Each defined in its own cli/*_command.cc.
Command InspectCommand();
Command QuantizeCommand();
Command FetchModelCommand();
Command TrainCommand();
Command EvalCommand();
Command GenerateCommand();
Command PrepareDataCommand();
Command SweepCommand();
Command StatusCommand();
Command MergeCommand();
Command SoupCommand();
Command ExportCommand();
Command ReportCommand();
Command SlurmCommand();

const std::vector<Command>& AllCommands() {
  static const std::vector<Command> commands = {InspectCommand(),  QuantizeCommand(),
                                                FetchModelCommand(), TrainCommand(),
                                                EvalCommand(),     GenerateCommand(),
                                                PrepareDataCommand(), SweepCommand(),
                                                StatusCommand(), MergeCommand(),
                                                SoupCommand(), ExportCommand(),
                                                ReportCommand(), SlurmCommand()};
  return commands;
}

int ReportError(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "lorasweep %s: error: %s\n", command.c_str(), message.c_str());
  return 1;
}

}  // namespace lorasweep::cli
