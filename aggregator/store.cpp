#include "aggregator/store.h"

#include <chrono>

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/io.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/merge_operator.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "aggregator/rocksdb_crc32c.h"
#include "common/envelope.h"
#include "schemas/garda.capnp.h"

namespace garda::aggregator {
namespace {

const std::vector<std::string> kFamilies = {"default",  // rocksdb::kDefaultColumnFamilyName
                                            "summaries", "incidents", "orders", "audit",
                                            "sensors",   "baselines", "city",   "evidence"};

void appendBe64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}

std::string be64(uint64_t v) {
  std::string out;
  appendBe64(out, v);
  return out;
}

uint64_t readBe64(std::string_view bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i) v = (v << 8) | static_cast<uint8_t>(bytes[i]);
  return v;
}

// A summary key's parts: id, NUL, window start, boot id (summaryKey).
struct SummaryKeyParts {
  std::string_view sensorId;
  int64_t windowStartNs;
};
std::optional<SummaryKeyParts> splitSummaryKey(std::string_view key) {
  const size_t nul = key.find('\0');
  if (nul == std::string_view::npos || key.size() != nul + 17) return std::nullopt;
  return SummaryKeyParts{key.substr(0, nul),
                         static_cast<int64_t>(readBe64(key.substr(nul + 1, 8)))};
}

// The `city` family's merge: field-wise add. It never fails (a failed merge
// in a compaction would stop the database's writes): odd lengths read as
// zeros, see CityTotals::decode.
class CityTotalsAdd : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* out, rocksdb::Logger*) const override {
    CityTotals t = existing ? CityTotals::decode(existing->ToStringView()) : CityTotals{};
    t += CityTotals::decode(value.ToStringView());
    *out = t.encode();
    return true;
  }
  const char* Name() const override { return "garda.CityTotalsAdd"; }
};

// Calls `fn` with the value of every Put to one column family in a batch.
// The open time an incident id carries ("inc-20240115T103000Z-000042"), in
// Unix ns; nullopt when the id does not have that shape.
std::optional<int64_t> incidentOpenNs(std::string_view id) {
  if (id.size() < 20 || id.substr(0, 4) != "inc-" || id[12] != 'T' || id[19] != 'Z')
    return std::nullopt;
  auto digits = [&](size_t at, size_t n) -> int {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (id[i] < '0' || id[i] > '9') return -1;
      v = v * 10 + (id[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_year = digits(4, 4) - 1900;
  tm.tm_mon = digits(8, 2) - 1;
  tm.tm_mday = digits(10, 2);
  tm.tm_hour = digits(13, 2);
  tm.tm_min = digits(15, 2);
  tm.tm_sec = digits(17, 2);
  if (tm.tm_year < -1900 || tm.tm_mon < 0 || tm.tm_mday < 0 || tm.tm_hour < 0 || tm.tm_min < 0 ||
      tm.tm_sec < 0)
    return std::nullopt;
  return static_cast<int64_t>(timegm(&tm)) * 1'000'000'000;
}

template <typename T>
T jsonNumber(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<T>() : T{};
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
  // Memtables of 64 MB, not the 16 MB OptimizeLevelStyleCompaction gives:
  // at 20,000 busy summaries a second (100 MB/s) that is a flush and a new
  // level-0 file every ~0.6 s instead of every ~0.15 s, and compaction took
  // 0.03 cores instead of 0.08 at 18,000/s. At most six (384 MB): with
  // four, RocksDB slowed every write to 16 MB/s whenever three waited for a
  // flush, 2-5 times a minute at 1000 sensors on two busy cores
  // (docs/decisions.md, "The last step to 20,000/s at N=1000 (session
  // 10)").
  cfo.write_buffer_size = 64 << 20;
  cfo.max_write_buffer_number = 6;
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
    if (name == "city") {
      cfo.merge_operator = std::make_shared<CityTotalsAdd>();
      // Each written batch adds one operand to every second it covers; a
      // read folds them all until a flush. Past this many in the memtable,
      // the write folds them into one value (a memtable read per second per
      // batch), so a whole-city history reads a bounded number per second.
      cfo.max_successive_merges = 8;
    }
    if (name == "summaries") tuneSummaries(cfo);
    descriptors.emplace_back(name, cfo);
  }
  rocksdb::DB* raw = nullptr;
  check(rocksdb::DB::Open(options, dir + "/rocksdb", descriptors, &handles_, &raw),
        "cannot open the store in " + dir);
  db_.reset(raw);
  // Opening wrote a checksummed MANIFEST and WAL: RocksDB has asked for a
  // CRC32C by now, here or in its own copy (said once per process).
  static std::once_flag saidCrc;
  std::call_once(saidCrc, [] {
    const auto crc = rocksdbCrc32c();
    if (crc.calls == 0)
      spdlog::warn("store: RocksDB computes CRC32C in its own portable code (slower), not in "
                   "garda's hardware one");
    else
      spdlog::info("store: RocksDB's CRC32C in {}", crc.hardware ? "hardware (SSE4.2)"
                                                                 : "software (no SSE4.2)");
  });
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
  const auto* bytes = reinterpret_cast<const uint8_t*>(stored.data());
  // The envelope the summary came in, packed as it came (the summary is its
  // body), or, as older releases stored it, the summary alone: packed, or
  // flat. A packed message starts with the tag byte of its segment table
  // word, whose word-count half is never zero: a tag of 0x10 or more. A flat
  // one starts with its segment count - 1, under 0x10 for any message within
  // the size limit.
  const bool envelope = !stored.empty() && bytes[0] == kEnvelopeMarker;
  const size_t skip = envelope ? 1 : 0;
  if (!envelope && !common::isPackedWire(std::span(bytes, stored.size())))
    return std::string(stored);
  kj::ArrayInputStream in(kj::arrayPtr(bytes + skip, stored.size() - skip));
  capnp::PackedMessageReader reader(in);
  capnp::MallocMessageBuilder flat;
  flat.setRoot(envelope ? reader.getRoot<wire::Envelope>().getBody().getSummary()
                        : reader.getRoot<wire::Summary>());
  return common::encodeMessage(flat, common::WireEncoding::kFlat);
}

bool Store::Batch::putSummary(const std::string& key, wire::Summary::Reader sum,
                              std::string_view packedEnvelope) {
  if (!isNew(key)) return false;
  // Marker and envelope go into the batch as two slices: no joined copy.
  const char marker = static_cast<char>(kEnvelopeMarker);
  const rocksdb::Slice keySlice(key),
      parts[2] = {rocksdb::Slice(&marker, 1),
                  rocksdb::Slice(packedEnvelope.data(), packedEnvelope.size())};
  check(batch_.Put(store_.cf("summaries"), rocksdb::SliceParts(&keySlice, 1),
                   rocksdb::SliceParts(parts, 2)),
        "store batch");
  added(key);
  addCityTotals(sum);
  return true;
}

bool Store::Batch::putSummary(const std::string& key, wire::Summary::Reader sum) {
  if (!putSummary(key, summaryValue(sum))) return false;
  addCityTotals(sum);
  return true;
}

void Store::Batch::addCityTotals(wire::Summary::Reader sum) {
  // A new summary (putSummary refuses resends): the city seconds grow
  // exactly once per stored window.
  auto t = sum.getTotals();
  CityTotals c;
  c.packets = t.getPackets();
  c.bytes = t.getBytes();
  c.tcp = t.getTcp();
  c.udp = t.getUdp();
  c.icmp = t.getIcmp();
  c.other = t.getOther();
  c.kernelDrops = sum.getKernelDrops();
  c.victimMs = uint64_t{sum.getVictims().size()} * sum.getWindowMs();
  c.sensorMs = sum.getWindowMs();
  c.summaries = 1;
  addCityTotals(sum.getWindowStartNs(), sum.getWindowMs(), c);
}

int64_t& Store::newestWindowOf(std::string_view sensorId) {
  auto it = newestWindow_.find(sensorId);
  if (it != newestWindow_.end()) return it->second;
  std::string prefix(sensorId);
  prefix.push_back('\0');
  int64_t newest = INT64_MIN;
  std::unique_ptr<rocksdb::Iterator> i(db_->NewIterator({}, cf("summaries")));
  i->SeekForPrev(prefix + std::string(16, '\xff'));
  if (i->Valid() && i->key().starts_with(prefix) && i->key().size() == prefix.size() + 16)
    newest = static_cast<int64_t>(readBe64(std::string_view(i->key().data() + prefix.size(), 8)));
  check(i->status(), "store read failed");
  return newestWindow_.emplace(std::string(sensorId), newest).first->second;
}

bool Store::Batch::isNew(const std::string& key) {
  if (keys_.count(key) != 0) return false;
  if (auto parts = splitSummaryKey(key);
      parts && parts->windowStartNs > store_.newestWindowOf(parts->sensorId))
    return true;
  rocksdb::PinnableSlice existing;
  auto s = store_.db_->Get({}, store_.cf("summaries"), key, &existing);
  if (s.ok()) return false;
  if (!s.IsNotFound()) throw std::runtime_error("store read failed: " + s.ToString());
  return true;
}

void Store::Batch::added(const std::string& key) {
  if (auto parts = splitSummaryKey(key)) {
    int64_t& newest = store_.newestWindowOf(parts->sensorId);
    newest = std::max(newest, parts->windowStartNs);
  }
  keys_.insert(key);
  ++count_;
}

void Store::Batch::clear() {
  batch_.Clear();
  keys_.clear();
  count_ = 0;
  city_.clear();
}

bool Store::Batch::putSummary(const std::string& key, std::string_view value) {
  if (!isNew(key)) return false;
  check(batch_.Put(store_.cf("summaries"), key, rocksdb::Slice(value.data(), value.size())),
        "store batch");
  added(key);
  return true;
}

std::string CityTotals::encode() const {
  const uint64_t fields[kFields] = {packets, bytes,       tcp,      udp,      icmp,
                                    other,   kernelDrops, victimMs, sensorMs, summaries};
  std::string out(kFields * 8, '\0');
  for (size_t f = 0; f < kFields; ++f)
    for (size_t i = 0; i < 8; ++i)
      out[f * 8 + i] = static_cast<char>((fields[f] >> (i * 8)) & 0xff);
  return out;
}

CityTotals CityTotals::decode(std::string_view bytes) noexcept {
  uint64_t fields[kFields] = {};
  for (size_t f = 0; f < kFields && (f + 1) * 8 <= bytes.size(); ++f)
    for (size_t i = 0; i < 8; ++i)
      fields[f] |= uint64_t{static_cast<uint8_t>(bytes[f * 8 + i])} << (i * 8);
  CityTotals t;
  t.packets = fields[0];
  t.bytes = fields[1];
  t.tcp = fields[2];
  t.udp = fields[3];
  t.icmp = fields[4];
  t.other = fields[5];
  t.kernelDrops = fields[6];
  t.victimMs = fields[7];
  t.sensorMs = fields[8];
  t.summaries = fields[9];
  return t;
}

CityTotals& CityTotals::operator+=(const CityTotals& o) noexcept {
  packets += o.packets;
  bytes += o.bytes;
  tcp += o.tcp;
  udp += o.udp;
  icmp += o.icmp;
  other += o.other;
  kernelDrops += o.kernelDrops;
  victimMs += o.victimMs;
  sensorMs += o.sensorMs;
  summaries += o.summaries;
  return *this;
}

void Store::Batch::addCityTotals(int64_t windowStartNs, unsigned windowMs,
                                 const CityTotals& totals) {
  constexpr int64_t kSecond = CityTotals::kWindowNs;
  if (windowStartNs < 0 || windowMs == 0) return;
  const int64_t lengthNs = int64_t{windowMs} * 1'000'000;
  const int64_t endNs = windowStartNs + lengthNs;
  const int64_t first = windowStartNs / kSecond * kSecond;
  if (endNs - first <= kSecond) {  // the usual case: inside one second
    city_[first] += totals;
    return;
  }
  // Share each counter out by overlap; cumulative rounding keeps the sums exact.
  auto share = [](uint64_t total, int64_t fromNs, int64_t toNs, int64_t lengthNs) {
    auto upTo = [&](int64_t ns) {
      return static_cast<uint64_t>(static_cast<unsigned __int128>(total) *
                                   static_cast<uint64_t>(ns) / static_cast<uint64_t>(lengthNs));
    };
    return upTo(toNs) - upTo(fromNs);
  };
  for (int64_t second = first; second < endNs; second += kSecond) {
    const int64_t from = std::max(second, windowStartNs) - windowStartNs;
    const int64_t to = std::min(second + kSecond, endNs) - windowStartNs;
    CityTotals part;
    part.packets = share(totals.packets, from, to, lengthNs);
    part.bytes = share(totals.bytes, from, to, lengthNs);
    part.tcp = share(totals.tcp, from, to, lengthNs);
    part.udp = share(totals.udp, from, to, lengthNs);
    part.icmp = share(totals.icmp, from, to, lengthNs);
    part.other = share(totals.other, from, to, lengthNs);
    part.kernelDrops = share(totals.kernelDrops, from, to, lengthNs);
    part.victimMs = share(totals.victimMs, from, to, lengthNs);
    part.sensorMs = share(totals.sensorMs, from, to, lengthNs);
    part.summaries = 1;
    city_[second] += part;
  }
}

void Store::Batch::putSensor(const std::string& sensorId, const std::string& json) {
  check(batch_.Put(store_.cf("sensors"), sensorId, json), "store batch");
}

void Store::commit(Batch& b) {
  const WriteResult r = write(b);
  recordWrite(b, r);
  if (!r.error.empty()) throw std::runtime_error("store write failed: " + r.error);
}

Store::WriteResult Store::write(Batch& b) const {
  WriteResult r;
  if (b.batch_.Count() == 0) return r;
  // Taken back if the write fails, so a second write of the batch does not
  // add the city seconds twice.
  b.batch_.SetSavePoint();
  for (const auto& [second, totals] : b.city_)
    check(b.batch_.Merge(cf("city"), be64(static_cast<uint64_t>(second)), totals.encode()),
          "store batch");
  rocksdb::WriteOptions wo;
  const auto started = std::chrono::steady_clock::now();
  auto s = db_->Write(wo, &b.batch_);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  r.written = true;
  if (!s.ok()) {
    (void)b.batch_.RollbackToSavePoint();
    r.error = s.ToString();
  }
  return r;
}

void Store::recordWrite(const Batch& b, const WriteResult& r) {
  if (!r.written) return;
  counters_.writeSecondsSum += r.seconds;
  size_t bucket = 0;
  while (bucket < StoreCounters::kWriteBuckets.size() &&
         r.seconds > StoreCounters::kWriteBuckets[bucket])
    ++bucket;
  counters_.writeLatency[bucket]++;
  if (!r.error.empty()) {
    counters_.writeErrors++;
    return;
  }
  counters_.summaryWrites += b.count_;
  counters_.cityMerges += b.city_.size();
  counters_.batches++;
}

void Store::scanCity(int64_t sinceNs, int64_t untilNs, size_t limit,
                     const std::function<void(int64_t, const CityTotals&)>& fn) {
  std::string lower = be64(static_cast<uint64_t>(std::max<int64_t>(sinceNs, 0)));
  std::string upper = be64(static_cast<uint64_t>(untilNs > 0 ? untilNs : INT64_MAX));
  rocksdb::Slice upperSlice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upperSlice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cf("city")));
  std::deque<std::pair<int64_t, CityTotals>> newest;
  it->SeekForPrev(upper);
  if (it->Valid() && it->key().ToStringView() >= upper) it->Prev();
  for (; it->Valid() && newest.size() < limit; it->Prev()) {
    if (it->key().ToStringView() < lower) break;
    newest.emplace_front(static_cast<int64_t>(readBe64(it->key().ToStringView())),
                         CityTotals::decode(it->value().ToStringView()));
  }
  check(it->status(), "store scan");
  for (const auto& [start, totals] : newest) fn(start, totals);
}

RetentionResult Store::deleteOlderThan(int64_t cutoffNs) {
  RetentionResult r;
  if (cutoffNs <= 0) return r;
  const std::string cutoff = be64(static_cast<uint64_t>(cutoffNs));
  const std::string zero = be64(0);
  rocksdb::WriteBatch batch;

  // Summaries: one range per sensor id, [id\0 0, id\0 cutoff).
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("summaries")));
    it->SeekToFirst();
    while (it->Valid()) {
      std::string_view key = it->key().ToStringView();
      size_t nul = key.find('\0');
      if (nul == std::string_view::npos) {
        it->Next();
        continue;
      }
      std::string prefix(key.substr(0, nul + 1));
      check(batch.DeleteRange(cf("summaries"), prefix + zero, prefix + cutoff), "store batch");
      r.sensorsSwept++;
      prefix.back() = '\x01';  // past every key of this sensor
      it->Seek(prefix);
    }
    check(it->status(), "store retention scan");
  }
  check(batch.DeleteRange(cf("city"), zero, cutoff), "store batch");
  check(batch.DeleteRange(cf("audit"), zero, cutoff), "store batch");

  // Incidents: ids sort by open time, so the scan stops at the first opened
  // after the cutoff; of the older ones only the resolved go.
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("incidents")));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto opened = incidentOpenNs(it->key().ToStringView());
      if (opened && *opened >= cutoffNs) break;
      auto j = nlohmann::json::parse(it->value().ToStringView(), nullptr, false);
      if (j.is_discarded() || !j.is_object() || j.value("state", "") != "resolved") continue;
      if (jsonNumber<int64_t>(j, "resolved_at_ns") >= cutoffNs) continue;
      check(batch.Delete(cf("incidents"), it->key()), "store batch");
      // Its evidence goes with it: keys are the id, 0x00, the sensor id.
      const std::string id = it->key().ToString();
      check(batch.DeleteRange(cf("evidence"), id + '\0', id + '\x01'), "store batch");
      r.incidents++;
    }
    check(it->status(), "store retention scan");
  }

  // Orders: an ended order's end is its expiry or its last event, the later.
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("orders")));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto j = nlohmann::json::parse(it->value().ToStringView(), nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      std::string state = j.value("state", "");
      if (state != "expired" && state != "removed") continue;
      int64_t endNs = jsonNumber<int64_t>(j, "expires_at_ns");
      if (auto h = j.find("history"); h != j.end() && h->is_array())
        for (const auto& e : *h)
          if (e.is_object()) endNs = std::max(endNs, jsonNumber<int64_t>(e, "at_ns"));
      if (endNs >= cutoffNs) continue;
      check(batch.Delete(cf("orders"), it->key()), "store batch");
      r.orders++;
    }
    check(it->status(), "store retention scan");
  }

  auto s = db_->Write({}, &batch);
  if (!s.ok()) {
    counters_.writeErrors++;
    throw std::runtime_error("store retention failed: " + s.ToString());
  }
  counters_.retentionRuns++;
  counters_.incidentsExpired += r.incidents;
  counters_.ordersExpired += r.orders;
  return r;
}

void Store::scanSummaries(std::string_view sensorId, int64_t sinceNs, int64_t untilNs, size_t limit,
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

void Store::putEvidence(const std::string& incidentId, const std::string& sensorId,
                        std::string_view value) {
  check(db_->Put({}, cf("evidence"), incidentId + '\0' + sensorId, value), "store evidence");
}

void Store::forEachEvidence(
    const std::string& incidentId,
    const std::function<void(std::string_view sensorId, std::string_view value)>& fn) {
  const std::string prefix = incidentId + '\0';
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("evidence")));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next())
    fn(it->key().ToStringView().substr(prefix.size()), it->value().ToStringView());
  check(it->status(), "store evidence scan");
}

void Store::putSensor(const std::string& sensorId, const std::string& json) {
  check(db_->Put({}, cf("sensors"), sensorId, json), "store sensor registry");
}

void Store::forEachSensor(const std::function<void(std::string_view, std::string_view)>& fn) {
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

void Store::putIncident(const std::string& id, const std::string& json) {
  check(db_->Put({}, cf("incidents"), id, json), "store incident");
}

std::optional<std::string> Store::getIncident(const std::string& id) {
  std::string value;
  auto s = db_->Get({}, cf("incidents"), id, &value);
  if (s.IsNotFound()) return std::nullopt;
  check(s, "store incident read");
  return value;
}

void Store::forEachIncidentNewestFirst(
    const std::function<bool(std::string_view id, std::string_view json)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("incidents")));
  for (it->SeekToLast(); it->Valid(); it->Prev())
    if (!fn(it->key().ToStringView(), it->value().ToStringView())) break;
}

void Store::putMeta(const std::string& key, const std::string& value) {
  check(db_->Put({}, cf("default"), key, value), "store meta");
}

std::optional<std::string> Store::getMeta(const std::string& key) {
  std::string value;
  auto s = db_->Get({}, cf("default"), key, &value);
  if (s.IsNotFound()) return std::nullopt;
  check(s, "store meta read");
  return value;
}

void Store::writeBaselines(const std::vector<std::pair<std::string, std::string>>& records) {
  if (records.empty()) return;
  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : records) {
    if (v.empty())
      check(batch.Delete(cf("baselines"), k), "store batch");
    else
      check(batch.Put(cf("baselines"), k, v), "store batch");
  }
  check(db_->Write({}, &batch), "store baselines");
}

void Store::forEachBaseline(
    const std::function<void(std::string_view key, std::string_view value)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cf("baselines")));
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
