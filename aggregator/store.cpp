#include "aggregator/store.h"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/io.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <stdexcept>

namespace garda::aggregator {
namespace {

const std::vector<std::string> kFamilies = {"default",  // rocksdb::kDefaultColumnFamilyName
                                            "summaries",
                                            "incidents",
                                            "orders",
                                            "audit",
                                            "sensors"};

void appendBe64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}

void check(const rocksdb::Status& s, const std::string& what) {
  if (!s.ok()) throw std::runtime_error(what + ": " + s.ToString());
}

// Summaries are large (KBs), written once and read by range scans; every
// write is preceded by a point lookup for a key that is almost never there.
// See docs/decisions.md, "Ingest throughput", for the measured effect of each.
void tuneSummaries(rocksdb::ColumnFamilyOptions& cfo) {
  // Values go to blob files at flush; compaction then moves only keys and
  // blob references instead of rewriting every summary at each level.
  cfo.enable_blob_files = true;
  cfo.min_blob_size = 512;
  // Not compressed: summaries are stored packed (summaryValue), and LZ4
  // saved only 15% more of the blob bytes for a third of the flush's CPU.
  cfo.blob_compression_type = rocksdb::kNoCompression;
  // No blob garbage collection: it relocates live blobs out of the oldest
  // files at every compaction. Retention deletes by time, and a blob file
  // holds one flush's span of time, so it goes once all its keys are gone.
  cfo.enable_blob_garbage_collection = false;
  // The dedup lookup of a new key: whole-key bloom filters in the memtable
  // and in every table file answer "not here" without reading a block.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.whole_key_filtering = true;
  cfo.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cfo.memtable_prefix_bloom_size_ratio = 0.02;
  cfo.memtable_whole_key_filtering = true;
}

}  // namespace

Store::Store(const std::string& dir) {
  std::filesystem::create_directories(dir);
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.max_background_jobs = 2;
  // The sensors family takes a few bytes per batch and would pin every WAL
  // file until its memtable filled (GBs of WAL to replay after a crash);
  // past this much WAL, the families holding the oldest file are flushed.
  options.max_total_wal_size = 256 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : kFamilies) {
    rocksdb::ColumnFamilyOptions cfo;
    cfo.OptimizeLevelStyleCompaction(64 << 20);
    if (name == "summaries") tuneSummaries(cfo);
    descriptors.emplace_back(name, cfo);
  }
  rocksdb::DB* raw = nullptr;
  check(rocksdb::DB::Open(options, dir + "/rocksdb", descriptors, &handles_, &raw),
        "cannot open the store in " + dir);
  db_.reset(raw);
  names_ = kFamilies;
  // Continue audit sequence numbers after the newest record.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("audit")));
  it->SeekToLast();
  if (it->Valid() && it->key().size() == 16) {
    uint64_t seq = 0;
    for (int i = 8; i < 16; ++i) seq = (seq << 8) | static_cast<uint8_t>(it->key()[i]);
    auditSeq_ = seq + 1;
  }
}

Store::~Store() {
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

rocksdb::ColumnFamilyHandle* Store::cf(const char* name) const {
  for (size_t i = 0; i < names_.size(); ++i)
    if (names_[i] == name) return handles_[i];
  throw std::logic_error(std::string("no column family ") + name);
}

std::string Store::summaryKey(std::string_view sensorId, int64_t windowStartNs, uint64_t bootId) {
  std::string key(sensorId);
  key.push_back('\0');
  appendBe64(key, static_cast<uint64_t>(windowStartNs));
  appendBe64(key, bootId);
  return key;
}

std::string Store::summaryValue(wire::Summary::Reader summary) {
  capnp::MallocMessageBuilder copy;
  copy.setRoot(summary);
  // Packed, the zero bytes of Cap'n Proto's fixed-width fields are squeezed
  // out (about 2.5 times smaller): fewer bytes through the WAL, its CRC, the
  // memtable, flush and the disk.
  kj::VectorOutputStream out(16384);
  capnp::writePackedMessage(out, copy);
  auto bytes = out.getArray();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

std::string Store::flatSummary(std::string_view stored) {
  // A packed message starts with the tag byte of its segment table word,
  // whose word-count half is never zero: a tag of 0x10 or more. A flat one
  // (how summaries were stored before) starts with its segment count - 1,
  // under 0x10 for any message within the size limit.
  if (stored.empty() || static_cast<uint8_t>(stored[0]) < 0x10) return std::string(stored);
  kj::ArrayInputStream in(
      kj::arrayPtr(reinterpret_cast<const kj::byte*>(stored.data()), stored.size()));
  capnp::PackedMessageReader reader(in);
  capnp::MallocMessageBuilder flat;
  flat.setRoot(reader.getRoot<wire::Summary>());
  auto words = capnp::messageToFlatArray(flat);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

bool Store::Batch::putSummary(const std::string& key, std::string_view value) {
  if (keys_.count(key) != 0) return false;
  std::string existing;
  auto s = store_.db_->Get({}, store_.cf("summaries"), key, &existing);
  if (s.ok()) return false;
  if (!s.IsNotFound()) throw std::runtime_error("store read failed: " + s.ToString());
  check(batch_.Put(store_.cf("summaries"), key, rocksdb::Slice(value.data(), value.size())),
        "store batch");
  keys_.insert(key);
  ++count_;
  return true;
}

void Store::Batch::putSensor(const std::string& sensorId, const std::string& json) {
  check(batch_.Put(store_.cf("sensors"), sensorId, json), "store batch");
}

void Store::commit(Batch& b) {
  if (b.batch_.Count() == 0) return;
  rocksdb::WriteOptions wo;
  auto s = db_->Write(wo, &b.batch_);
  if (!s.ok()) {
    counters_.writeErrors++;
    throw std::runtime_error("store write failed: " + s.ToString());
  }
  counters_.summaryWrites += b.count_;
  counters_.batches++;
}

void Store::scanSummaries(std::string_view sensorId, int64_t sinceNs, int64_t untilNs,
                          size_t limit,
                          const std::function<void(std::string_view, std::string_view)>& fn) {
  std::string lower = summaryKey(sensorId, std::max<int64_t>(sinceNs, 0), 0);
  std::string upper = summaryKey(sensorId, untilNs > 0 ? untilNs : INT64_MAX, 0);
  rocksdb::Slice upperSlice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upperSlice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf("summaries")));
  // Walk backwards from the newest so `limit` keeps the most recent.
  std::deque<std::pair<std::string, std::string>> newest;
  it->SeekForPrev(upper);
  if (it->Valid() && it->key().ToStringView() >= upper) it->Prev();
  for (; it->Valid() && newest.size() < limit; it->Prev()) {
    if (it->key().ToStringView() < lower) break;
    newest.emplace_front(it->key().ToString(), flatSummary(it->value().ToStringView()));
  }
  check(it->status(), "store scan");
  for (const auto& [k, v] : newest) fn(k, v);
}

void Store::putSensor(const std::string& sensorId, const std::string& json) {
  check(db_->Put({}, cf("sensors"), sensorId, json), "store sensor registry");
}

void Store::forEachSensor(
    const std::function<void(std::string_view, std::string_view)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("sensors")));
  for (it->SeekToFirst(); it->Valid(); it->Next())
    fn(it->key().ToStringView(), it->value().ToStringView());
}

void Store::putOrder(const std::string& orderId, const std::string& json) {
  check(db_->Put({}, cf("orders"), orderId, json), "store order");
}

void Store::forEachOrder(const std::function<void(std::string_view, std::string_view)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("orders")));
  for (it->SeekToFirst(); it->Valid(); it->Next())
    fn(it->key().ToStringView(), it->value().ToStringView());
}

void Store::appendAudit(int64_t atNs, const std::string& json) {
  std::string key;
  appendBe64(key, static_cast<uint64_t>(atNs));
  appendBe64(key, auditSeq_++);
  check(db_->Put({}, cf("audit"), key, json), "store audit record");
  counters_.auditRecords++;
}

void Store::forEachAudit(int64_t sinceNs, const std::function<void(std::string_view)>& fn) {
  std::string start;
  appendBe64(start, static_cast<uint64_t>(std::max<int64_t>(sinceNs, 0)));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("audit")));
  for (it->Seek(start); it->Valid(); it->Next()) fn(it->value().ToStringView());
}

}  // namespace garda::aggregator
