#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <string>

namespace garda::common {

// Sets up spdlog for a daemon or tool: one logger to stderr (journald takes
// it under systemd), pattern with time and level, at `level` (trace, debug,
// info, warn, error).
void setupLogging(const std::string& level);

// Lets one log site speak at most once per interval, counting what it held
// back, so a flood of bad messages cannot flood the log. Not thread-safe: one
// per thread and site.
class LogLimiter {
 public:
  explicit LogLimiter(int64_t intervalNs = 1'000'000'000) : intervalNs_(intervalNs) {}
  // True when this event may be logged; `suppressed()` then says how many
  // were held back since the last one logged.
  bool allow() noexcept;
  uint64_t suppressed() const noexcept { return lastSuppressed_; }

 private:
  int64_t intervalNs_;
  int64_t nextNs_ = 0;
  uint64_t held_ = 0;
  uint64_t lastSuppressed_ = 0;
};

}  // namespace garda::common
