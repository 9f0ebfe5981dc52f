#include "common/duration.h"
#include "aggregator/city_view.h"

#include <spdlog/spdlog.h>

#include <cstdio>

namespace garda::aggregator {
namespace {

nlohmann::json toJson(const SensorState& s) {
  return {{"id", s.id},
          {"opd", s.opd},
          {"version", s.version},
          {"capture_source", s.captureSource},
          {"boot_id", common::formatHex64(s.bootId)},
          {"last_seen_ns", s.lastSeenNs},
          {"window_ms", s.windowMs},
          {"last_window_start_ns", s.lastWindowStartNs},
          {"last_window_packets", s.lastWindowPackets},
          {"kernel_drops", s.kernelDrops},
          {"windows_stored", s.windowsStored},
          {"backlog", s.backlog},
          {"alerts", s.alerts},
          {"last_alert_ns", s.lastAlertNs},
          {"last_alert_victim", s.lastAlertVictim}};
}

}  // namespace

CityView::CityView(Store& store, const common::AggregatorConfig& config) : store_(store) {
  store_.forEachSensor([&](std::string_view id, std::string_view json) {
    auto j = nlohmann::json::parse(json, nullptr, false);
    if (j.is_discarded()) {
      spdlog::warn("sensor registry: unreadable record for {}", id);
      return;
    }
    SensorState s;
    s.id = std::string(id);
    s.opd = j.value("opd", "");
    s.version = j.value("version", "");
    s.captureSource = j.value("capture_source", "");
    s.bootId = std::stoull(j.value("boot_id", std::string("0")), nullptr, 16);
    s.lastSeenNs = j.value("last_seen_ns", int64_t{0});
    s.windowMs = j.value("window_ms", 0u);
    s.lastWindowStartNs = j.value("last_window_start_ns", int64_t{0});
    s.lastWindowPackets = j.value("last_window_packets", uint64_t{0});
    s.kernelDrops = j.value("kernel_drops", uint64_t{0});
    s.windowsStored = j.value("windows_stored", uint64_t{0});
    s.alerts = j.value("alerts", uint64_t{0});
    s.lastAlertNs = j.value("last_alert_ns", int64_t{0});
    s.lastAlertVictim = j.value("last_alert_victim", std::string());
    sensors_[s.id] = s;
  });
  reload(config);
}

void CityView::reload(const common::AggregatorConfig& config) {
  downAfterMs_ = config.sensorDownAfterMs;
  listed_.clear();
  for (const auto& e : config.sensors) {
    listed_.insert(e.id);
    auto& s = sensors_[e.id];
    s.id = e.id;
  }
}

SensorState* CityView::find(const std::string& id) {
  auto it = sensors_.find(id);
  return it == sensors_.end() ? nullptr : &it->second;
}

SensorState& CityView::touch(const std::string& id, int64_t nowNs) {
  auto& s = sensors_[id];
  s.id = id;
  s.lastSeenNs = nowNs;
  dirty_.insert(id);
  return s;
}

void CityView::takeChanges(
    const std::function<void(const std::string&, const std::string&)>& put) {
  for (const auto& id : dirty_) {
    auto it = sensors_.find(id);
    if (it != sensors_.end()) put(id, toJson(it->second).dump());
  }
  dirty_.clear();
}

void CityView::persist() {
  takeChanges([&](const std::string& id, const std::string& json) { store_.putSensor(id, json); });
}

bool CityView::isUp(const std::string& id, int64_t nowNs) const {
  auto it = sensors_.find(id);
  if (it == sensors_.end() || it->second.routingId.empty()) return false;
  return it->second.lastSeenNs > 0 &&
         nowNs - it->second.lastSeenNs <= int64_t{downAfterMs_} * 1'000'000;
}

std::string CityView::byRoutingId(const std::string& routingId) const {
  for (const auto& [id, s] : sensors_)
    if (s.routingId == routingId) return id;
  return {};
}

nlohmann::json CityView::statusJson(int64_t nowNs) const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [id, s] : sensors_) {
    if (!listed_.count(id)) continue;
    nlohmann::json j = toJson(s);
    bool up = s.lastSeenNs > 0 && nowNs - s.lastSeenNs <= int64_t{downAfterMs_} * 1'000'000;
    // Lagging: alive, but summaries are waiting at the sensor for an ack
    // (after an outage, or when ingest cannot keep up).
    j["state"] = !up ? "down" : s.backlog > 0 ? "lagging" : "up";
    double windowS = s.windowMs ? s.windowMs / 1000.0 : 1.0;
    j["pps"] = up ? static_cast<double>(s.lastWindowPackets) / windowS : 0.0;
    list.push_back(std::move(j));
  }
  return {{"sensors", list}};
}

}  // namespace garda::aggregator
