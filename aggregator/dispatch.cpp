#include "aggregator/dispatch.h"

#include <capnp/message.h>
#include <fmt/core.h>
#include <spdlog/spdlog.h>

#include <ctime>

#include "common/duration.h"
#include "common/envelope.h"

namespace garda::aggregator {
namespace {

constexpr int64_t kTickNs = 100'000'000;
constexpr int64_t kMaxTtlNs = int64_t{30} * 24 * 3600 * 1'000'000'000;
constexpr size_t kMaxHistory = 200;

std::string prefixText(const common::Prefix& p) { return p.length() == 0 ? "any" : p.toString(); }

std::optional<common::Prefix> parsePrefixText(const std::string& text) {
  if (text == "any" || text.empty()) return common::Prefix();
  return common::Prefix::parse(text);
}

void fillOrder(wire::Order::Builder b, const OrderRecord& o, bool remove) {
  b.setOrderId(o.id);
  b.setIncidentId(o.spec.incidentId);
  o.spec.match.toWire(b);
  b.setExpiresAtNs(o.expiresAtNs);
  b.setReason(o.spec.reason);
  b.setCreatedBy(o.createdBy);
  b.setRemove(remove);
}

std::string describe(const OrderSpec& s) { return s.match.describe(); }

}  // namespace

Dispatcher::Dispatcher(Store& store, CityView& city, const common::AggregatorConfig& config,
                       Send send)
    : store_(store), city_(city), send_(std::move(send)) {
  reload(config);
  store_.forEachOrder([&](std::string_view id, std::string_view json) {
    auto j = nlohmann::json::parse(json, nullptr, false);
    auto o = j.is_discarded() ? std::nullopt : fromJson(j);
    if (!o) {
      spdlog::warn("orders: unreadable stored order {}", id);
      return;
    }
    orders_[o->id] = std::move(*o);
  });
  size_t active = 0;
  for (const auto& [id, o] : orders_) active += o.state == "active";
  if (!orders_.empty())
    spdlog::info("orders: {} kept, {} active", orders_.size(), active);
}

void Dispatcher::reload(const common::AggregatorConfig& config) {
  retryMs_ = config.orderRetryMs;
  proposalTtlNs_ = int64_t{config.proposalTtlS} * 1'000'000'000;
  mode_ = config.mode;
  sensorModes_.clear();
  for (const auto& e : config.sensors)
    if (e.mode) sensorModes_[e.id] = *e.mode;
  neverBlock_ = common::PrefixSet(config.neverBlock);
}

nlohmann::json Dispatcher::toJson(const OrderRecord& o) {
  nlohmann::json deliveries = nlohmann::json::object();
  for (const auto& [sensor, d] : o.deliveries)
    deliveries[sensor] = {{"state", d.state},
                          {"reason", d.reason},
                          {"at_ns", d.atNs},
                          {"sent_at_ns", d.sentAtNs},
                          {"boot_id", common::formatHex64(d.bootId)},
                          {"packets_dropped", d.packetsDropped},
                          {"sends", d.sends},
                          {"bytes_dropped", d.bytesDropped},
                          {"drop_pps", d.dropPps},
                          {"counters_window_ns", d.countersWindowNs}};
  const auto& s = o.spec;
  const auto& m = s.match;
  return {{"id", o.id},
          {"state", o.state},
          {"action", m.action == common::OrderMatch::Action::kDrop ? "drop" : "rate_limit"},
          {"source", prefixText(m.source)},
          {"destination", prefixText(m.destination)},
          {"protocol", m.protocol},
          {"source_port", m.sourcePort},
          {"destination_port", m.destinationPort},
          {"rate_pps", m.ratePps},
          {"reason", s.reason},
          {"incident_id", s.incidentId},
          {"targets", s.targets},
          {"city_wide", s.targets.empty()},
          {"created_by", o.createdBy},
          {"created_at_ns", o.createdAtNs},
          {"expires_at_ns", o.expiresAtNs},
          {"removed_by", o.removedBy},
          {"planned", o.planned},
          {"proposed_until_ns", o.proposedUntilNs},
          {"deliveries", deliveries},
          {"history", o.history}};
}

std::optional<OrderRecord> Dispatcher::fromJson(const nlohmann::json& j) {
  try {
    OrderRecord o;
    o.id = j.at("id").get<std::string>();
    o.state = j.value("state", "active");
    auto& s = o.spec;
    auto& m = s.match;
    m.action = j.value("action", "drop") == "rate_limit" ? common::OrderMatch::Action::kRateLimit
                                                         : common::OrderMatch::Action::kDrop;
    auto src = parsePrefixText(j.value("source", "any"));
    auto dst = parsePrefixText(j.value("destination", "any"));
    if (!src || !dst) return std::nullopt;
    m.source = *src;
    m.destination = *dst;
    m.protocol = j.value("protocol", uint8_t{0});
    m.sourcePort = j.value("source_port", uint16_t{0});
    m.destinationPort = j.value("destination_port", uint16_t{0});
    m.ratePps = j.value("rate_pps", uint64_t{0});
    s.reason = j.value("reason", "");
    s.incidentId = j.value("incident_id", "");
    s.targets = j.value("targets", std::vector<std::string>{});
    o.createdBy = j.value("created_by", "");
    o.createdAtNs = j.value("created_at_ns", int64_t{0});
    o.expiresAtNs = j.value("expires_at_ns", int64_t{0});
    s.ttlNs = o.expiresAtNs - o.createdAtNs;
    o.removedBy = j.value("removed_by", "");
    o.planned = j.value("planned", false);
    o.proposedUntilNs = j.value("proposed_until_ns", int64_t{0});
    auto found = j.find("deliveries");
    if (found != j.end() && found->is_object())
    for (const auto& [sensor, d] : found->items()) {
      Delivery del;
      del.state = d.value("state", "pending");
      del.reason = d.value("reason", "");
      del.atNs = d.value("at_ns", int64_t{0});
      del.sentAtNs = d.value("sent_at_ns", int64_t{0});
      del.bootId = std::stoull(d.value("boot_id", std::string("0")), nullptr, 16);
      del.packetsDropped = d.value("packets_dropped", uint64_t{0});
      del.bytesDropped = d.value("bytes_dropped", uint64_t{0});
      del.sends = d.value("sends", 0u);
      o.deliveries[sensor] = del;
    }
    o.history = j.value("history", nlohmann::json::array());
    return o;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void Dispatcher::persist(const OrderRecord& o) { store_.putOrder(o.id, toJson(o).dump()); }

void Dispatcher::note(OrderRecord& o, int64_t nowNs, const std::string& event,
                      const std::string& sensor, const std::string& detail) {
  if (o.history.size() >= kMaxHistory) o.history.erase(o.history.begin());
  o.history.push_back({{"at_ns", nowNs}, {"event", event}, {"sensor", sensor}, {"detail", detail}});
}

std::string Dispatcher::newId(int64_t nowNs) {
  std::time_t secs = static_cast<std::time_t>(nowNs / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  for (unsigned n = 1;; ++n) {
    std::string id = fmt::format("ord-{}-{}", stamp, n);
    if (!orders_.count(id)) return id;
  }
}

bool Dispatcher::targets(const OrderRecord& o, const std::string& sensorId) const {
  if (o.spec.targets.empty()) return city_.isListed(sensorId);
  for (const auto& t : o.spec.targets)
    if (t == sensorId) return true;
  return false;
}

std::vector<std::string> Dispatcher::targetIds(const OrderRecord& o) const {
  if (!o.spec.targets.empty()) return o.spec.targets;
  return {city_.listed().begin(), city_.listed().end()};
}

void Dispatcher::sendOrder(OrderRecord& o, const std::string& sensorId, bool remove,
                           int64_t nowNs) {
  capnp::MallocMessageBuilder message;
  fillOrder(common::initEnvelope(message).getBody().initOrder(), o, remove);
  auto& d = o.deliveries[sensorId];
  if (!send_(sensorId, common::encodeMessage(message))) return;
  counters_.sends++;
  if (d.sends > 0) counters_.resends++;
  d.sends++;
  d.sentAtNs = nowNs;
  if (!remove && d.state == "pending") {
    d.state = "sent";
    d.atNs = nowNs;
  }
}

std::optional<std::string> Dispatcher::add(const OrderSpec& spec, const std::string& who,
                                            int64_t nowNs, std::string& error, bool planned) {
  auto refuse = [&](std::string why) -> std::optional<std::string> {
    counters_.refused++;
    error = std::move(why);
    return std::nullopt;
  };
  if (spec.ttlNs <= 0 || spec.ttlNs > kMaxTtlNs) return refuse("ttl must be between 1 s and 30 days");
  const auto& m = spec.match;
  if (m.matchesEverything()) return refuse("the order would match all traffic");
  if (m.source.length() > 0 && neverBlock_.overlaps(m.source))
    return refuse("source " + m.source.toString() + " touches the city's never_block list");
  if (m.destination.length() > 0 && neverBlock_.overlaps(m.destination))
    return refuse("destination " + m.destination.toString() +
                  " touches the city's never_block list");
  if (m.action == common::OrderMatch::Action::kRateLimit && m.ratePps == 0)
    return refuse("a rate limit needs a rate above 0 pps");
  for (const auto& t : spec.targets)
    if (!city_.isListed(t)) return refuse("unknown sensor '" + t + "'");

  OrderRecord o;
  o.id = newId(nowNs);
  o.spec = spec;
  o.createdBy = who;
  o.createdAtNs = nowNs;
  o.expiresAtNs = nowNs + spec.ttlNs;
  o.planned = planned;
  for (const auto& t : targetIds(o)) {
    auto& d = o.deliveries[t];
    if (!planned) continue;
    switch (modeFor(t)) {
      case common::MitigationMode::kEnforce: break;
      case common::MitigationMode::kConfirm:
        d.state = "proposed";
        o.proposedUntilNs = nowNs + proposalTtlNs_;
        counters_.proposed++;
        break;
      case common::MitigationMode::kDryRun:
        d.state = "dry_run";
        counters_.dryRun++;
        break;
    }
    d.atNs = nowNs;
  }
  note(o, nowNs, "created", "", describe(spec) + " (" + spec.reason + ")");
  // Written (and audited) before anything is sent.
  persist(o);
  nlohmann::json audit = {{"at_ns", nowNs},
                          {"who", who},
                          {"action", planned ? "order_planned" : "order_add"},
                          {"order_id", o.id},
                          {"what", describe(spec)},
                          {"why", spec.reason},
                          {"incident_id", spec.incidentId},
                          {"expires_at_ns", o.expiresAtNs},
                          {"targets", spec.targets.empty() ? nlohmann::json("city")
                                                           : nlohmann::json(spec.targets)}};
  store_.appendAudit(nowNs, audit.dump());
  counters_.ordersAdded++;
  spdlog::info("orders: {} by {}: {} until {} ({})", o.id, who, describe(spec),
               common::formatTimeNs(o.expiresAtNs), spec.reason);
  auto& stored = orders_[o.id] = std::move(o);
  for (auto& [sensor, d] : stored.deliveries)
    if (d.state == "pending" && city_.isUp(sensor, nowNs)) sendOrder(stored, sensor, false, nowNs);
  persist(stored);
  return stored.id;
}

bool Dispatcher::remove(const std::string& id, const std::string& who, int64_t nowNs,
                        std::string& error) {
  auto it = orders_.find(id);
  if (it == orders_.end()) {
    error = "no order '" + id + "'";
    return false;
  }
  auto& o = it->second;
  if (o.state != "active") {
    error = "order " + id + " is already " + o.state;
    return false;
  }
  o.state = "removed";
  o.removedBy = who;
  note(o, nowNs, "removed", "", "by " + who);
  persist(o);
  store_.appendAudit(nowNs, nlohmann::json({{"at_ns", nowNs},
                                            {"who", who},
                                            {"action", "order_remove"},
                                            {"order_id", id},
                                            {"what", describe(o.spec)}})
                                .dump());
  counters_.ordersRemoved++;
  spdlog::info("orders: {} removed by {}", id, who);
  for (auto& [sensor, d] : o.deliveries)
    if ((d.state == "sent" || d.state == "applied") && city_.isUp(sensor, nowNs))
      sendOrder(o, sensor, true, nowNs);
  persist(o);
  return true;
}

bool Dispatcher::renew(const std::string& id, int64_t expiresAtNs, int64_t nowNs) {
  auto it = orders_.find(id);
  if (it == orders_.end() || it->second.state != "active") return false;
  auto& o = it->second;
  if (expiresAtNs <= o.expiresAtNs) return true;
  o.expiresAtNs = expiresAtNs;
  counters_.renewed++;
  note(o, nowNs, "renewed", "", "until " + common::formatTimeNs(expiresAtNs));
  for (auto& [sensor, d] : o.deliveries)
    if ((d.state == "sent" || d.state == "applied") && city_.isUp(sensor, nowNs))
      sendOrder(o, sensor, false, nowNs);
  persist(o);
  return true;
}

OrderRecord* Dispatcher::decide(const std::string& id, const char* state, int64_t nowNs,
                                std::string& error) {
  auto it = orders_.find(id);
  size_t n = 0;
  if (it != orders_.end() && it->second.state == "active")
    for (auto& [sensor, d] : it->second.deliveries)
      if (d.state == "proposed") {
        d.state = state;
        d.atNs = nowNs;
        ++n;
      }
  if (n == 0) {
    error = "no proposal '" + id + "' waiting for approval";
    return nullptr;
  }
  return &it->second;
}

void Dispatcher::auditDecision(const OrderRecord& o, const std::string& who, const char* action,
                               int64_t nowNs) {
  store_.appendAudit(nowNs, nlohmann::json({{"at_ns", nowNs},
                                            {"who", who},
                                            {"action", action},
                                            {"order_id", o.id},
                                            {"what", describe(o.spec)},
                                            {"incident_id", o.spec.incidentId}})
                                .dump());
}

bool Dispatcher::approve(const std::string& id, const std::string& who, int64_t nowNs,
                         std::string& error) {
  OrderRecord* o = decide(id, "pending", nowNs, error);
  if (!o) return false;
  counters_.approved++;
  note(*o, nowNs, "approved", "", "by " + who);
  auditDecision(*o, who, "order_approve", nowNs);
  for (auto& [sensor, d] : o->deliveries)
    if (d.state == "pending" && city_.isUp(sensor, nowNs)) sendOrder(*o, sensor, false, nowNs);
  persist(*o);
  return true;
}

bool Dispatcher::decline(const std::string& id, const std::string& who, int64_t nowNs,
                         std::string& error) {
  OrderRecord* o = decide(id, "declined", nowNs, error);
  if (!o) return false;
  counters_.declined++;
  note(*o, nowNs, "declined", "", "by " + who);
  auditDecision(*o, who, "order_decline", nowNs);
  persist(*o);
  return true;
}

common::MitigationMode Dispatcher::modeFor(const std::string& sensorId) const {
  auto it = sensorModes_.find(sensorId);
  return it == sensorModes_.end() ? mode_ : it->second;
}

size_t Dispatcher::plannedActiveAt(const std::string& sensorId) const {
  size_t n = 0;
  for (const auto& [id, o] : orders_) {
    if (!o.planned || o.state != "active") continue;
    auto d = o.deliveries.find(sensorId);
    if (d != o.deliveries.end() && d->second.state != "declined" && d->second.state != "lapsed" &&
        d->second.state != "rejected")
      ++n;
  }
  return n;
}

void Dispatcher::onHello(const std::string& sensorId, int64_t nowNs) {
  capnp::MallocMessageBuilder message;
  std::vector<OrderRecord*> active;
  for (auto& [id, o] : orders_) {
    if (o.state != "active" || o.expiresAtNs <= nowNs || !targets(o, sensorId)) continue;
    auto d = o.deliveries.find(sensorId);
    const std::string state = d == o.deliveries.end() ? "pending" : d->second.state;
    if (state == "pending" || state == "sent" || state == "applied" || state == "rejected")
      active.push_back(&o);
  }
  auto sync = common::initEnvelope(message).getBody().initOrderSync();
  // The answer to every hello: it also tells the sensor that this
  // aggregator takes its summaries in batches (SensorIngest reads them).
  sync.setTakesSummaryBatches(true);
  auto list = sync.initOrders(static_cast<unsigned>(active.size()));
  for (size_t i = 0; i < active.size(); ++i)
    fillOrder(list[static_cast<unsigned>(i)], *active[i], false);
  if (!send_(sensorId, common::encodeMessage(message))) return;
  counters_.syncs++;
  for (auto* o : active) {
    auto& d = o->deliveries[sensorId];
    d.sends++;
    d.sentAtNs = nowNs;
    if (d.state == "pending") d.state = "sent";
  }
  if (!active.empty())
    spdlog::info("orders: sent {} active orders to sensor {} (orderSync)", active.size(), sensorId);
}

void Dispatcher::onReport(const std::string& sensorId, wire::OrderReport::Reader r, int64_t nowNs) {
  counters_.reports++;
  auto it = orders_.find(r.getOrderId());
  if (it == orders_.end()) {
    counters_.reportsUnknown++;
    return;
  }
  auto& o = it->second;
  const char* state = "applied";
  switch (r.getState()) {
    case wire::OrderState::APPLIED: state = "applied"; break;
    case wire::OrderState::REJECTED: state = "rejected"; break;
    case wire::OrderState::EXPIRED: state = "expired"; break;
    case wire::OrderState::REMOVED: state = "removed"; break;
  }
  auto& d = o.deliveries[sensorId];
  bool changed = d.state != state || d.bootId != r.getBootId();
  d.packetsDropped = r.getPacketsDropped();
  if (!changed) return;
  d.state = state;
  d.reason = r.getReason();
  d.atNs = nowNs;
  d.bootId = r.getBootId();
  note(o, nowNs, state, sensorId, d.reason);
  if (r.getState() == wire::OrderState::REJECTED)
    spdlog::warn("orders: sensor {} rejected {}: {}", sensorId, o.id, d.reason);
  // Written at the next tick (at most kTickNs later), with the other
  // reports that arrive meanwhile. A crash before it loses only delivery
  // states: the order is resent and reported again.
  reported_.insert(o.id);
}

void Dispatcher::persistReported() {
  for (const auto& id : reported_)
    if (auto it = orders_.find(id); it != orders_.end()) persist(it->second);
  reported_.clear();
}

void Dispatcher::onCounters(const std::string& sensorId, wire::Summary::Reader summary) {
  // Most summaries list no counters, from sensors whose deliveries all drop
  // nothing already: nothing to do, without a walk over every order.
  if (summary.getOrderCounters().size() == 0 && !dropping_.count(sensorId)) return;
  const int64_t windowNs = summary.getWindowStartNs();
  const int64_t windowLenNs = int64_t{summary.getWindowMs()} * 1'000'000;
  bool drops = false;
  std::map<std::string_view, const wire::OrderCounter::Reader> listed;
  for (auto c : summary.getOrderCounters())
    listed.emplace(std::string_view(c.getOrderId().cStr(), c.getOrderId().size()), c);
  size_t matched = 0;
  for (auto& [id, o] : orders_) {
    auto d = o.deliveries.find(sensorId);
    if (d == o.deliveries.end()) continue;
    Delivery& del = d->second;
    auto c = listed.find(id);
    matched += c != listed.end();
    if (windowNs < del.countersWindowNs) {  // an older window, arriving late
      drops = drops || del.dropPps != 0;
      continue;
    }
    if (c == listed.end()) {
      del.dropPps = 0;
      continue;
    }
    counters_.counterUpdates++;
    const uint64_t packets = c->second.getPackets();
    // A counter that went down is a new rule (sensor restart, re-applied):
    // all of it is new.
    const uint64_t delta = packets >= del.countersPackets ? packets - del.countersPackets : packets;
    const int64_t spanNs = del.countersWindowNs > 0 && windowNs > del.countersWindowNs
                               ? windowNs - del.countersWindowNs
                               : windowLenNs;
    del.dropPps = spanNs > 0 ? static_cast<double>(delta) * 1e9 / static_cast<double>(spanNs) : 0;
    drops = drops || del.dropPps != 0;
    del.packetsDropped = packets;
    del.countersPackets = packets;
    del.bytesDropped = c->second.getBytes();
    del.countersWindowNs = windowNs;
  }
  counters_.countersUnknown += listed.size() - matched;
  if (drops || !listed.empty())
    dropping_.insert(sensorId);
  else
    dropping_.erase(sensorId);
}

double Dispatcher::incidentDropPps(const std::string& incidentId,
                                   const std::string& sensorId) const {
  double pps = 0;
  for (const auto& [id, o] : orders_) {
    if (o.state != "active" || o.spec.incidentId != incidentId) continue;
    if (auto d = o.deliveries.find(sensorId); d != o.deliveries.end()) pps += d->second.dropPps;
  }
  return pps;
}

nlohmann::json Dispatcher::incidentOrdersJson(const std::string& incidentId) const {
  nlohmann::json list = nlohmann::json::array();
  if (incidentId.empty()) return list;
  for (const auto& [id, o] : orders_) {
    if (o.spec.incidentId != incidentId) continue;
    nlohmann::json at = nlohmann::json::object();
    for (const auto& [sensor, d] : o.deliveries)
      at[sensor] = {{"state", d.state},
                    {"packets_dropped", d.packetsDropped},
                    {"bytes_dropped", d.bytesDropped},
                    {"drop_pps", d.dropPps}};
    list.push_back({{"id", id},
                    {"state", o.state},
                    {"what", describe(o.spec)},
                    {"expires_at_ns", o.expiresAtNs},
                    {"sensors", at}});
  }
  return list;
}

void Dispatcher::tick(int64_t nowNs) {
  if (nowNs < nextTickNs_) return;
  nextTickNs_ = nowNs + kTickNs;
  persistReported();
  const int64_t retryNs = int64_t{retryMs_} * 1'000'000;
  for (auto& [id, o] : orders_) {
    if (o.state != "active") continue;
    if (o.expiresAtNs <= nowNs) {
      o.state = "expired";
      note(o, nowNs, "expired", "", "");
      counters_.ordersExpired++;
      persist(o);
      continue;
    }
    bool sent = false;
    if (o.proposedUntilNs > 0 && nowNs >= o.proposedUntilNs) {
      for (auto& [sensor, d] : o.deliveries)
        if (d.state == "proposed") {
          d.state = "lapsed";
          d.atNs = nowNs;
          sent = true;
        }
      if (sent) note(o, nowNs, "lapsed", "", "no operator approved it in time");
      o.proposedUntilNs = 0;
    }
    // A city-wide order also reaches sensors listed after it was made.
    for (const auto& t : targetIds(o)) {
      auto [dit, fresh] = o.deliveries.try_emplace(t);
      auto& d = dit->second;
      if (fresh && o.planned && modeFor(t) != common::MitigationMode::kEnforce)
        d.state = modeFor(t) == common::MitigationMode::kDryRun ? "dry_run" : "lapsed";
      bool due = d.state == "pending" || (d.state == "sent" && nowNs - d.sentAtNs >= retryNs);
      if (due && city_.isUp(t, nowNs)) {
        sendOrder(o, t, false, nowNs);
        sent = true;
      }
    }
    if (sent) persist(o);
  }
}

const OrderRecord* Dispatcher::find(const std::string& id) const {
  auto it = orders_.find(id);
  return it == orders_.end() ? nullptr : &it->second;
}

nlohmann::json Dispatcher::listJson(int64_t nowNs) const {
  constexpr int64_t kRecentNs = int64_t{600} * 1'000'000'000;
  nlohmann::json list = nlohmann::json::array();
  for (auto it = orders_.rbegin(); it != orders_.rend(); ++it)
    if (it->second.state == "active" || it->second.expiresAtNs > nowNs - kRecentNs)
      list.push_back(toJson(it->second));
  return {{"orders", list}};
}

}  // namespace garda::aggregator
