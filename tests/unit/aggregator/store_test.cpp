// The store with a real RocksDB in a temporary directory: city totals kept by
// the merge operator in the summaries' own batch, the city history query, and
// retention by time.
#include "aggregator/store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "aggregator/incidents.h"
#include "aggregator/rocksdb_crc32c.h"
#include "aggregator/query.h"
#include "aggregator/server.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/keys.h"
#include "tests/unit/aggregator/summary_builder.h"

namespace garda::aggregator {
namespace {

using testing::kSecond;
using testing::kT0;

struct Totals {
  uint64_t packets = 0, bytes = 0, tcp = 0, udp = 0, icmp = 0, other = 0;
};

// A stored summary value (the Summary struct as root, as ingest stores it)
// with the given totals and `victims` victims.
std::string summaryValue(const std::string& sensorId, int64_t startNs, unsigned windowMs,
                         const Totals& t, unsigned victims = 0, uint64_t kernelDrops = 0) {
  capnp::MallocMessageBuilder message;
  auto s = message.initRoot<wire::Summary>();
  s.setSensorId(sensorId);
  s.setBootId(7);
  s.setSeq(1);
  s.setWindowStartNs(startNs);
  s.setWindowMs(windowMs);
  s.setKernelDrops(kernelDrops);
  auto totals = s.initTotals();
  totals.setPackets(t.packets);
  totals.setBytes(t.bytes);
  totals.setTcp(t.tcp);
  totals.setUdp(t.udp);
  totals.setIcmp(t.icmp);
  totals.setOther(t.other);
  auto list = s.initVictims(victims);
  for (unsigned i = 0; i < victims; ++i)
    list[i].setAddress(common::AddressBytes(testing::ip("198.18.2." + std::to_string(i + 1))));
  return common::encodeMessage(message, common::WireEncoding::kFlat);
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("garda-store-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    store_ = std::make_unique<Store>(dir_.string());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void reopen() {
    store_.reset();
    store_ = std::make_unique<Store>(dir_.string());
  }

  // Stores summaries in one batch; returns how many were new.
  size_t put(const std::vector<std::pair<std::string, std::string>>& summaries) {
    auto batch = store_->batch();
    size_t fresh = 0;
    for (const auto& [key, value] : summaries) {
      // As ingest does: from the decoded summary (packed, and counted in the city).
      kj::Array<capnp::word> words = kj::heapArray<capnp::word>(value.size() / sizeof(capnp::word));
      std::memcpy(words.begin(), value.data(), value.size());
      capnp::FlatArrayMessageReader reader(words);
      fresh += batch.putSummary(key, reader.getRoot<wire::Summary>());
    }
    store_->commit(batch);
    return fresh;
  }

  std::pair<std::string, std::string> summary(const std::string& sensor, int64_t startNs,
                                              unsigned windowMs, const Totals& t,
                                              unsigned victims = 0, uint64_t drops = 0) {
    return {Store::summaryKey(sensor, startNs, 7),
            summaryValue(sensor, startNs, windowMs, t, victims, drops)};
  }

  std::vector<std::pair<int64_t, CityTotals>> city(int64_t since = 0, int64_t until = 0,
                                                   size_t limit = 1000) {
    std::vector<std::pair<int64_t, CityTotals>> out;
    store_->scanCity(since, until, limit,
                     [&](int64_t start, const CityTotals& t) { out.emplace_back(start, t); });
    return out;
  }

  size_t summaryCount(const std::string& sensor) {
    size_t n = 0;
    store_->scanSummaries(sensor, 0, 0, 1'000'000, [&](auto, auto) { ++n; });
    return n;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Store> store_;
};

// ---- CityTotals -------------------------------------------------------------

TEST(CityTotals, EncodesAsTenLittleEndianWordsAndDecodesBack) {
  CityTotals t;
  t.packets = 1;
  t.bytes = 0x0102030405060708;
  t.summaries = 3;
  std::string bytes = t.encode();
  ASSERT_EQ(bytes.size(), CityTotals::kFields * 8);
  EXPECT_EQ(static_cast<uint8_t>(bytes[0]), 1);
  EXPECT_EQ(static_cast<uint8_t>(bytes[8]), 0x08);  // bytes, low byte first
  EXPECT_EQ(static_cast<uint8_t>(bytes[15]), 0x01);
  EXPECT_EQ(static_cast<uint8_t>(bytes[72]), 3);  // summaries, the tenth word
  EXPECT_EQ(CityTotals::decode(bytes), t);
}

TEST(CityTotals, ShortOrOddRecordsReadAsZerosInsteadOfFailing) {
  CityTotals t;
  t.packets = 5;
  t.bytes = 6;
  t.tcp = 7;
  std::string bytes = t.encode().substr(0, 20);  // two whole words and half a third
  CityTotals d = CityTotals::decode(bytes);
  EXPECT_EQ(d.packets, 5u);
  EXPECT_EQ(d.bytes, 6u);
  EXPECT_EQ(d.tcp, 0u);
  EXPECT_EQ(CityTotals::decode(""), CityTotals{});
  EXPECT_EQ(CityTotals::decode(t.encode() + "future"), t);
}

// ---- City totals in the summaries' batch -------------------------------------

TEST_F(StoreTest, SummariesAreStoredPackedAndReadBackFlatAsAreOldFlatOnes) {
  // One through ingest's path (packed), one as an older aggregator stored it (flat).
  put({summary("alpha", kT0, 1000, {100, 6400, 100, 0, 0, 0}, 3)});
  auto old = summary("alpha", kT0 + 1'000'000'000, 1000, {50, 3200, 0, 50, 0, 0}, 1);
  {
    auto batch = store_->batch();
    ASSERT_TRUE(batch.putSummary(old.first, old.second));
    store_->commit(batch);
  }
  std::vector<std::pair<uint64_t, unsigned>> seen;  // packets, victims
  store_->scanSummaries("alpha", 0, 0, 100, [&](std::string_view, std::string_view v) {
    ASSERT_EQ(v.size() % sizeof(capnp::word), 0u) << "scan hands out flat messages";
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(v.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), v.data(), v.size());
    capnp::FlatArrayMessageReader reader(words);
    auto s = reader.getRoot<wire::Summary>();
    seen.emplace_back(s.getTotals().getPackets(), s.getVictims().size());
  });
  EXPECT_EQ(seen, (std::vector<std::pair<uint64_t, unsigned>>{{100, 3}, {50, 1}}));
  // The packed form really is smaller than the flat one.
  auto fresh = summary("alpha", kT0 + 2'000'000'000, 1000, {1, 64, 1, 0, 0, 0}, 20);
  kj::Array<capnp::word> words =
      kj::heapArray<capnp::word>(fresh.second.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), fresh.second.data(), fresh.second.size());
  capnp::FlatArrayMessageReader reader(words);
  EXPECT_LT(Store::summaryValue(reader.getRoot<wire::Summary>()).size(), fresh.second.size());
}

TEST_F(StoreTest, ASummaryStoredAsItsPackedEnvelopeReadsBackLikeTheOtherForms) {
  // Ingest's path: the summary's envelope, packed as it came on the wire.
  capnp::MallocMessageBuilder m;
  auto sum = common::initEnvelope(m).getBody().initSummary();
  sum.setSensorId("alpha");
  sum.setBootId(7);
  sum.setSeq(3);
  sum.setWindowStartNs(kT0);
  sum.setWindowMs(1000);
  sum.initTotals().setPackets(321);
  sum.initVictims(2);
  const std::string wire = common::encodeMessage(m);
  const auto key = Store::summaryKey("alpha", kT0, 7);
  {
    auto batch = store_->batch();
    ASSERT_TRUE(
        batch.putSummary(key, m.getRoot<wire::Envelope>().asReader().getBody().getSummary(), wire));
    // A resend in the same batch, or in a later one, is not stored again.
    EXPECT_FALSE(
        batch.putSummary(key, m.getRoot<wire::Envelope>().asReader().getBody().getSummary(), wire));
    store_->commit(batch);
  }
  {
    auto batch = store_->batch();
    EXPECT_FALSE(
        batch.putSummary(key, m.getRoot<wire::Envelope>().asReader().getBody().getSummary(), wire));
  }
  // The two older forms beside it.
  put({summary("alpha", kT0 + 1'000'000'000, 1000, {50, 3200, 0, 50, 0, 0}, 1)});
  auto old = summary("alpha", kT0 + 2'000'000'000, 1000, {9, 900, 0, 9, 0, 0}, 4);
  {
    auto batch = store_->batch();
    ASSERT_TRUE(batch.putSummary(old.first, old.second));
    store_->commit(batch);
  }
  std::vector<std::tuple<uint64_t, uint64_t, unsigned>> seen;  // seq, packets, victims
  store_->scanSummaries("alpha", 0, 0, 100, [&](std::string_view, std::string_view v) {
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(v.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), v.data(), v.size());
    capnp::FlatArrayMessageReader reader(words);
    auto s = reader.getRoot<wire::Summary>();
    seen.emplace_back(s.getSeq(), s.getTotals().getPackets(), s.getVictims().size());
  });
  EXPECT_EQ(seen, (std::vector<std::tuple<uint64_t, uint64_t, unsigned>>{
                      {3, 321, 2}, {1, 50, 1}, {1, 9, 4}}));
  // The city seconds count the envelope's summary as any other.
  std::vector<uint64_t> packets;
  store_->scanCity(0, 0, 10, [&](int64_t, const CityTotals& t) { packets.push_back(t.packets); });
  EXPECT_EQ(packets, (std::vector<uint64_t>{321, 50}));
}

TEST_F(StoreTest, CitySecondSumsEverySensorsSummaryWithThatStart) {
  EXPECT_EQ(put({summary("alpha", kT0, 1000, {100, 10000, 60, 30, 10, 0}, 2, 4),
                 summary("beta", kT0, 1000, {50, 5000, 0, 50, 0, 0}, 1),
                 summary("alpha", kT0 + kSecond, 1000, {7, 700, 7, 0, 0, 0})}),
            3u);
  auto rows = city();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].first, kT0);
  const CityTotals& t = rows[0].second;
  EXPECT_EQ(t.packets, 150u);
  EXPECT_EQ(t.bytes, 15000u);
  EXPECT_EQ(t.tcp, 60u);
  EXPECT_EQ(t.udp, 80u);
  EXPECT_EQ(t.icmp, 10u);
  EXPECT_EQ(t.other, 0u);
  EXPECT_EQ(t.kernelDrops, 4u);
  EXPECT_EQ(t.victimMs, 3000u);  // three victims for a whole second
  EXPECT_EQ(t.sensorMs, 2000u);  // two sensors
  EXPECT_EQ(t.summaries, 2u);
  EXPECT_EQ(rows[1].first, kT0 + kSecond);
  EXPECT_EQ(rows[1].second.packets, 7u);
}

TEST_F(StoreTest, LaterBatchesAddToTheSameSecondAndSurviveAReopen) {
  put({summary("alpha", kT0, 1000, {100})});
  put({summary("beta", kT0, 1000, {23})});
  reopen();  // the merge operator must be registered again to read the record
  put({summary("gamma", kT0, 1000, {1})});
  auto rows = city();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].second.packets, 124u);
  EXPECT_EQ(rows[0].second.summaries, 3u);
}

TEST_F(StoreTest, ResentSummaryIsNotCountedTwiceInTheCity) {
  auto s = summary("alpha", kT0, 1000, {100});
  EXPECT_EQ(put({s, s}), 1u);  // twice in one batch
  EXPECT_EQ(put({s}), 0u);     // and again later
  auto rows = city();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].second.packets, 100u);
  EXPECT_EQ(rows[0].second.summaries, 1u);
}

// Dedup reads the store only for a window no later than the sensor's newest
// (Store::newestWindowOf); that newest is learnt from the store after a
// reopen, and one sensor's id being a prefix of another's does not mix them.
TEST_F(StoreTest, ResendsAreFoundWhateverTheirOrderAndAcrossAReopen) {
  const int64_t s = 1'000'000'000;
  EXPECT_EQ(put({summary("alpha", kT0, 1000, {1}), summary("alpha", kT0 + s, 1000, {1}),
                 summary("alpha", kT0 + 2 * s, 1000, {1})}),
            3u);
  EXPECT_EQ(put({summary("alpha-2", kT0 + 9 * s, 1000, {1})}), 1u);
  EXPECT_EQ(put({summary("alpha", kT0 + s, 1000, {1})}), 0u) << "an older window, resent";
  reopen();
  EXPECT_EQ(put({summary("alpha", kT0 + 2 * s, 1000, {1})}), 0u) << "the newest, resent";
  EXPECT_EQ(put({summary("alpha-2", kT0 + 9 * s, 1000, {1})}), 0u);
  EXPECT_EQ(put({summary("alph", kT0 + 2 * s, 1000, {1})}), 1u) << "another sensor";
  EXPECT_EQ(put({summary("alpha", kT0 + 3 * s, 1000, {1})}), 1u);
  // The same window from a new boot is another summary.
  auto rebooted = summary("alpha", kT0 + 3 * s, 1000, {1});
  rebooted.first = Store::summaryKey("alpha", kT0 + 3 * s, 8);
  EXPECT_EQ(put({rebooted}), 1u);
  EXPECT_EQ(put({rebooted}), 0u);
  EXPECT_EQ(summaryCount("alpha"), 5u);
  EXPECT_EQ(summaryCount("alpha-2"), 1u);
  EXPECT_EQ(summaryCount("alph"), 1u);
}

TEST_F(StoreTest, ShortWindowsFallIntoTheirSecond) {
  // Four 250 ms windows of one sensor and one 1 s window of another.
  put({summary("fast", kT0, 250, {10}, 1), summary("fast", kT0 + kSecond / 4, 250, {20}, 1),
       summary("fast", kT0 + kSecond / 2, 250, {30}, 1),
       summary("fast", kT0 + 3 * kSecond / 4, 250, {40}, 1), summary("slow", kT0, 1000, {5}, 1)});
  auto rows = city();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].second.packets, 105u);
  EXPECT_EQ(rows[0].second.victimMs, 2000u);  // one victim at each sensor all second
  EXPECT_EQ(rows[0].second.sensorMs, 2000u);  // two sensors reporting
  EXPECT_EQ(rows[0].second.summaries, 5u);
}

TEST_F(StoreTest, LongOrOffGridWindowIsSharedOutByOverlapWithExactSums) {
  // A 5 s window: 1001 packets over five seconds.
  put({summary("slow", kT0, 5000, {1001, 5005, 1001, 0, 0, 0}, 2)});
  auto rows = city();
  ASSERT_EQ(rows.size(), 5u);
  uint64_t packets = 0, bytes = 0, victimMs = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].first, kT0 + static_cast<int64_t>(i) * kSecond);
    EXPECT_GE(rows[i].second.packets, 200u);
    EXPECT_LE(rows[i].second.packets, 201u);
    EXPECT_EQ(rows[i].second.sensorMs, 1000u);
    EXPECT_EQ(rows[i].second.summaries, 1u);
    packets += rows[i].second.packets;
    bytes += rows[i].second.bytes;
    victimMs += rows[i].second.victimMs;
  }
  EXPECT_EQ(packets, 1001u);
  EXPECT_EQ(bytes, 5005u);
  EXPECT_EQ(victimMs, 10000u);

  // A 1 s window starting half a second off the grid: half in each second.
  put({summary("odd", kT0 + 10 * kSecond + kSecond / 2, 1000, {100})});
  auto odd = city(kT0 + 10 * kSecond);
  ASSERT_EQ(odd.size(), 2u);
  EXPECT_EQ(odd[0].second.packets, 50u);
  EXPECT_EQ(odd[1].second.packets, 50u);
  EXPECT_EQ(odd[0].second.sensorMs, 500u);
}

TEST_F(StoreTest, ACitySecondWrittenByManyBatchesSumsThemAll) {
  // 40 batches into one second: past max_successive_merges the write folds
  // the operands into one value; nothing may be lost or counted twice, in
  // the memtable or after a reopen.
  for (int i = 0; i < 40; ++i)
    ASSERT_EQ(put({summary("s" + std::to_string(i), kT0, 1000, {10, 1000, 10, 0, 0, 0})}), 1u);
  auto rows = city();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].second.packets, 400u);
  EXPECT_EQ(rows[0].second.summaries, 40u);
  EXPECT_EQ(rows[0].second.sensorMs, 40'000u);
  store_.reset();
  store_ = std::make_unique<Store>(dir_.string());
  rows = city();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].second.packets, 400u);
  EXPECT_EQ(rows[0].second.summaries, 40u);
}

TEST_F(StoreTest, CityScanKeepsTheNewestWithinSinceUntilInTimeOrder) {
  for (int i = 0; i < 10; ++i)
    put({summary("alpha", kT0 + i * kSecond, 1000, {static_cast<uint64_t>(i)})});
  auto all = city();
  ASSERT_EQ(all.size(), 10u);
  auto newest = city(0, 0, 3);
  ASSERT_EQ(newest.size(), 3u);
  EXPECT_EQ(newest[0].first, kT0 + 7 * kSecond);
  EXPECT_EQ(newest[2].first, kT0 + 9 * kSecond);
  auto range = city(kT0 + 2 * kSecond, kT0 + 5 * kSecond);
  ASSERT_EQ(range.size(), 3u);
  EXPECT_EQ(range[0].second.packets, 2u);
  EXPECT_EQ(range[2].second.packets, 4u);
}

// ---- Retention ---------------------------------------------------------------

std::string incidentJson(const std::string& id, const std::string& state, int64_t openedNs,
                         int64_t resolvedNs) {
  return nlohmann::json({{"id", id},
                         {"state", state},
                         {"opened_at_ns", openedNs},
                         {"resolved_at_ns", resolvedNs}})
      .dump();
}

std::string orderJson(const std::string& id, const std::string& state, int64_t expiresNs,
                      int64_t lastEventNs) {
  return nlohmann::json({{"id", id},
                         {"state", state},
                         {"expires_at_ns", expiresNs},
                         {"history", {{{"at_ns", lastEventNs}, {"event", state}}}}})
      .dump();
}

TEST_F(StoreTest, RetentionDeletesWhatIsOlderThanTheCutoffAndKeepsTheRest) {
  constexpr int64_t kDay = 86400 * kSecond;
  const int64_t cutoff = kT0 + 100 * kDay;  // kT0 is 2023-11-14T22:13:20Z
  // Summaries (and so city seconds) of two sensors on both sides of the cutoff.
  put({summary("alpha", kT0, 1000, {1}), summary("alpha", cutoff - kSecond, 1000, {2}),
       summary("alpha", cutoff, 1000, {3}), summary("alpha", cutoff + kDay, 1000, {4}),
       summary("alpha-2", kT0, 1000, {5}), summary("alpha-2", cutoff + kSecond, 1000, {6}),
       summary("beta", kT0 + kSecond, 1000, {7})});
  store_->appendAudit(kT0, R"({"what":"old"})");
  store_->appendAudit(cutoff + kSecond, R"({"what":"new"})");
  // inc-<open time>: ids sort by opening time.
  store_->putIncident("inc-20231114T221320Z-000001",
                      incidentJson("inc-20231114T221320Z-000001", "resolved", kT0, kT0 + kDay));
  store_->putIncident("inc-20231115T000000Z-000002",
                      incidentJson("inc-20231115T000000Z-000002", "open", kT0 + kDay, 0));
  // Opened before the cutoff but resolved after it: kept.
  store_->putIncident(
      "inc-20240221T000000Z-000003",
      incidentJson("inc-20240221T000000Z-000003", "resolved", cutoff - kDay, cutoff + kSecond));
  store_->putIncident("inc-20240301T000000Z-000004",
                      incidentJson("inc-20240301T000000Z-000004", "resolved", cutoff + kDay,
                                   cutoff + kDay + kSecond));
  store_->putOrder("ord-1", orderJson("ord-1", "expired", kT0 + kSecond, kT0 + kSecond));
  store_->putOrder("ord-2", orderJson("ord-2", "active", kT0 + kSecond, kT0));
  store_->putOrder("ord-3", orderJson("ord-3", "removed", kT0, cutoff + kSecond));
  store_->putOrder("ord-4", orderJson("ord-4", "expired", cutoff + kDay, cutoff + kDay));

  RetentionResult r = store_->deleteOlderThan(cutoff);
  EXPECT_EQ(r.sensorsSwept, 3u);
  EXPECT_EQ(r.incidents, 1u);
  EXPECT_EQ(r.orders, 1u);

  std::vector<int64_t> alpha;
  store_->scanSummaries("alpha", 0, 0, 100, [&](std::string_view key, std::string_view) {
    uint64_t start = 0;  // after "alpha\0": the window start, big-endian
    for (size_t i = 6; i < 14; ++i) start = (start << 8) | static_cast<uint8_t>(key[i]);
    alpha.push_back(static_cast<int64_t>(start));
  });
  EXPECT_EQ(alpha, (std::vector<int64_t>{cutoff, cutoff + kDay}));
  EXPECT_EQ(summaryCount("alpha-2"), 1u);
  EXPECT_EQ(summaryCount("beta"), 0u);

  auto rows = city();
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].first, cutoff);
  EXPECT_EQ(rows[0].second.packets, 3u);

  std::vector<std::string> audit;
  store_->forEachAudit(0, [&](std::string_view json) { audit.emplace_back(json); });
  EXPECT_EQ(audit, std::vector<std::string>{R"({"what":"new"})"});

  EXPECT_FALSE(store_->getIncident("inc-20231114T221320Z-000001"));
  EXPECT_TRUE(store_->getIncident("inc-20231115T000000Z-000002"));  // still open
  EXPECT_TRUE(store_->getIncident("inc-20240221T000000Z-000003"));
  EXPECT_TRUE(store_->getIncident("inc-20240301T000000Z-000004"));

  std::vector<std::string> orders;
  store_->forEachOrder([&](std::string_view id, std::string_view) { orders.emplace_back(id); });
  EXPECT_EQ(orders, (std::vector<std::string>{"ord-2", "ord-3", "ord-4"}));

  // Summaries written after the sweep still land and count in the city.
  put({summary("beta", cutoff + 2 * kSecond, 1000, {9})});
  EXPECT_EQ(summaryCount("beta"), 1u);

  // Deleted stays deleted across a reopen; a second sweep finds nothing more.
  reopen();
  EXPECT_EQ(summaryCount("alpha"), 2u);
  EXPECT_EQ(city().size(), 4u);
  RetentionResult again = store_->deleteOlderThan(cutoff);
  EXPECT_EQ(again.incidents, 0u);
  EXPECT_EQ(again.orders, 0u);
  EXPECT_EQ(summaryCount("alpha"), 2u);
}

TEST_F(StoreTest, RetentionWithNothingOldKeepsEverything) {
  put({summary("alpha", kT0, 1000, {1})});
  store_->appendAudit(kT0, "{}");
  RetentionResult r = store_->deleteOlderThan(kT0);
  EXPECT_EQ(r.sensorsSwept, 1u);
  EXPECT_EQ(summaryCount("alpha"), 1u);
  EXPECT_EQ(city().size(), 1u);
  size_t audit = 0;
  store_->forEachAudit(0, [&](std::string_view) { ++audit; });
  EXPECT_EQ(audit, 1u);
}

TEST_F(StoreTest, AggregatorSweepsAtStartWithTheConfiguredRetention) {
  const int64_t now = common::wallNowNs();
  const int64_t hour = 3600 * kSecond;
  const int64_t old = (now - 2 * hour) / kSecond * kSecond;
  const int64_t recent = (now - hour / 2) / kSecond * kSecond;
  put({summary("alpha", old, 1000, {1}), summary("alpha", recent, 1000, {2})});
  store_->appendAudit(old, R"({"what":"old"})");
  store_.reset();  // the aggregator opens the store itself

  common::AggregatorConfig config;
  config.listenSensors = "ipc://" + (dir_ / "sensors.sock").string();
  config.listenConsole = "ipc://" + (dir_ / "console.sock").string();
  config.secretKey = common::generateCurveKeyPair().secretKey;
  config.dataDir = dir_.string();
  config.retentionMs = 3'600'000;  // retention = "1h"
  {
    AggregatorServer server(config);
    std::atomic<bool> stop{false};
    std::thread loop([&] { server.run(stop); });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    stop.store(true);
    loop.join();
  }

  reopen();
  std::vector<int64_t> starts;
  store_->scanSummaries("alpha", 0, 0, 100, [&](std::string_view key, std::string_view) {
    uint64_t start = 0;
    for (size_t i = 6; i < 14; ++i) start = (start << 8) | static_cast<uint8_t>(key[i]);
    starts.push_back(static_cast<int64_t>(start));
  });
  EXPECT_EQ(starts, std::vector<int64_t>{recent});
  auto rows = city();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].first, recent);
  size_t audit = 0;
  store_->forEachAudit(0, [&](std::string_view) { ++audit; });
  EXPECT_EQ(audit, 0u);
}

// ---- The city in QueryService::history ----------------------------------------

TEST_F(StoreTest, HistoryWithoutASensorIsTheCityPerSecond) {
  common::AggregatorConfig config;
  config.sensors.push_back({"alpha", "", "", std::nullopt});
  CityView view(*store_, config);
  Dispatcher dispatcher(*store_, view, config,
                        [](const std::string&, const std::string&) { return false; });
  IncidentTracker incidents(*store_, kT0);
  QueryService queries(*store_, view, dispatcher, incidents);

  put({summary("alpha", kT0, 1000, {100, 9000, 100, 0, 0, 0}, 3, 2),
       summary("beta", kT0, 1000, {50, 1000, 0, 50, 0, 0}, 1),
       summary("alpha", kT0 + kSecond, 1000, {1})});
  QueryResult r = queries.history("", 0, 0, 0);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.body["sensor"], "");
  EXPECT_EQ(r.body["city"], true);
  ASSERT_EQ(r.body["windows"].size(), 2u);
  const auto& w = r.body["windows"][0];
  EXPECT_EQ(w["start_ns"], kT0);
  EXPECT_EQ(w["window_ms"], 1000);
  EXPECT_EQ(w["packets"], 150);
  EXPECT_EQ(w["bytes"], 10000);
  EXPECT_EQ(w["tcp"], 100);
  EXPECT_EQ(w["udp"], 50);
  EXPECT_EQ(w["victims"], 4);
  EXPECT_EQ(w["kernel_drops"], 2);
  EXPECT_EQ(w["sensors"], 2.0);
  EXPECT_EQ(w["summaries"], 2);

  QueryResult since = queries.history("", kT0 + kSecond, 0, 0);
  ASSERT_EQ(since.body["windows"].size(), 1u);

  // One sensor's history keeps its shape.
  QueryResult one = queries.history("alpha", 0, 0, 0);
  ASSERT_TRUE(one.ok) << one.error;
  EXPECT_EQ(one.body["sensor"], "alpha");
  EXPECT_EQ(one.body["city"], false);
  EXPECT_EQ(one.body["windows"].size(), 2u);
  EXPECT_EQ(queries.history("nobody", 0, 0, 0).code, 404);
}

TEST(CityHistory, DownsampledWithoutARowPerSecondAsDownsampleWouldDoIt) {
  // 3000 city seconds with gaps; every field varies, victims and sensors
  // round per second. Bucketed in place, they must equal the per-second
  // rows put through downsample(), for any points and range.
  std::mt19937_64 rng(7);
  std::vector<std::pair<int64_t, CityTotals>> rows;
  int64_t t = kT0;
  for (int i = 0; i < 3000; ++i) {
    t += kSecond * static_cast<int64_t>(1 + rng() % 3);
    CityTotals c;
    c.packets = rng() % 1'000'000;
    c.bytes = c.packets * (60 + rng() % 1400);
    c.tcp = c.packets / 2;
    c.udp = c.packets / 3;
    c.icmp = rng() % 100;
    c.other = rng() % 10;
    c.kernelDrops = rng() % 5;
    c.victimMs = rng() % 50'000;
    c.sensorMs = rng() % 7'000;
    c.summaries = rng() % 40;
    rows.emplace_back(t, c);
  }
  const nlohmann::json plain = downsampleCity(rows, 0, 0, 0);
  ASSERT_EQ(plain.size(), rows.size());
  EXPECT_EQ(plain[5]["victims"], cityVictims(rows[5].second));
  const std::pair<int64_t, int64_t> ranges[] = {
      {0, 0}, {rows[10].first, 0}, {0, rows[2000].first}, {kT0 - 5 * kSecond, t + 100 * kSecond}};
  for (uint32_t points : {1u, 7u, 100u, 2999u, 10'000u})
    for (const auto& [since, until] : ranges)
      EXPECT_EQ(downsampleCity(rows, points, since, until), downsample(plain, points, since, until))
          << points << " points, since " << since << ", until " << until;
}

// ---- Incidents written to the store ---------------------------------------

TEST_F(StoreTest, AnIncidentsFigureOnlyChangesAreCoalescedAndTheLastIsWritten) {
  IncidentTracker incidents(*store_, kT0);
  std::vector<IncidentChangeKind> told;
  incidents.addChangeObserver(
      [&](const Incident&, const IncidentChange& c, int64_t) { told.push_back(c.kind); });
  const int64_t ms = 1'000'000;
  auto window = [&](int64_t second, uint64_t syn, int64_t arrival) {
    testing::BuiltSummary s("alpha", kT0 + second * kSecond, 1000,
                            {{"198.18.2.10", {{wire::Vector::TCP_SYN, syn}}, {}, {}, 50000}});
    incidents.onSummary(s.reader(), arrival);
    incidents.tick(arrival);
  };
  auto storedPeak = [&](const std::string& id) {
    auto json = store_->getIncident(id);
    return json ? nlohmann::json::parse(*json)["peak_pps"].get<double>() : -1.0;
  };
  // Opened at once.
  window(0, 40000, kT0);
  ASSERT_EQ(incidents.correlator().openIncidents().size(), 1u);
  const std::string id = incidents.correlator().openIncidents()[0]->id;
  ASSERT_EQ(told, std::vector<IncidentChangeKind>{IncidentChangeKind::kOpened});
  EXPECT_EQ(storedPeak(id), 40000);
  // Three more windows within 1 s of it: only the figures change, so they
  // are held back (the incident in memory has them).
  for (int64_t w = 1; w <= 3; ++w) window(w, 40000 + 1000 * w, kT0 + w * 250 * ms);
  EXPECT_EQ(told.size(), 1u);
  EXPECT_EQ(storedPeak(id), 40000);
  EXPECT_EQ(incidents.correlator().find(id)->peakPps, 43000);
  EXPECT_EQ(incidents.showJson(id).value()["peak_pps"], 43000) << "queries read memory";
  // The first tick 1 s after the last write writes the last of them, once.
  incidents.tick(kT0 + 999 * ms);
  EXPECT_EQ(told.size(), 1u);
  incidents.tick(kT0 + 1000 * ms);
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[1], IncidentChangeKind::kUpdated);
  EXPECT_EQ(storedPeak(id), 43000);
  incidents.tick(kT0 + 2500 * ms);
  EXPECT_EQ(told.size(), 2u) << "nothing more to write";
  // A change after the interval is written at once.
  window(4, 44000, kT0 + 2500 * ms);
  ASSERT_EQ(told.size(), 3u);
  EXPECT_EQ(storedPeak(id), 44000);
  window(5, 45000, kT0 + 2600 * ms);
  EXPECT_EQ(storedPeak(id), 44000);
}

TEST_F(StoreTest, AnIncidentsFigureOnlyChangeHeldBackIsWrittenAtShutdown) {
  std::string id;
  {
    IncidentTracker incidents(*store_, kT0);
    auto window = [&](int64_t second, uint64_t syn, int64_t arrival) {
      testing::BuiltSummary s("alpha", kT0 + second * kSecond, 1000,
                              {{"198.18.2.10", {{wire::Vector::TCP_SYN, syn}}, {}, {}, 50000}});
      incidents.onSummary(s.reader(), arrival);
    };
    window(0, 40000, kT0);
    window(1, 42000, kT0 + 10'000'000);
    id = incidents.correlator().openIncidents().at(0)->id;
  }
  auto json = store_->getIncident(id);
  ASSERT_TRUE(json);
  EXPECT_EQ(nlohmann::json::parse(*json)["peak_pps"], 42000);
}

}  // namespace
}  // namespace garda::aggregator

namespace garda::aggregator {
namespace {

TEST_F(StoreTest, EvidenceIsKeptPerSensorAndGoesWithItsIncident) {
  constexpr int64_t kDay = 86400 * kSecond;
  const std::string old = "inc-20231114T221320Z-000001";
  const std::string open = "inc-20231115T000000Z-000002";
  store_->putIncident(old, incidentJson(old, "resolved", kT0, kT0 + kDay));
  store_->putIncident(open, incidentJson(open, "open", kT0 + kDay, 0));
  store_->putEvidence(old, "alpha", "a1");
  store_->putEvidence(old, "beta", "b1");
  store_->putEvidence(open, "alpha", "a2");
  // An id that extends another's must not be taken as the same incident.
  store_->putEvidence(old + "9", "alpha", "x");
  auto evidence = [&](const std::string& id) {
    std::vector<std::string> out;
    store_->forEachEvidence(id, [&](std::string_view sensor, std::string_view value) {
      out.push_back(std::string(sensor) + "=" + std::string(value));
    });
    return out;
  };
  EXPECT_EQ(evidence(old), (std::vector<std::string>{"alpha=a1", "beta=b1"}));
  store_->putEvidence(old, "alpha", "a1'");  // a second answer replaces the first
  EXPECT_EQ(evidence(old), (std::vector<std::string>{"alpha=a1'", "beta=b1"}));

  store_->deleteOlderThan(kT0 + 100 * kDay);
  EXPECT_TRUE(evidence(old).empty()) << "deleted with its resolved incident";
  EXPECT_EQ(evidence(open), (std::vector<std::string>{"alpha=a2"})) << "open: kept";
  EXPECT_EQ(evidence(old + "9"), (std::vector<std::string>{"alpha=x"}));
  reopen();
  EXPECT_EQ(evidence(open), (std::vector<std::string>{"alpha=a2"}));
}

// ---- RocksDB's CRC32C --------------------------------------------------------

// The interposed Extend computes exactly what librocksdb's own does: the
// standard CRC-32C check values, and the library's own result for every
// length and alignment, alone and chained.
TEST(RocksDbCrc32c, MatchesTheStandardValuesAndTheLibrarysOwn) {
  auto crc = [](std::string_view s, uint32_t init = 0) {
    return rocksdbCrc32cExtend(init, s.data(), s.size());
  };
  // RFC 3720 (iSCSI), B.4, and the usual check value.
  EXPECT_EQ(crc("123456789"), 0xe3069283u);
  EXPECT_EQ(crc(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(crc(std::string(32, '\xff')), 0x62a8ab43u);
  std::string ascending;
  for (char c = 0; c < 32; ++c) ascending.push_back(c);
  EXPECT_EQ(crc(ascending), 0x46dd794eu);
  EXPECT_EQ(crc(""), 0u);
  EXPECT_EQ(crc("world", crc("hello ")), crc("hello world"));

  const auto own = rocksdbOwnCrc32cExtend;
  std::mt19937_64 rng(7);
  std::string bytes(4096 + 8, '\0');
  for (auto& b : bytes) b = static_cast<char>(rng());
  for (size_t offset = 0; offset < 8; ++offset)
    for (size_t n = 0; n <= 300; ++n) {
      const char* p = bytes.data() + offset;
      ASSERT_EQ(rocksdbCrc32cExtend(0, p, n), own(0, p, n)) << "offset " << offset << " n " << n;
      const uint32_t init = static_cast<uint32_t>(rng());
      ASSERT_EQ(rocksdbCrc32cExtend(init, p, n), own(init, p, n));
    }
  EXPECT_EQ(rocksdbCrc32cExtend(0, bytes.data() + 3, 4096), own(0, bytes.data() + 3, 4096));
}

// RocksDB's own checksums (the WAL, the MANIFEST, the blob records, the
// table blocks) go through this process's Extend, and what they wrote is
// read back: after a reopen the WAL is replayed (each record's CRC checked)
// and flushed to a blob file, and after a second reopen every summary is
// read from that blob file, its record's CRC checked again.
TEST_F(StoreTest, RocksDbsOwnChecksumsGoThroughTheHardwareCrc32cAndReadBack) {
  const uint64_t before = rocksdbCrc32c().calls;
  std::vector<std::pair<std::string, std::string>> summaries;
  for (int i = 0; i < 200; ++i)
    summaries.push_back(summary("alpha", kT0 + i * kSecond, 1000, {100}, 200));
  ASSERT_GE(summaries[0].second.size(), 2048u) << "large enough for a blob file, packed";
  EXPECT_EQ(put(summaries), 200u);
  EXPECT_GT(rocksdbCrc32c().calls, before + 1) << "RocksDB did not call the interposed Extend";
  EXPECT_EQ(rocksdbCrc32c().hardware, __builtin_cpu_supports("sse4.2") != 0);
  reopen();
  reopen();
  bool blobFile = false;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_))
    blobFile |= e.path().extension() == ".blob";
  EXPECT_TRUE(blobFile);
  size_t read = 0;
  store_->scanSummaries("alpha", 0, 0, 1000, [&](std::string_view, std::string_view value) {
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(
        reinterpret_cast<const capnp::word*>(value.data()), value.size() / sizeof(capnp::word)));
    auto sum = reader.getRoot<wire::Summary>();
    EXPECT_EQ(sum.getVictims().size(), 200u);
    EXPECT_EQ(sum.getWindowStartNs(), kT0 + static_cast<int64_t>(read) * kSecond);
    ++read;
  });
  EXPECT_EQ(read, 200u);
}

}  // namespace
}  // namespace garda::aggregator
