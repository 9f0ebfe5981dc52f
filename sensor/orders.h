#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/ip.h"
#include "schemas/garda.capnp.h"
#include "sensor/enforce/enforcer.h"

namespace garda::sensor {

// What the sensor tells the aggregator about one order.
struct OrderReportOut {
  std::string orderId;
  wire::OrderState state = wire::OrderState::APPLIED;
  std::string reason;
  uint64_t packetsDropped = 0;
  int64_t atNs = 0;
};

// One active rule's counters as a summary carries them.
struct OrderDropCount {
  std::string orderId;
  DropCount count;
};

struct OrderCounters {
  uint64_t applied = 0;
  uint64_t rejected = 0;
  uint64_t expired = 0;
  uint64_t removed = 0;
  uint64_t syncs = 0;
};

// The sensor's side of the order channel: checks every order against the
// sensor's own safety rules (never-block list, rule cap, expiry, rules that
// would match everything), hands the good ones to the enforcer, expires them
// on time, and reconciles with the aggregator's full list after each hello
// (orderSync). Every call returns the reports to send. Single-threaded.
class OrderManager {
 public:
  OrderManager(const common::SensorConfig& config, Enforcer& enforcer);

  // One order (or, with order.remove, its withdrawal).
  std::vector<OrderReportOut> onOrder(wire::Order::Reader order, int64_t nowNs);
  // The aggregator's full set of active orders for this sensor: applies the
  // missing, refreshes the renewed, removes what is not in the list, and
  // reports the state of every order listed.
  std::vector<OrderReportOut> onSync(capnp::List<wire::Order>::Reader orders, int64_t nowNs);
  // Expires rules whose time has come.
  std::vector<OrderReportOut> tick(int64_t nowNs);
  // The drop counters of every active rule, read from the enforcer in one
  // go (once per window, on the uplink thread). Empty when the backend
  // cannot count.
  std::vector<OrderDropCount> dropCounts();
  // Removes every rule (shutdown of a backend that does not expire rules
  // itself). Reports nothing: the aggregator resyncs on the next hello.
  void clear();

  size_t active() const noexcept { return rules_.size(); }
  const OrderCounters& counters() const noexcept { return counters_; }
  Enforcer& enforcer() noexcept { return enforcer_; }

 private:
  // Applies one rule; the report says applied or rejected.
  OrderReportOut apply(const Rule& rule, int64_t nowNs);
  OrderReportOut removeRule(const std::string& id, wire::OrderState state, const char* why,
                            int64_t nowNs);
  // Empty when the rule may be enforced here, otherwise why not.
  std::string refusal(const Rule& rule, int64_t nowNs) const;

  const common::SensorConfig& config_;
  Enforcer& enforcer_;
  common::PrefixSet neverBlock_;
  std::map<std::string, Rule> rules_;
  OrderCounters counters_;
};

}  // namespace garda::sensor
