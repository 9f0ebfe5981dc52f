#include "common/duration.h"
#include "aggregator/query.h"

#include <capnp/serialize.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <set>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/zmq_link.h"

namespace garda::aggregator {
namespace {

constexpr uint32_t kDefaultHistoryLimit = 1000;
constexpr uint32_t kMaxHistoryLimit = 1'000'000;
constexpr size_t kMaxIncidentsListed = 200;
constexpr uint32_t kDefaultAuditLimit = 200;
constexpr uint32_t kMaxAuditLimit = 10'000;
constexpr uint32_t kMaxHistoryPoints = 10'000;
constexpr std::string_view kConsolePrefix = "console:";

// `points` equal buckets over [lo, hi), each at least 1 ms wide; a start
// before lo falls in the first, one past the last bucket in the last.
struct BucketGrid {
  BucketGrid(int64_t lo, int64_t hi, uint32_t points)
      : lo(lo),
        width(std::max<int64_t>((std::max(hi, lo + 1) - lo + points - 1) / points, 1'000'000)),
        points(points) {}
  int64_t index(int64_t start) const {
    return start < lo ? 0 : std::min<int64_t>((start - lo) / width, points - 1);
  }
  int64_t startOf(int64_t index) const { return lo + index * width; }
  int64_t lo, width;
  uint32_t points;
};

// Sensors reporting in the second, averaged over it, to two decimals.
double citySensors(const CityTotals& t) {
  const double perSecond = static_cast<double>(CityTotals::kWindowNs / 1'000'000);
  return std::round(static_cast<double>(t.sensorMs) / perSecond * 100) / 100;
}

nlohmann::json cityRowJson(int64_t startNs, const CityTotals& t) {
  return {{"start_ns", startNs},
          {"window_ms", CityTotals::kWindowNs / 1'000'000},
          {"packets", t.packets},
          {"bytes", t.bytes},
          {"tcp", t.tcp},
          {"udp", t.udp},
          {"icmp", t.icmp},
          {"other", t.other},
          {"victims", cityVictims(t)},
          {"kernel_drops", t.kernelDrops},
          {"sensors", citySensors(t)},
          {"summaries", t.summaries}};
}

}  // namespace

uint64_t cityVictims(const CityTotals& t) {
  const double perSecond = static_cast<double>(CityTotals::kWindowNs / 1'000'000);
  return static_cast<uint64_t>(std::llround(static_cast<double>(t.victimMs) / perSecond));
}

nlohmann::json downsampleCity(const std::vector<std::pair<int64_t, CityTotals>>& rows,
                              uint32_t points, int64_t sinceNs, int64_t untilNs) {
  if (points == 0 || rows.empty()) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [start, t] : rows) out.push_back(cityRowJson(start, t));
    return out;
  }
  // As downsample() does it, field by field, without a JSON object per
  // second first (a whole-city history with points reads up to
  // kMaxHistoryLimit seconds): counts summed, victims and sensors their
  // largest value, windows the seconds in the bucket.
  int64_t hi = untilNs;
  if (hi <= 0)
    for (const auto& row : rows) hi = std::max(hi, row.first + CityTotals::kWindowNs);
  const BucketGrid grid(sinceNs > 0 ? sinceNs : rows.front().first, hi, points);
  struct Bucket {
    CityTotals sum;
    uint64_t victims = 0;
    double sensors = 0;
    uint64_t windows = 0;
  };
  std::map<int64_t, Bucket> buckets;
  for (const auto& [start, t] : rows) {
    Bucket& b = buckets[grid.index(start)];
    // Each second rounded first, as its row would be.
    b.victims = std::max(b.victims, cityVictims(t));
    b.sensors = std::max(b.sensors, citySensors(t));
    b.sum += t;
    b.windows++;
  }
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [index, b] : buckets)
    out.push_back({{"start_ns", grid.startOf(index)},
                   {"window_ms", grid.width / 1'000'000},
                   {"windows", b.windows},
                   {"packets", b.sum.packets},
                   {"bytes", b.sum.bytes},
                   {"tcp", b.sum.tcp},
                   {"udp", b.sum.udp},
                   {"icmp", b.sum.icmp},
                   {"other", b.sum.other},
                   {"victims", b.victims},
                   {"kernel_drops", b.sum.kernelDrops},
                   {"sensors", b.sensors},
                   {"summaries", b.sum.summaries}});
  return out;
}

nlohmann::json downsample(nlohmann::json rows, uint32_t points, int64_t sinceNs, int64_t untilNs) {
  if (points == 0 || rows.empty()) return rows;
  int64_t hi = untilNs;
  if (hi <= 0) {
    for (const auto& r : rows)
      hi = std::max(hi, r["start_ns"].get<int64_t>() + r["window_ms"].get<int64_t>() * 1'000'000);
  }
  const BucketGrid grid(sinceNs > 0 ? sinceNs : rows.front()["start_ns"].get<int64_t>(), hi, points);
  static const std::set<std::string> kMax = {"victims", "sensors"};
  static const std::set<std::string> kSkip = {"start_ns", "window_ms", "boot_id", "seq", "sensor"};
  std::map<int64_t, nlohmann::json> buckets;
  for (const auto& r : rows) {
    const int64_t index = grid.index(r["start_ns"].get<int64_t>());
    auto& b = buckets[index];
    if (b.is_null())
      b = {{"start_ns", grid.startOf(index)}, {"window_ms", grid.width / 1'000'000}, {"windows", 0}};
    b["windows"] = b["windows"].get<uint64_t>() + 1;
    for (const auto& [key, value] : r.items()) {
      if (kSkip.count(key) || !value.is_number()) continue;
      if (!b.contains(key)) b[key] = value;
      else if (kMax.count(key) && value.is_number_float())
        b[key] = std::max(b[key].get<double>(), value.get<double>());
      else if (kMax.count(key))
        b[key] = std::max(b[key].get<uint64_t>(), value.get<uint64_t>());
      else if (value.is_number_float()) b[key] = b[key].get<double>() + value.get<double>();
      else b[key] = b[key].get<uint64_t>() + value.get<uint64_t>();
    }
  }
  nlohmann::json out = nlohmann::json::array();
  for (auto& [index, b] : buckets) out.push_back(std::move(b));
  return out;
}

bool isOperatorCommand(wire::Query::Command::Which w) {
  switch (w) {
    case wire::Query::Command::BLOCK_ADD:
    case wire::Query::Command::BLOCK_REMOVE:
    case wire::Query::Command::ORDER_APPROVE:
    case wire::Query::Command::ORDER_REJECT: return true;
    default: return false;
  }
}

QueryService::QueryService(Store& store, CityView& city, Dispatcher& dispatcher,
                           IncidentTracker& incidents)
    : store_(store), city_(city), dispatcher_(dispatcher), incidents_(incidents) {}

QueryResult QueryService::blockAdd(const common::Prefix& source, uint64_t ttlMs,
                                   const std::string& reason, const std::string& who) {
  if (source.length() == 0) return QueryResult::fail(400, "refusing to block every source (/0)");
  if (reason.empty()) return QueryResult::fail(400, "a block needs a reason (--reason)");
  OrderSpec spec;
  spec.match.source = source;
  spec.ttlNs = static_cast<int64_t>(std::min<uint64_t>(ttlMs, uint64_t{1} << 40)) * 1'000'000;
  spec.reason = reason;
  std::string error;
  auto id = dispatcher_.add(spec, who, common::wallNowNs(), error);
  if (!id) return QueryResult::fail(400, "block refused: " + error);
  return {true, 200, "", Dispatcher::toJson(*dispatcher_.find(*id))};
}

QueryResult QueryService::blockList() {
  return {true, 200, "", dispatcher_.listJson(common::wallNowNs())};
}

QueryResult QueryService::blockRemove(const std::string& orderId, const std::string& who) {
  std::string error;
  if (!dispatcher_.remove(orderId, who, common::wallNowNs(), error))
    return QueryResult::fail(dispatcher_.find(orderId) ? 409 : 404, error);
  return {true, 200, "", Dispatcher::toJson(*dispatcher_.find(orderId))};
}

void QueryService::forEachSummary(const std::string& sensorId, int64_t sinceNs, int64_t untilNs,
                                  size_t limit,
                                  const std::function<void(wire::Summary::Reader)>& fn) {
  store_.scanSummaries(sensorId, sinceNs, untilNs, limit, [&](std::string_view, std::string_view v) {
    if (v.size() % sizeof(capnp::word) != 0) return;
    // RocksDB's bytes carry no alignment promise: one aligned copy.
    kj::Array<capnp::word> words = kj::heapArray<capnp::word>(v.size() / sizeof(capnp::word));
    std::memcpy(words.begin(), v.data(), v.size());
    capnp::FlatArrayMessageReader reader(words);
    fn(reader.getRoot<wire::Summary>());
  });
}

QueryResult QueryService::orderDecide(const std::string& orderId, bool approve,
                                      const std::string& who) {
  std::string error;
  const int64_t now = common::wallNowNs();
  bool ok = approve ? dispatcher_.approve(orderId, who, now, error)
                    : dispatcher_.decline(orderId, who, now, error);
  if (!ok) return QueryResult::fail(dispatcher_.find(orderId) ? 409 : 404, error);
  return {true, 200, "", Dispatcher::toJson(*dispatcher_.find(orderId))};
}

QueryResult QueryService::incidents(bool openOnly, int64_t sinceNs) {
  auto j = incidents_.listJson(openOnly, kMaxIncidentsListed);
  if (sinceNs > 0) {
    auto& list = j["incidents"];
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const nlohmann::json& i) {
                                return i.value("updated_at_ns", int64_t{0}) < sinceNs;
                              }),
               list.end());
  }
  return {true, 200, "", j};
}

QueryResult QueryService::incidentShow(const std::string& id) {
  auto j = incidents_.showJson(id);
  if (!j) return QueryResult::fail(404, "no incident '" + id + "'");
  return {true, 200, "", *j};
}

QueryResult QueryService::incidentExport(const std::string& id, const std::string& format) {
  if (format != "stix" && format != "misp")
    return QueryResult::fail(400, "unknown export format '" + format + "' (expected stix or misp)");
  auto j = incidents_.showJson(id);
  if (!j) return QueryResult::fail(404, "no incident '" + id + "'");
  try {
    return {true, 200, "", *exportIncident(*j, format, exportSettings_)};
  } catch (const std::invalid_argument& e) {
    return QueryResult::fail(500, "incident '" + id + "' cannot be exported: " + e.what());
  }
}

QueryResult QueryService::incidentPcap(const std::string& id, std::string& capture) {
  if (!evidence_) return QueryResult::fail(501, "evidence is not collected by this aggregator");
  auto shown = incidents_.showJson(id);
  if (!shown) return QueryResult::fail(404, "no incident '" + id + "'");
  auto pcap = evidence_->pcap(id);
  if (pcap && pcap->packets > 0) {
    capture = std::move(pcap->bytes);
    return {true, 200, "",
            {{"incident", id},
             {"packets", pcap->packets},
             {"bytes", capture.size()},
             {"sensors", pcap->sensors},
             {"empty", pcap->empty},
             {"skipped", pcap->skipped}}};
  }
  const Incident* open = incidents_.correlator().find(id);
  const Incident incident = open ? *open : incidentFromJson(*shown);
  auto asked = evidence_->request(incident, common::wallNowNs());
  if (!asked.empty() || evidence_->pending(id))
    return QueryResult::fail(404, "no evidence for " + id +
                                      " yet: requested from its sensors; try again in a few "
                                      "seconds");
  if (pcap) {  // every sensor asked has answered, with no packets
    std::string sensors;
    for (const auto& e : pcap->empty) sensors += (sensors.empty() ? "" : ", ") + e;
    return QueryResult::fail(404, "no packets for " + id + ": sensor(s) " + sensors +
                                      " saw none matching before the deadline");
  }
  return QueryResult::fail(404, "no evidence for " + id +
                                    ", and its sensors cannot be asked now (not connected)");
}

QueryResult QueryService::top(bool sources, int64_t sinceNs, const std::string& sensorId,
                              uint32_t limit) {
  if (!sensorId.empty() && !city_.find(sensorId))
    return QueryResult::fail(404, "unknown sensor '" + sensorId + "'");
  if (limit == 0) limit = 20;
  limit = std::min<uint32_t>(limit, 1000);
  // Without --since: the newest windows of each sensor, as history does.
  const size_t windowsPerSensor = sinceNs > 0 ? kMaxHistoryLimit : kDefaultHistoryLimit;
  struct Row {
    uint64_t packets = 0, bytes = 0, windows = 0;
    std::set<std::string> sensors, victims;
  };
  std::map<std::string, Row> rows;
  size_t windows = 0;
  std::vector<std::string> ids = sensorId.empty()
                                     ? std::vector<std::string>(city_.listed().begin(),
                                                                city_.listed().end())
                                     : std::vector<std::string>{sensorId};
  for (const auto& id : ids)
    forEachSummary(id, sinceNs, 0, windowsPerSensor, [&](wire::Summary::Reader s) {
      ++windows;
      for (auto v : s.getVictims()) {
        auto victim = common::readAddress(v.getAddress());
        if (!victim) continue;
        if (!sources) {
          auto& r = rows[victim->toString()];
          r.packets += v.getPackets();
          r.bytes += v.getBytes();
          r.windows++;
          r.sensors.insert(id);
          continue;
        }
        for (auto src : v.getTopSources()) {
          auto a = common::readAddress(src.getAddress());
          if (!a) continue;
          auto& r = rows[a->toString()];
          // The certain part of the Space-Saving count (a lower bound).
          r.packets += src.getPackets() - std::min(src.getError(), src.getPackets());
          r.windows++;
          r.sensors.insert(id);
          r.victims.insert(victim->toString());
        }
      }
    });
  std::vector<std::pair<std::string, Row>> sorted(rows.begin(), rows.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.second.packets > b.second.packets; });
  if (sorted.size() > limit) sorted.resize(limit);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [address, r] : sorted) {
    nlohmann::json j = {{"address", address}, {"packets", r.packets}, {"windows", r.windows},
                        {"sensors", r.sensors}};
    if (sources) j["victims"] = r.victims;
    else j["bytes"] = r.bytes;
    list.push_back(std::move(j));
  }
  return {true, 200, "",
          {{"kind", sources ? "sources" : "victims"},
           {"since_ns", sinceNs},
           {"sensor", sensorId},
           {"windows_scanned", windows},
           {sources ? "sources" : "victims", list}}};
}

QueryResult QueryService::status() { return {true, 200, "", city_.statusJson(common::wallNowNs())}; }

QueryResult QueryService::history(const std::string& sensorId, int64_t sinceNs, int64_t untilNs,
                                  uint32_t limit, uint32_t points, const std::string& victim) {
  if (!sensorId.empty() && !city_.find(sensorId))
    return QueryResult::fail(404, "unknown sensor '" + sensorId + "'");
  if (points > kMaxHistoryPoints)
    return QueryResult::fail(400, "points = " + std::to_string(points) + ": at most " +
                                      std::to_string(kMaxHistoryPoints));
  if (untilNs > 0 && untilNs <= sinceNs)
    return QueryResult::fail(400, "until must be after since");
  if (limit == 0) limit = points > 0 ? kMaxHistoryLimit : kDefaultHistoryLimit;
  limit = std::min(limit, kMaxHistoryLimit);
  nlohmann::json windows = nlohmann::json::array();
  if (!victim.empty()) {
    auto address = common::IpAddress::parse(victim);
    if (!address) return QueryResult::fail(400, "victim '" + victim + "' is not an IP address");
    std::vector<std::string> ids =
        sensorId.empty() ? std::vector<std::string>(city_.listed().begin(), city_.listed().end())
                         : std::vector<std::string>{sensorId};
    std::vector<nlohmann::json> rows;
    for (const auto& id : ids)
      forEachSummary(id, sinceNs, untilNs, limit, [&](wire::Summary::Reader s) {
        for (auto v : s.getVictims()) {
          auto a = common::readAddress(v.getAddress());
          if (!a || !(*a == *address)) continue;
          rows.push_back({{"start_ns", s.getWindowStartNs()},
                          {"window_ms", s.getWindowMs()},
                          {"sensor", id},
                          {"packets", v.getPackets()},
                          {"bytes", v.getBytes()}});
        }
      });
    std::stable_sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) {
      return x["start_ns"].template get<int64_t>() < y["start_ns"].template get<int64_t>();
    });
    if (rows.size() > limit) rows.erase(rows.begin(), rows.end() - limit);
    for (auto& r : rows) windows.push_back(std::move(r));
    return {true, 200, "",
            {{"sensor", sensorId}, {"city", sensorId.empty()}, {"victim", address->toString()},
             {"windows", downsample(std::move(windows), points, sinceNs, untilNs)}}};
  }
  if (sensorId.empty()) {
    // The city: one row per second over every sensor. `victims` and
    // `sensors` are averages over the second (sensors with windows under a
    // second report several times in it).
    std::vector<std::pair<int64_t, CityTotals>> rows;
    store_.scanCity(sinceNs, untilNs, limit,
                    [&](int64_t startNs, const CityTotals& t) { rows.emplace_back(startNs, t); });
    return {true, 200, "",
            {{"sensor", ""},
             {"city", true},
             {"windows", downsampleCity(rows, points, sinceNs, untilNs)}}};
  }
  forEachSummary(sensorId, sinceNs, untilNs, limit, [&](wire::Summary::Reader s) {
    auto t = s.getTotals();
    windows.push_back({{"start_ns", s.getWindowStartNs()},
                       {"window_ms", s.getWindowMs()},
                       {"boot_id", common::formatHex64(s.getBootId())},
                       {"seq", s.getSeq()},
                       {"packets", t.getPackets()},
                       {"bytes", t.getBytes()},
                       {"tcp", t.getTcp()},
                       {"udp", t.getUdp()},
                       {"icmp", t.getIcmp()},
                       {"other", t.getOther()},
                       {"victims", s.getVictims().size()},
                       {"kernel_drops", s.getKernelDrops()}});
  });
  return {true, 200, "",
          {{"sensor", sensorId},
           {"city", false},
           {"windows", downsample(std::move(windows), points, sinceNs, untilNs)}}};
}

QueryResult QueryService::audit(int64_t sinceNs, uint32_t limit) {
  if (limit == 0) limit = kDefaultAuditLimit;
  limit = std::min(limit, kMaxAuditLimit);
  std::deque<nlohmann::json> newest;
  store_.forEachAudit(sinceNs, [&](std::string_view json) {
    auto j = nlohmann::json::parse(json, nullptr, false);
    if (j.is_discarded()) return;
    newest.push_back(std::move(j));
    if (newest.size() > limit) newest.pop_front();
  });
  nlohmann::json records = nlohmann::json::array();
  for (auto& j : newest) records.push_back(std::move(j));
  return {true, 200, "", {{"since_ns", sinceNs}, {"records", records}}};
}

QueryResult QueryService::run(wire::Query::Reader q, const Caller& caller) {
  const std::string& who = caller.who;
  const common::Role role = caller.role;
  auto cmd = q.getCommand();
  if (isOperatorCommand(cmd.which())) {
    bool allowed = role == common::Role::kOperator;
    nlohmann::json audit = {{"at_ns", common::wallNowNs()},
                            {"who", who},
                            {"role", common::roleName(role)},
                            {"action", "command"},
                            {"command", static_cast<int>(cmd.which())},
                            {"allowed", allowed}};
    store_.appendAudit(common::wallNowNs(), audit.dump());
    if (!allowed) {
      forbidden_++;
      return QueryResult::fail(403, "forbidden: '" + who + "' has role viewer; this command needs "
                                    "role operator");
    }
  }
  switch (cmd.which()) {
    case wire::Query::Command::STATUS: return status();
    case wire::Query::Command::HISTORY: {
      auto h = cmd.getHistory();
      return history(h.getSensorId(), h.getSinceNs(), h.getUntilNs(), h.getLimit(), h.getPoints(),
                     h.getVictim());
    }
    case wire::Query::Command::BLOCK_ADD: {
      auto b = cmd.getBlockAdd();
      auto prefix = common::readPrefix(b.getPrefix());
      if (!prefix) return QueryResult::fail(400, "unreadable prefix");
      return blockAdd(*prefix, b.getTtlMs(), b.getReason(), who);
    }
    case wire::Query::Command::BLOCK_LIST: return blockList();
    case wire::Query::Command::ORDER_APPROVE:
      return orderDecide(cmd.getOrderApprove(), true, who);
    case wire::Query::Command::ORDER_REJECT:
      return orderDecide(cmd.getOrderReject(), false, who);
    case wire::Query::Command::INCIDENTS:
      return incidents(cmd.getIncidents().getOpenOnly(), cmd.getIncidents().getSinceNs());
    case wire::Query::Command::INCIDENT_SHOW: return incidentShow(cmd.getIncidentShow());
    case wire::Query::Command::TOP: {
      auto t = cmd.getTop();
      return top(t.getSources(), t.getSinceNs(), t.getSensorId(), t.getLimit());
    }
    case wire::Query::Command::BLOCK_REMOVE:
      return blockRemove(cmd.getBlockRemove(), who);
    case wire::Query::Command::AUDIT: {
      auto a = cmd.getAudit();
      return audit(a.getSinceNs(), a.getLimit());
    }
    case wire::Query::Command::INCIDENT_EXPORT: {
      auto e = cmd.getIncidentExport();
      return incidentExport(e.getIncidentId(), e.getFormat());
    }
    case wire::Query::Command::INCIDENT_PCAP: {
      std::string capture;
      auto r = incidentPcap(cmd.getIncidentPcap(), capture);
      if (r.ok) {
        r.data = std::move(capture);
        r.contentType = "application/vnd.tcpdump.pcap";
      }
      return r;
    }
    default:
      return QueryResult::fail(501, "this command is not available in this aggregator version");
  }
}

ConsoleServer::ConsoleServer(zmq::socket_t& router, QueryService& queries,
                             const common::AggregatorConfig& config)
    : router_(router),
      queries_(queries),
      decoder_(common::DecodeLimits{1 << 20}) {
  reload(config);
}

void ConsoleServer::reload(const common::AggregatorConfig& config) {
  roles_.clear();
  for (const auto& c : config.consoles) roles_[c.name] = c.role;
}

void ConsoleServer::reply(const std::string& routingId, uint64_t requestId, const QueryResult& r,
                          common::WireEncoding encoding) {
  capnp::MallocMessageBuilder message;
  auto rep = common::initEnvelope(message).getBody().initReply();
  rep.setRequestId(requestId);
  rep.setOk(r.ok);
  rep.setError(r.error);
  if (r.ok) rep.setJson(r.body.dump());
  if (r.ok && !r.data.empty())
    rep.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(r.data.data()), r.data.size()));
  std::string bytes = common::encodeMessage(message, encoding);
  (void)router_.send(zmq::buffer(routingId), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
  (void)router_.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
}

void ConsoleServer::drain(size_t maxMessages) {
  for (size_t i = 0; i < maxMessages; ++i) {
    zmq::message_t id, msg;
    bool extra = false;  // a console's extra frames are dropped; the first is the query
    auto got = common::recvRouterMessage(router_, id, msg, extra);
    if (got == common::RouterReceive::kNothing) break;
    if (got == common::RouterReceive::kNoBody) continue;
    std::string userId = common::messageUserId(msg);
    std::string name = userId.rfind(kConsolePrefix, 0) == 0 ? userId.substr(kConsolePrefix.size())
                                                            : std::string();
    auto roleIt = roles_.find(name);
    auto r = decoder_.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size()));
    if (r != common::EnvelopeReject::kNone || roleIt == roles_.end() ||
        decoder_.envelope().getBody().which() != wire::Envelope::Body::QUERY) {
      counters_.badRequests++;
      if (logLimiter_.allow())
        spdlog::warn("console: bad request from '{}': {} {}", name, common::envelopeRejectName(r),
                     decoder_.detail());
      reply(id.to_string(), 0, QueryResult::fail(400, "bad request"), decoder_.encoding());
      continue;
    }
    counters_.queries++;
    auto q = decoder_.envelope().getBody().getQuery();
    QueryResult result;
    try {
      const uint64_t forbiddenBefore = queries_.forbidden();
      result = queries_.run(q, Caller{std::string(kConsolePrefix) + name, roleIt->second});
      counters_.forbidden += queries_.forbidden() - forbiddenBefore;
    } catch (const std::exception& e) {
      spdlog::error("console: query from '{}' failed: {}", name, e.what());
      result = QueryResult::fail(500, e.what());
    }
    reply(id.to_string(), q.getRequestId(), result, decoder_.encoding());
  }
}

}  // namespace garda::aggregator
