#include "aggregator/metrics.h"

#include <fmt/core.h>

#include <cmath>
#include <set>
#include <tuple>

#include "aggregator/city_view.h"
#include "aggregator/dispatch.h"
#include "aggregator/incidents.h"
#include "aggregator/ingest.h"
#include "aggregator/query.h"
#include "aggregator/store.h"
#include "common/envelope.h"

namespace garda::aggregator {
namespace {

// Label values escaped as the text format asks (\\, \", \n).
std::string escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// Writes one metric family: its HELP and TYPE once, then samples.
class Writer {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    name_ = name;
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(double value, std::initializer_list<std::pair<std::string_view, std::string_view>>
                                labels = {},
              std::string_view suffix = "") {
    out_ += name_;
    out_ += suffix;
    if (labels.size()) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : labels) {
        out_ += fmt::format("{}{}=\"{}\"", first ? "" : ",", k, escape(v));
        first = false;
      }
      out_ += '}';
    }
    out_ += ' ';
    if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 9e15)
      out_ += fmt::format("{}", static_cast<int64_t>(value));
    else
      out_ += fmt::format("{}", value);
    out_ += '\n';
  }
  // A histogram from per-bucket counts (the last slot over the last bound).
  template <size_t N, class Count>
  void histogram(const std::array<double, N>& bounds, const std::array<Count, N + 1>& counts,
                 double sum) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < N; ++i) {
      cumulative += static_cast<uint64_t>(counts[i]);
      sample(static_cast<double>(cumulative), {{"le", fmt::format("{}", bounds[i])}}, "_bucket");
    }
    cumulative += static_cast<uint64_t>(counts[N]);
    sample(static_cast<double>(cumulative), {{"le", "+Inf"}}, "_bucket");
    sample(sum, {}, "_sum");
    sample(static_cast<double>(cumulative), {}, "_count");
  }
  std::string take() { return std::move(out_); }

 private:
  std::string name_;
  std::string out_;
};

}  // namespace

void SensorTotals::add(wire::Summary::Reader s) {
  auto& t = sensors_[std::string(s.getSensorId().cStr())];
  auto tot = s.getTotals();
  t.summaries++;
  t.packets += tot.getPackets();
  t.bytes += tot.getBytes();
  t.tcp += tot.getTcp();
  t.udp += tot.getUdp();
  t.icmp += tot.getIcmp();
  t.other += tot.getOther();
  t.kernelDrops += s.getKernelDrops();
  t.victimPacketsCut += s.getVictimPacketsCut();
  t.droppedSummaries = s.getDroppedSummaries();
  for (auto r : s.getDecodeErrors()) t.decodeErrors[std::string(r.getReason().cStr())] += r.getCount();
}

void HttpCounters::observe(int code, double seconds) {
  if (code >= 0 && static_cast<size_t>(code) < kCodes) byCode[static_cast<size_t>(code)]++;
  size_t b = 0;
  while (b < kBuckets.size() && seconds > kBuckets[b]) ++b;
  latency[b]++;
  latencyMicrosSum += static_cast<uint64_t>(seconds * 1e6);
}

std::string renderMetrics(const MetricsSources& m, const HttpCounters& http, const HttpGauges& g,
                          int64_t nowNs) {
  Writer w;
  auto counter = [&](const char* name, const char* help, double v) {
    w.family(name, "counter", help);
    w.sample(v);
  };

  // Sensors: what their summaries carried, and what the aggregator knows.
  if (m.sensors) {
    const auto& by = m.sensors->bySensor();
    auto perSensor = [&](const char* name, const char* help, auto field) {
      w.family(name, "counter", help);
      for (const auto& [id, t] : by) w.sample(static_cast<double>(field(t)), {{"sensor", id}});
    };
    using T = SensorTotals::Totals;
    perSensor("garda_sensor_summaries_total", "Summaries stored from this sensor.",
              [](const T& t) { return t.summaries; });
    perSensor("garda_sensor_packets_total", "Packets the sensor counted (stored summaries).",
              [](const T& t) { return t.packets; });
    perSensor("garda_sensor_bytes_total", "Bytes the sensor counted (stored summaries).",
              [](const T& t) { return t.bytes; });
    w.family("garda_sensor_protocol_packets_total", "counter",
             "Packets by IP protocol class (stored summaries).");
    for (const auto& [id, t] : by)
      for (const auto& [proto, v] : {std::pair{"tcp", t.tcp}, std::pair{"udp", t.udp},
                                     std::pair{"icmp", t.icmp}, std::pair{"other", t.other}})
        w.sample(static_cast<double>(v), {{"sensor", id}, {"protocol", proto}});
    perSensor("garda_sensor_kernel_drops_total", "Packets the sensor's kernel capture dropped.",
              [](const T& t) { return t.kernelDrops; });
    perSensor("garda_sensor_victim_packets_cut_total",
              "Packets to victims the sensor could not track (its victim table was full).",
              [](const T& t) { return t.victimPacketsCut; });
    w.family("garda_sensor_decode_errors_total", "counter",
             "Packets the sensor could not decode, by reason.");
    for (const auto& [id, t] : by)
      for (const auto& [reason, v] : t.decodeErrors)
        w.sample(static_cast<double>(v), {{"sensor", id}, {"reason", reason}});
    w.family("garda_sensor_dropped_summaries", "gauge",
             "Summaries the sensor lost to a full replay buffer since its boot.");
    for (const auto& [id, t] : by)
      w.sample(static_cast<double>(t.droppedSummaries), {{"sensor", id}});
  }
  if (m.city) {
    auto status = m.city->statusJson(nowNs)["sensors"];
    w.family("garda_sensor_up", "gauge", "1 when the sensor was heard from recently.");
    for (const auto& s : status)
      w.sample(s.value("state", "down") == "down" ? 0 : 1,
               {{"sensor", s.value("id", "")}, {"opd", s.value("opd", "")}});
    w.family("garda_sensor_pps", "gauge", "Packets per second in the sensor's last window.");
    for (const auto& s : status) w.sample(s.value("pps", 0.0), {{"sensor", s.value("id", "")}});
    w.family("garda_sensor_backlog", "gauge",
             "Summaries waiting at the sensor for an ack (its last heartbeat).");
    for (const auto& s : status)
      w.sample(s.value("backlog", 0.0), {{"sensor", s.value("id", "")}});
    w.family("garda_sensor_last_seen_seconds", "gauge",
             "Unix time the aggregator last heard from the sensor.");
    for (const auto& s : status)
      w.sample(s.value("last_seen_ns", 0.0) / 1e9, {{"sensor", s.value("id", "")}});
  }

  // Ingest.
  if (m.ingest) {
    const auto& c = m.ingest->counters();
    counter("garda_ingest_messages_total", "Messages received on the sensor socket.",
            static_cast<double>(c.messages));
    w.family("garda_ingest_accepted_total", "counter", "Sensor messages taken in, by kind.");
    for (const auto& [kind, v] :
         {std::pair{"hello", c.hellos}, std::pair{"summary", c.summariesStored},
          std::pair{"summary_duplicate", c.summariesDuplicate},
          std::pair{"summary_batch", c.summaryBatches},
          std::pair{"heartbeat", c.heartbeats}, std::pair{"alert", c.alerts},
          std::pair{"order_report", c.orderReports}})
      w.sample(static_cast<double>(v), {{"kind", kind}});
    w.family("garda_ingest_rejects_total", "counter", "Sensor messages refused, by reason.");
    for (size_t i = 0; i < c.rejects.size(); ++i)
      w.sample(static_cast<double>(c.rejects[i]),
               {{"reason", ingestRejectName(static_cast<IngestReject>(i))}});
    w.family("garda_ingest_decode_rejects_total", "counter",
             "Sensor messages the envelope decoder refused, by reason.");
    for (size_t i = 1; i < c.decodeRejects.size(); ++i)
      w.sample(static_cast<double>(c.decodeRejects[i]),
               {{"reason", common::envelopeRejectName(static_cast<common::EnvelopeReject>(i))}});
  }

  // Store.
  if (m.store) {
    const auto& c = m.store->counters();
    for (const auto& [name, help, v] :
         {std::tuple{"garda_store_summaries_written_total", "Summaries written to RocksDB.",
                     c.summaryWrites},
          std::tuple{"garda_store_batches_total", "Batches committed to RocksDB.", c.batches},
          std::tuple{"garda_store_write_errors_total", "RocksDB batch writes that failed.",
                     c.writeErrors},
          std::tuple{"garda_store_audit_records_total", "Audit records appended.", c.auditRecords},
          std::tuple{"garda_store_city_merges_total", "City seconds updated by summary batches.",
                     c.cityMerges},
          std::tuple{"garda_store_retention_runs_total", "Retention sweeps run.", c.retentionRuns}})
      counter(name, help, static_cast<double>(v));
    w.family("garda_store_write_seconds", "histogram",
             "RocksDB batch commit latency (write-ahead log included).");
    w.histogram(StoreCounters::kWriteBuckets, c.writeLatency, c.writeSecondsSum);
  }

  // Incidents.
  if (m.incidents) {
    const auto& c = m.incidents->correlator().counters();
    size_t open = 0, mitigating = 0;
    for (const Incident* inc : m.incidents->correlator().openIncidents())
      (inc->state == IncidentState::kMitigating ? mitigating : open)++;
    w.family("garda_incidents", "gauge", "Incidents not yet resolved, by state.");
    w.sample(static_cast<double>(open), {{"state", "open"}});
    w.sample(static_cast<double>(mitigating), {{"state", "mitigating"}});
    counter("garda_incidents_opened_total", "Incidents opened.", static_cast<double>(c.opened));
    w.family("garda_incidents_resolved_total", "counter", "Incidents resolved, by how.");
    w.sample(static_cast<double>(c.resolvedQuiet), {{"how", "quiet"}});
    w.sample(static_cast<double>(c.resolvedIdle), {{"how", "idle"}});
    counter("garda_detector_anomalies_total", "Anomalies the detector reported.",
            static_cast<double>(c.anomalies));
  }

  // Orders.
  if (m.dispatcher) {
    auto list = m.dispatcher->listJson(nowNs)["orders"];
    std::map<std::string, uint64_t> byState;
    std::map<std::pair<std::string, std::string>, uint64_t> bySensor;
    for (const auto& o : list) {
      byState[o.value("state", "")]++;
      const nlohmann::json deliveries = o.value("deliveries", nlohmann::json::object());
      for (const auto& [sensor, d] : deliveries.items())
        bySensor[{sensor, d.value("state", "")}]++;
    }
    w.family("garda_orders", "gauge",
             "Orders active or ended in the last 10 minutes, by state (the aggregator's store).");
    for (const auto& [state, n] : byState) w.sample(static_cast<double>(n), {{"state", state}});
    w.family("garda_sensor_orders", "gauge",
             "Orders at each sensor by the sensor's reported state (same orders as garda_orders).");
    for (const auto& [key, n] : bySensor)
      w.sample(static_cast<double>(n), {{"sensor", key.first}, {"state", key.second}});
    const auto& c = m.dispatcher->counters();
    w.family("garda_orders_events_total", "counter", "Order channel events, by kind.");
    for (const auto& [kind, v] :
         {std::pair{"added", c.ordersAdded}, std::pair{"removed", c.ordersRemoved},
          std::pair{"expired", c.ordersExpired}, std::pair{"sent", c.sends},
          std::pair{"resent", c.resends}, std::pair{"synced", c.syncs},
          std::pair{"reported", c.reports}, std::pair{"report_unknown", c.reportsUnknown},
          std::pair{"refused", c.refused}, std::pair{"renewed", c.renewed},
          std::pair{"proposed", c.proposed}, std::pair{"approved", c.approved},
          std::pair{"declined", c.declined}, std::pair{"dry_run", c.dryRun}})
      w.sample(static_cast<double>(v), {{"event", kind}});
  }

  // Console (ZeroMQ) and HTTP.
  if (m.console) {
    const auto& c = m.console->counters();
    w.family("garda_console_requests_total", "counter", "ZeroMQ console requests, by outcome.");
    w.sample(static_cast<double>(c.queries), {{"outcome", "query"}});
    w.sample(static_cast<double>(c.forbidden), {{"outcome", "forbidden"}});
    w.sample(static_cast<double>(c.badRequests), {{"outcome", "bad_request"}});
  }
  w.family("garda_http_requests_total", "counter", "HTTP requests answered, by status code.");
  for (size_t code = 100; code < HttpCounters::kCodes; ++code)
    if (uint64_t v = http.byCode[code].load())
      w.sample(static_cast<double>(v), {{"code", std::to_string(code)}});
  w.family("garda_http_request_seconds", "histogram", "HTTP request handling time.");
  std::array<uint64_t, HttpCounters::kBuckets.size() + 1> lat{};
  for (size_t i = 0; i < lat.size(); ++i) lat[i] = http.latency[i].load();
  w.histogram(HttpCounters::kBuckets, lat, static_cast<double>(http.latencyMicrosSum.load()) / 1e6);
  counter("garda_http_busy_total", "HTTP requests answered 503 because the loop was busy.",
          static_cast<double>(http.busy.load()));
  counter("garda_http_sse_dropped_total", "Event streams dropped for reading too slowly.",
          static_cast<double>(http.sseDropped.load()));
  counter("garda_http_sse_events_total", "Events published to the event streams.",
          static_cast<double>(g.ssePublished));
  w.family("garda_queue_depth", "gauge", "Work waiting in the aggregator's queues.");
  w.sample(static_cast<double>(g.loopQueueDepth), {{"queue", "http_to_loop"}});
  w.family("garda_http_sse_clients", "gauge", "Open event streams.");
  w.sample(static_cast<double>(g.sseClients));
  return w.take();
}

}  // namespace garda::aggregator
