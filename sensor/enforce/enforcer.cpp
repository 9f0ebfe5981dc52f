#include "sensor/enforce/enforcer.h"

#include <spdlog/spdlog.h>

namespace garda::sensor {

std::string DryRunEnforcer::apply(const Rule& rule) {
  spdlog::info("enforce (dry-run): would {} until {} [order {}: {}]", rule.describe(),
               rule.toJson().value("expires_at", ""), rule.id, rule.reason);
  return {};
}

std::string DryRunEnforcer::remove(const Rule& rule) {
  spdlog::info("enforce (dry-run): would remove order {} ({})", rule.id, rule.describe());
  return {};
}

std::unique_ptr<Enforcer> makeEnforcer(const common::SensorConfig& config) {
  switch (config.backend) {
    case common::EnforceBackend::kDryRun: return std::make_unique<DryRunEnforcer>();
    case common::EnforceBackend::kNftables:
    case common::EnforceBackend::kXdp:
    case common::EnforceBackend::kExec: break;
  }
  throw common::ConfigError(config.path +
                            ": enforce.backend: this version of garda-sensor enforces with "
                            "\"dry-run\" only (nftables, xdp and exec come with mitigation)");
}

}  // namespace garda::sensor
