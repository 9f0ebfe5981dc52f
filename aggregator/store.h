#pragma once

#include <rocksdb/db.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
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
};

// The aggregator's history on disk: one RocksDB with a column family per kind
// of record (see docs/protocol.md, "Storage"). Keys are built so that history
// queries are prefix range scans in time order:
//   summaries: sensor id, 0x00, window start (big-endian), boot id (big-endian)
//   sensors:   sensor id
//   audit:     time (big-endian), seq (big-endian)
// Summary values are packed Cap'n Proto messages (summaryValue) kept in blob
// files; the other families hold JSON.
// A summary write goes through the write-ahead log before the caller acks,
// so an ack survives the aggregator being killed. Single-threaded use.
class Store {
 public:
  // Opens (creating if needed) the database under `dir`. Throws
  // std::runtime_error with RocksDB's reason if it cannot.
  explicit Store(const std::string& dir);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static std::string summaryKey(std::string_view sensorId, int64_t windowStartNs, uint64_t bootId);
  // The stored form of a summary: a packed Cap'n Proto message with the
  // summary as its root.
  static std::string summaryValue(wire::Summary::Reader summary);
  // A stored summary as a flat message (what capnp::FlatArrayMessageReader
  // reads); values stored flat, before summaries were packed, pass as they are.
  // Throws kj::Exception on a malformed value.
  static std::string flatSummary(std::string_view stored);

  // A batch of writes applied atomically with commit().
  class Batch {
   public:
    // False (and nothing written) when the key is already stored or already
    // in this batch: a resend.
    bool putSummary(const std::string& key, std::string_view value);
    // The sensor's registry record, written atomically with the summaries.
    void putSensor(const std::string& sensorId, const std::string& json);
    size_t size() const noexcept { return count_; }

   private:
    friend class Store;
    explicit Batch(Store& s) : store_(s) {}
    Store& store_;
    rocksdb::WriteBatch batch_;
    std::unordered_set<std::string> keys_;
    size_t count_ = 0;
  };
  Batch batch() { return Batch(*this); }
  // Writes the batch (WAL first). Throws std::runtime_error on failure.
  void commit(Batch& b);

  // Summaries of one sensor with window start in [sinceNs, untilNs), the
  // `limit` most recent, in time order; `fn(key, value)` with the value as a
  // flat message (see flatSummary).
  void scanSummaries(std::string_view sensorId, int64_t sinceNs, int64_t untilNs, size_t limit,
                     const std::function<void(std::string_view, std::string_view)>& fn);

  void putSensor(const std::string& sensorId, const std::string& json);
  void forEachSensor(const std::function<void(std::string_view id, std::string_view json)>& fn);

  // Orders (JSON records with their state history), by order id.
  void putOrder(const std::string& orderId, const std::string& json);
  void forEachOrder(const std::function<void(std::string_view id, std::string_view json)>& fn);

  // Appends one audit record (JSON), keyed by time.
  void appendAudit(int64_t atNs, const std::string& json);
  void forEachAudit(int64_t sinceNs, const std::function<void(std::string_view json)>& fn);

  const StoreCounters& counters() const noexcept { return counters_; }

 private:
  rocksdb::ColumnFamilyHandle* cf(const char* name) const;

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::vector<std::string> names_;
  uint64_t auditSeq_ = 0;
  StoreCounters counters_;
};

}  // namespace garda::aggregator
