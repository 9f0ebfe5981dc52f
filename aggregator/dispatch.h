#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "aggregator/city_view.h"
#include "aggregator/store.h"
#include "common/config.h"
#include "common/ip.h"
#include "common/order_match.h"
#include "schemas/garda.capnp.h"

namespace garda::aggregator {

// What an order should do, before it has an id.
struct OrderSpec {
  common::OrderMatch match;
  int64_t ttlNs = 0;
  std::string reason;
  std::string incidentId;            // empty for a manual block
  std::vector<std::string> targets;  // sensor ids; empty: every sensor of the city
};

// Where one order stands at one sensor.
struct Delivery {
  // pending | sent | applied | rejected | expired | removed, and for planner
  // orders held back by the sensor's mode: proposed (confirm: waiting for an
  // operator), declined (an operator said no), lapsed (nobody approved in
  // time), dry_run (planned and audited, never sent)
  std::string state = "pending";
  std::string reason;
  int64_t atNs = 0;               // last change
  int64_t sentAtNs = 0;           // last send (for retries)
  uint64_t bootId = 0;            // the sensor boot that reported
  uint64_t packetsDropped = 0;
  unsigned sends = 0;
  // From the sensor's summaries (orderCounters): cumulative bytes dropped,
  // the drop rate over the latest window, and that window's start.
  uint64_t bytesDropped = 0;
  double dropPps = 0;
  int64_t countersWindowNs = 0;
  uint64_t countersPackets = 0;  // the rate's base: packets in that summary
};

struct OrderRecord {
  std::string id;
  OrderSpec spec;
  std::string createdBy;
  int64_t createdAtNs = 0;
  int64_t expiresAtNs = 0;
  std::string state = "active";   // active | expired | removed
  std::string removedBy;
  bool planned = false;           // made by the planner (modes apply), not by an operator
  int64_t proposedUntilNs = 0;    // confirm mode: proposals lapse after this
  std::map<std::string, Delivery> deliveries;
  nlohmann::json history = nlohmann::json::array();  // {at_ns, event, sensor, detail}
};

struct DispatchCounters {
  uint64_t ordersAdded = 0;
  uint64_t ordersRemoved = 0;
  uint64_t ordersExpired = 0;
  uint64_t sends = 0;
  uint64_t resends = 0;
  uint64_t syncs = 0;
  uint64_t reports = 0;
  uint64_t reportsUnknown = 0;  // for an order id we do not have
  uint64_t refused = 0;         // orders refused by the aggregator's own checks
  uint64_t renewed = 0;
  uint64_t proposed = 0;
  uint64_t approved = 0;
  uint64_t declined = 0;
  uint64_t dryRun = 0;
  uint64_t counterUpdates = 0;   // (order, sensor) counters taken from summaries
  uint64_t countersUnknown = 0;  // for an order id we do not have, or not sent there
};

// The order channel's aggregator end: every order is written to the store
// (and audited) before it is sent; each sensor's answer (applied, rejected,
// expired, removed) is kept per sensor; an order without an answer is resent
// every order_retry_ms while its sensor is up; on every hello the sensor gets
// an orderSync with all its active orders. Single-threaded (the aggregator's
// loop); sends through `send`, which addresses a sensor by id.
class Dispatcher {
 public:
  using Send = std::function<bool(const std::string& sensorId, const std::string& bytes)>;

  Dispatcher(Store& store, CityView& city, const common::AggregatorConfig& config, Send send);
  void reload(const common::AggregatorConfig& config);

  // Validates, persists, audits and sends. Returns the new order, or nullopt
  // with `error` saying why it was refused. A `planned` order (the planner's)
  // follows each target sensor's mode: sent (enforce), proposed (confirm) or
  // only recorded (dry-run); an operator's order is always sent.
  std::optional<std::string> add(const OrderSpec& spec, const std::string& who, int64_t nowNs,
                                 std::string& error, bool planned = false);
  // Moves an active order's expiry later and resends it where it is in force.
  bool renew(const std::string& id, int64_t expiresAtNs, int64_t nowNs);
  // Confirm mode: an operator approves (sent to its proposed sensors) or
  // declines a proposal. False with `error` if it is not one.
  bool approve(const std::string& id, const std::string& who, int64_t nowNs, std::string& error);
  bool decline(const std::string& id, const std::string& who, int64_t nowNs, std::string& error);
  // Active planner orders that target (or reach) this sensor.
  size_t plannedActiveAt(const std::string& sensorId) const;
  common::MitigationMode modeFor(const std::string& sensorId) const;
  // Withdraws an active order everywhere. False with `error` if it cannot.
  bool remove(const std::string& id, const std::string& who, int64_t nowNs, std::string& error);

  void onHello(const std::string& sensorId, int64_t nowNs);
  void onReport(const std::string& sensorId, wire::OrderReport::Reader report, int64_t nowNs);
  // A fresh summary's order counters: the latest cumulative counts per
  // (order, sensor) and the drop rate since the sensor's previous window
  // (an order the summary leaves out drops nothing there now). In memory
  // only: shown by `block list`, persisted with the order's next change.
  void onCounters(const std::string& sensorId, wire::Summary::Reader summary);
  // What the incident's active orders dropped per second at `sensorId` in
  // its latest window.
  double incidentDropPps(const std::string& incidentId, const std::string& sensorId) const;
  // The incident's orders and their counters per sensor, for `incident show`.
  nlohmann::json incidentOrdersJson(const std::string& incidentId) const;
  // Expiry and retries, and writes the orders whose reports changed them;
  // call often (every loop turn is fine).
  void tick(int64_t nowNs);
  // Writes the orders reports changed since the last tick (at shutdown).
  void persistReported();

  // `block list`: active orders and those that ended (expired or removed)
  // within the last 10 minutes, newest first.
  nlohmann::json listJson(int64_t nowNs) const;
  const OrderRecord* find(const std::string& id) const;
  const DispatchCounters& counters() const noexcept { return counters_; }

  static nlohmann::json toJson(const OrderRecord& o);
  static std::optional<OrderRecord> fromJson(const nlohmann::json& j);

 private:
  bool targets(const OrderRecord& o, const std::string& sensorId) const;
  std::vector<std::string> targetIds(const OrderRecord& o) const;
  void sendOrder(OrderRecord& o, const std::string& sensorId, bool remove, int64_t nowNs);
  // Moves an active order's proposed deliveries to `state`; nullptr (with
  // `error`) when it has none.
  OrderRecord* decide(const std::string& id, const char* state, int64_t nowNs, std::string& error);
  void auditDecision(const OrderRecord& o, const std::string& who, const char* action,
                     int64_t nowNs);
  void persist(const OrderRecord& o);
  void note(OrderRecord& o, int64_t nowNs, const std::string& event, const std::string& sensor,
            const std::string& detail);
  std::string newId(int64_t nowNs);

  Store& store_;
  CityView& city_;
  Send send_;
  unsigned retryMs_ = 5000;
  int64_t proposalTtlNs_ = 0;
  common::MitigationMode mode_ = common::MitigationMode::kEnforce;
  std::map<std::string, common::MitigationMode> sensorModes_;
  common::PrefixSet neverBlock_;
  std::map<std::string, OrderRecord> orders_;
  // Sensors some delivery of which has a drop rate (onCounters sets them).
  std::set<std::string, std::less<>> dropping_;
  // Orders changed by reports and not yet written: one write per order per
  // tick, not one per report (a city-wide order to 1000 sensors gets 1000
  // reports, and its record holds all 1000 deliveries).
  std::set<std::string, std::less<>> reported_;
  int64_t nextTickNs_ = 0;
  DispatchCounters counters_;
};

}  // namespace garda::aggregator
