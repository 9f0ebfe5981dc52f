#include "aggregator/plan.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <unordered_set>

namespace garda::aggregator {
namespace {

constexpr size_t kLegitPerVictim = 64;
constexpr size_t kLegitVictims = 100'000;
constexpr size_t kLegitDelayWindows = 3;

uint8_t protocolOf(wire::Vector v, const common::IpAddress& victim) {
  switch (v) {
    case wire::Vector::TCP_SYN:
    case wire::Vector::TCP_SYN_ACK:
    case wire::Vector::TCP_OTHER: return 6;
    case wire::Vector::UDP:
    case wire::Vector::UDP_REFLECTION: return 17;
    case wire::Vector::ICMP: return victim.isV4() ? 1 : 58;
    default: return 0;
  }
}

common::Prefix host(const common::IpAddress& a) {
  return *common::Prefix::make(a, a.isV4() ? 32 : 128);
}

}  // namespace

Planner::Planner(Dispatcher& dispatcher, const common::AggregatorConfig& config,
                 std::array<double, kWireVectorCount> floorsPps)
    : dispatcher_(dispatcher), floors_(floorsPps) {
  reload(config);
}

void Planner::reload(const common::AggregatorConfig& config) {
  ttlNs_ = int64_t{config.orderTtlS} * 1'000'000'000;
  maxOrdersPerSensor_ = config.maxOrdersPerSensor;
  maxSourceBlocks_ = config.maxSourceBlocks;
  maxLegitShare_ = config.maxLegitShare;
}

void Planner::noteLegitimate(const std::string& sensorId, const common::IpAddress& victim,
                             const std::vector<common::IpAddress>& sources) {
  if (legit_.size() >= kLegitVictims) legit_.clear();  // crude bound; refilled within minutes
  auto& l = legit_[LegitKey{sensorId, victim}];
  l.pending.push_back(sources);
  if (l.pending.size() <= kLegitDelayWindows) return;
  for (const auto& s : l.pending.front()) {
    auto it = std::find(l.known.begin(), l.known.end(), s);
    if (it != l.known.end()) l.known.erase(it);
    l.known.push_back(s);  // most recent last
  }
  l.pending.erase(l.pending.begin());
  if (l.known.size() > kLegitPerVictim)
    l.known.erase(l.known.begin(), l.known.begin() + static_cast<long>(l.known.size() - kLegitPerVictim));
}

void Planner::noteAttacked(const std::string& sensorId, const common::IpAddress& victim) {
  auto it = legit_.find(LegitKey{sensorId, victim});
  if (it != legit_.end()) it->second.pending.clear();
}

std::pair<size_t, size_t> Planner::legitimateIn(const Incident& incident,
                                                const common::Prefix& p) const {
  size_t inside = 0, total = 0;
  std::unordered_set<LegitKey, LegitKeyHash> seen;
  for (const auto& m : incident.members) {
    LegitKey key{m.sensorId, m.victim};
    auto it = legit_.find(key);
    if (!seen.insert(std::move(key)).second) continue;
    if (it == legit_.end()) continue;
    for (const auto& s : it->second.known) {
      ++total;
      inside += p.contains(s);
    }
  }
  return {inside, total};
}

void Planner::order(const Incident& incident, OrderSpec spec, const std::string& key,
                    int64_t nowNs, size_t& created) {
  auto& mine = planned_[incident.id];
  if (mine.count(key)) return;  // renewed by renewAll()
  for (const auto& t : spec.targets)
    if (dispatcher_.plannedActiveAt(t) >= maxOrdersPerSensor_) {
      counters_.skippedCap++;
      spdlog::warn("planner: {}: not ordering {} at {}: max_orders_per_sensor = {} reached",
                   incident.id, spec.match.describe(), t, maxOrdersPerSensor_);
      mine[key] = {"", INT64_MAX};  // do not retry every second
      return;
    }
  spec.ttlNs = ttlNs_;
  spec.incidentId = incident.id;
  std::string error;
  auto id = dispatcher_.add(spec, "planner", nowNs, error, /*planned=*/true);
  if (!id) {
    counters_.refused++;
    spdlog::warn("planner: {}: {} refused: {}", incident.id, spec.match.describe(), error);
    mine[key] = {"", INT64_MAX};
    return;
  }
  counters_.planned++;
  ++created;
  mine[key] = {*id, nowNs + ttlNs_};
}

void Planner::renewAll(const std::string& incidentId, int64_t nowNs) {
  auto mine = planned_.find(incidentId);
  if (mine == planned_.end()) return;
  for (auto& [key, p] : mine->second) {
    // Every order of the open incident, whatever made it: a member the
    // detector calls quiet (its traffic is dropped before capture), or a
    // per-sensor source block whose incident has since gone city-wide.
    if (p.orderId.empty() || p.expiresAtNs - nowNs >= ttlNs_ / 2) continue;
    if (dispatcher_.renew(p.orderId, nowNs + ttlNs_, nowNs)) {
      p.expiresAtNs = nowNs + ttlNs_;
      counters_.renewed++;
    }
  }
}

int64_t Planner::renewIntervalNs() const noexcept {
  return std::clamp<int64_t>(ttlNs_ / 4, 250'000'000, 5'000'000'000);
}

std::optional<std::string> Planner::plan(const Incident& incident, int64_t nowNs) {
  if (incident.state == IncidentState::kResolved) {
    forget(incident.id);
    return std::nullopt;
  }
  // Renewed while the attack is seen or its orders still drop it; once
  // both stop, the orders lapse within a TTL even before it resolves.
  if (incident.underAttack()) renewAll(incident.id, nowNs);
  size_t created = 0;
  const bool cityWide = incident.cityWide();
  const bool realSources = !incident.spoofedSources && !incident.sources.empty();

  // Per member: reflection ports and spoofed floods are victim-specific.
  for (const auto& m : incident.members) {
    if (!m.active) continue;
    const auto victim = host(m.victim);
    OrderSpec spec;
    spec.targets = {m.sensorId};
    spec.match.destination = victim;
    if (m.vector == wire::Vector::UDP_REFLECTION && m.reflectionPort != 0) {
      spec.match.protocol = 17;
      spec.match.sourcePort = m.reflectionPort;
      spec.reason = m.classification + " toward " + m.victim.toString();
      order(incident, spec, "refl|" + m.sensorId + "|" + victim.toString() + "|" +
                                std::to_string(m.reflectionPort),
            nowNs, created);
    } else if (!realSources) {
      spec.match.action = common::OrderMatch::Action::kRateLimit;
      spec.match.protocol = protocolOf(m.vector, m.victim);
      // A tenth of the vector's detection floor: far under any flood, above
      // what one victim normally gets of that vector (a per-victim rate from
      // its baseline would be better; see docs/decisions.md).
      spec.match.ratePps = std::max<uint64_t>(
          100, static_cast<uint64_t>(floors_[static_cast<size_t>(m.vector) % floors_.size()] / 10));
      spec.reason = m.classification + " from spoofed sources toward " + m.victim.toString();
      if (spec.match.protocol == 0 && m.vector != wire::Vector::FRAGMENT) continue;
      order(incident, spec,
            "rate|" + m.sensorId + "|" + victim.toString() + "|" +
                std::to_string(spec.match.protocol),
            nowNs, created);
    }
  }

  // Real sources: block where they concentrate (/24), then the rest (/32).
  if (realSources) {
    std::vector<common::Prefix> blocks;
    for (const auto& p : incident.sourcePrefixes(3)) blocks.push_back(p.prefix);
    for (const auto& s : incident.sources) {
      bool covered = std::any_of(blocks.begin(), blocks.end(),
                                 [&](const common::Prefix& p) { return p.contains(s.address); });
      if (!covered) blocks.push_back(host(s.address));
    }
    size_t n = 0;
    for (const auto& b : blocks) {
      if (n >= maxSourceBlocks_) {
        counters_.skippedCap++;
        break;
      }
      // A prefix holding too large a share of the victims' recent
      // legitimate sources is left out, and so is one address that is
      // itself one of them, however many others there are: a citizen who
      // talks to several offices is among an attack's top sources at each,
      // yet must never be blocked city-wide.
      auto [inside, total] = legitimateIn(incident, b);
      const bool host = b.length128() == 128;
      if (inside > 0 &&
          (host || static_cast<double>(inside) > maxLegitShare_ * static_cast<double>(total))) {
        counters_.skippedLegit++;
        spdlog::info("planner: {}: not blocking {}: it holds {} of {} recent legitimate sources",
                     incident.id, b.toString(), inside, total);
        continue;
      }
      OrderSpec spec;
      spec.match.source = b;
      // Immunization: once two or more OPDs see it, every sensor blocks it.
      if (!cityWide) spec.targets = incident.sensors();
      spec.reason = incident.classification() + (cityWide ? " (city-wide)" : "") + " source";
      order(incident, spec, "src|" + b.toString() + (cityWide ? "|city" : ""), nowNs, created);
      ++n;
    }
  }
  if (created == 0) return std::nullopt;
  return std::to_string(created) + " order" + (created == 1 ? "" : "s") + " planned";
}

}  // namespace garda::aggregator
