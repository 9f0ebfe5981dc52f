#pragma once

#include <rocksdb/db.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "schemas/garda.capnp.h"

namespace garda::aggregator {

// Counters of the store.
struct StoreCounters {
  uint64_t summaryWrites = 0;
  uint64_t summaryDuplicates = 0;
  uint64_t batches = 0;
  uint64_t writeErrors = 0;
  uint64_t auditRecords = 0;
  uint64_t cityMerges = 0;  // city seconds updated by summary batches
  uint64_t retentionRuns = 0;
  uint64_t incidentsExpired = 0;  // deleted by retention
  uint64_t ordersExpired = 0;     // deleted by retention
  // Batch commit (RocksDB write through the WAL) latency: counts per bucket
  // (upper bounds in seconds; the last slot is over the last bound).
  static constexpr std::array<double, 10> kWriteBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                           0.005,  0.01,    0.025,  0.1,   1.0};
  std::array<uint64_t, kWriteBuckets.size() + 1> writeLatency{};
  double writeSecondsSum = 0;
};

// The city's traffic in one second of data time: the sum over every sensor's
// stored summaries (the `city` family, one record per second). A summary
// that covers more than one second (window_ms over 1000, or a window not on
// the second grid) is shared out by overlap, so every counter sums exactly
// to the summaries' own. Stored as kFields little-endian uint64 in this
// order and combined by a RocksDB merge operator (field-wise add), so a
// batch adds to a second without reading it. Fields are only ever appended:
// a shorter record reads as zeros in the missing ones.
struct CityTotals {
  static constexpr int64_t kWindowNs = 1'000'000'000;
  static constexpr size_t kFields = 10;
  uint64_t packets = 0;
  uint64_t bytes = 0;
  uint64_t tcp = 0;
  uint64_t udp = 0;
  uint64_t icmp = 0;
  uint64_t other = 0;
  uint64_t kernelDrops = 0;
  // Victims x ms, and sensor-window ms, inside this second: /1000 gives the
  // (sensor, victim) pairs and the sensors reporting, averaged over it.
  uint64_t victimMs = 0;
  uint64_t sensorMs = 0;
  uint64_t summaries = 0;  // summaries that touched this second

  std::string encode() const;
  // Never fails: missing fields are zero, extra bytes are ignored.
  static CityTotals decode(std::string_view bytes) noexcept;
  CityTotals& operator+=(const CityTotals& o) noexcept;
  bool operator==(const CityTotals&) const = default;
};

// What one retention sweep removed.
struct RetentionResult {
  size_t sensorsSwept = 0;  // sensor id prefixes given a range delete in `summaries`
  size_t incidents = 0;
  size_t orders = 0;
};

// The aggregator's history on disk: one RocksDB with a column family per kind
// of record (see docs/protocol.md, "Storage"). Keys are built so that history
// queries are prefix range scans in time order:
//   summaries: sensor id, 0x00, window start (big-endian), boot id (big-endian)
//   sensors:   sensor id
//   audit:     time (big-endian), seq (big-endian)
//   incidents: incident id ("inc-<UTC open time>-<counter>")
//   baselines: the detector's own keys (sensor, victim, vector, port)
//   city:      second start (big-endian): CityTotals, kept by merges
//   evidence:  incident id, 0x00, sensor id: a packed Cap'n Proto Evidence
//              (every part of one sensor's answer, joined); retention deletes
//              it with its incident
// Summary values are kept in blob files, in one of three forms (flatSummary
// reads all three): what ingest stores, kEnvelopeMarker and then the packed
// Envelope the summary came in, as it came; a packed message with the summary
// as its root (summaryValue; releases before the packed wire); or flat (the
// first releases). The other families hold JSON.
// A summary write goes through the write-ahead log before the caller acks,
// so an ack survives the aggregator being killed. Single-threaded use, but
// for write() (see there).
class Store {
 public:
  // Opens (creating if needed) the database under `dir`. Throws
  // std::runtime_error with RocksDB's reason if it cannot.
  explicit Store(const std::string& dir);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static std::string summaryKey(std::string_view sensorId, int64_t windowStartNs, uint64_t bootId);
  // Starts a stored envelope. Neither older form can start with it: a packed
  // message's first tag byte is 0xff only if all four bytes of its segment
  // count are non-zero, a flat one's first byte only with 256 or more
  // segments, both far past any size limit.
  static constexpr uint8_t kEnvelopeMarker = 0xff;
  // The stored form of a summary: a packed Cap'n Proto message with the
  // summary as its root.
  static std::string summaryValue(wire::Summary::Reader summary);
  // A stored summary as a flat message (what capnp::FlatArrayMessageReader
  // reads); values stored flat, before summaries were packed, pass as they are.
  // Throws kj::Exception on a malformed value.
  static std::string flatSummary(std::string_view stored);

  // A batch of writes applied atomically with commit(). Commit also adds
  // each new summary's totals to the `city` family in the same write, so the
  // city totals are always the sum of the stored summaries.
  class Batch {
   public:
    // False (and nothing written) when the key is already stored or already
    // in this batch: a resend.
    bool putSummary(const std::string& key, std::string_view value);
    // The sensor's registry record, written atomically with the summaries.
    void putSensor(const std::string& sensorId, const std::string& json);
    size_t size() const noexcept { return count_; }
    // The summary keys put in this batch.
    const std::unordered_set<std::string>& keys() const noexcept { return keys_; }
    // Empties the batch for reuse; its buffer keeps its capacity, so the
    // next batch neither regrows it nor faults its pages in again.
    void clear();

    // The same from the decoded summary: stores it in the packed form
    // (summaryValue) and, when new, adds it to the city's seconds.
    bool putSummary(const std::string& key, wire::Summary::Reader summary);
    // What ingest does: stores the packed Envelope `summary` came in, as it
    // came (behind kEnvelopeMarker: no copy, no packing), and when new adds
    // it to the city's seconds.
    bool putSummary(const std::string& key, wire::Summary::Reader summary,
                    std::string_view packedEnvelope);

   private:
    friend class Store;
    explicit Batch(Store& s) : store_(s) {}
    // Adds one summary's totals to the city seconds it covers.
    void addCityTotals(int64_t windowStartNs, unsigned windowMs, const CityTotals& totals);
    void addCityTotals(wire::Summary::Reader summary);
    // Neither in this batch nor in the store; then counts a key put.
    bool isNew(const std::string& key);
    void added(const std::string& key);

    Store& store_;
    rocksdb::WriteBatch batch_;
    std::unordered_set<std::string> keys_;
    size_t count_ = 0;
    std::map<int64_t, CityTotals> city_;  // by second start, from each new summary
  };
  Batch batch() { return Batch(*this); }
  // Writes the batch (WAL first). Throws std::runtime_error on failure.
  void commit(Batch& b);

  // commit() in two halves, for a batch written on another thread: write()
  // is safe beside any other use of the store (it touches only the batch and
  // RocksDB, which is thread-safe); recordWrite() counts it, on the thread
  // that owns the store.
  struct WriteResult {
    bool written = false;  // false: an empty batch, nothing done
    double seconds = 0;
    std::string error;  // RocksDB's reason; empty when stored
  };
  WriteResult write(Batch& b) const;
  void recordWrite(const Batch& b, const WriteResult& r);

  // Summaries of one sensor with window start in [sinceNs, untilNs), the
  // `limit` most recent, in time order; `fn(key, value)` with the value as a
  // flat message (see flatSummary).
  void scanSummaries(std::string_view sensorId, int64_t sinceNs, int64_t untilNs, size_t limit,
                     const std::function<void(std::string_view, std::string_view)>& fn);

  // City seconds with start in [sinceNs, untilNs), the `limit` most recent,
  // in time order.
  void scanCity(int64_t sinceNs, int64_t untilNs, size_t limit,
                const std::function<void(int64_t startNs, const CityTotals&)>& fn);

  // Deletes what is older than `cutoffNs` (data time): summaries and city
  // seconds that started before it, audit records written before it,
  // resolved incidents that resolved before it (with their evidence) and orders that ended
  // (expired or were removed) before it. Open incidents and active orders
  // are never deleted. One atomic write. Throws std::runtime_error on a
  // store failure.
  RetentionResult deleteOlderThan(int64_t cutoffNs);

  void putSensor(const std::string& sensorId, const std::string& json);
  // A sensor's evidence for an incident (aggregator/evidence.h writes it).
  void putEvidence(const std::string& incidentId, const std::string& sensorId,
                   std::string_view value);
  // Every sensor's evidence for one incident, by sensor id.
  void forEachEvidence(
      const std::string& incidentId,
      const std::function<void(std::string_view sensorId, std::string_view value)>& fn);
  void forEachSensor(const std::function<void(std::string_view id, std::string_view json)>& fn);

  // Orders (JSON records with their state history), by order id.
  void putOrder(const std::string& orderId, const std::string& json);
  void forEachOrder(const std::function<void(std::string_view id, std::string_view json)>& fn);

  // Incidents (JSON), keyed by id; ids sort by opening time.
  void putIncident(const std::string& id, const std::string& json);
  std::optional<std::string> getIncident(const std::string& id);
  // Newest id first until `fn` returns false.
  void forEachIncidentNewestFirst(
      const std::function<bool(std::string_view id, std::string_view json)>& fn);

  // Small named values in the default family (e.g. the incident id counter).
  void putMeta(const std::string& key, const std::string& value);
  std::optional<std::string> getMeta(const std::string& key);

  // The detector's baselines: an empty value deletes the key.
  void writeBaselines(const std::vector<std::pair<std::string, std::string>>& records);
  void forEachBaseline(const std::function<void(std::string_view key, std::string_view value)>& fn);

  // Appends one audit record (JSON), keyed by time.
  void appendAudit(int64_t atNs, const std::string& json);
  void forEachAudit(int64_t sinceNs, const std::function<void(std::string_view json)>& fn);

  const StoreCounters& counters() const noexcept { return counters_; }

 private:
  rocksdb::ColumnFamilyHandle* cf(const char* name) const;
  // The newest window start put (stored, or in a batch) for a sensor; read
  // from the store at its first use since open (INT64_MIN: none).
  int64_t& newestWindowOf(std::string_view sensorId);

  std::unique_ptr<rocksdb::DB> db_;
  // By sensor id, for Batch::isNew (loop thread): a summary of a later
  // window than any put cannot be a resend, so it needs no store read. An
  // entry only grows (a failed write leaves it high: that costs a read).
  struct IdHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<std::string, int64_t, IdHash, std::equal_to<>> newestWindow_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<std::string> names_;
  uint64_t auditSeq_ = 0;
  StoreCounters counters_;
};

}  // namespace garda::aggregator
