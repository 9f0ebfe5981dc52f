#include "sensor/enforce/enforcer.h"

#include <spdlog/spdlog.h>

#include "sensor/enforce/exec_enforcer.h"
#include "sensor/enforce/nftables_enforcer.h"
#include "sensor/enforce/xdp_enforcer.h"

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
  try {
    switch (config.backend) {
      case common::EnforceBackend::kDryRun: return std::make_unique<DryRunEnforcer>();
      case common::EnforceBackend::kNftables:
        return std::make_unique<NftablesEnforcer>(config.nftTable);
      case common::EnforceBackend::kExec:
        return std::make_unique<ExecEnforcer>(config.execCommand, config.execTimeoutMs);
      case common::EnforceBackend::kXdp:
        return std::make_unique<XdpEnforcer>(config.interface, config.xdpMode, config.maxRules,
                                             config.stateDir);
    }
  } catch (const common::ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw common::ConfigError(config.path + ": enforce.backend: " + e.what());
  }
  throw common::ConfigError(config.path + ": enforce.backend: unknown backend");
}

std::string withdrawEnforcement(const common::SensorConfig& config) {
  switch (config.backend) {
    case common::EnforceBackend::kNftables: return NftablesEnforcer::withdraw(config.nftTable);
    case common::EnforceBackend::kXdp: return XdpEnforcer::withdraw(config.interface, config.stateDir);
    case common::EnforceBackend::kExec:
      return "exec: the script's own rules are the operator's to take off";
    case common::EnforceBackend::kDryRun: return "dry-run: nothing was ever enforced";
  }
  return {};
}

}  // namespace garda::sensor
