#include "common/service_notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <cstring>

namespace garda::common {

ServiceNotifier::ServiceNotifier() {
  uint64_t usec = 0;
  // 0: keep WATCHDOG_USEC in the environment (it is ours, not a child's).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
    pingEveryNs_ = static_cast<int64_t>(usec) * 1000 / 2;
}

void ServiceNotifier::send(const std::string& state) {
  int rc = sd_notify(0, state.c_str());
  if (rc < 0)
    spdlog::warn("systemd: cannot notify the service manager ({}): {}", state.substr(0, 40),
                 std::strerror(-rc));
}

void ServiceNotifier::ready(const std::string& status) { send("READY=1\nSTATUS=" + status); }

void ServiceNotifier::status(const std::string& status) { send("STATUS=" + status); }

void ServiceNotifier::reloading() { send("RELOADING=1\nSTATUS=reloading the configuration"); }

void ServiceNotifier::reloaded(const std::string& status) { ready(status); }

void ServiceNotifier::stopping() { send("STOPPING=1\nSTATUS=stopping"); }

void ServiceNotifier::keepAlive(int64_t nowNs) {
  if (pingEveryNs_ == 0 || nowNs < nextPingNs_) return;
  send("WATCHDOG=1");
  nextPingNs_ = nowNs + pingEveryNs_;
}

}  // namespace garda::common
