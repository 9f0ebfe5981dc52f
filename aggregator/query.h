#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <zmq.hpp>

#include "aggregator/city_view.h"
#include "aggregator/dispatch.h"
#include "aggregator/export.h"
#include "aggregator/evidence.h"
#include "aggregator/incidents.h"
#include "aggregator/store.h"
#include "common/config.h"
#include "common/envelope.h"
#include "common/log.h"

namespace garda::aggregator {

// A query's answer: JSON on success, or an error a person can read. `code`
// follows HTTP's meaning (400 bad request, 403 forbidden, 404 not found, 501
// not available) so the HTTP transport can use it as is.
struct QueryResult {
  QueryResult(bool ok_ = true, int code_ = 200, std::string error_ = {}, nlohmann::json body_ = {})
      : ok(ok_), code(code_), error(std::move(error_)), body(std::move(body_)) {}
  bool ok = true;
  int code = 200;
  std::string error;
  nlohmann::json body;
  // A binary answer (incident pcap) instead of JSON, with its media type
  // (the ZeroMQ reply carries it in `data`, HTTP as the response body).
  std::string data;
  std::string contentType;
  static QueryResult fail(int code, std::string why) { return {false, code, std::move(why), {}}; }
};

// Who asks: the audited name ("console:NAME" or "token:NAME") and its role.
struct Caller {
  std::string who;
  common::Role role = common::Role::kViewer;
};

// True for the commands that change something (operator only, audited).
bool isOperatorCommand(wire::Query::Command::Which w);

// History rows summed into `points` equal time buckets over [since, until)
// (or the rows' own span): counts are summed, `victims` and `sensors` keep
// their largest value, `windows` counts the rows in the bucket. Buckets
// without rows are left out. points = 0: the rows as they are.
nlohmann::json downsample(nlohmann::json rows, uint32_t points, int64_t sinceNs, int64_t untilNs);
// The city's seconds (from Store::scanCity) as history rows, downsampled as
// downsample() would, without a JSON object per second on the way.
nlohmann::json downsampleCity(const std::vector<std::pair<int64_t, CityTotals>>& rows,
                              uint32_t points, int64_t sinceNs, int64_t untilNs);
// A city second's (sensor, victim) pairs, averaged over the second.
uint64_t cityVictims(const CityTotals& t);

// Every console query and action, once, for every transport: the ZeroMQ
// console and HTTP both build a wire::Query and call run(), which checks the
// role, audits operator actions and returns the CLI's --json shape.
// Single-threaded (the aggregator loop).
class QueryService {
 public:
  QueryService(Store& store, CityView& city, Dispatcher& dispatcher, IncidentTracker& incidents);

  // One query from any transport: role check, audit, dispatch.
  QueryResult run(wire::Query::Reader q, const Caller& caller);
  uint64_t forbidden() const noexcept { return forbidden_; }

  QueryResult status();
  // `points` > 0: the windows in [since, until) summed into that many equal
  // time buckets (server-side downsampling). `victim`: that victim's packets
  // and bytes per window at the sensor (or city-wide without a sensor).
  QueryResult history(const std::string& sensorId, int64_t sinceNs, int64_t untilNs,
                      uint32_t limit, uint32_t points = 0, const std::string& victim = "");
  // The audit log since `sinceNs`, the `limit` newest, oldest first.
  QueryResult audit(int64_t sinceNs, uint32_t limit);
  // Operator actions: `who` is audited ("console:NAME", later "token:NAME").
  QueryResult blockAdd(const common::Prefix& source, uint64_t ttlMs, const std::string& reason,
                       const std::string& who);
  QueryResult blockList();
  QueryResult incidents(bool openOnly, int64_t sinceNs = 0);
  QueryResult incidentShow(const std::string& id);
  // `format` "stix" (STIX 2.1 bundle) or "misp" (MISP event): aggregator/export.h.
  QueryResult incidentExport(const std::string& id, const std::string& format);
  void setExportSettings(ExportSettings settings) { exportSettings_ = std::move(settings); }
  // Top victims (by packets) or sources (by packets in the victims' top-K)
  // over the stored windows since `sinceNs`, city-wide or at one sensor.
  QueryResult top(bool sources, int64_t sinceNs, const std::string& sensorId, uint32_t limit);
  QueryResult blockRemove(const std::string& orderId, const std::string& who);
  // Confirm mode: approve or decline the planner's proposal.
  QueryResult orderDecide(const std::string& orderId, bool approve, const std::string& who);
  // The incident's evidence as a pcap file (into `capture`); without
  // stored evidence, asks its sensors and answers 404 "requested".
  QueryResult incidentPcap(const std::string& id, std::string& capture);
  void setEvidence(EvidenceCollector* evidence) noexcept { evidence_ = evidence; }

 private:
  // Each stored summary of a sensor in [sinceNs, untilNs), the `limit` newest.
  void forEachSummary(const std::string& sensorId, int64_t sinceNs, int64_t untilNs, size_t limit,
                      const std::function<void(wire::Summary::Reader)>& fn);

  Store& store_;
  CityView& city_;
  Dispatcher& dispatcher_;
  IncidentTracker& incidents_;
  ExportSettings exportSettings_;
  EvidenceCollector* evidence_ = nullptr;
  uint64_t forbidden_ = 0;
};

struct ConsoleCounters {
  uint64_t queries = 0;
  uint64_t forbidden = 0;
  uint64_t badRequests = 0;
};

// The console's ROUTER socket: decodes each Query, checks the caller's role
// (from its CURVE key, bound by ZAP), runs it through QueryService and
// replies. Operator actions are audited, allowed or not. Single-threaded.
class ConsoleServer {
 public:
  ConsoleServer(zmq::socket_t& router, QueryService& queries,
                const common::AggregatorConfig& config);
  void reload(const common::AggregatorConfig& config);
  void drain(size_t maxMessages);
  const ConsoleCounters& counters() const noexcept { return counters_; }

 private:
  // In the query's encoding: an older console reads flat.
  void reply(const std::string& routingId, uint64_t requestId, const QueryResult& r,
             common::WireEncoding encoding);

  zmq::socket_t& router_;
  QueryService& queries_;
  std::map<std::string, common::Role> roles_;
  common::EnvelopeDecoder decoder_;
  common::LogLimiter logLimiter_;
  ConsoleCounters counters_;
};

}  // namespace garda::aggregator
