#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/config.h"
#include "sensor/enforce/rule.h"

namespace garda::sensor {

// What one rule has dropped (or rate-limited away) since it was installed.
struct DropCount {
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// A backend that turns rules into something that drops packets: nftables,
// XDP, an operator's script, or nothing at all (dry-run). The OrderManager
// has already checked each rule against the never-block list, the rule cap
// and its expiry; a backend only installs and removes. Single-threaded.
class Enforcer {
 public:
  virtual ~Enforcer() = default;
  virtual const char* name() const noexcept = 0;
  // Installs the rule, or refreshes its expiry if it is installed. Returns
  // an empty string on success, otherwise why not (reported as `rejected`).
  virtual std::string apply(const Rule& rule) = 0;
  // Removes the rule. Returns an empty string on success, otherwise why not.
  virtual std::string remove(const Rule& rule) = 0;
  // Packets the rule has dropped so far (0 when the backend cannot count).
  virtual uint64_t packetsDropped(const Rule& rule) = 0;
  // The counters of each of `rules` (same order), read in one go: called
  // once per window on the uplink thread, never on the packet path. Rules
  // sharing one kernel entry report the same counters. False when the
  // backend cannot count (exec, dry-run): summaries then carry none.
  virtual bool readDropCounts(const std::vector<const Rule*>& rules, std::vector<DropCount>& out) {
    (void)rules;
    (void)out;
    return false;
  }
  // After the aggregator's full list (orderSync) has been applied: removes
  // whatever the backend still holds from an earlier run of the sensor (a
  // crash, a restart) that is not among `keep`, the rules now in force.
  // Backends that keep nothing across runs do nothing.
  virtual void reconcile(const std::set<std::string>& keep) { (void)keep; }
};

// Logs what it would do and touches nothing: for trying Garda out, and for
// an OPD that wants detection without enforcement.
class DryRunEnforcer final : public Enforcer {
 public:
  const char* name() const noexcept override { return "dry-run"; }
  std::string apply(const Rule& rule) override;
  std::string remove(const Rule& rule) override;
  uint64_t packetsDropped(const Rule&) override { return 0; }
};

// The backend `enforce.backend` names. Throws common::ConfigError when this
// build cannot provide it.
std::unique_ptr<Enforcer> makeEnforcer(const common::SensorConfig& config);

// Takes what the configured backend left in the kernel off for good: the
// nftables table, or Garda's XDP program on the interface. For package
// removal (`garda-sensor --withdraw`); a running sensor leaves both in place
// on exit so that a restart keeps what is in force. Returns what it did;
// throws std::runtime_error when it cannot.
std::string withdrawEnforcement(const common::SensorConfig& config);

}  // namespace garda::sensor
