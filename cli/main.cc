// Entry point of the `lorasweep` binary: dispatches to a subcommand (cli/command.h).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "cli/command.h"
#include "common/logging.h"
#include "kernels/blas_core.h"

namespace lorasweep::cli {
namespace {

void PrintTopLevelHelp() {
  std::printf("lorasweep: QLoRA fine-tuning sweeps.\n\nUsage: lorasweep COMMAND [flags]\n\nCommands:\n");
  for (const Command& command : AllCommands()) {
    std::printf("  %-14s %s\n", command.name.c_str(), command.summary.c_str());
  }
  std::printf("\nRun `lorasweep COMMAND --help` for a command's flags.\n");
}

void PrintCommandHelp(const Command& command) {
  std::printf("Usage: %s\n\n%s\n\nFlags:\n", command.usage.c_str(), command.summary.c_str());
  for (const std::string& name : command.flags) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    std::string shown = name;
    std::replace(shown.begin(), shown.end(), '_', '-');
    std::printf("  --%s  %s (default: %s)\n", shown.c_str(), flag->Help().c_str(),
                flag->DefaultValue().empty() ? "\"\"" : flag->DefaultValue().c_str());
  }
}

// Rewrites the subcommand's arguments to absl's conventions while accepting the spelling users of
// other CLI tools type: `--double-quant` means `--double_quant`, and a boolean flag may take its value
// as the next word (`--double-quant false`).
std::vector<std::string> NormalizeArguments(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (i < 2 || arg.rfind("--", 0) != 0 || arg == "--") {
      out.push_back(arg);
      continue;
    }
    const size_t eq = arg.find('=');
    std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    std::replace(name.begin(), name.end(), '-', '_');
    std::string normalized = "--" + name + (eq == std::string::npos ? "" : arg.substr(eq));
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (eq == std::string::npos && flag != nullptr && flag->IsOfType<bool>() && i + 1 < args.size() &&
        (args[i + 1] == "true" || args[i + 1] == "false")) {
      normalized += "=" + args[++i];
    }
    out.push_back(normalized);
  }
  return out;
}

// Returns the name of the first flag in argv[2..] that `command` does not accept, or "".
std::string FirstUnacceptedFlag(const Command& command, int argc, char** argv) {
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.rfind("--", 0) != 0 && !(arg.size() > 1 && arg[0] == '-')) continue;
    std::string name = arg.substr(arg.rfind("--", 0) == 0 ? 2 : 1);
    name = name.substr(0, name.find('='));
    if (name.rfind("no", 0) == 0 && absl::FindCommandLineFlag(name) == nullptr) name = name.substr(2);
    bool accepted = false;
    for (const std::string& allowed : command.flags) accepted |= (allowed == name);
    if (!accepted) return name;
  }
  return "";
}

int Main(int argc, char** argv) {
  ReexecWithMatchingBlasCore(argv);
  InitLogging(-1);
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "help") == 0 ||
      std::strcmp(argv[1], "-h") == 0) {
    PrintTopLevelHelp();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  const Command* command = nullptr;
  for (const Command& c : AllCommands()) {
    if (c.name == name) command = &c;
  }
  if (command == nullptr) {
    std::fprintf(stderr, "lorasweep: unknown command '%s'; run `lorasweep --help`\n", name.c_str());
    return 2;
  }
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      PrintCommandHelp(*command);
      return 0;
    }
  }
  std::vector<std::string> normalized = NormalizeArguments(argc, argv);
  std::vector<char*> normalized_argv;
  for (std::string& arg : normalized) normalized_argv.push_back(arg.data());
  argc = static_cast<int>(normalized_argv.size());
  argv = normalized_argv.data();
  if (std::string bad = FirstUnacceptedFlag(*command, argc, argv); !bad.empty()) {
    std::fprintf(stderr, "lorasweep %s: unknown flag --%s; run `lorasweep %s --help`\n",
                 name.c_str(), bad.c_str(), name.c_str());
    return 2;
  }
  absl::SetProgramUsageMessage(command->usage);
  // absl parses argv[1..] as if the subcommand were the program name.
  std::vector<char*> positional_and_program = absl::ParseCommandLine(argc - 1, argv + 1);
  std::vector<std::string> positional(positional_and_program.begin() + 1,
                                      positional_and_program.end());
  return command->run(positional);
}

}  // namespace
}  // namespace lorasweep::cli

int main(int argc, char** argv) { return lorasweep::cli::Main(argc, argv); }
