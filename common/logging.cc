#include "common/logging.h"

#include <memory>

#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace lorasweep {

void InitLogging(int rank, const std::string& level) {
  auto logger = std::make_shared<spdlog::logger>(
      "lorasweep", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  const std::string rank_text = rank < 0 ? "-" : std::to_string(rank);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [rank " + rank_text + "] [%l] %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

}  // namespace lorasweep
