// Summary encode and Envelope decode (with validation): the link's hot path.
// Run: build/bin/bench_envelope
#include <benchmark/benchmark.h>

#include "common/envelope.h"
#include "sensor/uplink.h"

namespace {

garda::sensor::WindowStats makeWindow(size_t victims) {
  garda::sensor::WindowStats w;
  w.startNs = 1'700'000'000'000'000'000;
  w.windowMs = 1000;
  w.totals = {1'000'000, 64'000'000, 900'000, 90'000, 9'000, 1'000};
  for (size_t i = 0; i < victims; ++i) {
    garda::sensor::VictimCounters v;
    uint8_t a[4] = {198, 18, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    v.address = garda::common::IpAddress::fromV4Bytes(a);
    v.packets = 1000;
    v.bytes = 64000;
    v.vectorPackets[0] = 900;
    v.vectorPackets[3] = 100;
    w.victims.push_back(v);
  }
  return w;
}

void BM_EncodeSummary(benchmark::State& state) {
  auto w = makeWindow(static_cast<size_t>(state.range(0)));
  uint64_t seq = 1;
  size_t bytes = 0;
  for (auto _ : state) {
    auto s = garda::sensor::encodeSummary(w, "dukcapil", 7, seq++, 0, 0);
    bytes = s.size();
    benchmark::DoNotOptimize(s);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_summary"] = static_cast<double>(bytes);
}
BENCHMARK(BM_EncodeSummary)->Arg(10)->Arg(1000);

void BM_DecodeSummary(benchmark::State& state) {
  auto w = makeWindow(static_cast<size_t>(state.range(0)));
  std::string bytes = garda::sensor::encodeSummary(w, "dukcapil", 7, 1, 0, 0);
  garda::common::EnvelopeDecoder decoder;
  for (auto _ : state) {
    auto r = decoder.decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_summary"] = static_cast<double>(bytes.size());
}
BENCHMARK(BM_DecodeSummary)->Arg(10)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();
