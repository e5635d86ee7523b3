// The absl flags of the `lorasweep` subcommands. One definition per name: a flag means the same thing
// in every subcommand that accepts it (cli/command.h lists which accept which).
#pragma once

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, quant);
ABSL_DECLARE_FLAG(int64_t, blocksize);
ABSL_DECLARE_FLAG(bool, double_quant);
ABSL_DECLARE_FLAG(std::string, dtype);
ABSL_DECLARE_FLAG(int32_t, threads);
ABSL_DECLARE_FLAG(std::string, max_shard_size);
