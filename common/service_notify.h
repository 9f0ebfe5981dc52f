#pragma once

#include <cstdint>
#include <string>

namespace garda::common {

// Tells systemd how a daemon is doing (sd_notify(3)): READY=1 once it serves,
// a one-line STATUS=, RELOADING=1 around a reload, STOPPING=1, and WATCHDOG=1
// keep-alives at half the unit's WatchdogSec (sd_watchdog_enabled(3)). When
// the process is not a systemd service (no NOTIFY_SOCKET) every call is a
// cheap no-op. Owned and called by the daemon's main loop only: a keep-alive
// then proves that loop still turns.
class ServiceNotifier {
 public:
  ServiceNotifier();

  void ready(const std::string& status);
  void status(const std::string& status);
  void reloading();
  // After a reload (taken or refused): READY=1 again with a new status.
  void reloaded(const std::string& status);
  void stopping();
  // Sends WATCHDOG=1 when half the watchdog interval has passed since the
  // last one; call it from every turn of the main loop (`nowNs`: monotonic).
  void keepAlive(int64_t nowNs);

  bool watchdogEnabled() const noexcept { return pingEveryNs_ > 0; }
  int64_t pingEveryNs() const noexcept { return pingEveryNs_; }

 private:
  void send(const std::string& state);

  int64_t pingEveryNs_ = 0;
  int64_t nextPingNs_ = 0;
};

}  // namespace garda::common
