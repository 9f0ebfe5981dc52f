#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

#include "schemas/garda.capnp.h"

namespace garda::aggregator {

class CityView;
class ConsoleServer;
class Dispatcher;
class IncidentTracker;
class SensorIngest;
class Store;
class QueryService;

// What each sensor's stored summaries add up to since the aggregator
// started (Prometheus counters; a restart resets them, which rate() handles).
// Fed by ingest with every fresh summary. Loop thread only.
class SensorTotals {
 public:
  struct Totals {
    uint64_t summaries = 0;
    uint64_t packets = 0, bytes = 0;
    uint64_t tcp = 0, udp = 0, icmp = 0, other = 0;
    uint64_t kernelDrops = 0;
    uint64_t victimPacketsCut = 0;
    uint64_t droppedSummaries = 0;  // the sensor's own count this boot (a gauge)
    std::map<std::string, uint64_t> decodeErrors;  // by reason
  };
  void add(wire::Summary::Reader s);
  const std::map<std::string, Totals>& bySensor() const noexcept { return sensors_; }

 private:
  std::map<std::string, Totals> sensors_;
};

// The HTTP side's own counters (worker threads; atomics).
struct HttpCounters {
  static constexpr size_t kCodes = 600;
  std::array<std::atomic<uint64_t>, kCodes> byCode{};
  std::atomic<uint64_t> busy{0};          // 503: the loop's job queue was full or late
  std::atomic<uint64_t> unauthorized{0};
  std::atomic<uint64_t> forbidden{0};
  std::atomic<uint64_t> sseDropped{0};
  // Request latency (accept of the request line to handler end), seconds.
  static constexpr std::array<double, 10> kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,  0.1,    0.25,  1.0,  5.0};
  std::array<std::atomic<uint64_t>, kBuckets.size() + 1> latency{};
  std::atomic<uint64_t> latencyMicrosSum{0};
  void observe(int code, double seconds);
};

// Everything /metrics reads (the loop thread renders it).
struct MetricsSources {
  Store* store = nullptr;
  CityView* city = nullptr;
  Dispatcher* dispatcher = nullptr;
  IncidentTracker* incidents = nullptr;
  SensorIngest* ingest = nullptr;
  ConsoleServer* console = nullptr;
  SensorTotals* sensors = nullptr;
};

// Gauges only the HTTP side knows, sampled when the scrape is rendered.
struct HttpGauges {
  size_t loopQueueDepth = 0;
  size_t sseClients = 0;
  uint64_t ssePublished = 0;
};

// The Prometheus text exposition (version 0.0.4) of every stage's counters.
std::string renderMetrics(const MetricsSources& m, const HttpCounters& http, const HttpGauges& g,
                          int64_t nowNs);

}  // namespace garda::aggregator
