#pragma once

#include <cstdint>
#include <ctime>

namespace garda::common {

// Wall clock (CLOCK_REALTIME) in Unix nanoseconds: what goes on the wire and
// into the store.
inline int64_t wallNowNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Monotonic clock in nanoseconds: for timeouts and intervals, never for
// timestamps others see.
inline int64_t monoNowNs() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace garda::common
