// The aggregator's summary write path without the network: a summary as it
// arrives (the realistic window of ingest_load), decoded, copied into its
// stored form and written with putSummary + commit in batches of 64 to a
// RocksDB on disk, opened as garda-aggregator opens it (aggregator/store.cpp).
// Besides the time per summary on this thread, `proc_cpu_us_per_summary`
// counts the whole process (RocksDB's flush and compaction threads too).
// BM_RocksDbCrc32c compares RocksDB's CRC32C as the aggregator's link has it
// (the crc32 instruction, aggregator/rocksdb_crc32c.cpp) with librocksdb's
// own software loop, over one summary's bytes (what the WAL and the blob
// file each checksum per summary).
// Run: build/bin/bench_store   (GARDA_BENCH_TMP: where the temp RocksDB goes,
// default /tmp; should be a disk, not tmpfs)
#include <benchmark/benchmark.h>
#include <capnp/serialize.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "aggregator/rocksdb_crc32c.h"
#include "aggregator/store.h"
#include "bench/load_window.h"
#include "common/envelope.h"
#include "sensor/uplink.h"

namespace {

using garda::aggregator::Store;

constexpr unsigned kVictims = 10;  // GARDA_LOAD_VICTIMS' default
constexpr int64_t kWindowNs = 1'000'000'000;
constexpr uint64_t kBootId = 0x5eed;

std::string wireSummary(uint64_t seq) {
  auto w = garda::bench::makeLoadWindow(kVictims, 1000);
  w.startNs = 1'700'000'000LL * kWindowNs + static_cast<int64_t>(seq) * kWindowNs;
  return garda::sensor::encodeSummary(w, "load-0", kBootId, seq, 0, 0);
}

// A received summary envelope, decoded once and read many times (no
// traversal limit: the aggregator decodes each message afresh).
struct Received {
  kj::Array<capnp::word> words;
  std::unique_ptr<capnp::FlatArrayMessageReader> reader;
  Received() {
    const std::string packed = wireSummary(1);  // as it comes on the wire
    const std::string bytes = garda::common::toFlat(
        std::span(reinterpret_cast<const uint8_t*>(packed.data()), packed.size()));
    words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), bytes.data(), bytes.size());
    reader = std::make_unique<capnp::FlatArrayMessageReader>(words,
                                                             capnp::ReaderOptions{UINT64_MAX, 64});
  }
  garda::wire::Summary::Reader summary() const {
    return reader->getRoot<garda::wire::Envelope>().getBody().getSummary();
  }
};

// A fresh Store in a temp dir, removed afterwards.
struct TempStore {
  std::filesystem::path dir;
  std::unique_ptr<Store> store;
  TempStore() {
    const char* base = std::getenv("GARDA_BENCH_TMP");
    std::string tmpl = std::string(base ? base : "/tmp") + "/garda-bench-store.XXXXXX";
    if (!mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
    store = std::make_unique<Store>(dir.string());
  }
  ~TempStore() {
    store.reset();
    std::filesystem::remove_all(dir);
  }
};

double processCpuUs() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

std::string key(uint64_t n) {
  // Ten sensors interleaved, each with its own rising window starts, as at N=10.
  static const std::string ids[] = {"load-0", "load-1", "load-2", "load-3", "load-4",
                                    "load-5", "load-6", "load-7", "load-8", "load-9"};
  return Store::summaryKey(
      ids[n % 10], 1'700'000'000LL * kWindowNs + static_cast<int64_t>(n / 10) * kWindowNs, kBootId);
}

// The baseline copy: what ingest did before Store::summaryValue.
std::string valueViaBuilder(garda::wire::Summary::Reader sum) {
  capnp::MallocMessageBuilder copy;
  copy.setRoot(sum);
  return garda::common::encodeMessage(copy, garda::common::WireEncoding::kFlat);
}

void BM_SummaryValueViaBuilder(benchmark::State& state) {
  Received r;
  size_t bytes = 0;
  for (auto _ : state) {
    auto v = valueViaBuilder(r.summary());
    bytes = v.size();
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_summary"] = static_cast<double>(bytes);
}
BENCHMARK(BM_SummaryValueViaBuilder);

void BM_SummaryValue(benchmark::State& state) {
  Received r;
  size_t bytes = 0;
  for (auto _ : state) {
    auto v = Store::summaryValue(r.summary());
    bytes = v.size();
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes_per_summary"] = static_cast<double>(bytes);
}
BENCHMARK(BM_SummaryValue);

// putSummary (with its dedup lookup) of new keys, commit every `batch`;
// the value packed as stored (1) or flat as stored before (0, the baseline).
void BM_StoreWrite(benchmark::State& state) {
  const auto batchSize = static_cast<uint64_t>(state.range(0));
  Received r;
  const std::string value =
      state.range(1) ? Store::summaryValue(r.summary()) : valueViaBuilder(r.summary());
  TempStore t;
  uint64_t n = 0;
  const double cpu0 = processCpuUs();
  for (auto _ : state) {
    auto b = t.store->batch();
    for (uint64_t i = 0; i < batchSize; ++i)
      benchmark::DoNotOptimize(b.putSummary(key(n++), value));
    t.store->commit(b);
  }
  const double cpu = processCpuUs() - cpu0;
  state.SetItemsProcessed(static_cast<int64_t>(n));
  state.SetBytesProcessed(static_cast<int64_t>(n * value.size()));
  state.counters["proc_cpu_us_per_summary"] = cpu / static_cast<double>(n);
}
BENCHMARK(BM_StoreWrite)
    ->ArgNames({"batch", "packed"})
    ->Args({64, 0})
    ->Args({64, 1})
    ->UseRealTime()
    ->MinTime(3);

// A resend: every key is already stored (and flushed to table files).
void BM_StoreResend(benchmark::State& state) {
  const auto batchSize = static_cast<uint64_t>(state.range(0));
  Received r;
  const std::string value = Store::summaryValue(r.summary());
  TempStore t;
  constexpr uint64_t kStored = 20'000;
  for (uint64_t n = 0; n < kStored;) {
    auto b = t.store->batch();
    for (uint64_t i = 0; i < batchSize; ++i) b.putSummary(key(n++), value);
    t.store->commit(b);
  }
  uint64_t n = 0, fresh = 0;
  for (auto _ : state) {
    auto b = t.store->batch();
    for (uint64_t i = 0; i < batchSize; ++i) fresh += b.putSummary(key(n++ % kStored), value);
    t.store->commit(b);
  }
  if (fresh != 0) state.SkipWithError("a resend was stored again");
  state.SetItemsProcessed(static_cast<int64_t>(n));
}
BENCHMARK(BM_StoreResend)->Arg(64)->UseRealTime();

// What SensorIngest does per summary minus the network and the ack: decode
// and check the packed envelope, key it, store the envelope as it came
// (putSummary with the frame); commit every `batch`.
void BM_StoreIngest(benchmark::State& state) {
  const auto batchSize = static_cast<uint64_t>(state.range(0));
  const std::string bytes = wireSummary(1);
  garda::common::EnvelopeDecoder decoder;
  TempStore t;
  uint64_t n = 0;
  const double cpu0 = processCpuUs();
  for (auto _ : state) {
    auto b = t.store->batch();
    for (uint64_t i = 0; i < batchSize; ++i) {
      if (decoder.decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())) !=
          garda::common::EnvelopeReject::kNone)
        std::abort();
      auto sum = decoder.envelope().getBody().getSummary();
      benchmark::DoNotOptimize(b.putSummary(key(n++), sum, bytes));
    }
    t.store->commit(b);
  }
  const double cpu = processCpuUs() - cpu0;
  state.SetItemsProcessed(static_cast<int64_t>(n));
  state.counters["proc_cpu_us_per_summary"] = cpu / static_cast<double>(n);
}
BENCHMARK(BM_StoreIngest)->Arg(64)->UseRealTime()->MinTime(3);

// Arg 0: what RocksDB's calls reach in the aggregator; 1: librocksdb's own.
void BM_RocksDbCrc32c(benchmark::State& state) {
  const auto extend = state.range(0) == 0 ? garda::aggregator::rocksdbCrc32cExtend
                                          : garda::aggregator::rocksdbOwnCrc32cExtend;
  std::string bytes(5120, '\0');  // a busy summary is about 5 KB packed
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 + 7);
  uint32_t crc = 0;
  for (auto _ : state) {
    crc = extend(crc, bytes.data(), bytes.size());
    benchmark::DoNotOptimize(crc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes.size()));
  state.SetLabel(state.range(0) == 0 ? "hardware (as linked)" : "librocksdb's own");
}
BENCHMARK(BM_RocksDbCrc32c)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
