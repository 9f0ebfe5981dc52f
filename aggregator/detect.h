#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/ip.h"
#include "schemas/garda.capnp.h"

namespace garda::aggregator {

constexpr size_t kWireVectorCount = 8;  // wire::Vector tcpSyn .. other

// Stable names of the wire vectors, as the sensor's JSON spells them
// ("tcp_syn", "tcp_syn_ack", "tcp_other", "udp", "udp_reflection", "icmp",
// "fragment", "other").
std::string_view vectorName(wire::Vector v) noexcept;
// The vector for a name above; false when there is none.
bool vectorFromName(std::string_view name, wire::Vector& out) noexcept;

// The stable name of an attack on one (vector, reflection source port):
// "syn_flood", "synack_reflection", "ack_rst_flood", "udp_flood",
// "icmp_flood", "fragment_flood", "ip_proto_flood" (other IP protocols),
// "<service>_reflection" for a reflection port ("dns", "ntp", "ssdp",
// "memcached", "cldap", "chargen", "snmp", "wsd", "mdns", "netbios", "tftp",
// "portmap", "ike", "rip", "mssql", "ard", "coap", "ubiquiti", "dvr",
// "bacnet") and "udp_reflection" for reflection over several ports or an
// unnamed one. The returned view points at static storage.
std::string_view classifyAttack(wire::Vector v, uint16_t reflectionPort) noexcept;
// Several distinct attacks on one victim at once.
constexpr std::string_view kMixedAttack = "mixed";

// Detection settings. Durations are in milliseconds of data time and are
// turned into windows of each sensor's own window length, so a sensor at
// 250 ms windows and one at 1 s windows detect after the same sustained time.
struct DetectConfig {
  double k = 4.0;  // sigmas above the mean
  // M = ceil(sustainMs / windowMs), at least 1; a single window carrying
  // sustainMs worth of threshold-rate packets also counts.
  unsigned sustainMs = 2000;
  unsigned clearMs = 3000;               // back to normal after this long at or under threshold
  unsigned warmupMs = 60000;             // W: until this much baseline, only the floor applies
  unsigned baselineHalfLifeMs = 300000;  // EWMA half-life of the baseline
  // Sigma is never taken below this fraction of the mean: a very steady rate
  // must still grow by k * 10% before it is an attack.
  double minRelativeSigma = 0.1;
  // Static floors in packets per second, indexed by wire::Vector. The
  // udpReflection entry applies to each reflection source port alone.
  std::array<double, kWireVectorCount> floorPps = {
      2000,  // tcpSyn
      2000,  // tcpSynAck
      5000,  // tcpOther
      5000,  // udp
      1000,  // udpReflection, per source port
      1000,  // icmp
      1000,  // fragment
      5000,  // other
  };
  // Floor of all reflection ports of one victim together (a spread-out
  // reflection attack whose ports each stay under their own floor).
  double reflectionTotalFloorPps = 5000;
  // Reflection by volume (amplification is about bytes): per reflection
  // source port of a victim, its bits per second, with the victim's non-first
  // fragments of the window counted toward the port with the most bytes (the
  // tails of answers too big for one packet), against this floor -- but only
  // in windows where those packets average at least reflectionMinAvgBytes
  // (an answer to the victim's own lookups is small). See docs/decisions.md.
  double reflectionFloorBps = 1'000'000;
  double reflectionMinAvgBytes = 512;
  size_t maxKeys = 500000;  // tracked (sensor, victim, vector, port) baselines
};

struct SourceSample {
  common::IpAddress address;
  uint64_t packets = 0;  // Space-Saving estimate in the window (upper bound)
  uint64_t error = 0;    // its overestimate bound: packets - error is certain
  bool operator==(const SourceSample&) const = default;
};

struct PortSample {
  uint16_t port = 0;
  uint64_t packets = 0;
};

// One (sensor, victim, vector[, reflection port]) above its threshold in one
// window. Emitted for every window of an activation while the rate stays
// above the threshold; `onset` marks the first.
struct Anomaly {
  std::string sensorId;
  common::IpAddress victim;
  wire::Vector vector = wire::Vector::TCP_SYN;
  uint16_t reflectionPort = 0;            // 0 unless one reflection port
  std::string_view classification;        // classifyAttack(vector, port)
  std::string_view victimClassification;  // kMixedAttack when several attacks hit the victim
  double pps = 0;
  double bps = 0;
  double baselineMean = 0;  // pps; 0 during warm-up
  double baselineSigma = 0;
  double thresholdPps = 0;  // for a byVolume anomaly: 0 (see thresholdBps)
  double thresholdBps = 0;  // for a byVolume anomaly
  bool byVolume = false;    // found by reflectionFloorBps, not by a packet rate
  bool warmingUp = false;   // only the floor applied
  bool onset = false;       // first window of this activation
  bool fromAlert = false;   // a sensor's mid-window alert
  int64_t windowStartNs = 0;
  unsigned windowMs = 0;
  uint64_t victimPackets = 0;            // all vectors, for source shares
  uint64_t distinctSources = 0;          // HyperLogLog estimate (whole victim)
  std::vector<SourceSample> topSources;  // the victim's top sources, highest first
  std::vector<PortSample> topDstPorts;
};

// An activation that ended: the key stayed at or under its threshold for
// clearMs (missing windows count as zero traffic).
struct Quiet {
  std::string sensorId;
  common::IpAddress victim;
  wire::Vector vector = wire::Vector::TCP_SYN;
  uint16_t reflectionPort = 0;
  std::string_view classification;
  int64_t windowStartNs = 0;  // the window that completed the quiet period
  unsigned windowMs = 0;
};

// What one summary or alert produced. Owned by the Detector and reused.
struct DetectBatch {
  std::string sensorId;
  int64_t windowStartNs = 0;
  unsigned windowMs = 0;
  bool fromAlert = false;
  std::vector<Anomaly> anomalies;
  std::vector<Quiet> quiets;
};

struct DetectCounters {
  uint64_t summaries = 0;
  uint64_t alerts = 0;
  uint64_t victims = 0;
  uint64_t observations = 0;  // key updates
  uint64_t staleWindows = 0;  // a window at or before the key's last: ignored
  uint64_t badAddresses = 0;  // victim addresses of a wrong size
  uint64_t anomalies = 0;
  uint64_t onsets = 0;
  uint64_t quiets = 0;
  uint64_t evictions = 0;
  uint64_t recordsLoaded = 0;
  uint64_t recordsRejected = 0;
};

// Finds anomalies in sensor summaries: per (sensor, victim, vector) and per
// (sensor, victim, reflection source port) an EWMA baseline of packets per
// second, a static floor, and an activation state machine; per (sensor,
// victim, reflection source port) also one of bits per second (reflection by
// volume, DetectConfig::reflectionFloorBps). A key is active
// after its rate exceeded max(floor, mean + k * sigma) for M consecutive
// windows (at once for a sensor alert) and quiet again after clearMs at or
// under it. Windows over the threshold are never folded into the baseline, so
// a long attack does not become normal. A window a sensor did not report for
// a key is zero traffic for it.
//
// Memory is bounded by maxKeys: past it the stalest eighth is evicted (the
// bound is exceeded by at most one summary's keys). Baselines persist through
// dirtyRecords()/load(). No I/O, no clock: all time is the summaries' own.
// Single-threaded.
class Detector {
 public:
  explicit Detector(DetectConfig config = {});

  // One summary (already sane: through EnvelopeDecoder). The returned batch
  // stays valid until the next call. Does not allocate for victims whose
  // keys exist and stay normal.
  const DetectBatch& observe(wire::Summary::Reader summary);
  // A sensor's mid-window alert: its victim's largest vector is active at
  // once (M = 1). The alert's rate is its packets so far over the elapsed
  // part of the window.
  const DetectBatch& observeAlert(wire::Alert::Reader alert);

  // Persistence, for the aggregator's store. Records changed since the last
  // call: (key, value); an empty value means the key was evicted (delete it).
  std::vector<std::pair<std::string, std::string>> dirtyRecords();
  // Every tracked key (a full snapshot).
  std::vector<std::pair<std::string, std::string>> allRecords() const;
  // Restores one record; false (and counted) when it does not parse.
  bool load(std::string_view key, std::string_view value);

  // The baseline of one key, for tests and the console; false when untracked.
  struct BaselineView {
    double mean = 0;
    double sigma = 0;
    uint32_t samples = 0;
    bool active = false;
    int64_t lastWindowStartNs = 0;
  };
  bool baseline(std::string_view sensorId, const common::IpAddress& victim, wire::Vector v,
                uint16_t reflectionPort, BaselineView& out) const;

  size_t trackedKeys() const noexcept { return states_.size(); }
  const DetectCounters& counters() const noexcept { return counters_; }
  const DetectConfig& config() const noexcept { return config_; }

 private:
  struct Key {
    common::IpAddress victim;
    uint32_t sensor = 0;  // index into sensors_
    uint16_t port = 0;
    uint8_t vector = 0;
    bool operator==(const Key&) const = default;
  };
  struct State {
    double mean = 0;
    double var = 0;
    int64_t lastWindowStartNs = 0;  // 0: never observed
    uint32_t samples = 0;           // baseline samples, saturating
    uint16_t above = 0;             // consecutive windows over threshold
    uint16_t below = 0;             // consecutive windows at/under threshold while active
    bool active = false;
    bool reported = false;  // an anomaly of this activation was emitted
    bool dirty = false;
  };
  // The states by key, grouped by (sensor, victim): a summary touches all
  // of a victim's keys (its vectors, reflection ports and their volume) in
  // one go, so one hash lookup (victim()) finds them all, held side by side,
  // where a table keyed by the whole key paid a cache miss or two per key (a
  // fifth of the ingest thread with 1000 sensors). References to a state
  // stay valid until the next insert into, or erase from, the same victim.
  class StateTable {
    struct Slot;

   public:
    // One victim's states on one sensor, looked up at most once: found at
    // the first find() and made at the first at(). Keys given to it must be
    // of that victim and sensor. Valid until the victim is erased from the
    // table (so: not across evictIfFull()).
    class Victim {
     public:
      State* find(const Key& k);
      State& at(const Key& k);  // inserted with default values if missing
      bool holds(const Key& k) const noexcept { return k.victim == victim_ && k.sensor == sensor_; }

     private:
      friend class StateTable;
      Victim(StateTable& table, const common::IpAddress& victim, uint32_t sensor)
          : table_(&table), victim_(victim), sensor_(sensor) {}
      StateTable* table_;
      common::IpAddress victim_;
      uint32_t sensor_;
      std::vector<Slot>* slots_ = nullptr;
      bool looked_ = false;
    };
    Victim victim(const common::IpAddress& victim, uint32_t sensor) {
      return Victim(*this, victim, sensor);
    }
    State* find(const Key& k);
    const State* find(const Key& k) const;
    State& operator[](const Key& k);  // inserted with default values if missing
    void erase(const Key& k);
    size_t size() const noexcept { return size_; }
    template <typename F>
    void forEach(F&& f) const {  // f(const Key&, const State&)
      for (const auto& [vk, slots] : byVictim_)
        for (const auto& slot : slots)
          f(Key{vk.victim, vk.sensor, static_cast<uint16_t>(slot.sub & 0xffff),
                static_cast<uint8_t>(slot.sub >> 16)},
            slot.state);
    }

   private:
    struct VictimKey {
      common::IpAddress victim;
      uint32_t sensor = 0;
      bool operator==(const VictimKey&) const = default;
    };
    struct VictimKeyHash {
      size_t operator()(const VictimKey& k) const noexcept;
    };
    struct Slot {
      uint32_t sub = 0;  // vector << 16 | port
      State state;
    };
    static uint32_t subOf(const Key& k) noexcept { return uint32_t{k.vector} << 16 | k.port; }
    std::unordered_map<VictimKey, std::vector<Slot>, VictimKeyHash> byVictim_;
    size_t size_ = 0;
  };
  struct Sensor {
    std::string id;
    unsigned windowMs = 0;
    // Per window length: EWMA weight and windows for M, clear and warm-up.
    double alpha = 0;
    uint32_t sustainWindows = 1;
    uint32_t clearWindows = 1;
    uint32_t warmupWindows = 1;
    std::vector<Key> active;  // keys active now, swept every summary
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  // Context of the victim being processed, shared by its keys.
  struct VictimContext {
    wire::VictimStats::Reader stats;
    const common::IpAddress* victim = nullptr;
    bool hasStats = false;
    // The first anomaly of the victim's window reads its top sources and
    // ports off the wire; the others copy them from its anomaly.
    size_t readInto = SIZE_MAX;  // index in batch_.anomalies
  };

  uint32_t sensorIndex(std::string_view id);
  void setWindow(Sensor& s, unsigned windowMs);
  State& stateFor(const Key& key);
  double threshold(const State& st, const Sensor& s, double floor) const noexcept;
  // Folds `n` zero-traffic windows into the baseline.
  void foldZeros(State& st, const Sensor& s, uint64_t n) const noexcept;
  void fold(State& st, const Sensor& s, double pps) const noexcept;
  // Observes one key in one window. Returns true when it is anomalous and
  // should be reported; quiets are appended to the batch directly.
  bool update(const Key& key, State& st, Sensor& s, int64_t windowStartNs, double pps,
              double floor);
  void emitAnomaly(const Key& key, const State& st, const Sensor& s, VictimContext& v,
                   int64_t windowStartNs, double pps, double bps, double floor);
  void emitQuiet(const Key& key, const Sensor& s, int64_t windowStartNs);
  // The victim's reflection ports by volume; true when one is active.
  bool observeReflectionVolume(VictimContext& v, StateTable::Victim& states, uint32_t sensor,
                               Sensor& s, int64_t windowStartNs);
  void markDirty(const Key& key, State& st);
  void deactivate(Sensor& s, const Key& key);
  void evictIfFull();
  std::string recordKey(const Key& key) const;

  DetectConfig config_;
  std::vector<Sensor> sensors_;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> sensorIds_;
  StateTable states_;
  std::vector<Key> dirty_;
  DetectBatch batch_;
  DetectCounters counters_;
};

}  // namespace garda::aggregator
