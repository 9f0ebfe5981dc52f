#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "common/clock.h"

namespace garda::common {

void setupLogging(const std::string& level) {
  auto logger = spdlog::stderr_color_mt("garda");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));
  spdlog::flush_on(spdlog::level::info);
}

bool LogLimiter::allow() noexcept {
  int64_t now = monoNowNs();
  if (now < nextNs_) {
    ++held_;
    return false;
  }
  nextNs_ = now + intervalNs_;
  lastSuppressed_ = held_;
  held_ = 0;
  return true;
}

}  // namespace garda::common
