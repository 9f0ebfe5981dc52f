#include "aggregator/evidence.h"

#include <capnp/message.h>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <netinet/in.h>
#include <pcap/pcap.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <kj/io.h>
#include <set>

#include "common/clock.h"
#include "common/envelope.h"

namespace garda::aggregator {
namespace {

constexpr int64_t kNsPerMs = 1'000'000;

std::string packed(capnp::MessageBuilder& message) {
  kj::VectorOutputStream out;
  capnp::writePackedMessage(out, message);
  auto bytes = out.getArray();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

}  // namespace

const char* evidenceRejectName(EvidenceReject r) noexcept {
  switch (r) {
    case EvidenceReject::kUnknownRequest: return "unknown_request";
    case EvidenceReject::kWrongSensor: return "wrong_sensor";
    case EvidenceReject::kWrongIncident: return "wrong_incident";
    case EvidenceReject::kOutOfOrder: return "out_of_order";
    case EvidenceReject::kLinkType: return "link_type";
    case EvidenceReject::kTooManyPackets: return "too_many_packets";
    case EvidenceReject::kOverSnapLen: return "over_snap_len";
    case EvidenceReject::kStoreError: return "store_error";
    case EvidenceReject::kCount: break;
  }
  return "unknown";
}

VectorFilter vectorFilter(wire::Vector v, uint16_t reflectionPort, bool ipv6) noexcept {
  switch (v) {
    case wire::Vector::TCP_SYN: return {IPPROTO_TCP, 0, 0x12, 0x02};
    case wire::Vector::TCP_SYN_ACK: return {IPPROTO_TCP, 0, 0x12, 0x12};
    case wire::Vector::TCP_OTHER: return {IPPROTO_TCP, 0, 0x02, 0x00};
    case wire::Vector::UDP: return {IPPROTO_UDP, 0, 0, 0};
    case wire::Vector::UDP_REFLECTION: return {IPPROTO_UDP, reflectionPort, 0, 0};
    case wire::Vector::ICMP:
      return {ipv6 ? uint8_t{IPPROTO_ICMPV6} : uint8_t{IPPROTO_ICMP}, 0, 0, 0};
    default: return {};  // fragments, other protocols: anything toward the victim
  }
}

EvidenceCollector::EvidenceCollector(Store& store, SendFn send, EvidenceSettings settings)
    : store_(store), send_(std::move(send)), settings_(settings) {
  // Ids from the clock: a restarted aggregator never takes an answer meant
  // for its previous life as one to its own request.
  nextRequestId_ = static_cast<uint64_t>(common::wallNowNs());
}

bool EvidenceCollector::pending(const std::string& incidentId) const {
  return std::any_of(outstanding_.begin(), outstanding_.end(),
                     [&](const auto& o) { return o.second.incidentId == incidentId; });
}

std::vector<std::string> EvidenceCollector::request(const Incident& inc, int64_t nowNs) {
  std::set<std::string> answered;
  store_.forEachEvidence(inc.id, [&](std::string_view sensor, std::string_view) {
    answered.emplace(sensor);
  });
  for (const auto& [id, o] : outstanding_)
    if (o.incidentId == inc.id) answered.insert(o.sensorId);
  std::vector<std::string> asked;
  for (const auto& sensor : inc.sensors()) {
    // Asked or answered: not again. A sensor that could not be asked (not
    // connected) is not marked, so onOpen() tries it again.
    if (answered.count(sensor)) {
      autoAsked_.insert(inc.id + '\0' + sensor);
      continue;
    }
    // The sensor's heaviest member says what to sample.
    const IncidentMember* m = nullptr;
    for (const auto& x : inc.members)
      if (x.sensorId == sensor && (!m || x.peakPps > m->peakPps)) m = &x;
    if (!m) continue;
    const bool v6 = !m->victim.isV4();
    auto victim = common::Prefix::make(m->victim, v6 ? 128 : 32);
    if (!victim) continue;
    const VectorFilter f = vectorFilter(m->vector, m->reflectionPort, v6);
    const uint64_t requestId = nextRequestId_++;
    capnp::MallocMessageBuilder message;
    auto r = common::initEnvelope(message).getBody().initEvidenceRequest();
    r.setIncidentId(inc.id);
    r.setRequestId(requestId);
    common::writePrefix(r.initVictim(), *victim);
    r.setProtocol(f.protocol);
    r.setSourcePort(f.sourcePort);
    r.setTcpFlagsMask(f.tcpFlagsMask);
    r.setTcpFlags(f.tcpFlags);
    r.setMaxPackets(settings_.maxPackets);
    r.setSnapLen(settings_.snapLen);
    const int64_t deadline = nowNs + settings_.deadlineMs * kNsPerMs;
    r.setDeadlineNs(deadline);
    if (!send_(sensor, common::encodeMessage(message))) {
      counters_.requestsUnsent++;
      spdlog::warn("evidence: cannot ask sensor {} for incident {}: not connected", sensor, inc.id);
      continue;
    }
    counters_.requested++;
    Outstanding o;
    o.incidentId = inc.id;
    o.sensorId = sensor;
    o.maxPackets = settings_.maxPackets;
    o.snapLen = settings_.snapLen;
    o.expiresNs = deadline + settings_.graceMs * kNsPerMs;
    outstanding_.emplace(requestId, std::move(o));
    autoAsked_.insert(inc.id + '\0' + sensor);
    asked.push_back(sensor);
    spdlog::info("evidence: asked sensor {} for up to {} packets of incident {} ({} toward {})",
                 sensor, settings_.maxPackets, inc.id, m->classification, m->victim.toString());
  }
  return asked;
}

void EvidenceCollector::onOpen(const std::vector<const Incident*>& open, int64_t nowNs) {
  tick(nowNs);
  std::set<std::string> still;
  for (const Incident* inc : open) {
    bool fresh = false;
    for (const auto& sensor : inc->sensors()) {
      std::string key = inc->id + '\0' + sensor;
      fresh = fresh || !autoAsked_.count(key);
      still.insert(std::move(key));
    }
    if (fresh) request(*inc, nowNs);
  }
  std::erase_if(autoAsked_, [&](const std::string& key) { return !still.count(key); });
}

void EvidenceCollector::reject(EvidenceReject why, const std::string& sensorId,
                               const std::string& detail) {
  counters_.rejects[static_cast<size_t>(why)]++;
  spdlog::warn("evidence: rejected a message from sensor {}: {} ({})", sensorId,
               evidenceRejectName(why), detail);
}

void EvidenceCollector::onEvidence(const std::string& sensorId, wire::Evidence::Reader e,
                                   int64_t nowNs) {
  auto it = outstanding_.find(e.getRequestId());
  if (it == outstanding_.end())
    return reject(EvidenceReject::kUnknownRequest, sensorId,
                  "request " + std::to_string(e.getRequestId()));
  Outstanding& o = it->second;
  if (o.sensorId != sensorId || e.getSensorId() != sensorId)
    return reject(EvidenceReject::kWrongSensor, sensorId, "asked of " + o.sensorId);
  if (e.getIncidentId() != o.incidentId)
    return reject(EvidenceReject::kWrongIncident, sensorId, std::string(e.getIncidentId().cStr()));
  if (e.getPart() != o.nextPart)
    return reject(EvidenceReject::kOutOfOrder, sensorId,
                  "part " + std::to_string(e.getPart()) + ", expected " +
                      std::to_string(o.nextPart));
  auto packets = e.getPackets();
  if (o.nextPart > 0 && !o.frames.empty() && packets.size() > 0 && e.getLinkType() != o.linkType)
    return reject(EvidenceReject::kLinkType, sensorId, std::to_string(e.getLinkType()));
  if (o.frames.size() + packets.size() > o.maxPackets)
    return reject(EvidenceReject::kTooManyPackets, sensorId,
                  std::to_string(o.frames.size() + packets.size()) + " packets, asked for " +
                      std::to_string(o.maxPackets));
  // Each data blob is read once here (a read counts against the decoder's
  // traversal limit, which the envelope check already spent once on).
  std::vector<Frame> frames;
  frames.reserve(packets.size());
  for (auto p : packets) {
    auto d = p.getData();
    if (d.size() > o.snapLen || d.size() > p.getOrigLen())
      return reject(EvidenceReject::kOverSnapLen, sensorId, std::to_string(d.size()) + " bytes");
    frames.push_back({p.getTsNs(), p.getOrigLen(),
                      std::string(reinterpret_cast<const char*>(d.begin()), d.size())});
  }
  counters_.parts++;
  if (o.frames.empty() && !frames.empty()) o.linkType = e.getLinkType();
  for (auto& f : frames) o.frames.push_back(std::move(f));
  o.nextPart++;
  o.expiresNs = std::max(o.expiresNs, nowNs + settings_.graceMs * kNsPerMs);
  if (!e.getDone()) return;
  store(o, e.getReason());
  outstanding_.erase(it);
}

void EvidenceCollector::store(const Outstanding& o, const std::string& reason) {
  capnp::MallocMessageBuilder message;
  auto e = message.initRoot<wire::Evidence>();
  e.setIncidentId(o.incidentId);
  e.setSensorId(o.sensorId);
  e.setLinkType(o.linkType);
  e.setDone(true);
  e.setReason(reason);
  auto list = e.initPackets(static_cast<unsigned>(o.frames.size()));
  for (unsigned i = 0; i < o.frames.size(); ++i) {
    list[i].setTsNs(o.frames[i].tsNs);
    list[i].setOrigLen(o.frames[i].origLen);
    list[i].setData(capnp::Data::Reader(
        reinterpret_cast<const capnp::byte*>(o.frames[i].data.data()), o.frames[i].data.size()));
  }
  try {
    store_.putEvidence(o.incidentId, o.sensorId, packed(message));
  } catch (const std::exception& ex) {
    return reject(EvidenceReject::kStoreError, o.sensorId, ex.what());
  }
  counters_.stored++;
  counters_.packetsStored += o.frames.size();
  spdlog::info("evidence: stored {} packets from sensor {} for incident {} ({})", o.frames.size(),
               o.sensorId, o.incidentId, reason);
}

void EvidenceCollector::tick(int64_t nowNs) {
  for (auto it = outstanding_.begin(); it != outstanding_.end();) {
    if (nowNs < it->second.expiresNs) {
      ++it;
      continue;
    }
    counters_.expired++;
    spdlog::warn("evidence: sensor {} did not answer for incident {} in time",
                 it->second.sensorId, it->second.incidentId);
    it = outstanding_.erase(it);
  }
}

std::optional<EvidencePcap> EvidenceCollector::pcap(const std::string& incidentId) {
  std::vector<Frame> all;
  EvidencePcap out;
  int linkType = -1;
  bool any = false;
  store_.forEachEvidence(incidentId, [&](std::string_view sensor, std::string_view value) {
    any = true;
    try {
      kj::ArrayInputStream in(kj::arrayPtr(reinterpret_cast<const kj::byte*>(value.data()),
                                           value.size()));
      capnp::ReaderOptions options;
      options.traversalLimitInWords = value.size() + (64 << 20) / 8;
      capnp::PackedMessageReader reader(in, options);
      auto e = reader.getRoot<wire::Evidence>();
      auto packets = e.getPackets();
      if (packets.size() == 0) {
        out.empty.push_back(std::string(sensor) + " (" + e.getReason().cStr() + ")");
        return;
      }
      if (linkType < 0) linkType = e.getLinkType();
      if (e.getLinkType() != linkType) {
        out.skipped.emplace_back(sensor);
        return;
      }
      out.sensors.emplace_back(sensor);
      for (auto p : packets) {
        auto d = p.getData();
        all.push_back({p.getTsNs(), p.getOrigLen(),
                       std::string(reinterpret_cast<const char*>(d.begin()), d.size())});
      }
    } catch (const kj::Exception& ex) {
      spdlog::error("evidence: stored evidence of {} from {} does not read: {}", incidentId,
                    sensor, ex.getDescription().cStr());
    }
  });
  if (!any) return std::nullopt;
  std::stable_sort(all.begin(), all.end(),
                   [](const Frame& a, const Frame& b) { return a.tsNs < b.tsNs; });
  out.packets = all.size();
  // libpcap writes the file: a dead handle for the link type, dumped into
  // a memory stream.
  pcap_t* dead = pcap_open_dead_with_tstamp_precision(linkType < 0 ? DLT_EN10MB : linkType,
                                                       65535, PCAP_TSTAMP_PRECISION_NANO);
  if (!dead) throw std::runtime_error("libpcap: cannot open a handle to write a capture");
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* stream = open_memstream(&buffer, &size);
  if (!stream) {
    pcap_close(dead);
    throw std::runtime_error("cannot open a memory stream for the capture");
  }
  pcap_dumper_t* dumper = pcap_dump_fopen(dead, stream);
  if (!dumper) {
    std::string why = pcap_geterr(dead);
    std::fclose(stream);
    std::free(buffer);
    pcap_close(dead);
    throw std::runtime_error("libpcap: cannot write a capture: " + why);
  }
  for (const auto& p : all) {
    const int64_t ts = std::max<int64_t>(p.tsNs, 0);
    pcap_pkthdr h{};
    h.ts.tv_sec = static_cast<time_t>(ts / 1'000'000'000);
    h.ts.tv_usec = static_cast<suseconds_t>(ts % 1'000'000'000);  // ns: nano precision
    h.caplen = static_cast<bpf_u_int32>(p.data.size());
    h.len = p.origLen;
    pcap_dump(reinterpret_cast<u_char*>(dumper), &h,
              reinterpret_cast<const u_char*>(p.data.data()));
  }
  pcap_dump_close(dumper);  // flushes and closes the stream
  pcap_close(dead);
  out.bytes.assign(buffer, size);
  std::free(buffer);
  return out;
}

}  // namespace garda::aggregator
