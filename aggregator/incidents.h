#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

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
// family (with the id counter, so ids stay unique across restarts): at once
// when it opens, resolves or gains a timeline event (a new sensor, victim or
// vector, an escalation, mitigation); a change of its figures alone (rates,
// sources) is stored, re-planned and told to observers at most once per
// kCoalesceNs (1 s) per incident, the last one at the first tick after that. Under
// an attack seen by many sensors every summary changes the incident, and
// doing all that per summary capped ingest at a few dozen summaries/s.
// Baselines are written every few seconds and at shutdown; at start the
// baselines and the open incidents of the previous run are taken back, so a
// restart in the middle of an attack continues the same incident.
// An incident whose orders still drop, at some sensor, at least the lowest
// detection floor of its vectors (the summary's orderCounters, through the
// Dispatcher) is held open as if that window were anomalous: an enforcer
// that drops before capture (XDP) hides the attack from the detector, and
// the incident must not resolve, nor its orders lapse, while it goes on.
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
  // Told of every change once stored (the notifier, the HTTP event stream).
  // Observers run on the loop thread, so they must not block.
  using ChangeObserver =
      std::function<void(const Incident&, const IncidentChange&, int64_t nowNs)>;
  void addChangeObserver(ChangeObserver observer) { observers_.push_back(std::move(observer)); }

  Correlator& correlator() noexcept { return correlator_; }
  const Detector& detector() const noexcept { return detector_; }

 private:
  void persist(const std::vector<IncidentChange>& changes, int64_t nowNs);
  void store(const Incident& inc);
  // Teaches the planner the clients of the summary's unattacked victims, at
  // most once per kLearnEveryNs of a sensor's data time (a sensor with 100 ms
  // windows would otherwise teach the same clients ten times a second);
  // every window still tells it which victims are attacked.
  void noteLegitimate(wire::Summary::Reader summary, const DetectBatch& batch);
  static constexpr int64_t kLearnEveryNs = 1'000'000'000;
  // Holds open the incidents whose orders at the summary's sensor still drop
  // at or above their floor.
  void holdDropping(wire::Summary::Reader summary, int64_t nowNs);
  // The lowest floor of the incident's members' vectors: the drop rate
  // under which its orders no longer hold it open.
  double floorOf(const Incident& inc);
  static constexpr size_t kMaxCachedFloors = 1024;

  Store& store_;
  std::array<double, kWireVectorCount> floorsPps_;
  Detector detector_;
  Correlator correlator_;
  int64_t nextTickNs_ = 0;
  int64_t nextFlushNs_ = 0;
  int64_t nextPlanNs_ = 0;
  Planner* planner_ = nullptr;
  std::vector<ChangeObserver> observers_;
  // Figure-only changes: when each open incident was last persisted, and
  // those with a change held back since.
  std::map<std::string, int64_t, std::less<>> persistedNs_;
  std::set<std::string, std::less<>> heldBack_;
  // Sensor -> the window start from which it teaches clients again.
  std::unordered_map<std::string, int64_t> nextLearnNs_;
  // Incident id -> (its member count, its floor) when last computed.
  std::unordered_map<std::string, std::pair<size_t, double>> floorCache_;

 public:
  static constexpr int64_t kCoalesceNs = 1'000'000'000;
};

}  // namespace garda::aggregator
