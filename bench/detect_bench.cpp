// The detector and correlator on the aggregator's per-summary path: every
// victim of every summary goes through Detector::observe.
// Run: build/bin/bench_detect
#include <benchmark/benchmark.h>
#include <capnp/message.h>

#include <memory>
#include <vector>

#include "aggregator/correlate.h"
#include "aggregator/detect.h"
#include "bench/load_window.h"
#include "common/envelope.h"
#include "sensor/uplink.h"

namespace {

// A summary of `victims` victims, each with normal SYN and UDP traffic and
// a few top sources; the window start is advanced by the benchmark loop.
void fillSummary(garda::wire::Summary::Builder s, size_t victims) {
  s.setSensorId("dukcapil");
  s.setWindowMs(1000);
  auto out = s.initVictims(static_cast<unsigned>(victims));
  for (unsigned i = 0; i < victims; ++i) {
    uint8_t a[4] = {198, 18, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    auto v = out[i];
    v.setAddress(garda::common::AddressBytes(garda::common::IpAddress::fromV4Bytes(a)));
    v.setPackets(600);
    v.setBytes(60000);
    auto vectors = v.initVectors(2);
    vectors[0].setVector(garda::wire::Vector::TCP_SYN);
    vectors[0].setPackets(100 + i % 7);
    vectors[1].setVector(garda::wire::Vector::UDP);
    vectors[1].setPackets(500 - i % 5);
    auto src = v.initTopSources(4);
    for (unsigned j = 0; j < 4; ++j) {
      uint8_t b[4] = {203, 0, 113, static_cast<uint8_t>(j)};
      src[j].setAddress(garda::common::AddressBytes(garda::common::IpAddress::fromV4Bytes(b)));
      src[j].setPackets(10);
    }
    v.setDistinctSources(40);
  }
}

void BM_DetectNormalSummary(benchmark::State& state) {
  const size_t victims = static_cast<size_t>(state.range(0));
  capnp::MallocMessageBuilder message;
  auto s = message.initRoot<garda::wire::Summary>();
  fillSummary(s, victims);
  garda::aggregator::Detector detector;
  garda::aggregator::Correlator correlator;
  int64_t window = 1'700'000'000'000'000'000;
  for (auto _ : state) {
    s.setWindowStartNs(window);
    window += 1'000'000'000;
    const auto& batch = detector.observe(s.asReader());
    auto changes = correlator.observe(batch, window);
    benchmark::DoNotOptimize(changes);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(victims));
  state.counters["summaries_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["keys"] = static_cast<double>(detector.trackedKeys());
}
BENCHMARK(BM_DetectNormalSummary)->Arg(10)->Arg(1000);

// A city: N sensors (the argument) each sending ingest_load's normal busy
// window (10 victims, 100 ms) in turn, so the detector's state is that of N
// sensors and each summary's lookups are as cold as at the aggregator.
void BM_DetectCityOfSensors(benchmark::State& state) {
  const size_t sensors = static_cast<size_t>(state.range(0));
  std::vector<std::unique_ptr<capnp::MallocMessageBuilder>> messages;
  std::vector<garda::wire::Summary::Builder> summaries;
  for (size_t i = 0; i < sensors; ++i) {
    const std::string wire = garda::sensor::encodeSummary(
        garda::bench::makeLoadWindow(10, 100, 4000), "load-" + std::to_string(i), 7, 1, 0, 0);
    garda::common::EnvelopeDecoder decoder;
    if (decoder.decode(std::span(reinterpret_cast<const uint8_t*>(wire.data()), wire.size())) !=
        garda::common::EnvelopeReject::kNone) {
      state.SkipWithError("load summary rejected");
      return;
    }
    messages.push_back(std::make_unique<capnp::MallocMessageBuilder>());
    messages.back()->setRoot(decoder.envelope().getBody().getSummary());
    summaries.push_back(messages.back()->getRoot<garda::wire::Summary>());
  }
  garda::aggregator::Detector detector;
  int64_t window = 1'700'000'000'000'000'000;
  size_t next = 0;
  for (auto _ : state) {
    auto s = summaries[next];
    s.setWindowStartNs(window);
    if (++next == sensors) {
      next = 0;
      window += 100'000'000;
    }
    const auto& batch = detector.observe(s.asReader());
    benchmark::DoNotOptimize(batch);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["keys"] = static_cast<double>(detector.trackedKeys());
}
BENCHMARK(BM_DetectCityOfSensors)->Arg(10)->Arg(1000);

}  // namespace

BENCHMARK_MAIN();
