// Human byte sizes as Hugging Face tools spell them ("5GB", "500MB", "20KB", "123"): decimal units
// (1KB = 1000 bytes) and binary ones with an i ("1GiB" = 2^30 bytes).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace lorasweep {

absl::StatusOr<uint64_t> ParseByteSize(const std::string& text);

}  // namespace lorasweep
