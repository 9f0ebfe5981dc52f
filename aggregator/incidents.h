#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "aggregator/correlate.h"
#include "aggregator/detect.h"
#include "aggregator/plan.h"
#include "aggregator/store.h"
#include "common/config.h"

namespace garda::aggregator {

// aggregator.toml's [detect] and [correlate] over the built-in defaults
// (the settings aggregator.toml does not expose keep their defaults).
DetectConfig detectConfigFrom(const common::DetectSettings& settings);
CorrelateConfig correlateConfigFrom(const common::CorrelateSettings& settings);

// Detection and correlation wired to the store: every freshly stored summary
// and every alert goes through the Detector, its batch through the
// Correlator, and every incident that changed is written to the `incidents`
// family at once (with the id counter, so ids stay unique across restarts).
// Baselines are written every few seconds and at shutdown; at start the
// baselines and the open incidents of the previous run are taken back, so a
// restart in the middle of an attack continues the same incident.
// Single-threaded (the aggregator loop).
class IncidentTracker {
 public:
  IncidentTracker(Store& store, int64_t nowNs, DetectConfig detect = {},
                  CorrelateConfig correlate = {});
  ~IncidentTracker();

  void onSummary(wire::Summary::Reader summary, int64_t nowNs);
  void onAlert(wire::Alert::Reader alert, int64_t nowNs);
  // Idle resolution and baseline writes; call every loop turn.
  void tick(int64_t nowNs);
  // Writes the baselines that changed.
  void flush();

  // `incidents`: open ones first, then stored ones, newest first, at most
  // `limit` (open only with `openOnly`).
  nlohmann::json listJson(bool openOnly, size_t limit);
  // `incident show ID`; nullopt if there is no such incident.
  std::optional<nlohmann::json> showJson(const std::string& id);

  // Incidents that open or change are planned (optional).
  void setPlanner(Planner* planner) noexcept { planner_ = planner; }
  // Every stored change (opened, updated, resolved) is also shown to `fn`
  // (the HTTP event stream; optional).
  void setChangeObserver(std::function<void(const IncidentChange&)> fn) {
    observer_ = std::move(fn);
  }

  Correlator& correlator() noexcept { return correlator_; }
  const Detector& detector() const noexcept { return detector_; }

 private:
  void persist(const std::vector<IncidentChange>& changes, int64_t nowNs);
  void store(const Incident& inc);
  void noteLegitimate(wire::Summary::Reader summary, const DetectBatch& batch);

  Store& store_;
  Detector detector_;
  Correlator correlator_;
  int64_t nextTickNs_ = 0;
  int64_t nextFlushNs_ = 0;
  int64_t nextPlanNs_ = 0;
  Planner* planner_ = nullptr;
  std::function<void(const IncidentChange&)> observer_;
};

}  // namespace garda::aggregator
