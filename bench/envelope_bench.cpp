// Summary encode and Envelope decode (with validation): the link's hot path.
// Run: build/bin/bench_envelope
#include <benchmark/benchmark.h>
#include <capnp/serialize-packed.h>
#include <kj/io.h>

#include "bench/load_window.h"
#include "common/envelope.h"
#include "common/packed_reader.h"
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

// Decodes (and validates) the same frame over and over.
void decodeLoop(benchmark::State& state, const std::string& bytes) {
  garda::common::EnvelopeDecoder decoder;
  for (auto _ : state) {
    auto r =
        decoder.decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_summary"] = static_cast<double>(bytes.size());
}

void BM_DecodeSummary(benchmark::State& state) {
  auto w = makeWindow(static_cast<size_t>(state.range(0)));
  decodeLoop(state, garda::sensor::encodeSummary(w, "dukcapil", 7, 1, 0, 0));
}
BENCHMARK(BM_DecodeSummary)->Arg(10)->Arg(1000);

// The realistic busy window of ingest_load (10 victims, 20 top sources
// each): what the aggregator decodes 20,000 times a second.
std::string loadSummary() {
  return garda::sensor::encodeSummary(garda::bench::makeLoadWindow(10, 1000), "load-0", 7, 1, 0, 0);
}

void BM_DecodeLoadSummary(benchmark::State& state) {
  decodeLoop(state, loadSummary());
}
BENCHMARK(BM_DecodeLoadSummary);

// Unpacking alone, on the same frame into the same buffer: Cap'n Proto's
// PackedInputStream (0, what the decoder used before session 7), PackedReader
// (1, what it uses) and PackedReader's path for CPUs without SSSE3 (2).
void BM_UnpackLoadSummary(benchmark::State& state) {
  const std::string bytes = loadSummary();
  const std::string flat = garda::common::toFlat(
      std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 1 << 20);
  std::vector<capnp::word> out(flat.size() / sizeof(capnp::word));
  const auto way = state.range(0);
  for (auto _ : state) {
    if (way == 0) {
      kj::ArrayInputStream in(
          kj::arrayPtr(reinterpret_cast<const kj::byte*>(bytes.data()), bytes.size()));
      capnp::_::PackedInputStream packed(in);
      packed.read(out.data(), flat.size());
    } else {
      garda::common::PackedReader packed(
          std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
      benchmark::DoNotOptimize(way == 1 ? packed.read(out.data(), out.size())
                                        : packed.readPortable(out.data(), out.size()));
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * flat.size()));
  state.SetLabel(way == 0   ? "capnp::PackedInputStream"
                 : way == 1 ? "PackedReader::read"
                            : "PackedReader::readPortable");
}
BENCHMARK(BM_UnpackLoadSummary)->Arg(0)->Arg(1)->Arg(2);

}  // namespace

BENCHMARK_MAIN();
