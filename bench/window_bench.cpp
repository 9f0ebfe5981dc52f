// Decode + window update per packet: the sensor's hot path.
// Run: build/bin/bench_window
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "sensor/evidence.h"
#include "sensor/window.h"

namespace {

using garda::common::Prefix;
using garda::common::PrefixSet;
using garda::sensor::CapturedPacket;
using garda::sensor::WindowCounter;
using garda::sensor::WindowStats;

constexpr size_t kFrameSize = 64;
constexpr size_t kFrames = 1 << 20;  // 10^6 distinct sources cycle through 64 MiB of frames

// 64-byte Ethernet/IPv4/TCP SYN frames in one flat buffer: frame i comes from
// source i (so 2^20 distinct sources per pass) to one of `victims` addresses
// in 198.18.0.0/16.
std::vector<uint8_t> makeFrames(uint32_t victims) {
  std::mt19937 rng(42);
  std::vector<uint8_t> buf(kFrames * kFrameSize, 0);
  for (size_t n = 0; n < kFrames; ++n) {
    uint8_t* f = buf.data() + n * kFrameSize;
    f[12] = 0x08;  // IPv4
    uint8_t* ip = f + 14;
    ip[0] = 0x45;
    ip[3] = 46;  // total length 46
    ip[8] = 64;
    ip[9] = 6;  // TCP
    uint32_t src = 0x0b000000 + static_cast<uint32_t>(n);
    uint32_t dst = 0xc6120000 + rng() % victims;
    for (int i = 0; i < 4; ++i) {
      ip[12 + i] = static_cast<uint8_t>(src >> (24 - 8 * i));
      ip[16 + i] = static_cast<uint8_t>(dst >> (24 - 8 * i));
    }
    uint8_t* tcp = ip + 20;
    uint16_t sport = static_cast<uint16_t>(rng());
    tcp[0] = static_cast<uint8_t>(sport >> 8);
    tcp[1] = static_cast<uint8_t>(sport);
    tcp[3] = 0x50;  // port 80
    tcp[12] = 0x50;
    tcp[13] = 0x02;  // SYN
  }
  return buf;
}

// Decode + classify + victim lookup + per-victim sketches (top sources,
// distinct sources, ports): the whole per-packet cost on one core.
void BM_DecodeAndCount(benchmark::State& state) {
  const auto frames = makeFrames(static_cast<uint32_t>(state.range(0)));
  PrefixSet protectedSet({*Prefix::parse("198.18.0.0/16")});
  WindowCounter counter(protectedSet, 2048);
  WindowStats out;
  size_t i = 0;
  for (auto _ : state) {
    CapturedPacket p{0, kFrameSize, kFrameSize, 1, frames.data() + (i & (kFrames - 1)) * kFrameSize};
    counter.count(p);
    if ((++i & (kFrames - 1)) == 0) {
      state.PauseTiming();
      counter.closeInto(out);  // a window closes after each 2^20 packets
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["ns_per_packet"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_DecodeAndCount)->Arg(1)->Arg(1000);

// Decode alone, for the ratio: how much of the per-packet cost is counting.
void BM_DecodeOnly(benchmark::State& state) {
  const auto frames = makeFrames(1000);
  size_t i = 0;
  for (auto _ : state) {
    garda::sensor::PacketView v;
    auto st = garda::sensor::decodePacket(1, frames.data() + (i++ & (kFrames - 1)) * kFrameSize,
                                          kFrameSize, v);
    benchmark::DoNotOptimize(st);
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_DecodeOnly);

// The capture path with the evidence tap in front of the window, as the
// sensor runs it: Arg 0 nothing armed (the usual case: one relaxed atomic
// load), 1 armed with a filter no frame matches (a second decode and the
// match on every frame), 2 armed and matching (frames copied; re-armed each
// time 1000 are held). Compare with BM_DecodeAndCount/1000 in the same run.
void BM_TapAndCount(benchmark::State& state) {
  const auto frames = makeFrames(1000);
  PrefixSet protectedSet({*Prefix::parse("198.18.0.0/16")});
  WindowCounter counter(protectedSet, 2048);
  WindowStats out;
  garda::sensor::EvidenceTap tap;
  garda::sensor::EvidenceRequest request;
  request.filter.victim = *Prefix::parse(state.range(0) == 1 ? "192.0.2.0/24" : "198.18.0.0/16");
  request.filter.protocol = 6;
  request.maxPackets = 1000;
  request.snapLen = 1600;
  request.deadlineNs = INT64_MAX;
  if (state.range(0) != 0) tap.arm(request);
  size_t i = 0;
  for (auto _ : state) {
    CapturedPacket p{0, kFrameSize, kFrameSize, 1, frames.data() + (i & (kFrames - 1)) * kFrameSize};
    tap.offer(p);
    counter.count(p);
    if ((++i & (kFrames - 1)) == 0) {
      state.PauseTiming();
      counter.closeInto(out);
      state.ResumeTiming();
    }
    if (state.range(0) == 2 && i % 1000 == 0) {
      benchmark::DoNotOptimize(tap.take(0));
      tap.arm(request);
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["ns_per_packet"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_TapAndCount)->Arg(0)->Arg(1)->Arg(2);

}  // namespace

BENCHMARK_MAIN();
