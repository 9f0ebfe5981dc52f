// Per-victim sketches on the packet path: Space-Saving top-K adds (sources and
// ports), HyperLogLog adds, and the window-close work (estimate, top, merge,
// reset). BM_Baseline* measure, in the same run, the loop over the key array
// alone and exact counting in std::unordered_map; report the sketches as
// ratios against them.
// Run: build/bin/bench_sketch (or build by hand with -lbenchmark -lbenchmark_main)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <unordered_map>
#include <vector>

#include "common/ip.h"
#include "sensor/sketch/hyperloglog.h"
#include "sensor/sketch/space_saving.h"

namespace {

using garda::common::IpAddress;
using garda::common::IpAddressHash;
using garda::sensor::HyperLogLog;
using garda::sensor::SpaceSaving;

constexpr size_t kKeys = size_t{1} << 20;  // power of two: index with a mask

IpAddress v4(uint32_t a) {
  const uint8_t b[4] = {static_cast<uint8_t>(a >> 24), static_cast<uint8_t>(a >> 16),
                        static_cast<uint8_t>(a >> 8), static_cast<uint8_t>(a)};
  return IpAddress::fromV4Bytes(b);
}

IpAddress scatteredV4(uint32_t i) {
  return v4(0x0b000000u + ((i * 2654435761u) & 0xffffffu));
}

// Source mixes, as seen at one victim:
//   0 attack: 50 sources at 1.5% each, the rest uniform over 10^5 sources;
//   1 zipf:   Zipf(1.1) over 10^6 sources;
//   2 spread: uniform over 10^6 sources (a spoofed flood: nearly every add
//             evicts, the worst case for Space-Saving).
enum Mix { kAttack = 0, kZipf = 1, kSpread = 2 };

std::vector<uint32_t> keyNumbers(Mix mix) {
  std::mt19937_64 rng(42);
  std::vector<uint32_t> out(kKeys);
  if (mix == kZipf) {
    std::vector<double> cdf(1'000'000);
    double sum = 0;
    for (size_t i = 0; i < cdf.size(); ++i) cdf[i] = sum += std::pow(double(i + 1), -1.1);
    std::uniform_real_distribution<double> u(0.0, sum);
    for (auto& k : out) {
      k = static_cast<uint32_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
      k = std::min<uint32_t>(k, 999'999);
    }
  } else {
    for (size_t i = 0; i < kKeys; ++i) {
      if (mix == kAttack && i < kKeys * 3 / 4) {
        out[i] = 0x1000000u + static_cast<uint32_t>(i % 50);
      } else {
        out[i] = static_cast<uint32_t>(rng() % (mix == kAttack ? 100'000 : 1'000'000));
      }
    }
    std::shuffle(out.begin(), out.end(), rng);
  }
  return out;
}

std::vector<IpAddress> sources(Mix mix) {
  std::vector<IpAddress> out;
  out.reserve(kKeys);
  for (uint32_t k : keyNumbers(mix)) out.push_back(scatteredV4(k));
  return out;
}

// Source ports at a reflection victim: four amplifier ports, the rest ephemeral.
std::vector<uint16_t> reflectionPorts() {
  std::mt19937_64 rng(43);
  std::vector<uint16_t> out(kKeys);
  const uint16_t amplifiers[] = {53, 123, 11211, 1900};
  for (auto& p : out) {
    p = rng() % 100 < 65 ? amplifiers[rng() % 4] : static_cast<uint16_t>(1024 + rng() % 64512);
  }
  return out;
}

const char* mixName(int64_t mix) {
  return mix == kAttack ? "attack" : mix == kZipf ? "zipf" : "spread";
}

void BM_BaselineReadKey(benchmark::State& state) {
  const auto keys = sources(static_cast<Mix>(state.range(0)));
  uint64_t sum = 0;
  size_t i = 0;
  for (auto _ : state) {
    const IpAddress& a = keys[i++ & (kKeys - 1)];
    sum += a.hi() ^ a.lo();
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(mixName(state.range(0)));
}
BENCHMARK(BM_BaselineReadKey)->Arg(kAttack)->Arg(kZipf)->Arg(kSpread);

// Exact counting: what the sketch replaces (and it allocates as keys arrive).
void BM_BaselineExactCountUnorderedMap(benchmark::State& state) {
  const auto keys = sources(static_cast<Mix>(state.range(0)));
  std::unordered_map<IpAddress, uint64_t, IpAddressHash> counts;
  size_t i = 0;
  for (auto _ : state) ++counts[keys[i++ & (kKeys - 1)]];
  benchmark::DoNotOptimize(counts.size());
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(mixName(state.range(0)));
}
BENCHMARK(BM_BaselineExactCountUnorderedMap)->Arg(kAttack)->Arg(kZipf)->Arg(kSpread);

// Args: capacity, source mix.
void BM_SpaceSavingAddSource(benchmark::State& state) {
  const auto keys = sources(static_cast<Mix>(state.range(1)));
  SpaceSaving<IpAddress> sketch(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) sketch.add(keys[i++ & (kKeys - 1)]);
  benchmark::DoNotOptimize(sketch.total());
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(mixName(state.range(1)));
}
BENCHMARK(BM_SpaceSavingAddSource)->ArgsProduct({{64, 256, 1024}, {kAttack, kZipf, kSpread}});

void BM_SpaceSavingAddPort(benchmark::State& state) {
  const auto ports = reflectionPorts();
  SpaceSaving<uint16_t> sketch(static_cast<size_t>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) sketch.add(ports[i++ & (kKeys - 1)]);
  benchmark::DoNotOptimize(sketch.total());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpaceSavingAddPort)->Arg(32)->Arg(256);

// top(100) of a full sketch: window close.
void BM_SpaceSavingTop(benchmark::State& state) {
  const auto keys = sources(kZipf);
  SpaceSaving<IpAddress> sketch(static_cast<size_t>(state.range(0)));
  for (const auto& k : keys) sketch.add(k);
  for (auto _ : state) benchmark::DoNotOptimize(sketch.top(100));
}
BENCHMARK(BM_SpaceSavingTop)->Arg(256)->Arg(1024);

// Folding one worker's full sketch into another's: window close.
void BM_SpaceSavingMerge(benchmark::State& state) {
  const auto keys = sources(kZipf);
  const auto capacity = static_cast<size_t>(state.range(0));
  SpaceSaving<IpAddress> a(capacity);
  SpaceSaving<IpAddress> b(capacity);
  for (size_t i = 0; i < kKeys; ++i) (i % 2 ? a : b).add(keys[i]);
  for (auto _ : state) a.merge(b);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SpaceSavingMerge)->Arg(256)->Arg(1024);

void BM_SpaceSavingFillAndReset(benchmark::State& state) {
  const auto keys = sources(kSpread);
  const auto capacity = static_cast<size_t>(state.range(0));
  SpaceSaving<IpAddress> sketch(capacity);
  size_t i = 0;
  for (auto _ : state) {
    for (size_t n = 0; n < capacity; ++n) sketch.add(keys[i++ & (kKeys - 1)]);
    sketch.reset();
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(capacity));
}
BENCHMARK(BM_SpaceSavingFillAndReset)->Arg(256);

// Arg: precision.
void BM_HyperLogLogAdd(benchmark::State& state) {
  const auto keys = sources(kSpread);
  HyperLogLog hll(static_cast<unsigned>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) hll.add(keys[i++ & (kKeys - 1)]);
  benchmark::DoNotOptimize(hll.registers().data());
  state.SetItemsProcessed(state.iterations());
  state.counters["sketch_bytes"] = static_cast<double>(hll.registers().size());
}
BENCHMARK(BM_HyperLogLogAdd)->Arg(13)->Arg(16);

// The register update alone, hashes precomputed.
void BM_HyperLogLogAddHash(benchmark::State& state) {
  std::vector<uint64_t> hashes(kKeys);
  std::mt19937_64 rng(44);
  for (auto& h : hashes) h = rng();
  HyperLogLog hll(static_cast<unsigned>(state.range(0)));
  size_t i = 0;
  for (auto _ : state) hll.addHash(hashes[i++ & (kKeys - 1)]);
  benchmark::DoNotOptimize(hll.registers().data());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HyperLogLogAddHash)->Arg(13);

void BM_HyperLogLogEstimate(benchmark::State& state) {
  const auto keys = sources(kSpread);
  HyperLogLog hll(static_cast<unsigned>(state.range(0)));
  for (size_t i = 0; i < static_cast<size_t>(state.range(1)); ++i) hll.add(keys[i]);
  for (auto _ : state) benchmark::DoNotOptimize(hll.estimate());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HyperLogLogEstimate)->ArgsProduct({{10, 13, 16}, {1000, 1'000'000}});

void BM_HyperLogLogMerge(benchmark::State& state) {
  const auto keys = sources(kSpread);
  const auto precision = static_cast<unsigned>(state.range(0));
  HyperLogLog a(precision);
  HyperLogLog b(precision);
  for (size_t i = 0; i < kKeys; ++i) (i % 2 ? a : b).add(keys[i]);
  for (auto _ : state) {
    a.merge(b);
    benchmark::DoNotOptimize(a.registers().data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(b.registers().size()));
}
BENCHMARK(BM_HyperLogLogMerge)->Arg(13)->Arg(16);

void BM_HyperLogLogReset(benchmark::State& state) {
  HyperLogLog hll(static_cast<unsigned>(state.range(0)));
  for (auto _ : state) {
    hll.reset();
    benchmark::DoNotOptimize(hll.registers().data());
  }
}
BENCHMARK(BM_HyperLogLogReset)->Arg(13);

}  // namespace

BENCHMARK_MAIN();
