#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "aggregator/correlate.h"
#include "aggregator/dispatch.h"
#include "common/config.h"
#include "common/ip.h"

namespace garda::aggregator {

struct PlanCounters {
  uint64_t planned = 0;         // orders created
  uint64_t renewed = 0;
  uint64_t refused = 0;         // refused by the dispatcher (never-block, ...)
  uint64_t skippedLegit = 0;    // source blocks left out: they would cut off legitimate sources
  uint64_t skippedCap = 0;      // left out: max_orders_per_sensor or max_source_blocks
};

// Turns incidents into orders (DESIGN.md, "Planning by vector"):
// - reflection (UDP from a reflection port): drop (udp, that source port)
//   toward the victim, at the victim's sensor;
// - real sources (not spoofed): drop the /24s where they concentrate and the
//   other top sources as /32s; city-wide once the incident spans two or more
//   OPDs (immunization: every sensor gets them, attacked yet or not);
// - spoofed random sources: rate-limit that protocol toward the victim at the
//   vector's detection floor / 10.
// Every order has a TTL (order_ttl_s), renewed at half-life while the
// incident is under attack (a member the detector sees, or its orders still
// dropping above the floor: Incident::underAttack), all its orders, also
// those of members gone quiet and per-sensor twins of city-wide blocks; left
// to expire once the attack is over. Safety: the dispatcher refuses what
// touches never_block; the planner also leaves out a source block that would
// cut off more than max_legit_share of a victim's recent legitimate sources
// (its top sources in normal windows), and stops at max_orders_per_sensor and
// max_source_blocks. Single-threaded.
class Planner {
 public:
  Planner(Dispatcher& dispatcher, const common::AggregatorConfig& config,
          std::array<double, kWireVectorCount> floorsPps);
  void reload(const common::AggregatorConfig& config);

  // Plans (or renews) the orders for an open incident. Returns a line for the
  // incident's timeline when it created orders, nothing otherwise.
  std::optional<std::string> plan(const Incident& incident, int64_t nowNs);
  // The top sources of a victim in a window without anomaly: its legitimate
  // clients, which no order may cut off wholesale.
  // They count only after kLegitDelayWindows more windows without an anomaly:
  // the first window of an attack is often not yet anomalous, and its
  // sources must not be taken for clients.
  void noteLegitimate(const std::string& sensorId, const common::IpAddress& victim,
                      const std::vector<common::IpAddress>& sources);
  // The victim is anomalous in this window: what was pending is not trusted.
  void noteAttacked(const std::string& sensorId, const common::IpAddress& victim);
  // Renews, at half-life, every order planned for the open incident.
  void renewAll(const std::string& incidentId, int64_t nowNs);
  // How often renewals must be checked so none is missed: a quarter TTL.
  int64_t renewIntervalNs() const noexcept;
  // Forgets a resolved incident (its orders run to their TTL).
  void forget(const std::string& incidentId) { planned_.erase(incidentId); }

  const PlanCounters& counters() const noexcept { return counters_; }
  // How many of the incident's victims' trusted legitimate sources `p`
  // holds, and of how many.
  std::pair<size_t, size_t> legitimateIn(const Incident& incident, const common::Prefix& p) const;
  const Dispatcher& dispatcher() const noexcept { return dispatcher_; }

 private:
  struct Planned {
    std::string orderId;
    int64_t expiresAtNs = 0;
  };
  void order(const Incident& incident, OrderSpec spec, const std::string& key, int64_t nowNs,
             size_t& created);

  Dispatcher& dispatcher_;
  std::array<double, kWireVectorCount> floors_;
  int64_t ttlNs_ = 0;
  unsigned maxOrdersPerSensor_ = 1000;
  unsigned maxSourceBlocks_ = 32;
  double maxLegitShare_ = 0.1;
  // incident id -> match key -> its order
  std::map<std::string, std::map<std::string, Planned>> planned_;
  // (sensor, victim) -> recent legitimate sources (bounded), and the windows
  // still waiting to be trusted.
  struct Legit {
    std::vector<common::IpAddress> known;
    std::vector<std::vector<common::IpAddress>> pending;
  };
  struct LegitKey {
    std::string sensorId;
    common::IpAddress victim;
    bool operator==(const LegitKey&) const = default;
  };
  struct LegitKeyHash {
    size_t operator()(const LegitKey& k) const noexcept {
      return std::hash<std::string>{}(k.sensorId) ^ common::IpAddressHash{}(k.victim);
    }
  };
  std::unordered_map<LegitKey, Legit, LegitKeyHash> legit_;
  PlanCounters counters_;
};

}  // namespace garda::aggregator
