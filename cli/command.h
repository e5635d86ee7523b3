// The subcommands of the `lorasweep` binary.
//
// Flags are absl flags (defined once in cli/flags.cc, shared by name across subcommands so that
// `--model` means the same everywhere). Each subcommand lists the flags it accepts; any other flag on
// its command line is rejected before parsing, and `lorasweep SUB --help` prints exactly its own flags.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace lorasweep::cli {

struct Command {
  std::string name;
  std::string summary;                  // one line, shown by `lorasweep --help`
  std::string usage;                    // synopsis shown by `lorasweep NAME --help`
  std::vector<std::string> flags;       // names of the absl flags this command accepts
  // Runs with the positional arguments (after the subcommand name); returns the exit code.
  std::function<int(const std::vector<std::string>& positional)> run;
};

// Every subcommand, in the order `lorasweep --help` lists them.
const std::vector<Command>& AllCommands();

// Prints `message` to stderr as "lorasweep NAME: error: message" and returns exit code 1.
int ReportError(const std::string& command, const std::string& message);

}  // namespace lorasweep::cli
