// Decode + window update per packet: the sensor's hot path.
// Run: build/bin/bench_window
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "sensor/window.h"

namespace {

using garda::common::Prefix;
using garda::common::PrefixSet;
using garda::sensor::CapturedPacket;
using garda::sensor::WindowCounter;
using garda::sensor::WindowStats;

// 64-byte Ethernet/IPv4/TCP SYN frames from `sources` random sources to
// `victims` addresses in 198.18.0.0/16.
std::vector<std::vector<uint8_t>> makeFrames(size_t count, uint32_t sources, uint32_t victims) {
  std::mt19937 rng(42);
  std::vector<std::vector<uint8_t>> frames(count);
  for (auto& f : frames) {
    f.assign(64, 0);
    f[12] = 0x08;  // IPv4
    uint8_t* ip = f.data() + 14;
    ip[0] = 0x45;
    ip[3] = 46;  // total length 46
    ip[8] = 64;
    ip[9] = 6;  // TCP
    uint32_t src = 0x0b000000 + rng() % sources;
    uint32_t dst = 0xc6120000 + rng() % victims;
    for (int i = 0; i < 4; ++i) {
      ip[12 + i] = static_cast<uint8_t>(src >> (24 - 8 * i));
      ip[16 + i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
    }
    uint8_t* tcp = ip + 20;
    tcp[0] = 0x30;
    tcp[1] = 0x39;
    tcp[2] = 0x00;
    tcp[3] = 0x50;
    tcp[12] = 0x50;
    tcp[13] = 0x02;  // SYN
  }
  return frames;
}

void BM_DecodeAndCount(benchmark::State& state) {
  const auto frames = makeFrames(1 << 16, 1'000'000, static_cast<uint32_t>(state.range(0)));
  PrefixSet protectedSet({*Prefix::parse("198.18.0.0/16")});
  WindowCounter counter(protectedSet, 4096);
  WindowStats out;
  size_t i = 0;
  for (auto _ : state) {
    const auto& f = frames[i++ & (frames.size() - 1)];
    CapturedPacket p{0, 64, 64, 1, f.data()};
    counter.count(p);
    if ((i & 0xfffff) == 0) counter.closeInto(out);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 64);
}
BENCHMARK(BM_DecodeAndCount)->Arg(1)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();
