#include "sensor/orders.h"

#include <spdlog/spdlog.h>

#include <set>

namespace garda::sensor {
namespace {

OrderReportOut report(const std::string& id, wire::OrderState state, std::string reason,
                      int64_t nowNs, uint64_t dropped = 0) {
  return {id, state, std::move(reason), dropped, nowNs};
}

}  // namespace

OrderManager::OrderManager(const common::SensorConfig& config, Enforcer& enforcer)
    : config_(config), enforcer_(enforcer), neverBlock_(config.neverBlock) {}

std::string OrderManager::refusal(const Rule& rule, int64_t nowNs) const {
  // A never-block address may be neither the blocked source nor the
  // destination cut off.
  const auto& m = rule.match;
  if (m.source.length() > 0 && neverBlock_.overlaps(m.source))
    return "source " + m.source.toString() + " touches this sensor's never_block list";
  if (m.destination.length() > 0 && neverBlock_.overlaps(m.destination))
    return "destination " + m.destination.toString() + " touches this sensor's never_block list";
  if (m.matchesEverything()) return "matches all traffic";
  if (!neverBlock_.empty() && m.source.length() == 0 && m.destination.length() == 0)
    return "matches any source and any destination: it would touch the never_block list";
  if (m.action == common::OrderMatch::Action::kRateLimit && m.ratePps == 0)
    return "rate limit of 0 pps (use drop)";
  if (rule.expiresAtNs <= nowNs) return "already expired";
  if (!rules_.count(rule.id) && rules_.size() >= config_.maxRules)
    return "rule cap reached (enforce.max_rules = " + std::to_string(config_.maxRules) + ")";
  return {};
}

OrderReportOut OrderManager::apply(const Rule& rule, int64_t nowNs) {
  if (rule.expiresAtNs <= nowNs) {
    // Expired before it arrived (a late resend or a stale sync): not an
    // error, and nothing to install.
    if (rules_.count(rule.id)) return removeRule(rule.id, wire::OrderState::EXPIRED, "", nowNs);
    counters_.expired++;
    return report(rule.id, wire::OrderState::EXPIRED, "expired before it could be applied", nowNs);
  }
  if (auto why = refusal(rule, nowNs); !why.empty()) {
    counters_.rejected++;
    spdlog::warn("orders: rejected order {} ({}): {}", rule.id, rule.describe(), why);
    return report(rule.id, wire::OrderState::REJECTED, why, nowNs);
  }
  auto it = rules_.find(rule.id);
  if (it != rules_.end() && !(it->second.match == rule.match)) {
    // Same id, different match: replace, never widen silently.
    (void)enforcer_.remove(it->second);
    rules_.erase(it);
    it = rules_.end();
  }
  bool renewal = it != rules_.end();
  if (renewal && it->second.expiresAtNs == rule.expiresAtNs)
    return report(rule.id, wire::OrderState::APPLIED, "", nowNs, enforcer_.packetsDropped(rule));
  if (auto why = enforcer_.apply(rule); !why.empty()) {
    counters_.rejected++;
    spdlog::error("orders: {} could not apply order {} ({}): {}", enforcer_.name(), rule.id,
                  rule.describe(), why);
    return report(rule.id, wire::OrderState::REJECTED, enforcer_.name() + std::string(": ") + why,
                  nowNs);
  }
  rules_[rule.id] = rule;
  if (!renewal) {
    counters_.applied++;
    spdlog::info("orders: applied order {}: {} ({}, by {})", rule.id, rule.describe(), rule.reason,
                 rule.createdBy);
  }
  return report(rule.id, wire::OrderState::APPLIED, "", nowNs, enforcer_.packetsDropped(rule));
}

OrderReportOut OrderManager::removeRule(const std::string& id, wire::OrderState state,
                                        const char* why, int64_t nowNs) {
  auto it = rules_.find(id);
  if (it == rules_.end()) return report(id, state, why, nowNs);
  uint64_t dropped = enforcer_.packetsDropped(it->second);
  if (auto err = enforcer_.remove(it->second); !err.empty())
    spdlog::error("orders: {} could not remove order {}: {}", enforcer_.name(), id, err);
  (state == wire::OrderState::EXPIRED ? counters_.expired : counters_.removed)++;
  spdlog::info("orders: order {} {} ({})", id,
               state == wire::OrderState::EXPIRED ? "expired" : "removed", it->second.describe());
  rules_.erase(it);
  return report(id, state, why, nowNs, dropped);
}

std::vector<OrderReportOut> OrderManager::onOrder(wire::Order::Reader order, int64_t nowNs) {
  std::string id = order.getOrderId();
  if (order.getRemove())
    return {removeRule(id, wire::OrderState::REMOVED, "withdrawn by the aggregator", nowNs)};
  std::string why;
  auto rule = ruleFromWire(order, why);
  if (!rule) {
    counters_.rejected++;
    return {report(id, wire::OrderState::REJECTED, why, nowNs)};
  }
  return {apply(*rule, nowNs)};
}

std::vector<OrderReportOut> OrderManager::onSync(capnp::List<wire::Order>::Reader orders,
                                                 int64_t nowNs) {
  counters_.syncs++;
  std::vector<OrderReportOut> out;
  std::set<std::string> listed;
  for (auto o : orders) {
    listed.insert(o.getOrderId());
    auto r = onOrder(o, nowNs);
    out.insert(out.end(), r.begin(), r.end());
  }
  std::vector<std::string> stale;
  for (const auto& [id, rule] : rules_)
    if (!listed.count(id)) stale.push_back(id);
  for (const auto& id : stale)
    out.push_back(removeRule(id, wire::OrderState::REMOVED, "not in the aggregator's list", nowNs));
  std::set<std::string> inForce;
  for (const auto& [id, rule] : rules_) inForce.insert(id);
  enforcer_.reconcile(inForce);
  spdlog::info("orders: synced with the aggregator: {} listed, {} active, {} stale removed",
               orders.size(), rules_.size(), stale.size());
  return out;
}

std::vector<OrderReportOut> OrderManager::tick(int64_t nowNs) {
  std::vector<std::string> due;
  for (const auto& [id, rule] : rules_)
    if (rule.expiresAtNs <= nowNs) due.push_back(id);
  std::vector<OrderReportOut> out;
  for (const auto& id : due) out.push_back(removeRule(id, wire::OrderState::EXPIRED, "", nowNs));
  return out;
}

std::vector<OrderDropCount> OrderManager::dropCounts() {
  std::vector<const Rule*> rules;
  rules.reserve(rules_.size());
  for (const auto& [id, rule] : rules_) rules.push_back(&rule);
  std::vector<DropCount> counts;
  if (rules.empty() || !enforcer_.readDropCounts(rules, counts) || counts.size() != rules.size())
    return {};
  std::vector<OrderDropCount> out;
  out.reserve(rules.size());
  for (size_t i = 0; i < rules.size(); ++i) out.push_back({rules[i]->id, counts[i]});
  return out;
}

void OrderManager::clear() {
  for (const auto& [id, rule] : rules_) (void)enforcer_.remove(rule);
  rules_.clear();
}

}  // namespace garda::sensor
