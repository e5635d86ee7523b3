// DIR/metrics.jsonl: one JSON object per line, flushed to the kernel as each line is written so a
// killed trial keeps every line it logged. On resume the lines after the checkpoint's step are
// dropped first, so the file reads as if the run had never stopped.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace lorasweep {

class MetricsLog {
 public:
  // Opens `path` for appending; with `keep_through_step` >= 0, first rewrites the file (atomically)
  // keeping only lines whose "step" is <= it. A fresh run passes -1 and truncates.
  static absl::StatusOr<MetricsLog> Open(const std::string& path, int64_t keep_through_step);
  MetricsLog(MetricsLog&& other) noexcept;
  MetricsLog& operator=(MetricsLog&& other) noexcept;
  ~MetricsLog();

  absl::Status Write(const nlohmann::json& line);

 private:
  explicit MetricsLog(std::string path, std::FILE* file) : path_(std::move(path)), file_(file) {}
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace lorasweep
