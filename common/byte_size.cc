#include "common/byte_size.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace lorasweep {

absl::StatusOr<uint64_t> ParseByteSize(const std::string& text) {
  char* end = nullptr;
  const double number = std::strtod(text.c_str(), &end);
  std::string unit(end);
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  if (unit == "KB") scale = 1e3;
  if (unit == "MB") scale = 1e6;
  if (unit == "GB") scale = 1e9;
  if (unit == "TB") scale = 1e12;
  if (unit == "KIB") scale = 1024.0;
  if (unit == "MIB") scale = 1024.0 * 1024;
  if (unit == "GIB") scale = 1024.0 * 1024 * 1024;
  if (end == text.c_str() || scale == 0 || !std::isfinite(number) || number <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a positive size like 5GB, 500MB or 20KB, got '", text, "'"));
  }
  return static_cast<uint64_t>(number * scale);
}

}  // namespace lorasweep
