#include "aggregator/incidents.h"

#include <spdlog/spdlog.h>

#include <set>

#include "common/duration.h"

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
    : store_(store), detector_(detect), correlator_(correlate) {
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
  } catch (const std::exception& e) {
    spdlog::error("incidents: baselines not written at shutdown: {}", e.what());
  }
}

void IncidentTracker::persist(const std::vector<IncidentChange>& changes) {
  bool opened = false;
  for (const auto& c : changes) {
    const Incident* inc = correlator_.find(c.id);
    if (!inc) continue;
    store_.putIncident(c.id, incidentToJson(*inc).dump());
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

void IncidentTracker::onSummary(wire::Summary::Reader summary, int64_t nowNs) {
  persist(correlator_.observe(detector_.observe(summary), nowNs));
}

void IncidentTracker::onAlert(wire::Alert::Reader alert, int64_t nowNs) {
  persist(correlator_.observe(detector_.observeAlert(alert), nowNs));
}

void IncidentTracker::tick(int64_t nowNs) {
  if (nowNs >= nextTickNs_) {
    persist(correlator_.tick(nowNs));
    nextTickNs_ = nowNs + kTickNs;
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
  if (const Incident* inc = correlator_.find(id)) return incidentToJson(*inc);
  auto stored = store_.getIncident(id);
  if (!stored) return std::nullopt;
  auto j = nlohmann::json::parse(*stored, nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

}  // namespace garda::aggregator
