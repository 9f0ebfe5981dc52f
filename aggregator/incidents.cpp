#include "aggregator/incidents.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "common/duration.h"
#include "common/envelope.h"

namespace garda::aggregator {
namespace {

constexpr const char* kSequenceKey = "incident_next_sequence";
constexpr int64_t kTickNs = 1'000'000'000;
constexpr int64_t kFlushNs = 10'000'000'000;

// The list entry: the incident without its members and timeline.
nlohmann::json summaryOf(nlohmann::json j) {
  j.erase("members");
  j.erase("timeline");
  return j;
}

std::string victimsText(const Incident& inc) {
  std::string out;
  for (const auto& v : inc.victims()) out += (out.empty() ? "" : ", ") + v.toString();
  return out;
}

std::string sensorsText(const Incident& inc) {
  std::string out;
  for (const auto& s : inc.sensors()) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

DetectConfig detectConfigFrom(const common::DetectSettings& s) {
  static_assert(std::tuple_size_v<decltype(s.floorPps)> == kWireVectorCount);
  DetectConfig c;
  c.k = s.k;
  c.sustainMs = s.sustainMs;
  c.clearMs = s.clearMs;
  c.warmupMs = s.warmupMs;
  c.baselineHalfLifeMs = s.baselineHalfLifeMs;
  c.floorPps = s.floorPps;
  c.reflectionTotalFloorPps = s.reflectionTotalFloorPps;
  c.reflectionFloorBps = s.reflectionFloorBps;
  c.reflectionMinAvgBytes = s.reflectionMinAvgBytes;
  return c;
}

CorrelateConfig correlateConfigFrom(const common::CorrelateSettings& s) {
  CorrelateConfig c;
  c.resolveAfterMs = s.resolveAfterMs;
  c.idleResolveMs = s.idleResolveMs;
  c.joinWindowMs = s.joinWindowMs;
  return c;
}

IncidentTracker::IncidentTracker(Store& store, int64_t nowNs, DetectConfig detect,
                                 CorrelateConfig correlate)
    : store_(store), floorsPps_(detect.floorPps), detector_(detect), correlator_(correlate) {
  size_t baselines = 0, unreadable = 0;
  store_.forEachBaseline([&](std::string_view k, std::string_view v) {
    (detector_.load(k, v) ? baselines : unreadable)++;
  });
  if (auto seq = store_.getMeta(kSequenceKey)) {
    try {
      correlator_.setNextSequence(std::stoull(*seq));
    } catch (const std::exception&) {
      spdlog::warn("incidents: unreadable id counter '{}'", *seq);
    }
  }
  // Open incidents sort last (newest ids); stop at the first resolved run
  // deep enough to be sure (an incident stays open at most a few minutes).
  size_t restored = 0, resolvedSeen = 0;
  store_.forEachIncidentNewestFirst([&](std::string_view id, std::string_view json) {
    auto j = nlohmann::json::parse(json, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      spdlog::warn("incidents: unreadable stored incident {}", id);
      return true;
    }
    if (j.value("state", "") == "resolved") return ++resolvedSeen < 1000;
    try {
      correlator_.restore(j, nowNs);
      ++restored;
    } catch (const std::exception& e) {
      spdlog::warn("incidents: cannot restore {}: {}", id, e.what());
    }
    return true;
  });
  if (baselines + restored + unreadable > 0)
    spdlog::info("incidents: {} baselines and {} open incidents taken back ({} unreadable)",
                 baselines, restored, unreadable);
}

IncidentTracker::~IncidentTracker() {
  try {
    flush();
    // Figure-only changes held back: stored (not planned or told again).
    for (const auto& id : heldBack_)
      if (const Incident* inc = correlator_.find(id)) store(*inc);
  } catch (const std::exception& e) {
    spdlog::error("incidents: baselines or incidents not written at shutdown: {}", e.what());
  }
}

void IncidentTracker::store(const Incident& inc) {
  store_.putIncident(inc.id, incidentToJson(inc).dump());
}

void IncidentTracker::persist(const std::vector<IncidentChange>& changes, int64_t nowNs) {
  bool opened = false;
  for (const auto& c : changes) {
    const Incident* inc = correlator_.find(c.id);
    if (!inc) continue;
    if (c.kind == IncidentChangeKind::kUpdated && !c.timeline) {
      auto last = persistedNs_.find(c.id);
      if (last != persistedNs_.end() && nowNs - last->second < kCoalesceNs) {
        heldBack_.insert(c.id);
        continue;
      }
    }
    if (c.kind == IncidentChangeKind::kResolved) {
      persistedNs_.erase(c.id);
    } else {
      persistedNs_[c.id] = nowNs;
    }
    heldBack_.erase(c.id);
    if (planner_ && c.kind != IncidentChangeKind::kResolved) {
      // Plan first, so the stored incident already says it is mitigating.
      auto text = planner_->plan(*inc, nowNs);
      if (text && inc->state == IncidentState::kOpen) (void)correlator_.setMitigating(c.id, nowNs, *text);
    } else if (planner_) {
      planner_->forget(c.id);
    }
    store(*inc);
    for (const auto& observer : observers_) observer(*inc, c, nowNs);
    switch (c.kind) {
      case IncidentChangeKind::kOpened:
        opened = true;
        spdlog::warn("INCIDENT {} opened: {} against {} seen by {}, {:.0f} pps, severity {}",
                     inc->id, inc->classification(), victimsText(*inc), sensorsText(*inc),
                     inc->peakPps, severityName(inc->severity));
        break;
      case IncidentChangeKind::kResolved:
        spdlog::info("INCIDENT {} resolved: {} against {}, peak {:.0f} pps", inc->id,
                     inc->classification(), victimsText(*inc), inc->peakPps);
        break;
      case IncidentChangeKind::kUpdated:
        if (c.timeline && !inc->timeline.empty())
          spdlog::info("INCIDENT {}: {}", inc->id, inc->timeline.back().text);
        break;
    }
  }
  if (opened) store_.putMeta(kSequenceKey, std::to_string(correlator_.nextSequence()));
}

void IncidentTracker::noteLegitimate(wire::Summary::Reader summary, const DetectBatch& batch) {
  std::string sensor = summary.getSensorId();
  const int64_t start = summary.getWindowStartNs();
  auto next = nextLearnNs_.try_emplace(sensor, start).first;
  // Due, or the sensor's clock went back (a new boot, a reset clock).
  const bool learn = start >= next->second || next->second - start > 2 * kLearnEveryNs;
  if (!learn) {
    // What was pending for an anomalous victim must still be dropped. (A
    // victim under an incident without an anomaly in this window adds
    // nothing here, and the next lesson leaves it out.)
    for (const auto& a : batch.anomalies) planner_->noteAttacked(sensor, a.victim);
    return;
  }
  next->second = start + kLearnEveryNs;
  // A victim of an open incident is not learnt from either: the window in
  // which an order cuts the attack off is under the threshold yet full of
  // attack sources, which must never pass for clients.
  std::vector<common::IpAddress> underIncident;
  for (const Incident* inc : correlator_.openIncidents()) {
    // The incident's index has the sensor's members: not a scan of all.
    auto at = inc->index().sensors.find(sensor);
    if (at == inc->index().sensors.end()) continue;
    for (const auto& [key, position] : at->second.byKey) underIncident.push_back(std::get<0>(key));
  }
  std::vector<common::IpAddress> sources;
  for (auto v : summary.getVictims()) {
    auto victim = common::readAddress(v.getAddress());
    if (!victim) continue;
    bool attacked =
        std::any_of(batch.anomalies.begin(), batch.anomalies.end(),
                    [&](const Anomaly& a) { return a.victim == *victim; }) ||
        std::find(underIncident.begin(), underIncident.end(), *victim) != underIncident.end();
    if (attacked) {
      planner_->noteAttacked(sensor, *victim);
      continue;
    }
    sources.clear();
    for (auto src : v.getTopSources())
      if (src.getPackets() >= 2 * src.getError())  // certain, not a Space-Saving guess
        if (auto a = common::readAddress(src.getAddress())) sources.push_back(*a);
    planner_->noteLegitimate(sensor, *victim, sources);
  }
}

double IncidentTracker::floorOf(const Incident& inc) {
  // Members are only ever added to an open incident: the floor is
  // recomputed when their number changed (a city-wide incident has
  // thousands, and this is asked for every summary that reports drops).
  if (floorCache_.size() > kMaxCachedFloors) floorCache_.clear();
  auto& [members, floor] = floorCache_[inc.id];
  if (members == inc.members.size() && members > 0) return floor;
  floor = 0;
  for (const auto& m : inc.members) {
    double f = floorsPps_[static_cast<size_t>(m.vector) % floorsPps_.size()];
    floor = floor == 0 ? f : std::min(floor, f);
  }
  members = inc.members.size();
  return floor;
}

void IncidentTracker::holdDropping(wire::Summary::Reader summary, int64_t nowNs) {
  const std::string sensor = summary.getSensorId();
  const bool counters = summary.getOrderCounters().size() > 0;
  for (const Incident* inc : correlator_.openIncidents()) {
    const double pps = counters ? planner_->dispatcher().incidentDropPps(inc->id, sensor) : 0;
    if (pps <= 0 || pps < floorOf(*inc)) {
      correlator_.endHold(inc->id, sensor);
      continue;
    }
    persist(correlator_.holdOpen(inc->id, sensor, summary.getWindowStartNs(), pps, nowNs), nowNs);
  }
}

void IncidentTracker::onSummary(wire::Summary::Reader summary, int64_t nowNs) {
  // Before the detector's batch: its resolution check must see the hold.
  if (planner_) holdDropping(summary, nowNs);
  const DetectBatch& batch = detector_.observe(summary);
  if (planner_) noteLegitimate(summary, batch);
  persist(correlator_.observe(batch, nowNs), nowNs);
}

void IncidentTracker::onAlert(wire::Alert::Reader alert, int64_t nowNs) {
  persist(correlator_.observe(detector_.observeAlert(alert), nowNs), nowNs);
}

void IncidentTracker::tick(int64_t nowNs) {
  if (!heldBack_.empty()) {
    std::vector<IncidentChange> due;
    for (const auto& id : heldBack_) {
      auto last = persistedNs_.find(id);
      if (last == persistedNs_.end() || nowNs - last->second >= kCoalesceNs)
        due.push_back({IncidentChangeKind::kUpdated, id, false});
    }
    persist(due, nowNs);
    for (const auto& c : due) heldBack_.erase(c.id);  // also those no longer open
  }
  if (nowNs >= nextTickNs_) {
    persist(correlator_.tick(nowNs), nowNs);
    nextTickNs_ = nowNs + kTickNs;
  }
  // Renewals: orders of open incidents are kept alive while they last.
  if (planner_ && nowNs >= nextPlanNs_) {
    for (const Incident* inc : correlator_.openIncidents()) (void)planner_->plan(*inc, nowNs);
    nextPlanNs_ = nowNs + planner_->renewIntervalNs();
  }
  if (nowNs >= nextFlushNs_) {
    flush();
    nextFlushNs_ = nowNs + kFlushNs;
  }
}

void IncidentTracker::flush() { store_.writeBaselines(detector_.dirtyRecords()); }

nlohmann::json IncidentTracker::listJson(bool openOnly, size_t limit) {
  nlohmann::json list = nlohmann::json::array();
  std::set<std::string> seen;
  auto open = correlator_.openIncidents();
  for (auto it = open.rbegin(); it != open.rend() && list.size() < limit; ++it) {
    list.push_back(summaryOf(incidentToJson(**it)));
    seen.insert((*it)->id);
  }
  if (!openOnly)
    store_.forEachIncidentNewestFirst([&](std::string_view id, std::string_view json) {
      if (list.size() >= limit) return false;
      if (seen.count(std::string(id))) return true;
      auto j = nlohmann::json::parse(json, nullptr, false);
      if (!j.is_discarded()) list.push_back(summaryOf(std::move(j)));
      return true;
    });
  return {{"incidents", list}};
}

std::optional<nlohmann::json> IncidentTracker::showJson(const std::string& id) {
  nlohmann::json j;
  if (const Incident* inc = correlator_.find(id)) {
    j = incidentToJson(*inc);
    nlohmann::json dropping = nlohmann::json::array();
    for (const auto& d : inc->droppingAt)
      dropping.push_back(
          {{"sensor", d.sensorId}, {"last_window_ns", d.lastWindowNs}, {"now", d.now}});
    j["dropping"] = dropping;
  } else {
    auto stored = store_.getIncident(id);
    if (!stored) return std::nullopt;
    j = nlohmann::json::parse(*stored, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
  }
  // The orders and what each drops where (while the dispatcher has them).
  if (planner_) j["orders"] = planner_->dispatcher().incidentOrdersJson(id);
  return j;
}

}  // namespace garda::aggregator
