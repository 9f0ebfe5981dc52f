#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/ip.h"
#include "sensor/sketch/filtered_space_saving.h"
#include "sensor/sketch/hyperloglog.h"
#include "sensor/sketch/space_saving.h"

namespace garda::sensor {
namespace {

using common::IpAddress;
using common::IpAddressHash;
using SourceSketch = SpaceSaving<IpAddress>;
using Truth = std::unordered_map<IpAddress, uint64_t, IpAddressHash>;

IpAddress v4(uint32_t a) {
  const uint8_t b[4] = {static_cast<uint8_t>(a >> 24), static_cast<uint8_t>(a >> 16),
                        static_cast<uint8_t>(a >> 8), static_cast<uint8_t>(a)};
  return IpAddress::fromV4Bytes(b);
}

IpAddress v6(uint64_t hi, uint64_t lo) {
  uint8_t b[16];
  for (int i = 0; i < 8; ++i) {
    b[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
    b[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
  }
  return IpAddress::fromV6Bytes(b);
}

// Distinct, scattered IPv4 addresses for key numbers below 2^24.
IpAddress scatteredV4(uint32_t i) {
  return v4(0x0b000000u + ((i * 2654435761u) & 0xffffffu));
}

// Draws key numbers 0..n-1 with P(i) proportional to 1 / (i + 1)^s.
class ZipfSampler {
 public:
  ZipfSampler(size_t n, double s) : cdf_(n) {
    double sum = 0;
    for (size_t i = 0; i < n; ++i) cdf_[i] = sum += std::pow(static_cast<double>(i + 1), -s);
    for (double& c : cdf_) c /= sum;
  }
  uint32_t operator()(std::mt19937_64& rng) {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    return static_cast<uint32_t>(std::min<size_t>(it - cdf_.begin(), cdf_.size() - 1));
  }

 private:
  std::vector<double> cdf_;
};

Truth exactCounts(const std::vector<IpAddress>& stream) {
  Truth truth;
  for (const IpAddress& a : stream) ++truth[a];
  return truth;
}

SourceSketch sketchOf(const std::vector<IpAddress>& stream, size_t capacity) {
  SourceSketch sketch(capacity);
  for (const IpAddress& a : stream) sketch.add(a);
  return sketch;
}

// Share of the sources above 1% of all packets that appear in top(100).
double heavyRecall(const SourceSketch& sketch, const Truth& truth, uint64_t total) {
  std::unordered_set<IpAddress, IpAddressHash> reported;
  for (const auto& e : sketch.top(100)) reported.insert(e.key);
  size_t heavy = 0;
  size_t found = 0;
  for (const auto& [key, count] : truth) {
    if (count * 100 <= total) continue;
    ++heavy;
    found += reported.count(key);
  }
  EXPECT_GT(heavy, 0u) << "the stream has no source above 1%";
  return heavy == 0 ? 0.0 : static_cast<double>(found) / static_cast<double>(heavy);
}

// The Space-Saving guarantees, checked against exact counts: tracked counts
// bracket the truth and overestimate by at most minCount(); every source
// heavier than minCount() is tracked; minCount() <= total / capacity.
template <typename Key, typename Hash, typename TruthMap>
void expectSpaceSavingGuarantees(const SpaceSaving<Key, Hash>& sketch, const TruthMap& truth) {
  uint64_t total = 0;
  for (const auto& [key, count] : truth) total += count;
  ASSERT_EQ(sketch.total(), total);
  const uint64_t minCount = sketch.minCount();
  EXPECT_LE(minCount, total / sketch.capacity());
  const auto entries = sketch.top(sketch.size());
  ASSERT_EQ(entries.size(), sketch.size());
  std::unordered_map<Key, uint64_t, Hash> tracked;
  for (const auto& e : entries) {
    EXPECT_TRUE(tracked.emplace(e.key, e.count).second) << "key tracked twice";
    const auto it = truth.find(e.key);
    const uint64_t real = it == truth.end() ? 0 : it->second;
    EXPECT_LE(real, e.count);
    EXPECT_LE(e.count - e.error, real);
    EXPECT_LE(e.count - real, minCount);
  }
  for (const auto& [key, count] : truth) {
    if (count > minCount) {
      EXPECT_EQ(tracked.count(key), 1u) << "a heavy key is missing";
    }
  }
}

// 50 sources at 1.5% each, the rest of 10^6 packets from 10^5 light sources
// drawn uniformly or Zipf(1.0), shuffled.
std::vector<IpAddress> heavyPlusLightStream(bool zipfTail, uint64_t seed) {
  constexpr size_t kPackets = 1'000'000;
  constexpr size_t kHeavy = 50;
  constexpr size_t kHeavyPackets = kPackets * 15 / 1000;
  constexpr uint32_t kLight = 100'000;
  std::mt19937_64 rng(seed);
  std::vector<IpAddress> stream;
  stream.reserve(kPackets);
  for (uint32_t h = 0; h < kHeavy; ++h)
    stream.insert(stream.end(), kHeavyPackets, v4(0xc0000200u + h));
  ZipfSampler zipf(kLight, 1.0);
  std::uniform_int_distribution<uint32_t> uniform(0, kLight - 1);
  while (stream.size() < kPackets)
    stream.push_back(scatteredV4(zipfTail ? zipf(rng) : uniform(rng)));
  std::shuffle(stream.begin(), stream.end(), rng);
  return stream;
}

TEST(SpaceSaving, CountsExactlyWhileDistinctKeysFitCapacity) {
  SourceSketch sketch(100);
  Truth truth;
  std::mt19937_64 rng(1);
  for (int i = 0; i < 10'000; ++i) {
    const IpAddress a = scatteredV4(static_cast<uint32_t>(rng() % 64));
    const uint64_t w = 1 + rng() % 1500;
    sketch.add(a, w);
    truth[a] += w;
  }
  ASSERT_EQ(sketch.size(), truth.size());
  for (const auto& e : sketch.top(100)) {
    EXPECT_EQ(e.count, truth.at(e.key));
    EXPECT_EQ(e.error, 0u);
  }
  EXPECT_EQ(sketch.minCount(), 0u);
}

TEST(SpaceSaving, TopIsSortedByCountAndCutToN) {
  SourceSketch sketch(8);
  for (uint32_t i = 0; i < 6; ++i) sketch.add(v4(i), uint64_t{10} * (i + 1));
  const auto top = sketch.top(4);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].key, v4(5));
  EXPECT_EQ(top[0].count, 60u);
  for (size_t i = 1; i < top.size(); ++i) EXPECT_GE(top[i - 1].count, top[i].count);
  EXPECT_EQ(sketch.top(100).size(), 6u);
  EXPECT_EQ(sketch.total(), 210u);
}

TEST(SpaceSaving, FindsSourcesAboveOnePercentAmongUniformLightSources) {
  for (uint64_t seed : {1, 2, 3}) {
    const auto stream = heavyPlusLightStream(false, seed);
    const auto truth = exactCounts(stream);
    const auto sketch = sketchOf(stream, 256);
    EXPECT_GE(heavyRecall(sketch, truth, stream.size()), 0.95) << "seed " << seed;
    expectSpaceSavingGuarantees(sketch, truth);
  }
}

TEST(SpaceSaving, FindsSourcesAboveOnePercentAmongZipfLightSources) {
  for (uint64_t seed : {4, 5, 6}) {
    const auto stream = heavyPlusLightStream(true, seed);
    const auto truth = exactCounts(stream);
    const auto sketch = sketchOf(stream, 256);
    EXPECT_GE(heavyRecall(sketch, truth, stream.size()), 0.95) << "seed " << seed;
    expectSpaceSavingGuarantees(sketch, truth);
  }
}

TEST(SpaceSaving, FindsSourcesAboveOnePercentInZipfStreamOverAMillionKeys) {
  ZipfSampler zipf(1'000'000, 1.1);
  std::mt19937_64 rng(7);
  std::vector<IpAddress> stream(1'000'000);
  for (auto& a : stream) a = scatteredV4(zipf(rng));
  const auto truth = exactCounts(stream);
  const auto sketch = sketchOf(stream, 256);
  EXPECT_GE(heavyRecall(sketch, truth, stream.size()), 0.95);
  expectSpaceSavingGuarantees(sketch, truth);
}

// The worst order for Space-Saving: the counters are all worn high by light
// sources before any heavy source shows up.
TEST(SpaceSaving, FindsHeavySourcesArrivingOnlyAtTheEnd) {
  std::mt19937_64 rng(8);
  std::vector<IpAddress> stream;
  stream.reserve(1'000'000);
  for (int i = 0; i < 600'000; ++i)
    stream.push_back(scatteredV4(static_cast<uint32_t>(rng() % 200'000)));
  std::vector<IpAddress> heavy;
  for (uint32_t h = 0; h < 20; ++h) heavy.insert(heavy.end(), 20'000, v4(0xc6336400u + h));
  std::shuffle(heavy.begin(), heavy.end(), rng);
  stream.insert(stream.end(), heavy.begin(), heavy.end());
  const auto truth = exactCounts(stream);
  const auto sketch = sketchOf(stream, 256);
  EXPECT_GE(heavyRecall(sketch, truth, stream.size()), 0.95);
  expectSpaceSavingGuarantees(sketch, truth);
}

TEST(SpaceSaving, KeepsHeavySourcesThatStopEarly) {
  std::mt19937_64 rng(9);
  std::vector<IpAddress> stream;
  for (uint32_t h = 0; h < 20; ++h) stream.insert(stream.end(), 20'000, v4(0xc6336400u + h));
  std::shuffle(stream.begin(), stream.end(), rng);
  for (int i = 0; i < 600'000; ++i)
    stream.push_back(scatteredV4(static_cast<uint32_t>(rng() % 200'000)));
  const auto truth = exactCounts(stream);
  const auto sketch = sketchOf(stream, 256);
  EXPECT_GE(heavyRecall(sketch, truth, stream.size()), 0.95);
  expectSpaceSavingGuarantees(sketch, truth);
}

// Reference Space-Saving: linear scans, no index, no heap.
template <typename Key>
class NaiveSpaceSaving {
 public:
  explicit NaiveSpaceSaving(size_t capacity) : capacity_(capacity) {}
  void add(Key key, uint64_t w) {
    for (auto& e : entries_) {
      if (e.key == key) {
        e.count += w;
        return;
      }
    }
    if (entries_.size() < capacity_) {
      entries_.push_back({key, w, 0});
      return;
    }
    auto& min = *std::min_element(entries_.begin(), entries_.end(),
                                  [](const auto& a, const auto& b) { return a.count < b.count; });
    min = {key, min.count + w, min.count};
  }
  struct Entry {
    Key key;
    uint64_t count;
    uint64_t error;
  };
  std::vector<Entry> entries_;

 private:
  size_t capacity_;
};

// Collapses every key onto one home position in the index: one long probe run
// where every eviction exercises backward-shift deletion.
struct CollidingPortHash {
  size_t operator()(uint16_t) const noexcept { return 0; }
};

// With large random weights no two counters tie, so the evicted counter is
// unique and the indexed heap must agree exactly with the naive reference.
template <typename Hash>
void expectSameAsNaiveReference(uint64_t seed) {
  constexpr size_t kCapacity = 16;
  SpaceSaving<uint16_t, Hash> sketch(kCapacity);
  NaiveSpaceSaving<uint16_t> naive(kCapacity);
  std::unordered_map<uint16_t, uint64_t> truth;
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 20'000; ++i) {
    const auto port = static_cast<uint16_t>(rng() % 300);
    const uint64_t w = 1 + rng() % (1u << 20);
    sketch.add(port, w);
    naive.add(port, w);
    truth[port] += w;
  }
  auto got = sketch.top(kCapacity);
  auto want = naive.entries_;
  ASSERT_EQ(got.size(), want.size());
  auto byKey = [](const auto& a, const auto& b) { return a.key < b.key; };
  std::sort(got.begin(), got.end(), byKey);
  std::sort(want.begin(), want.end(), byKey);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].key, want[i].key);
    EXPECT_EQ(got[i].count, want[i].count);
    EXPECT_EQ(got[i].error, want[i].error);
  }
  expectSpaceSavingGuarantees(sketch, truth);
}

TEST(SpaceSaving, EvictsExactlyAsTheNaiveAlgorithmDoes) {
  expectSameAsNaiveReference<SketchKeyHash<uint16_t>>(10);
}

TEST(SpaceSaving, StaysExactWhenEveryKeyHashesAlike) {
  expectSameAsNaiveReference<CollidingPortHash>(11);
}

TEST(SpaceSaving, ResetForgetsEverythingAndCountsAfresh) {
  SpaceSaving<uint16_t, CollidingPortHash> sketch(32);
  std::mt19937_64 rng(12);
  for (int i = 0; i < 5'000; ++i) sketch.add(static_cast<uint16_t>(rng() % 1000));
  sketch.reset();
  EXPECT_EQ(sketch.size(), 0u);
  EXPECT_EQ(sketch.total(), 0u);
  EXPECT_TRUE(sketch.top(10).empty());
  // Keys the sketch tracked before the reset must start from zero, and each
  // must be found again rather than shadowed by a stale index entry.
  std::unordered_map<uint16_t, uint64_t> truth;
  for (int i = 0; i < 3'000; ++i) {
    const auto port = static_cast<uint16_t>(rng() % 32);
    sketch.add(port);
    ++truth[port];
  }
  ASSERT_EQ(sketch.size(), truth.size());
  for (const auto& e : sketch.top(32)) {
    EXPECT_EQ(e.count, truth.at(e.key));
    EXPECT_EQ(e.error, 0u);
  }
}

TEST(SpaceSaving, RejectsZeroCapacity) {
  EXPECT_THROW(SourceSketch(0), std::invalid_argument);
}

TEST(SpaceSaving, MergeRejectsADifferentCapacity) {
  SourceSketch a(256);
  SourceSketch b(128);
  b.add(v4(1));
  EXPECT_THROW(a.merge(b), std::invalid_argument);
}

TEST(SpaceSaving, MergedHalvesFindSourcesAsWellAsOneSketchOfTheWholeStream) {
  for (bool zipfTail : {false, true}) {
    const auto stream = heavyPlusLightStream(zipfTail, 13);
    const auto truth = exactCounts(stream);
    const auto whole = sketchOf(stream, 256);
    const size_t half = stream.size() / 2;
    auto first = sketchOf({stream.begin(), stream.begin() + half}, 256);
    const auto second = sketchOf({stream.begin() + half, stream.end()}, 256);
    first.merge(second);
    EXPECT_GE(heavyRecall(first, truth, stream.size()), heavyRecall(whole, truth, stream.size()));
    EXPECT_GE(heavyRecall(first, truth, stream.size()), 0.95);
    expectSpaceSavingGuarantees(first, truth);
  }
}

// Workers behind RSS see disjoint sets of sources; four of them are merged.
TEST(SpaceSaving, MergeOfFourSourceShardedWorkersFindsSourcesAboveOnePercent) {
  const auto stream = heavyPlusLightStream(true, 14);
  const auto truth = exactCounts(stream);
  std::vector<SourceSketch> workers(4, SourceSketch(256));
  for (const IpAddress& a : stream) workers[IpAddressHash{}(a) % 4].add(a);
  for (size_t w = 1; w < workers.size(); ++w) workers[0].merge(workers[w]);
  EXPECT_GE(heavyRecall(workers[0], truth, stream.size()), 0.95);
  expectSpaceSavingGuarantees(workers[0], truth);
}

TEST(SpaceSaving, MergeOfInterleavedWorkersKeepsGuarantees) {
  ZipfSampler zipf(1'000'000, 1.1);
  std::mt19937_64 rng(15);
  std::vector<IpAddress> stream(400'000);
  for (auto& a : stream) a = scatteredV4(zipf(rng));
  const auto truth = exactCounts(stream);
  std::vector<SourceSketch> workers(3, SourceSketch(128));
  for (size_t i = 0; i < stream.size(); ++i) workers[rng() % 3].add(stream[i]);
  for (size_t w = 1; w < workers.size(); ++w) workers[0].merge(workers[w]);
  EXPECT_GE(heavyRecall(workers[0], truth, stream.size()), 0.95);
  expectSpaceSavingGuarantees(workers[0], truth);
}

TEST(SpaceSaving, MergeWithEmptySketchIsIdentity) {
  const auto stream = heavyPlusLightStream(false, 16);
  const auto full = sketchOf(stream, 256);
  const auto before = full.top(256);

  auto fullThenEmpty = full;
  fullThenEmpty.merge(SourceSketch(256));
  SourceSketch emptyThenFull(256);
  emptyThenFull.merge(full);

  for (const SourceSketch* merged : {&fullThenEmpty, &emptyThenFull}) {
    const auto after = merged->top(256);
    ASSERT_EQ(after.size(), before.size());
    EXPECT_EQ(merged->total(), full.total());
    EXPECT_EQ(merged->minCount(), full.minCount());
    for (size_t i = 0; i < before.size(); ++i) {
      EXPECT_EQ(after[i].count, before[i].count);
      EXPECT_EQ(after[i].error, before[i].error);
    }
    std::unordered_set<IpAddress, IpAddressHash> keysBefore, keysAfter;
    for (const auto& e : before) keysBefore.insert(e.key);
    for (const auto& e : after) keysAfter.insert(e.key);
    EXPECT_EQ(keysAfter, keysBefore);
  }
}

TEST(SpaceSaving, MergeOfSketchesThatFitIsExact) {
  SourceSketch a(64);
  SourceSketch b(64);
  Truth truth;
  for (uint32_t i = 0; i < 40; ++i) {
    a.add(v4(i), i + 1);
    truth[v4(i)] += i + 1;
  }
  for (uint32_t i = 20; i < 60; ++i) {
    b.add(v4(i), 100);
    truth[v4(i)] += 100;
  }
  a.merge(b);
  ASSERT_EQ(a.size(), 60u);
  for (const auto& e : a.top(60)) {
    EXPECT_EQ(e.count, truth.at(e.key));
    EXPECT_EQ(e.error, 0u);
  }
  // The merged sketch keeps counting correctly afterwards.
  a.add(v4(0), 1000);
  EXPECT_EQ(a.top(1)[0].key, v4(0));
  EXPECT_EQ(a.top(1)[0].count, 1001u);
}

TEST(SpaceSaving, MergeWithItselfMatchesMergeWithACopy) {
  const auto stream = heavyPlusLightStream(true, 19);
  auto self = sketchOf(stream, 256);
  auto withCopy = self;
  const auto copy = self;
  self.merge(self);
  withCopy.merge(copy);
  EXPECT_EQ(self.total(), 2 * stream.size());
  EXPECT_EQ(self.minCount(), withCopy.minCount());
  const auto a = self.top(256);
  const auto b = withCopy.top(256);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].count, b[i].count);
    EXPECT_EQ(a[i].error, b[i].error);
  }
}

// A reflection flood seen at one victim: DNS, NTP, memcached and SSDP
// responses over a background of ephemeral ports.
TEST(SpaceSaving, RanksReflectionSourcePortsOfAnAmplificationFlood) {
  const std::vector<std::pair<uint16_t, size_t>> floods = {
      {53, 300'000}, {123, 200'000}, {11211, 100'000}, {1900, 50'000}};
  std::vector<uint16_t> stream;
  for (const auto& [port, packets] : floods) stream.insert(stream.end(), packets, port);
  std::mt19937_64 rng(17);
  for (int i = 0; i < 350'000; ++i) stream.push_back(static_cast<uint16_t>(1024 + rng() % 64512));
  std::shuffle(stream.begin(), stream.end(), rng);

  SpaceSaving<uint16_t> ports(64);
  std::unordered_map<uint16_t, uint64_t> truth;
  for (uint16_t p : stream) {
    ports.add(p);
    ++truth[p];
  }
  const auto top = ports.top(4);
  ASSERT_EQ(top.size(), 4u);
  for (size_t i = 0; i < floods.size(); ++i) EXPECT_EQ(top[i].key, floods[i].first);
  expectSpaceSavingGuarantees(ports, truth);
}

TEST(SpaceSaving, TracksEveryDestinationPortOfAScanWithinCapacity) {
  SpaceSaving<uint16_t> ports(1024);
  for (int round = 0; round < 3; ++round) {
    for (uint16_t p = 1; p <= 1024; ++p) ports.add(p);
  }
  EXPECT_EQ(ports.size(), 1024u);
  for (const auto& e : ports.top(1024)) {
    EXPECT_EQ(e.count, 3u);
    EXPECT_EQ(e.error, 0u);
  }
}

// Key number i (below 2^32) of family `family` under `seed`, all distinct.
IpAddress distinctSource(bool ipv6, uint64_t seed, uint32_t i) {
  if (seed == 0) return ipv6 ? v6(0x20010db800000000ULL, i) : v4(0x0a000000u + i);  // sequential
  if (!ipv6) return v4(i * 0x9e3779b1u + static_cast<uint32_t>(seed) * 0x7f4a7c15u);
  return v6(0x2a0000000000ULL << 16 | (seed << 8) | (i & 0xff), i * 0xd6e8feb86659fd93ULL + seed);
}

void expectWithinThreePercentUpToAMillion(bool ipv6) {
  // Seed 0 is sequential addresses, the worst case for a weak hash.
  for (uint64_t seed : {0, 1, 2, 3}) {
    HyperLogLog hll;
    uint32_t added = 0;
    for (uint32_t n : {1'000u, 10'000u, 100'000u, 1'000'000u}) {
      for (; added < n; ++added) hll.add(distinctSource(ipv6, seed, added));
      EXPECT_NEAR(static_cast<double>(hll.estimate()), n, 0.03 * n)
          << (ipv6 ? "IPv6" : "IPv4") << " seed " << seed << " n " << n;
    }
  }
}

TEST(HyperLogLog, EstimatesDistinctIpv4SourcesWithinThreePercent) {
  expectWithinThreePercentUpToAMillion(false);
}

TEST(HyperLogLog, EstimatesDistinctIpv6SourcesWithinThreePercent) {
  expectWithinThreePercentUpToAMillion(true);
}

TEST(HyperLogLog, RepeatedSourcesDoNotChangeTheEstimate) {
  for (bool ipv6 : {false, true}) {
    HyperLogLog once;
    HyperLogLog repeated;
    std::mt19937_64 rng(18);
    for (uint32_t i = 0; i < 50'000; ++i) once.add(distinctSource(ipv6, 1, i));
    for (int round = 0; round < 3; ++round) {
      for (uint32_t i = 0; i < 50'000; ++i) repeated.add(distinctSource(ipv6, 1, i));
    }
    for (int i = 0; i < 100'000; ++i)
      repeated.add(distinctSource(ipv6, 1, static_cast<uint32_t>(rng() % 50'000)));
    EXPECT_EQ(repeated.estimate(), once.estimate());
    EXPECT_TRUE(
        std::equal(once.registers().begin(), once.registers().end(), repeated.registers().begin()));
  }
}

TEST(HyperLogLog, SmallCountsAreExactOrWithinTwo) {
  for (uint64_t seed : {0, 1, 2, 3, 4}) {
    for (bool ipv6 : {false, true}) {
      HyperLogLog hll;
      EXPECT_EQ(hll.estimate(), 0u);
      uint32_t added = 0;
      for (uint32_t n : {1u, 10u, 100u}) {
        for (; added < n; ++added) hll.add(distinctSource(ipv6, seed, added));
        EXPECT_NEAR(static_cast<double>(hll.estimate()), n, 2.0) << "seed " << seed << " n " << n;
      }
    }
  }
}

TEST(HyperLogLog, MergeOfDisjointSetsEstimatesTheUnionWithinThreePercent) {
  for (bool ipv6 : {false, true}) {
    HyperLogLog a;
    HyperLogLog b;
    HyperLogLog whole;
    for (uint32_t i = 0; i < 300'000; ++i) {
      const IpAddress s = distinctSource(ipv6, 5, i);
      (i < 120'000 ? a : b).add(s);
      whole.add(s);
    }
    a.merge(b);
    EXPECT_NEAR(static_cast<double>(a.estimate()), 300'000, 9'000);
    // The union's sketch does not depend on how the sources were split.
    EXPECT_TRUE(std::equal(a.registers().begin(), a.registers().end(), whole.registers().begin()));
  }
}

TEST(HyperLogLog, MergeWithEmptySketchIsIdentity) {
  HyperLogLog a;
  for (uint32_t i = 0; i < 10'000; ++i) a.add(distinctSource(false, 6, i));
  const uint64_t before = a.estimate();
  a.merge(HyperLogLog());
  EXPECT_EQ(a.estimate(), before);
  HyperLogLog empty;
  empty.merge(a);
  EXPECT_EQ(empty.estimate(), before);
}

TEST(HyperLogLog, MergeRejectsADifferentPrecision) {
  HyperLogLog a(13);
  HyperLogLog b(12);
  EXPECT_THROW(a.merge(b), std::invalid_argument);
}

TEST(HyperLogLog, ResetGivesZero) {
  HyperLogLog hll;
  for (uint32_t i = 0; i < 100'000; ++i) hll.add(distinctSource(true, 7, i));
  ASSERT_GT(hll.estimate(), 0u);
  hll.reset();
  EXPECT_EQ(hll.estimate(), 0u);
  EXPECT_TRUE(std::all_of(hll.registers().begin(), hll.registers().end(),
                          [](uint8_t r) { return r == 0; }));
  hll.add(distinctSource(true, 7, 0));
  EXPECT_EQ(hll.estimate(), 1u);
}

TEST(HyperLogLog, RegistersAreTwoToThePrecisionBytes) {
  EXPECT_EQ(HyperLogLog().registers().size(), 8192u);
  EXPECT_EQ(HyperLogLog(4).registers().size(), 16u);
  EXPECT_EQ(HyperLogLog(16).registers().size(), 65536u);
  EXPECT_THROW(HyperLogLog(3), std::invalid_argument);
  EXPECT_THROW(HyperLogLog(17), std::invalid_argument);
}

// Every precision stays within four standard errors (1.04 / sqrt(2^p)), from
// the tiny p = 4 (saturating registers are likeliest there) to p = 16.
TEST(HyperLogLog, EveryPrecisionStaysWithinFourStandardErrors) {
  for (unsigned p = HyperLogLog::kMinPrecision; p <= HyperLogLog::kMaxPrecision; ++p) {
    HyperLogLog hll(p);
    const uint32_t n = 200'000;
    for (uint32_t i = 0; i < n; ++i) hll.add(distinctSource(false, 8, i));
    const double stdError = 1.04 / std::sqrt(static_cast<double>(1u << p));
    EXPECT_NEAR(static_cast<double>(hll.estimate()), n, 4 * stdError * n) << "precision " << p;
  }
}

// Registers near the top of their range: a hash whose bits below the index
// are all zero saturates its register at 65 - p. The tau term keeps a partly
// saturated sketch finite and growing; a fully saturated one reports the
// largest value rather than overflowing.
TEST(HyperLogLog, SaturatedRegistersGiveHugeButDefinedEstimates) {
  HyperLogLog hll(4);
  for (uint64_t i = 0; i < 16; ++i) hll.addHash(i << 60 | uint64_t{1} << 20);  // rank 40 each
  const uint64_t unsaturated = hll.estimate();
  EXPECT_GT(unsaturated, uint64_t{1} << 42);
  for (uint64_t i = 0; i < 8; ++i) hll.addHash(i << 60);
  const uint64_t halfSaturated = hll.estimate();
  EXPECT_GT(halfSaturated, unsaturated);
  EXPECT_LT(halfSaturated, std::numeric_limits<uint64_t>::max());
  for (uint64_t i = 8; i < 16; ++i) hll.addHash(i << 60);
  EXPECT_EQ(hll.estimate(), std::numeric_limits<uint64_t>::max());
}

// ---- FilteredSpaceSaving ----------------------------------------------------

using FilteredSourceSketch = FilteredSpaceSaving<IpAddress>;
// The shape the window uses for sources (see sourceShape() in window.cpp).
constexpr FilteredSourceSketch::Shape kSourceShape{128, 10, 9, 2};

FilteredSourceSketch filteredSketchOf(const std::vector<IpAddress>& stream,
                                      FilteredSourceSketch::Shape shape = kSourceShape) {
  FilteredSourceSketch sketch(shape);
  for (const IpAddress& a : stream) sketch.add(a);
  return sketch;
}

// Share of the sources above `share` of all packets among the reported.
double filteredRecall(const FilteredSourceSketch& sketch, const Truth& truth, uint64_t total,
                      double share = 0.01) {
  std::unordered_set<IpAddress, IpAddressHash> reported;
  for (const auto& e : sketch.top(sketch.capacity())) reported.insert(e.key);
  size_t heavy = 0;
  size_t found = 0;
  for (const auto& [key, count] : truth) {
    if (static_cast<double>(count) <= share * static_cast<double>(total)) continue;
    ++heavy;
    found += reported.count(key);
  }
  EXPECT_GT(heavy, 0u) << "the stream has no source above " << share;
  return heavy == 0 ? 0.0 : static_cast<double>(found) / static_cast<double>(heavy);
}

// The documented bounds, against exact counts: reported counts bracket the
// truth and overestimate by at most untrackedBound(); every key heavier than
// untrackedBound() is reported; untrackedBound() <= N / m + absorbedBound().
void expectFilteredGuarantees(const FilteredSourceSketch& sketch, const Truth& truth) {
  uint64_t total = 0;
  for (const auto& [key, count] : truth) total += count;
  ASSERT_EQ(sketch.total(), total);
  const uint64_t bound = sketch.untrackedBound();
  EXPECT_LE(bound, total / sketch.capacity() + sketch.absorbedBound());
  const auto entries = sketch.top(sketch.capacity());
  ASSERT_EQ(entries.size(), sketch.size());
  std::unordered_set<IpAddress, IpAddressHash> reported;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    EXPECT_TRUE(reported.insert(e.key).second) << "key reported twice";
    if (i > 0) {
      EXPECT_GE(entries[i - 1].count, e.count) << "not sorted";
    }
    const auto it = truth.find(e.key);
    const uint64_t real = it == truth.end() ? 0 : it->second;
    EXPECT_LE(e.error, e.count);
    EXPECT_LE(real, e.count);
    EXPECT_LE(e.count - e.error, real);
    EXPECT_LE(e.count - real, bound);
  }
  for (const auto& [key, count] : truth) {
    if (count > bound) {
      EXPECT_EQ(reported.count(key), 1u) << "a heavy key is missing";
    }
  }
}

// A spoofed flood at one victim: `packets` packets from as many distinct
// sources, plus `heavy` sources with `heavyShare` of the packets each.
std::vector<IpAddress> spoofedFloodWithHeavySources(size_t packets, size_t heavy,
                                                    double heavyShare, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<IpAddress> stream;
  stream.reserve(packets);
  const auto perHeavy = static_cast<size_t>(heavyShare * static_cast<double>(packets)) + 1;
  for (uint32_t h = 0; h < heavy; ++h) stream.insert(stream.end(), perHeavy, v4(0xc0000200u + h));
  for (uint32_t i = 0; stream.size() < packets; ++i) stream.push_back(scatteredV4(i));
  std::shuffle(stream.begin(), stream.end(), rng);
  return stream;
}

TEST(FilteredSpaceSaving, CountsExactlyWhileDistinctKeysFitCapacity) {
  FilteredSourceSketch sketch(kSourceShape);
  Truth truth;
  std::mt19937_64 rng(21);
  for (int i = 0; i < 100'000; ++i) {
    const IpAddress a = scatteredV4(static_cast<uint32_t>(rng() % 128));
    sketch.add(a);
    ++truth[a];
  }
  ASSERT_EQ(sketch.size(), truth.size());
  EXPECT_EQ(sketch.passed(), sketch.total()) << "nothing is absorbed before the sketch is full";
  for (const auto& e : sketch.top(128)) {
    EXPECT_EQ(e.count, truth.at(e.key));
    EXPECT_EQ(e.error, 0u);
  }
}

TEST(FilteredSpaceSaving, FindsSourcesAboveOnePercentAmongUniformAndZipfLightSources) {
  for (uint64_t seed : {1, 2, 3, 4}) {
    const auto stream = heavyPlusLightStream(seed % 2 == 0, seed);
    const auto truth = exactCounts(stream);
    const auto sketch = filteredSketchOf(stream);
    EXPECT_GE(filteredRecall(sketch, truth, stream.size()), 0.95) << "seed " << seed;
    expectFilteredGuarantees(sketch, truth);
  }
}

TEST(FilteredSpaceSaving, FindsSourcesAboveOnePercentInASpoofedFloodAndAbsorbsMostOfIt) {
  for (uint64_t seed : {5}) {
    const auto stream = spoofedFloodWithHeavySources(1'000'000, 10, 0.011, seed);
    const auto truth = exactCounts(stream);
    const auto sketch = filteredSketchOf(stream);
    EXPECT_EQ(filteredRecall(sketch, truth, stream.size()), 1.0) << "seed " << seed;
    expectFilteredGuarantees(sketch, truth);
    // The point of the filter: the heavy sources' 11% pass, little else does.
    EXPECT_LT(sketch.passed(), stream.size() / 5) << "seed " << seed;
  }
}

TEST(FilteredSpaceSaving, FindsSourcesAboveOnePercentOfSmallSpoofedWindows) {
  // One victim among a thousand sees about a thousand packets a window; the
  // guarantee (f > 0.98% N + 2) covers 1% sources from N > 8,600, and a 2%
  // source always.
  for (uint64_t seed = 10; seed < 30; ++seed) {
    const auto stream = spoofedFloodWithHeavySources(1'200, 3, 0.02, seed);
    const auto truth = exactCounts(stream);
    const auto sketch = filteredSketchOf(stream);
    EXPECT_EQ(filteredRecall(sketch, truth, stream.size(), 0.02), 1.0) << "seed " << seed;
    expectFilteredGuarantees(sketch, truth);
  }
}

TEST(FilteredSpaceSaving, FindsHeavySourcesArrivingOnlyAtTheEndOrStoppingEarly) {
  for (bool heavyFirst : {false, true}) {
    std::mt19937_64 rng(8);
    std::vector<IpAddress> light;
    for (int i = 0; i < 600'000; ++i)
      light.push_back(scatteredV4(static_cast<uint32_t>(rng() % 200'000)));
    std::vector<IpAddress> heavy;
    for (uint32_t h = 0; h < 20; ++h) heavy.insert(heavy.end(), 20'000, v4(0xc6336400u + h));
    std::shuffle(heavy.begin(), heavy.end(), rng);
    std::vector<IpAddress> stream = heavyFirst ? heavy : light;
    const auto& rest = heavyFirst ? light : heavy;
    stream.insert(stream.end(), rest.begin(), rest.end());
    const auto truth = exactCounts(stream);
    const auto sketch = filteredSketchOf(stream);
    EXPECT_GE(filteredRecall(sketch, truth, stream.size()), 0.95) << heavyFirst;
    expectFilteredGuarantees(sketch, truth);
  }
}

TEST(FilteredSpaceSaving, MergedWorkersFindSourcesAndKeepTheBounds) {
  const auto stream = spoofedFloodWithHeavySources(1'000'000, 20, 0.012, 7);
  const auto truth = exactCounts(stream);
  FilteredSourceSketch a(kSourceShape);
  FilteredSourceSketch b(kSourceShape);
  for (size_t i = 0; i < stream.size(); ++i) (i % 3 == 0 ? a : b).add(stream[i]);
  const uint64_t bounds = a.absorbedBound() + b.absorbedBound();
  a.merge(b);
  EXPECT_EQ(a.absorbedBound(), bounds);
  EXPECT_GE(filteredRecall(a, truth, stream.size()), 0.95);
  expectFilteredGuarantees(a, truth);
}

TEST(FilteredSpaceSaving, MergeWithEmptyIsIdentityAndMergeRejectsAnotherShape) {
  const auto stream = spoofedFloodWithHeavySources(100'000, 5, 0.02, 8);
  FilteredSourceSketch a = filteredSketchOf(stream);
  const auto before = a.top(128);
  a.merge(FilteredSourceSketch(kSourceShape));
  const auto after = a.top(128);
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(before[i].key, after[i].key);
    EXPECT_EQ(before[i].count, after[i].count);
  }
  FilteredSourceSketch other({128, 11, 10, 2});
  EXPECT_THROW(a.merge(other), std::invalid_argument);
  EXPECT_THROW(FilteredSourceSketch({128, 0, 9, 2}), std::invalid_argument);
}

TEST(FilteredSpaceSaving, ResetForgetsEverything) {
  FilteredSourceSketch sketch = filteredSketchOf(spoofedFloodWithHeavySources(50'000, 2, 0.05, 9));
  sketch.reset();
  EXPECT_EQ(sketch.total(), 0u);
  EXPECT_EQ(sketch.size(), 0u);
  EXPECT_EQ(sketch.untrackedBound(), 0u);
  sketch.add(v4(1));
  sketch.add(v4(1));
  const auto top = sketch.top(10);
  ASSERT_EQ(top.size(), 1u);
  EXPECT_EQ(top[0].count, 2u);
  EXPECT_EQ(top[0].error, 0u);
}

TEST(FilteredSpaceSaving, PortsAboveTenPercentOfARandomPortFloodAreReported) {
  // The window's port shape: 20 counters, 2^7 filter counters, T = 2 + n/64.
  FilteredSpaceSaving<uint16_t> sketch({20, 7, 6, 2});
  std::unordered_map<uint16_t, uint64_t> truth;
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200'000; ++i) {
    const auto port = static_cast<uint16_t>(i % 10 == 0 ? 53 : i % 10 == 1 ? 123 : rng());
    sketch.add(port);
    ++truth[port];
  }
  const auto top = sketch.top(10);
  ASSERT_GE(top.size(), 2u);
  EXPECT_TRUE((top[0].key == 53 && top[1].key == 123) || (top[0].key == 123 && top[1].key == 53));
  for (const auto& e : top) {
    EXPECT_LE(truth[e.key], e.count);
    EXPECT_LE(e.count - e.error, truth[e.key]);
  }
}

}  // namespace
}  // namespace garda::sensor
