#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "aggregator/detect.h"
#include "common/ip.h"

namespace garda::aggregator {

enum class IncidentState : uint8_t { kOpen = 0, kMitigating, kResolved };
enum class Severity : uint8_t { kLow = 0, kMedium, kHigh, kCritical };
// Stable names: "open", "mitigating", "resolved"; "low", "medium", "high",
// "critical".
std::string_view incidentStateName(IncidentState s) noexcept;
std::string_view severityName(Severity s) noexcept;

struct CorrelateConfig {
  // An incident resolves when every sensor in it has reported windows this
  // far past the incident's last anomaly there (data time; 10 windows at 1 s).
  unsigned resolveAfterMs = 10000;
  // ... or when no anomaly for it arrived for this long by the caller's
  // clock (its sensors went silent: link down, replay ended). tick() checks.
  unsigned idleResolveMs = 60000;
  // An anomaly may join an incident whose last anomaly is this close in time.
  unsigned joinWindowMs = 60000;
  // Source evidence. A top source counts only when it is certain (Space-Saving
  // estimate at least twice its error) and carries this share of its
  // victim's packets; a victim whose certain sources explain under
  // spoofedExplainedShare of its packets while it sees spoofedDistinctSources
  // or more distinct sources is taken as spoofed: no source evidence at all.
  double solidSourceShare = 0.001;
  uint64_t spoofedDistinctSources = 1000;
  double spoofedExplainedShare = 0.10;
  unsigned minCommonSources = 2;      // common certain sources that link two attacks
  double dominantSourceShare = 0.10;  // one common source this heavy on both sides suffices
  unsigned prefixMinSources = 2;  // certain sources in one /24 (IPv6 /48) to call it concentrated
  size_t maxSources = 64;         // merged sources kept per incident
  size_t maxTimeline = 256;       // events kept per incident ("resolved" always is)
  size_t maxMembers = 4096;       // (sensor, victim, vector, port) entries per incident
  // Severity from the peak concurrent rate (sum over members in one window)
  // and the number of sensors (OPDs) involved; it never goes down.
  double mediumPps = 10'000, highPps = 100'000, criticalPps = 1'000'000;
  double mediumBps = 100e6, highBps = 1e9, criticalBps = 10e9;
  unsigned highSensors = 2, criticalSensors = 3;
};

// One (sensor, victim, vector, reflection port) that was anomalous in an
// incident.
struct IncidentMember {
  std::string sensorId;
  common::IpAddress victim;
  wire::Vector vector = wire::Vector::TCP_SYN;
  uint16_t reflectionPort = 0;
  std::string classification;
  bool active = true;  // false after the detector's quiet for it
  double peakPps = 0, peakBps = 0;
  double lastPps = 0, lastBps = 0;
  int64_t firstNs = 0;  // window start of its first anomalous window
  int64_t lastNs = 0;   // ... and of its last
};

// A certain attack source (see CorrelateConfig).
struct IncidentSource {
  common::IpAddress address;
  uint64_t packets = 0;    // most seen in one window at one victim (lower bound)
  double share = 0;        // largest share of a victim's packets
  uint32_t sightings = 0;  // anomalies it appeared in
};

struct SourcePrefix {
  common::Prefix prefix;  // /24 (IPv6 /48)
  uint32_t sources = 0;   // certain sources inside
  uint64_t packets = 0;
};

struct TimelineEvent {
  int64_t atNs = 0;
  std::string kind;  // opened, escalated, sensor_joined, victim_added, vector_added, quiet,
                     // mitigating, dropping, resolved
  std::string text;
};

// What an incident's lookups need of its members, kept beside them so that
// nothing scans them per anomaly: an incident seen city-wide holds thousands
// (up to maxMembers), and every summary of every sensor is checked against
// it. Derived, never serialized: Incident::index() extends it as members are
// appended (members only ever grow, and their keys never change) and
// rebuilds it when they were replaced; Incident::updateMember() is the one
// way to change a member's rates and last window.
struct IncidentIndex {
  struct Rate {
    double pps = 0, bps = 0;
    uint32_t members = 0;
  };
  using MemberKey = std::tuple<common::IpAddress, wire::Vector, uint16_t>;  // victim, vector, port
  struct Sensor {
    int64_t latestNs = 0;                 // latest lastNs of its members
    std::map<MemberKey, uint32_t> byKey;  // -> position in members
  };
  size_t indexed = 0;                                            // members[0, indexed) are in
  std::map<std::string, Sensor, std::less<>> sensors;            // sorted
  std::map<common::IpAddress, uint32_t> victims;                 // -> members
  std::map<std::string, uint32_t, std::less<>> classifications;  // -> members
  std::map<int64_t, Rate> rateAt;  // members by their last window: sum of their last rates
};

// One attack as the city sees it: every anomaly that shares a victim or
// evidence with it, at one or many OPDs. Times are data times (window
// starts, Unix ns) except lastArrivalNs, the caller's clock.
struct Incident {
  std::string id;         // "inc-20240115T103000Z-000042"
  uint64_t sequence = 0;  // the counter in the id
  IncidentState state = IncidentState::kOpen;
  Severity severity = Severity::kLow;
  int64_t openedNs = 0;
  int64_t updatedNs = 0;
  int64_t resolvedNs = 0;
  int64_t lastAnomalyNs = 0;
  int64_t lastArrivalNs = 0;        // not serialized: restore() sets it
  double peakPps = 0, peakBps = 0;  // peak concurrent rate over all members
  uint64_t distinctSources = 0;     // largest HyperLogLog estimate of any victim
  bool spoofedSources = false;      // some victim's sources looked spoofed
  std::vector<IncidentMember> members;
  std::vector<IncidentSource> sources;  // certain sources, most packets first
  std::vector<TimelineEvent> timeline;
  uint64_t timelineDropped = 0;
  // Anomalies of members it could not take (maxMembers reached): counted,
  // so a city-wide attack larger than the cap says it is.
  uint64_t anomaliesPastMemberCap = 0;
  // Sensors where its orders dropped the attack (above the detection floor):
  // the attack goes on there though the sensor may no longer see it (XDP
  // drops before capture). Not serialized: the next window's counters set
  // it again.
  struct Dropping {
    std::string sensorId;
    int64_t lastWindowNs = 0;  // the latest window they did
    bool now = false;          // ... and they still did in that sensor's latest window
  };
  std::vector<Dropping> droppingAt;
  bool droppingNoted = false;  // the timeline says so since the last anomaly

  std::vector<std::string> sensors() const;  // sorted, unique
  size_t sensorCount() const { return index().sensors.size(); }
  // The member of (sensor, victim, vector, port), or nullptr.
  IncidentMember* findMember(std::string_view sensor, const common::IpAddress& victim,
                             wire::Vector vector, uint16_t reflectionPort);
  // Sets a member's last rates and moves its last window forward to
  // `windowNs` (never back), keeping the index right.
  void updateMember(IncidentMember& m, double pps, double bps, int64_t windowNs);
  // The summed last rates of the members whose last window is `windowNs`.
  IncidentIndex::Rate rateAt(int64_t windowNs) const;
  const IncidentIndex& index() const;
  std::vector<common::IpAddress> victims() const;    // sorted, unique
  std::vector<std::string> classifications() const;  // sorted, unique
  // The one classification, or "mixed" when there are several.
  std::string classification() const;

 private:
  mutable IncidentIndex index_;
  void indexMember(uint32_t position) const;

 public:
  bool cityWide() const { return sensorCount() >= 2; }
  // Still under attack: a member the detector sees, or orders still dropping.
  bool underAttack() const;
  // /24s (IPv6 /48s) holding at least `minSources` of the certain sources.
  std::vector<SourcePrefix> sourcePrefixes(unsigned minSources) const;
};

// The JSON the console and HTTP API show, and that restore() reads back:
// {"id","sequence","state","severity","classification","classifications",
//  "vectors","reflection_ports","opened_at_ns","updated_at_ns",
//  "resolved_at_ns" (0 while open),"last_anomaly_ns","sensors","victims",
//  "city_wide","peak_pps","peak_bps","distinct_sources","spoofed_sources",
//  "top_sources":[{"address","packets","share","sightings"}],
//  "source_prefixes":[{"prefix","sources","packets"}],
//  "members":[{"sensor","victim","vector","reflection_port","classification",
//              "active","peak_pps","peak_bps","last_pps","last_bps",
//              "first_ns","last_ns"}],
//  "timeline":[{"at_ns","kind","text"}],"timeline_dropped"}
nlohmann::json incidentToJson(const Incident& incident, unsigned prefixMinSources = 2);
// Throws std::runtime_error naming the field when the JSON is not an incident.
Incident incidentFromJson(const nlohmann::json& json);

// What an anomaly offers as evidence: its certain sources and concentrated
// prefixes, or nothing when its sources look spoofed.
struct SourceEvidence {
  std::vector<IncidentSource> sources;
  std::vector<common::Prefix> prefixes;
  bool spoofed = false;
};
SourceEvidence sourceEvidence(const Anomaly& a, const CorrelateConfig& config);

enum class IncidentChangeKind : uint8_t { kOpened = 0, kUpdated, kResolved };
struct IncidentChange {
  IncidentChangeKind kind = IncidentChangeKind::kUpdated;
  std::string id;
  bool timeline = false;  // a timeline event was added (worth notifying people)
};

struct CorrelateCounters {
  uint64_t anomalies = 0;
  uint64_t quiets = 0;
  uint64_t opened = 0;
  uint64_t joinedByVictim = 0;
  uint64_t joinedByEvidence = 0;
  uint64_t resolvedQuiet = 0;
  uint64_t resolvedIdle = 0;
  uint64_t restored = 0;
};

// Groups the detector's anomalies into incidents. An anomaly joins an open
// incident of the same victim, or one at another victim/OPD that was
// anomalous within joinWindowMs and shares evidence: the same attack on a
// neighbouring victim (same /24, IPv6 /64) at the same sensor (carpet
// bombing), the same reflection port, at least minCommonSources certain
// sources (or one dominant source), or a concentrated source /24.
// Otherwise it opens a new incident. An
// incident resolves after resolveAfterMs of data time without anomaly at
// every one of its sensors, or idleResolveMs of the caller's clock without
// any. The caller sets mitigating. Ids carry a counter the caller persists
// (nextSequence / setNextSequence) so they stay unique across restarts.
//
// Each call returns the incidents it changed, once each; find() serves
// those ids until the next call (resolved incidents are then forgotten: the
// caller has stored them). No I/O. Single-threaded.
class Correlator {
 public:
  explicit Correlator(CorrelateConfig config = {});

  // One detector batch; `nowNs` is the caller's clock at arrival.
  std::vector<IncidentChange> observe(const DetectBatch& batch, int64_t nowNs);
  // Resolves incidents idle by the caller's clock. Call every second or so.
  std::vector<IncidentChange> tick(int64_t nowNs);
  // The incident's orders at `sensorId` dropped `dropPps` (above the
  // detection floor) in the window starting `windowStartNs`: for resolution
  // (resolveAfterMs, idleResolveMs) and joining, that window counts as one
  // with an anomaly there. Nothing when the id is not open.
  std::vector<IncidentChange> holdOpen(std::string_view id, const std::string& sensorId,
                                       int64_t windowStartNs, double dropPps, int64_t nowNs);
  // Its orders at `sensorId` no longer drop above the floor (the quiet
  // period starts from its last held window).
  void endHold(std::string_view id, const std::string& sensorId);
  // The planner took action. Nothing when the id is not open or already
  // mitigating.
  std::optional<IncidentChange> setMitigating(std::string_view id, int64_t atNs,
                                              std::string_view text);
  // Takes back an incident stored by a previous run (its JSON). Open ones
  // continue; every one moves the id counter past its own. Throws
  // std::runtime_error on JSON that is not an incident.
  void restore(const nlohmann::json& json, int64_t nowNs);

  const Incident* find(std::string_view id) const;
  std::vector<const Incident*> openIncidents() const;  // oldest id first
  uint64_t nextSequence() const noexcept { return nextSequence_; }
  void setNextSequence(uint64_t n) noexcept { nextSequence_ = std::max(nextSequence_, n); }
  // The counter in an id; nullopt when it is not one of ours.
  static std::optional<uint64_t> sequenceOf(std::string_view id);
  static std::string makeId(int64_t atNs, uint64_t sequence);

  const CorrelateCounters& counters() const noexcept { return counters_; }

 private:
  Incident* match(const Anomaly& a, const SourceEvidence& ev, bool& byVictim);
  bool sharesEvidence(const Incident& inc, const Anomaly& a, const SourceEvidence& ev) const;
  Incident& open(const Anomaly& a, int64_t nowNs);
  void join(Incident& inc, const Anomaly& a, const SourceEvidence& ev, int64_t nowNs, bool fresh);
  void mergeSources(Incident& inc, const SourceEvidence& ev);
  void addEvent(Incident& inc, int64_t atNs, std::string_view kind, std::string text);
  void resolve(Incident& inc, int64_t atNs, std::string text);
  void note(IncidentChangeKind kind, const std::string& id, bool timeline);
  bool quietEverywhere(const Incident& inc) const;
  std::vector<IncidentChange> finishCall();

  CorrelateConfig config_;
  std::map<std::string, Incident, std::less<>> open_;
  std::vector<Incident> resolvedRecently_;                   // resolved by the current/last call
  std::unordered_map<std::string, int64_t> sensorLatestNs_;  // latest window start per sensor
  std::vector<IncidentChange> changes_;
  uint64_t nextSequence_ = 1;
  CorrelateCounters counters_;
  // mergeSources' tables of an incident's sources by address (open
  // addressing; a slot holds index + 1, 0 is empty), one per incident it
  // merged into lately (a city-wide attack on ten victims is about ten
  // incidents, each touched by every summary). A table is used again only
  // while its incident's sources are, in order, the addresses it was made
  // for: that is checked at every use (cheaper than hashing them all again),
  // so whatever changes an incident's sources, or puts another incident at
  // the same address, a stale table is never trusted. Bounded: emptied past
  // kMaxSourceTables.
  struct SourceTable {
    std::vector<common::IpAddress> addresses;
    std::vector<uint32_t> slots;
  };
  static constexpr size_t kMaxSourceTables = 64;
  std::unordered_map<const Incident*, SourceTable> sourceTables_;
  SourceTable& sourceTableFor(const Incident& inc, size_t slotsNeeded);
};

}  // namespace garda::aggregator
