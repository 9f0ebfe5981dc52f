#include "aggregator/detect.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/unit/aggregator/summary_builder.h"

namespace garda::aggregator {
namespace {

using testing::BuiltAlert;
using testing::BuiltSummary;
using testing::ip;
using testing::kSecond;
using testing::kT0;
using testing::VictimSpec;

constexpr const char* kVictim = "198.18.2.10";

// Window `i` of a sensor at `windowMs`: the detector's batch, copied.
DetectBatch feed(Detector& d, const std::string& sensor, int64_t i,
                 const std::vector<VictimSpec>& victims, unsigned windowMs = 1000) {
  BuiltSummary s(sensor, kT0 + i * windowMs * 1'000'000LL, windowMs, victims);
  return d.observe(s.reader());
}

// One victim with one vector at `pps` (1 s windows: packets = pps).
std::vector<VictimSpec> one(wire::Vector v, uint64_t pps, const char* victim = kVictim) {
  return {VictimSpec{victim, {{v, pps}}, {}, {}, 0}};
}

// A config whose SYN floor sits above a busy but normal rate, so the
// adaptive threshold is what is tested.
DetectConfig synFloor(double floor) {
  DetectConfig c;
  c.floorPps[static_cast<size_t>(wire::Vector::TCP_SYN)] = floor;
  return c;
}

// Warms a SYN baseline of ~800 pps with +-5% noise for `windows` windows.
void warm(Detector& d, int64_t& i, int windows, const char* victim = kVictim) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> noise(-40, 40);
  for (int n = 0; n < windows; ++n, ++i) {
    auto b = feed(d, "alpha", i, one(wire::Vector::TCP_SYN, 800 + noise(rng), victim));
    ASSERT_TRUE(b.anomalies.empty()) << "normal traffic flagged at window " << n;
  }
}

TEST(Detector, DuringWarmupOnlyTheFloorAppliesAfterMWindows) {
  Detector d;  // tcpSyn floor 2000 pps, M = 2 at 1 s windows
  int64_t i = 0;
  for (; i < 3; ++i)
    EXPECT_TRUE(feed(d, "alpha", i, one(wire::Vector::TCP_SYN, 1900)).anomalies.empty());
  EXPECT_TRUE(feed(d, "alpha", i++, one(wire::Vector::TCP_SYN, 2500)).anomalies.empty())
      << "one window over the floor is not yet M = 2";
  auto b = feed(d, "alpha", i++, one(wire::Vector::TCP_SYN, 2500));
  ASSERT_EQ(b.anomalies.size(), 1u);
  const Anomaly& a = b.anomalies[0];
  EXPECT_TRUE(a.warmingUp);
  EXPECT_TRUE(a.onset);
  EXPECT_DOUBLE_EQ(a.thresholdPps, 2000);
  EXPECT_DOUBLE_EQ(a.pps, 2500);
  EXPECT_EQ(a.classification, "syn_flood");
  EXPECT_EQ(a.sensorId, "alpha");
  EXPECT_EQ(a.victim, ip(kVictim));
  EXPECT_EQ(a.windowStartNs, kT0 + 4 * kSecond);
  auto next = feed(d, "alpha", i++, one(wire::Vector::TCP_SYN, 2600));
  ASSERT_EQ(next.anomalies.size(), 1u);
  EXPECT_FALSE(next.anomalies[0].onset);
}

TEST(Detector, NoisyNormalRateIsQuietAndTenfoldIsFlaggedAfterMWindows) {
  Detector d(synFloor(1000));
  int64_t i = 0;
  warm(d, i, 100);
  Detector::BaselineView base;
  ASSERT_TRUE(d.baseline("alpha", ip(kVictim), wire::Vector::TCP_SYN, 0, base));
  EXPECT_NEAR(base.mean, 800, 20);
  // Over the floor but within the learned baseline's k * sigma: normal.
  for (int n = 0; n < 5; ++n, ++i)
    EXPECT_TRUE(feed(d, "alpha", i, one(wire::Vector::TCP_SYN, 1100)).anomalies.empty());
  // Over the threshold but under twice it (M = 2 at 1 s windows): flagged
  // in the second window, not the first.
  EXPECT_TRUE(feed(d, "alpha", i++, one(wire::Vector::TCP_SYN, 2150)).anomalies.empty());
  auto b = feed(d, "alpha", i++, one(wire::Vector::TCP_SYN, 2150));
  ASSERT_EQ(b.anomalies.size(), 1u);
  EXPECT_FALSE(b.anomalies[0].warmingUp);
  EXPECT_NEAR(b.anomalies[0].baselineMean, 800, 60);
  EXPECT_GT(b.anomalies[0].thresholdPps, 1100);
  EXPECT_LT(b.anomalies[0].thresholdPps, 8000);
}

TEST(Detector, ALongAttackDoesNotBecomeTheBaseline) {
  Detector d(synFloor(1000));
  int64_t i = 0;
  warm(d, i, 100);
  size_t flagged = 0;
  for (int n = 0; n < 600; ++n, ++i)
    flagged += feed(d, "alpha", i, one(wire::Vector::TCP_SYN, 8000)).anomalies.size();
  EXPECT_EQ(flagged, 600u) << "ten times normal is a burst: flagged from the first window on";
  Detector::BaselineView base;
  ASSERT_TRUE(d.baseline("alpha", ip(kVictim), wire::Vector::TCP_SYN, 0, base));
  EXPECT_NEAR(base.mean, 800, 60) << "the attack leaked into the baseline";
  EXPECT_TRUE(base.active);
  // Back to normal: quiet after clearMs (3 windows), then a new attack is
  // found again after M windows.
  std::vector<Quiet> quiets;
  for (int n = 0; n < 5; ++n, ++i) {
    auto b = feed(d, "alpha", i, one(wire::Vector::TCP_SYN, 800));
    EXPECT_TRUE(b.anomalies.empty());
    quiets.insert(quiets.end(), b.quiets.begin(), b.quiets.end());
  }
  ASSERT_EQ(quiets.size(), 1u);
  EXPECT_EQ(quiets[0].windowStartNs, kT0 + (100 + 600 + 2) * kSecond);
  EXPECT_EQ(quiets[0].classification, "syn_flood");
  auto b = feed(d, "alpha", i++, one(wire::Vector::TCP_SYN, 8000));
  ASSERT_EQ(b.anomalies.size(), 1u) << "a new attack is found again";
  EXPECT_TRUE(b.anomalies[0].onset);
}

TEST(Detector, OneWindowCarryingMWindowsWorthOpensAtOnce) {
  // Warm-up: the floor (2000 pps) is the threshold; M = 2 at 1 s windows.
  Detector d;
  int64_t i = 0;
  auto under = feed(d, "alpha", i++, one(wire::Vector::TCP_SYN, 3999));
  EXPECT_TRUE(under.anomalies.empty()) << "under twice the threshold: wait for M windows";
  Detector burst;
  auto at = feed(burst, "alpha", 0, one(wire::Vector::TCP_SYN, 4000));
  ASSERT_EQ(at.anomalies.size(), 1u) << "one window with two windows' worth: at once";
  EXPECT_TRUE(at.anomalies[0].onset);
  // At 250 ms windows M = 8: one window must carry 2 s at the floor.
  Detector shortWindows;
  // 3999 packets in 250 ms (16 kpps, eight times the floor): not quite.
  EXPECT_TRUE(feed(shortWindows, "alpha", 0, one(wire::Vector::TCP_SYN, 3999), 250).anomalies.empty());
  Detector shortBurst;
  EXPECT_EQ(feed(shortBurst, "alpha", 0, one(wire::Vector::TCP_SYN, 4000), 250).anomalies.size(), 1u);
}

TEST(Detector, ClassifiesEveryVector) {
  const std::pair<wire::Vector, const char*> cases[] = {
      {wire::Vector::TCP_SYN, "syn_flood"},       {wire::Vector::TCP_SYN_ACK, "synack_reflection"},
      {wire::Vector::TCP_OTHER, "ack_rst_flood"}, {wire::Vector::UDP, "udp_flood"},
      {wire::Vector::ICMP, "icmp_flood"},         {wire::Vector::FRAGMENT, "fragment_flood"},
      {wire::Vector::OTHER, "ip_proto_flood"},
  };
  for (const auto& [vector, name] : cases) {
    Detector d;
    feed(d, "alpha", 0, one(vector, 100000));
    auto b = feed(d, "alpha", 1, one(vector, 100000));
    ASSERT_EQ(b.anomalies.size(), 1u) << name;
    EXPECT_EQ(b.anomalies[0].classification, name);
    EXPECT_EQ(b.anomalies[0].vector, vector);
    EXPECT_EQ(b.anomalies[0].reflectionPort, 0);
    EXPECT_EQ(b.anomalies[0].victimClassification, name);
  }
}

TEST(Detector, NamesEachReflectionPort) {
  const std::pair<uint16_t, const char*> cases[] = {
      {53, "dns_reflection"},          {123, "ntp_reflection"},   {1900, "ssdp_reflection"},
      {11211, "memcached_reflection"}, {389, "cldap_reflection"}, {19, "chargen_reflection"},
      {161, "snmp_reflection"},        {3702, "wsd_reflection"},  {5353, "mdns_reflection"},
      {137, "netbios_reflection"},
  };
  for (const auto& [port, name] : cases) {
    Detector d;
    std::vector<VictimSpec> v = {
        {kVictim, {{wire::Vector::UDP_REFLECTION, 20000}}, {{port, 20000}}, {}, 0}};
    feed(d, "alpha", 0, v);
    auto b = feed(d, "alpha", 1, v);
    ASSERT_EQ(b.anomalies.size(), 1u) << name << ": the all-ports total must not be reported too";
    EXPECT_EQ(b.anomalies[0].classification, name);
    EXPECT_EQ(b.anomalies[0].reflectionPort, port);
    EXPECT_EQ(b.anomalies[0].vector, wire::Vector::UDP_REFLECTION);
  }
}

TEST(Detector, ReflectionSpreadUnderEachPortFloorIsFoundInTheTotal) {
  Detector d;  // 1000 pps per port, 5000 for all reflection ports together
  std::vector<VictimSpec> v = {
      {kVictim,
       {{wire::Vector::UDP_REFLECTION, 7 * 900}},
       {{53, 900}, {123, 900}, {161, 900}, {389, 900}, {1900, 900}, {3702, 900}, {11211, 900}},
       {},
       0}};
  feed(d, "alpha", 0, v);
  auto b = feed(d, "alpha", 1, v);
  ASSERT_EQ(b.anomalies.size(), 1u);
  EXPECT_EQ(b.anomalies[0].classification, "udp_reflection");
  EXPECT_EQ(b.anomalies[0].reflectionPort, 0);
}

// Reflection by volume: windows of large DNS answers (bytesPerPacket each)
// with their non-first fragments, far under every packet floor.
DetectBatch feedLarge(Detector& d, int64_t i, uint64_t answers, uint64_t fragments,
                      uint64_t bytesPerPacket) {
  std::vector<VictimSpec> v = {{kVictim,
                                {{wire::Vector::UDP_REFLECTION, answers},
                                 {wire::Vector::FRAGMENT, fragments},
                                 {wire::Vector::TCP_OTHER, 50}},
                                {{53, answers}},
                                {},
                                0}};
  BuiltSummary s("alpha", kT0 + i * kSecond, 1000, v, bytesPerPacket);
  return d.observe(s.reader());
}

TEST(Detector, LargeAnswersWithTheirFragmentsAreReflectionByVolume) {
  Detector d;  // 1 Mbit/s, at least 512 bytes a packet on average
  // 60 answers and 100 fragments of 1200 bytes a second: 1.5 Mbit/s in 160 pps.
  EXPECT_TRUE(feedLarge(d, 0, 60, 100, 1200).anomalies.empty()) << "M = 2 windows";
  auto b = feedLarge(d, 1, 60, 100, 1200);
  ASSERT_EQ(b.anomalies.size(), 1u);
  const Anomaly& a = b.anomalies[0];
  EXPECT_EQ(a.classification, "dns_reflection");
  EXPECT_EQ(a.reflectionPort, 53);
  EXPECT_EQ(a.vector, wire::Vector::UDP_REFLECTION);
  EXPECT_TRUE(a.byVolume);
  EXPECT_DOUBLE_EQ(a.pps, 160) << "the fragments count toward the reflection";
  EXPECT_DOUBLE_EQ(a.bps, 160.0 * 1200 * 8);
  EXPECT_DOUBLE_EQ(a.thresholdBps, 1'000'000);
  // Quiet again once the volume stops, after clearMs (3 windows).
  for (int64_t i = 2; i < 4; ++i) EXPECT_TRUE(feedLarge(d, i, 1, 0, 1200).quiets.empty());
  auto q = feedLarge(d, 4, 1, 0, 1200);
  EXPECT_TRUE(q.anomalies.empty());
  ASSERT_EQ(q.quiets.size(), 1u);
  EXPECT_EQ(q.quiets[0].classification, "dns_reflection");
}

TEST(Detector, SmallAnswersAtTheSameBitRateAreNotReflectionByVolume) {
  Detector d;
  // 900 answers of 200 bytes: 1.44 Mbit/s, under the port's packet floor.
  for (int64_t i = 0; i < 5; ++i)
    EXPECT_TRUE(feedLarge(d, i, 900, 0, 200).anomalies.empty()) << "window " << i;
}

TEST(Detector, ReflectionByVolumeNeedsTheFloor) {
  Detector d;
  // 60 answers and 20 fragments of 1200 bytes: 768 kbit/s, under 1000.
  for (int64_t i = 0; i < 5; ++i)
    EXPECT_TRUE(feedLarge(d, i, 60, 20, 1200).anomalies.empty()) << "window " << i;
  // Fragments alone name no reflection, with no reflection port in the
  // window or one listed with nothing.
  for (int64_t i = 5; i < 10; ++i)
    EXPECT_TRUE(feedLarge(d, i, 0, 150, 1400).anomalies.empty()) << "window " << i;
  for (int64_t i = 10; i < 15; ++i) {
    std::vector<VictimSpec> v = {{kVictim, {{wire::Vector::FRAGMENT, 150}}, {}, {}, 0}};
    BuiltSummary s("alpha", kT0 + i * kSecond, 1000, v, 1400);
    EXPECT_TRUE(d.observe(s.reader()).anomalies.empty()) << "window " << i;
  }
}

TEST(Detector, ReflectionByVolumeBaselinesSurviveARestart) {
  Detector d;
  feedLarge(d, 0, 60, 100, 1200);
  feedLarge(d, 1, 60, 100, 1200);
  Detector restored;
  for (const auto& [k, v] : d.allRecords()) EXPECT_TRUE(restored.load(k, v));
  EXPECT_EQ(restored.counters().recordsRejected, 0u);
  // Still active: the next window over the floor continues, no new onset.
  auto b = feedLarge(restored, 2, 60, 100, 1200);
  ASSERT_EQ(b.anomalies.size(), 1u);
  EXPECT_FALSE(b.anomalies[0].onset);
}

TEST(Detector, SeveralAttacksOnOneVictimAreMixed) {
  Detector d;
  std::vector<VictimSpec> v = {
      {kVictim,
       {{wire::Vector::TCP_SYN, 50000}, {wire::Vector::UDP_REFLECTION, 30000}},
       {{123, 30000}},
       testing::sources("203.0.113", 1, 5, 900),
       0},
      {"198.18.2.11", {{wire::Vector::ICMP, 9000}}, {}, testing::sources("192.0.2", 1, 3, 500), 0}};
  feed(d, "alpha", 0, v);
  auto b = feed(d, "alpha", 1, v);
  ASSERT_EQ(b.anomalies.size(), 3u);
  for (const auto& a : b.anomalies) {
    // Each anomaly carries its own victim's top sources, read once per
    // victim and shared by its anomalies.
    if (a.victim == ip(kVictim)) {
      EXPECT_EQ(a.victimClassification, kMixedAttack) << a.classification;
      ASSERT_EQ(a.topSources.size(), 5u) << a.classification;
      EXPECT_EQ(a.topSources[4].address, ip("203.0.113.5"));
    } else {
      EXPECT_EQ(a.victimClassification, "icmp_flood");
      ASSERT_EQ(a.topSources.size(), 3u);
      EXPECT_EQ(a.topSources[0].address, ip("192.0.2.1"));
    }
  }
}

TEST(Detector, SensorAlertOpensAtOnce) {
  Detector d;
  BuiltAlert alert("alpha", kVictim, wire::Vector::UDP, 60000, kT0, kT0 + kSecond / 2);
  const DetectBatch& b = d.observeAlert(alert.reader());
  ASSERT_EQ(b.anomalies.size(), 1u);
  EXPECT_TRUE(b.fromAlert);
  EXPECT_TRUE(b.anomalies[0].fromAlert);
  EXPECT_TRUE(b.anomalies[0].onset);
  EXPECT_EQ(b.anomalies[0].classification, "udp_flood");
  EXPECT_DOUBLE_EQ(b.anomalies[0].pps, 120000) << "60000 packets in half a window";
  // The window's summary continues the same activation (no second onset).
  auto s = feed(d, "alpha", 0, one(wire::Vector::UDP, 130000));
  ASSERT_EQ(s.anomalies.size(), 1u);
  EXPECT_FALSE(s.anomalies[0].onset);
}

TEST(Detector, MissingWindowsAreZeroTraffic) {
  Detector d;
  // Over the floor in windows 0 and 2 with nothing reported in 1: not consecutive.
  EXPECT_TRUE(feed(d, "alpha", 0, one(wire::Vector::UDP, 9000)).anomalies.empty());
  EXPECT_TRUE(feed(d, "alpha", 2, one(wire::Vector::UDP, 9000)).anomalies.empty());
  ASSERT_EQ(feed(d, "alpha", 3, one(wire::Vector::UDP, 9000)).anomalies.size(), 1u);
  // The sensor then reports only other victims: the attack is over after
  // clearMs of zero windows, found by the sweep of active keys.
  EXPECT_TRUE(feed(d, "alpha", 4, one(wire::Vector::TCP_SYN, 10, "198.18.2.99")).quiets.empty());
  EXPECT_TRUE(feed(d, "alpha", 5, one(wire::Vector::TCP_SYN, 10, "198.18.2.99")).quiets.empty());
  auto b = feed(d, "alpha", 6, one(wire::Vector::TCP_SYN, 10, "198.18.2.99"));
  ASSERT_EQ(b.quiets.size(), 1u);
  EXPECT_EQ(b.quiets[0].victim, ip(kVictim));
  EXPECT_EQ(b.quiets[0].windowStartNs, kT0 + 6 * kSecond);
}

TEST(Detector, AWindowThatSkipsAheadEndsAnActivation) {
  Detector d;
  feed(d, "alpha", 0, one(wire::Vector::UDP, 9000));
  ASSERT_EQ(feed(d, "alpha", 1, one(wire::Vector::UDP, 9000)).anomalies.size(), 1u);
  // Replay: the next non-empty window is an hour later and the victim is
  // back under attack. The activation ended in the gap; this is a new one.
  auto b = feed(d, "alpha", 3600, one(wire::Vector::UDP, 9000));
  ASSERT_EQ(b.quiets.size(), 1u);
  EXPECT_EQ(b.quiets[0].windowStartNs, kT0 + 4 * kSecond) << "quiet after 3 zero windows";
  EXPECT_TRUE(b.anomalies.empty()) << "a new activation needs M windows again";
  auto c = feed(d, "alpha", 3601, one(wire::Vector::UDP, 9000));
  ASSERT_EQ(c.anomalies.size(), 1u);
  EXPECT_TRUE(c.anomalies[0].onset);
}

TEST(Detector, SustainIsTimeNotWindows) {
  Detector d;  // sustainMs 2000: 8 windows of 250 ms
  for (int64_t i = 0; i < 7; ++i)
    EXPECT_TRUE(feed(d, "quick", i, one(wire::Vector::UDP, 9000 / 4), 250).anomalies.empty()) << i;
  auto b = feed(d, "quick", 7, one(wire::Vector::UDP, 9000 / 4), 250);
  ASSERT_EQ(b.anomalies.size(), 1u);
  EXPECT_DOUBLE_EQ(b.anomalies[0].pps, 9000);
  EXPECT_EQ(b.anomalies[0].windowMs, 250u);
}

TEST(Detector, StaleWindowsAreIgnored) {
  Detector d;
  feed(d, "alpha", 5, one(wire::Vector::UDP, 100));
  feed(d, "alpha", 5, one(wire::Vector::UDP, 100));
  feed(d, "alpha", 4, one(wire::Vector::UDP, 100));
  EXPECT_EQ(d.counters().staleWindows, 2u);
  Detector::BaselineView base;
  ASSERT_TRUE(d.baseline("alpha", ip(kVictim), wire::Vector::UDP, 0, base));
  EXPECT_EQ(base.samples, 1u);
}

TEST(Detector, AnomalyCarriesTheVictimsSources) {
  Detector d;
  std::vector<VictimSpec> v = {{kVictim,
                                {{wire::Vector::TCP_SYN, 30000}},
                                {},
                                testing::sources("203.0.113", 1, 3, 10000),
                                3}};
  feed(d, "alpha", 0, v);
  auto b = feed(d, "alpha", 1, v);
  ASSERT_EQ(b.anomalies.size(), 1u);
  const auto& a = b.anomalies[0];
  ASSERT_EQ(a.topSources.size(), 3u);
  EXPECT_EQ(a.topSources[0].address, ip("203.0.113.1"));
  EXPECT_EQ(a.topSources[0].packets, 10000u);
  EXPECT_EQ(a.distinctSources, 3u);
  EXPECT_EQ(a.victimPackets, 30000u);
  EXPECT_DOUBLE_EQ(a.bps, 30000.0 * 100 * 8);
  ASSERT_EQ(a.topDstPorts.size(), 1u);
  EXPECT_EQ(a.topDstPorts[0].port, 80);
}

TEST(Detector, RestoredRecordsKeepTheBaselineAndTheActivation) {
  Detector d(synFloor(1000));
  int64_t i = 0;
  warm(d, i, 100);
  // A second victim mid-attack.
  feed(d, "alpha", i, one(wire::Vector::UDP, 9000, "198.18.2.20"));
  feed(d, "alpha", i + 1, one(wire::Vector::UDP, 9000, "198.18.2.20"));

  Detector restored(synFloor(1000));
  auto records = d.allRecords();
  ASSERT_EQ(records.size(), 2u);
  for (const auto& [k, v] : records) ASSERT_TRUE(restored.load(k, v));
  EXPECT_FALSE(restored.load("garbage", "x"));
  EXPECT_EQ(restored.counters().recordsRejected, 1u);

  Detector::BaselineView a, b;
  ASSERT_TRUE(d.baseline("alpha", ip(kVictim), wire::Vector::TCP_SYN, 0, a));
  ASSERT_TRUE(restored.baseline("alpha", ip(kVictim), wire::Vector::TCP_SYN, 0, b));
  EXPECT_DOUBLE_EQ(a.mean, b.mean);
  EXPECT_DOUBLE_EQ(a.sigma, b.sigma);
  EXPECT_EQ(a.samples, b.samples);
  EXPECT_EQ(a.lastWindowStartNs, b.lastWindowStartNs);

  // The restored baseline is past warm-up: 1100 pps is normal (a fresh
  // detector would flag it against the floor alone) ...
  Detector fresh(synFloor(1000));
  i += 2;
  feed(restored, "alpha", i, one(wire::Vector::TCP_SYN, 1100));
  feed(fresh, "alpha", i, one(wire::Vector::TCP_SYN, 1100));
  std::vector<VictimSpec> both = {{kVictim, {{wire::Vector::TCP_SYN, 1100}}, {}, {}, 0},
                                  {"198.18.2.20", {{wire::Vector::UDP, 9000}}, {}, {}, 0}};
  auto r = feed(restored, "alpha", i + 1, both);
  EXPECT_EQ(fresh.trackedKeys(), 1u);
  EXPECT_EQ(feed(fresh, "alpha", i + 1, one(wire::Vector::TCP_SYN, 1100)).anomalies.size(), 1u);
  // ... and the attack in progress continues, no new onset.
  ASSERT_EQ(r.anomalies.size(), 1u);
  EXPECT_EQ(r.anomalies[0].victim, ip("198.18.2.20"));
  EXPECT_FALSE(r.anomalies[0].onset);
}

TEST(Detector, DirtyRecordsListOnlyChangesOnce) {
  Detector d;
  feed(d, "alpha", 0, one(wire::Vector::UDP, 100));
  feed(d, "beta", 0, one(wire::Vector::UDP, 100));
  auto first = d.dirtyRecords();
  EXPECT_EQ(first.size(), 2u);
  EXPECT_TRUE(d.dirtyRecords().empty());
  feed(d, "alpha", 1, one(wire::Vector::UDP, 100));
  auto second = d.dirtyRecords();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].first.substr(0, 6), std::string("alpha\0", 6));
}

TEST(Detector, MemoryCapEvictsTheStalestKeys) {
  DetectConfig c;
  c.maxKeys = 64;
  Detector d(c);
  for (int64_t i = 0; i < 200; ++i) {
    std::string victim = "198.18." + std::to_string(i / 250) + "." + std::to_string(i % 250);
    feed(d, "alpha", i, one(wire::Vector::UDP, 100, victim.c_str()));
    ASSERT_LE(d.trackedKeys(), 64u);
  }
  EXPECT_GT(d.counters().evictions, 0u);
  Detector::BaselineView b;
  EXPECT_FALSE(d.baseline("alpha", ip("198.18.0.0"), wire::Vector::UDP, 0, b)) << "oldest kept";
  EXPECT_TRUE(d.baseline("alpha", ip("198.18.0.199"), wire::Vector::UDP, 0, b)) << "newest evicted";
  size_t erased = 0;
  for (const auto& [k, v] : d.dirtyRecords()) erased += v.empty();
  EXPECT_EQ(erased, d.counters().evictions) << "evictions must reach the store as deletes";
}

TEST(Detector, ActiveKeysSurviveEviction) {
  DetectConfig c;
  c.maxKeys = 16;
  Detector d(c);
  feed(d, "alpha", 0, one(wire::Vector::UDP, 9000));
  feed(d, "alpha", 1, one(wire::Vector::UDP, 9000));
  for (int64_t i = 2; i < 40; ++i) {
    std::vector<VictimSpec> v = one(wire::Vector::UDP, 9000);
    v.push_back({"198.18.3." + std::to_string(i), {{wire::Vector::UDP, 10}}, {}, {}, 0});
    ASSERT_EQ(feed(d, "alpha", i, v).anomalies.size(), 1u) << i;
  }
  EXPECT_GT(d.counters().evictions, 0u);
}

}  // namespace
}  // namespace garda::aggregator
