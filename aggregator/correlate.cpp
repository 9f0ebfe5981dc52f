#include "aggregator/correlate.h"

#include <fmt/format.h>

#include <algorithm>
#include <ctime>
#include <set>
#include <stdexcept>

namespace garda::aggregator {
namespace {

constexpr int64_t kNsPerMs = 1'000'000;

// The /24 of an IPv4 source, the /48 of an IPv6 one.
common::Prefix sourcePrefixOf(const common::IpAddress& a) {
  const unsigned length = a.isV4() ? 24 : 48;
  return *common::Prefix::make(a.masked(a.isV4() ? 96 + length : length), length);
}

// Neighbouring victims: the same /24 (IPv6 /64).
common::IpAddress victimNetOf(const common::IpAddress& a) {
  return a.masked(a.isV4() ? 96 + 24 : 64);
}

std::string rateText(double pps) {
  if (pps >= 1e6) return fmt::format("{:.1f} Mpps", pps / 1e6);
  if (pps >= 1e4) return fmt::format("{:.0f} kpps", pps / 1e3);
  return fmt::format("{:.0f} pps", pps);
}

std::string memberText(const IncidentMember& m) {
  return fmt::format("{} on {} at {}", m.classification, m.victim.toString(), m.sensorId);
}

template <typename T>
T required(const nlohmann::json& j, const char* field) {
  if (!j.is_object() || !j.contains(field))
    throw std::runtime_error(fmt::format("incident JSON: missing '{}'", field));
  try {
    return j.at(field).get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("incident JSON: '{}': {}", field, e.what()));
  }
}

common::IpAddress requiredAddress(const nlohmann::json& j, const char* field) {
  auto text = required<std::string>(j, field);
  auto a = common::IpAddress::parse(text);
  if (!a)
    throw std::runtime_error(
        fmt::format("incident JSON: '{}' = '{}': not an address", field, text));
  return *a;
}

}  // namespace

std::string_view incidentStateName(IncidentState s) noexcept {
  switch (s) {
    case IncidentState::kOpen:
      return "open";
    case IncidentState::kMitigating:
      return "mitigating";
    case IncidentState::kResolved:
      return "resolved";
  }
  return "unknown";
}

std::string_view severityName(Severity s) noexcept {
  switch (s) {
    case Severity::kLow:
      return "low";
    case Severity::kMedium:
      return "medium";
    case Severity::kHigh:
      return "high";
    case Severity::kCritical:
      return "critical";
  }
  return "unknown";
}

bool Incident::underAttack() const {
  return std::any_of(members.begin(), members.end(), [](const auto& m) { return m.active; }) ||
         std::any_of(droppingAt.begin(), droppingAt.end(), [](const auto& d) { return d.now; });
}

const IncidentIndex& Incident::index() const {
  if (index_.indexed > members.size()) index_ = IncidentIndex{};  // members were replaced
  while (index_.indexed < members.size()) indexMember(static_cast<uint32_t>(index_.indexed++));
  return index_;
}

void Incident::indexMember(uint32_t position) const {
  const IncidentMember& m = members[position];
  auto sensor = index_.sensors.find(m.sensorId);
  if (sensor == index_.sensors.end())
    sensor = index_.sensors.emplace(m.sensorId, IncidentIndex::Sensor{}).first;
  sensor->second.byKey.emplace(IncidentIndex::MemberKey{m.victim, m.vector, m.reflectionPort},
                               position);
  sensor->second.latestNs = std::max(sensor->second.latestNs, m.lastNs);
  index_.victims[m.victim]++;
  auto cls = index_.classifications.find(m.classification);
  if (cls == index_.classifications.end())
    index_.classifications.emplace(m.classification, 1);
  else
    cls->second++;
  auto& rate = index_.rateAt[m.lastNs];
  rate.pps += m.lastPps;
  rate.bps += m.lastBps;
  rate.members++;
}

IncidentMember* Incident::findMember(std::string_view sensor, const common::IpAddress& victim,
                                     wire::Vector vector, uint16_t reflectionPort) {
  const auto& idx = index();
  auto s = idx.sensors.find(sensor);
  if (s == idx.sensors.end()) return nullptr;
  auto m = s->second.byKey.find(IncidentIndex::MemberKey{victim, vector, reflectionPort});
  return m == s->second.byKey.end() ? nullptr : &members[m->second];
}

void Incident::updateMember(IncidentMember& m, double pps, double bps, int64_t windowNs) {
  (void)index();
  auto old = index_.rateAt.find(m.lastNs);
  if (old != index_.rateAt.end()) {
    if (--old->second.members == 0) {
      index_.rateAt.erase(old);
    } else {
      old->second.pps -= m.lastPps;
      old->second.bps -= m.lastBps;
    }
  }
  m.lastPps = pps;
  m.lastBps = bps;
  m.lastNs = std::max(m.lastNs, windowNs);
  auto& rate = index_.rateAt[m.lastNs];
  rate.pps += m.lastPps;
  rate.bps += m.lastBps;
  rate.members++;
  auto& latest = index_.sensors.find(m.sensorId)->second.latestNs;
  latest = std::max(latest, m.lastNs);
}

IncidentIndex::Rate Incident::rateAt(int64_t windowNs) const {
  const auto& idx = index();
  auto it = idx.rateAt.find(windowNs);
  return it == idx.rateAt.end() ? IncidentIndex::Rate{} : it->second;
}

std::vector<std::string> Incident::sensors() const {
  std::vector<std::string> out;
  for (const auto& [id, entry] : index().sensors) out.push_back(id);
  return out;
}

std::vector<common::IpAddress> Incident::victims() const {
  std::vector<common::IpAddress> out;
  for (const auto& [victim, n] : index().victims) out.push_back(victim);
  return out;
}

std::vector<std::string> Incident::classifications() const {
  std::vector<std::string> out;
  for (const auto& [c, n] : index().classifications) out.push_back(c);
  return out;
}

std::string Incident::classification() const {
  auto all = classifications();
  if (all.empty()) return "unknown";
  return all.size() == 1 ? all.front() : std::string(kMixedAttack);
}

std::vector<SourcePrefix> Incident::sourcePrefixes(unsigned minSources) const {
  std::map<common::Prefix, SourcePrefix> byPrefix;
  for (const auto& s : sources) {
    auto p = sourcePrefixOf(s.address);
    auto& entry = byPrefix[p];
    entry.prefix = p;
    entry.sources++;
    entry.packets += s.packets;
  }
  std::vector<SourcePrefix> out;
  for (const auto& [p, entry] : byPrefix)
    if (entry.sources >= std::max(1u, minSources)) out.push_back(entry);
  std::sort(out.begin(), out.end(),
            [](const SourcePrefix& a, const SourcePrefix& b) { return a.packets > b.packets; });
  return out;
}

nlohmann::json incidentToJson(const Incident& inc, unsigned prefixMinSources) {
  using nlohmann::json;
  json vectors = json::array(), ports = json::array(), sensors = json::array(),
       victims = json::array(), members = json::array(), sources = json::array(),
       prefixes = json::array(), timeline = json::array();
  std::set<std::string_view> vectorSet;
  std::set<uint16_t> portSet;
  for (const auto& m : inc.members) {
    vectorSet.insert(vectorName(m.vector));
    if (m.reflectionPort != 0) portSet.insert(m.reflectionPort);
    members.push_back({{"sensor", m.sensorId},
                       {"victim", m.victim.toString()},
                       {"vector", vectorName(m.vector)},
                       {"reflection_port", m.reflectionPort},
                       {"classification", m.classification},
                       {"active", m.active},
                       {"peak_pps", m.peakPps},
                       {"peak_bps", m.peakBps},
                       {"last_pps", m.lastPps},
                       {"last_bps", m.lastBps},
                       {"first_ns", m.firstNs},
                       {"last_ns", m.lastNs}});
  }
  for (auto v : vectorSet) vectors.push_back(v);
  for (auto p : portSet) ports.push_back(p);
  for (const auto& s : inc.sensors()) sensors.push_back(s);
  for (const auto& v : inc.victims()) victims.push_back(v.toString());
  for (const auto& s : inc.sources)
    sources.push_back({{"address", s.address.toString()},
                       {"packets", s.packets},
                       {"share", s.share},
                       {"sightings", s.sightings}});
  for (const auto& p : inc.sourcePrefixes(prefixMinSources))
    prefixes.push_back(
        {{"prefix", p.prefix.toString()}, {"sources", p.sources}, {"packets", p.packets}});
  for (const auto& e : inc.timeline)
    timeline.push_back({{"at_ns", e.atNs}, {"kind", e.kind}, {"text", e.text}});
  return {{"id", inc.id},
          {"sequence", inc.sequence},
          {"state", incidentStateName(inc.state)},
          {"severity", severityName(inc.severity)},
          {"classification", inc.classification()},
          {"classifications", inc.classifications()},
          {"vectors", vectors},
          {"reflection_ports", ports},
          {"opened_at_ns", inc.openedNs},
          {"updated_at_ns", inc.updatedNs},
          {"resolved_at_ns", inc.resolvedNs},
          {"last_anomaly_ns", inc.lastAnomalyNs},
          {"sensors", sensors},
          {"victims", victims},
          {"city_wide", inc.cityWide()},
          {"peak_pps", inc.peakPps},
          {"peak_bps", inc.peakBps},
          {"distinct_sources", inc.distinctSources},
          {"spoofed_sources", inc.spoofedSources},
          {"top_sources", sources},
          {"source_prefixes", prefixes},
          {"members", members},
          {"timeline", timeline},
          {"timeline_dropped", inc.timelineDropped},
          {"anomalies_past_member_cap", inc.anomaliesPastMemberCap}};
}

Incident incidentFromJson(const nlohmann::json& j) {
  Incident inc;
  inc.id = required<std::string>(j, "id");
  auto seq = Correlator::sequenceOf(inc.id);
  if (!seq) throw std::runtime_error("incident JSON: 'id' = '" + inc.id + "': not an incident id");
  inc.sequence = j.contains("sequence") ? required<uint64_t>(j, "sequence") : *seq;
  const auto state = required<std::string>(j, "state");
  if (state == "open")
    inc.state = IncidentState::kOpen;
  else if (state == "mitigating")
    inc.state = IncidentState::kMitigating;
  else if (state == "resolved")
    inc.state = IncidentState::kResolved;
  else
    throw std::runtime_error("incident JSON: 'state' = '" + state + "': unknown");
  const auto severity = required<std::string>(j, "severity");
  bool known = false;
  for (auto s : {Severity::kLow, Severity::kMedium, Severity::kHigh, Severity::kCritical}) {
    if (severityName(s) == severity) {
      inc.severity = s;
      known = true;
    }
  }
  if (!known) throw std::runtime_error("incident JSON: 'severity' = '" + severity + "': unknown");
  inc.openedNs = required<int64_t>(j, "opened_at_ns");
  inc.updatedNs = required<int64_t>(j, "updated_at_ns");
  inc.resolvedNs = required<int64_t>(j, "resolved_at_ns");
  inc.lastAnomalyNs = required<int64_t>(j, "last_anomaly_ns");
  inc.peakPps = required<double>(j, "peak_pps");
  inc.peakBps = required<double>(j, "peak_bps");
  inc.distinctSources = required<uint64_t>(j, "distinct_sources");
  inc.spoofedSources = required<bool>(j, "spoofed_sources");
  inc.timelineDropped = j.value("timeline_dropped", uint64_t{0});
  inc.anomaliesPastMemberCap = j.value("anomalies_past_member_cap", uint64_t{0});
  for (const auto& m : required<nlohmann::json>(j, "members")) {
    IncidentMember out;
    out.sensorId = required<std::string>(m, "sensor");
    out.victim = requiredAddress(m, "victim");
    const auto vector = required<std::string>(m, "vector");
    if (!vectorFromName(vector, out.vector))
      throw std::runtime_error("incident JSON: member 'vector' = '" + vector + "': unknown");
    out.reflectionPort = required<uint16_t>(m, "reflection_port");
    out.classification = required<std::string>(m, "classification");
    out.active = required<bool>(m, "active");
    out.peakPps = required<double>(m, "peak_pps");
    out.peakBps = required<double>(m, "peak_bps");
    out.lastPps = required<double>(m, "last_pps");
    out.lastBps = required<double>(m, "last_bps");
    out.firstNs = required<int64_t>(m, "first_ns");
    out.lastNs = required<int64_t>(m, "last_ns");
    inc.members.push_back(std::move(out));
  }
  for (const auto& s : required<nlohmann::json>(j, "top_sources")) {
    IncidentSource out;
    out.address = requiredAddress(s, "address");
    out.packets = required<uint64_t>(s, "packets");
    out.share = required<double>(s, "share");
    out.sightings = required<uint32_t>(s, "sightings");
    inc.sources.push_back(out);
  }
  for (const auto& e : required<nlohmann::json>(j, "timeline"))
    inc.timeline.push_back({required<int64_t>(e, "at_ns"), required<std::string>(e, "kind"),
                            required<std::string>(e, "text")});
  return inc;
}

SourceEvidence sourceEvidence(const Anomaly& a, const CorrelateConfig& config) {
  SourceEvidence ev;
  const double victimPackets = static_cast<double>(a.victimPackets);
  uint64_t explained = 0;
  ev.sources.reserve(a.topSources.size());
  for (const auto& s : a.topSources) {
    if (s.packets < 2 * s.error) continue;  // mostly overestimate: not certain
    const uint64_t certain = s.packets - s.error;
    if (certain == 0 || static_cast<double>(certain) < config.solidSourceShare * victimPackets)
      continue;
    explained += certain;
    ev.sources.push_back({s.address, certain,
                          victimPackets > 0 ? static_cast<double>(certain) / victimPackets : 0, 1});
  }
  // Many distinct sources and few that are certain: random spoofing. Its
  // top-K addresses (and their /24s) are chance, not evidence.
  if (a.distinctSources >= config.spoofedDistinctSources &&
      static_cast<double>(explained) < config.spoofedExplainedShare * victimPackets) {
    ev.spoofed = true;
    ev.sources.clear();
    return ev;
  }
  // Sources per /24 (/48): their masked addresses sorted and counted by
  // runs (a handful; no map allocation per anomaly); only a prefix that
  // counts is made a Prefix.
  std::vector<common::IpAddress> nets;
  nets.reserve(ev.sources.size());
  for (const auto& s : ev.sources)
    nets.push_back(s.address.masked(s.address.isV4() ? 96 + 24 : 48));
  std::sort(nets.begin(), nets.end());
  const size_t need = std::max(1u, config.prefixMinSources);
  for (size_t i = 0; i < nets.size();) {
    size_t j = i;
    while (j < nets.size() && nets[j] == nets[i]) ++j;
    if (j - i >= need) ev.prefixes.push_back(sourcePrefixOf(nets[i]));
    i = j;
  }
  return ev;
}

Correlator::Correlator(CorrelateConfig config) : config_(config) {}

std::string Correlator::makeId(int64_t atNs, uint64_t sequence) {
  std::time_t seconds = static_cast<std::time_t>(atNs / 1'000'000'000);
  if (atNs < 0 && atNs % 1'000'000'000 != 0) --seconds;
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm);
  return fmt::format("inc-{}-{:06}", when, sequence);
}

std::optional<uint64_t> Correlator::sequenceOf(std::string_view id) {
  if (id.rfind("inc-", 0) != 0) return std::nullopt;
  const size_t dash = id.rfind('-');
  if (dash == std::string_view::npos || dash + 1 >= id.size() || dash < 4) return std::nullopt;
  uint64_t n = 0;
  for (char c : id.substr(dash + 1)) {
    if (c < '0' || c > '9' || n > (UINT64_MAX - 9) / 10) return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

void Correlator::note(IncidentChangeKind kind, const std::string& id, bool timeline) {
  for (auto& c : changes_) {
    if (c.id != id) continue;
    // opened stays opened within one call, unless it also resolved.
    if (kind == IncidentChangeKind::kResolved) c.kind = kind;
    c.timeline = c.timeline || timeline;
    return;
  }
  changes_.push_back({kind, id, timeline});
}

void Correlator::addEvent(Incident& inc, int64_t atNs, std::string_view kind, std::string text) {
  if (inc.timeline.size() >= config_.maxTimeline && kind != "resolved") {
    inc.timelineDropped++;
    return;
  }
  inc.timeline.push_back({atNs, std::string(kind), std::move(text)});
  note(IncidentChangeKind::kUpdated, inc.id, true);
}

bool Correlator::sharesEvidence(const Incident& inc, const Anomaly& a,
                                const SourceEvidence& ev) const {
  // Carpet bombing: the same attack on neighbouring addresses at one OPD,
  // typically with spoofed sources, so nothing else would link them.
  const common::IpAddress net = victimNetOf(a.victim);
  for (const auto& m : inc.members)
    if (m.sensorId == a.sensorId && m.classification == a.classification &&
        victimNetOf(m.victim) == net)
      return true;
  if (a.vector == wire::Vector::UDP_REFLECTION && a.reflectionPort != 0) {
    for (const auto& m : inc.members)
      if (m.vector == a.vector && m.reflectionPort == a.reflectionPort) return true;
  }
  if (ev.sources.empty()) return false;
  unsigned common = 0;
  bool dominant = false;
  for (const auto& s : ev.sources) {
    for (const auto& t : inc.sources) {
      if (t.address != s.address) continue;
      ++common;
      dominant = dominant ||
                 (s.share >= config_.dominantSourceShare && t.share >= config_.dominantSourceShare);
      break;
    }
  }
  if (common >= std::max(1u, config_.minCommonSources) || dominant) return true;
  for (const auto& p : ev.prefixes) {
    unsigned inside = 0;
    for (const auto& t : inc.sources) inside += p.contains(t.address);
    if (inside >= std::max(1u, config_.prefixMinSources)) return true;
  }
  return false;
}

Incident* Correlator::match(const Anomaly& a, const SourceEvidence& ev, bool& byVictim) {
  const int64_t window = static_cast<int64_t>(config_.joinWindowMs) * kNsPerMs;
  auto near = [&](const Incident& inc) {
    int64_t last = inc.lastAnomalyNs;
    for (const auto& d : inc.droppingAt) last = std::max(last, d.lastWindowNs);
    return a.windowStartNs >= last - window && a.windowStartNs <= last + window;
  };
  for (auto& [id, inc] : open_) {
    if (near(inc) && inc.index().victims.count(a.victim)) {
      byVictim = true;
      return &inc;
    }
  }
  for (auto& [id, inc] : open_) {
    if (near(inc) && sharesEvidence(inc, a, ev)) {
      byVictim = false;
      return &inc;
    }
  }
  return nullptr;
}

Incident& Correlator::open(const Anomaly& a, int64_t nowNs) {
  const uint64_t seq = nextSequence_++;
  std::string id = makeId(a.windowStartNs, seq);
  auto [it, inserted] = open_.emplace(id, Incident{});
  Incident& inc = it->second;
  inc.id = std::move(id);
  inc.sequence = seq;
  inc.openedNs = a.windowStartNs;
  inc.updatedNs = a.windowStartNs;
  inc.lastAnomalyNs = a.windowStartNs;
  inc.lastArrivalNs = nowNs;
  counters_.opened++;
  note(IncidentChangeKind::kOpened, inc.id, true);
  addEvent(inc, a.windowStartNs, "opened",
           fmt::format("{} on {} at {}: {}{}", a.classification, a.victim.toString(), a.sensorId,
                       rateText(a.pps), a.fromAlert ? " (sensor alert)" : ""));
  return inc;
}

Correlator::SourceTable& Correlator::sourceTableFor(const Incident& inc, size_t slotsNeeded) {
  auto sameSources = [&](const SourceTable& t) {
    if (t.addresses.size() != inc.sources.size()) return false;
    for (size_t i = 0; i < inc.sources.size(); ++i)
      if (!(t.addresses[i] == inc.sources[i].address)) return false;
    return true;
  };
  if (auto it = sourceTables_.find(&inc); it != sourceTables_.end() &&
                                          it->second.slots.size() >= slotsNeeded &&
                                          sameSources(it->second))
    return it->second;
  if (sourceTables_.size() >= kMaxSourceTables) sourceTables_.clear();
  SourceTable& t = sourceTables_[&inc];
  t.addresses.clear();
  for (const auto& src : inc.sources) t.addresses.push_back(src.address);
  // Room for the cut and one evidence on top, so growing to the cut does not
  // make a new table.
  size_t slots = 16;
  while (slots < std::max(slotsNeeded, 2 * (config_.maxSources + 32))) slots *= 2;
  t.slots.assign(slots, 0);
  const size_t mask = slots - 1;
  for (size_t i = 0; i < inc.sources.size(); ++i) {
    size_t k = common::IpAddressHash{}(inc.sources[i].address) & mask;
    while (t.slots[k] != 0) k = (k + 1) & mask;
    t.slots[k] = static_cast<uint32_t>(i + 1);
  }
  return t;
}

void Correlator::mergeSources(Incident& inc, const SourceEvidence& ev) {
  // Kept sorted by packets (then address) and cut at maxSources; a source
  // that could not make the cut is not added, and nothing is sorted again
  // when no packet count changed (an attack's steady windows).
  auto before = [](const IncidentSource& a, const IncidentSource& b) {
    return a.packets != b.packets ? a.packets > b.packets : a.address < b.address;
  };
  if (ev.sources.empty()) return;
  // One probe per evidence source instead of a scan of up to maxSources;
  // the table is made again only when the sources were reordered or cut.
  size_t needed = 16;
  while (needed < 2 * (inc.sources.size() + ev.sources.size())) needed *= 2;
  SourceTable& table = sourceTableFor(inc, needed);
  const size_t mask = table.slots.size() - 1;
  auto slotOf = [&](const common::IpAddress& a) -> uint32_t& {
    for (size_t i = common::IpAddressHash{}(a)&mask;; i = (i + 1) & mask)
      if (table.slots[i] == 0 || inc.sources[table.slots[i] - 1].address == a)
        return table.slots[i];
  };
  bool reorder = false;
  for (const auto& s : ev.sources) {
    uint32_t& slot = slotOf(s.address);
    if (slot == 0) {
      if (inc.sources.size() >= config_.maxSources && !before(s, inc.sources.back())) continue;
      inc.sources.push_back(s);
      table.addresses.push_back(s.address);
      slot = static_cast<uint32_t>(inc.sources.size());
      reorder = true;
      continue;
    }
    auto& t = inc.sources[slot - 1];
    if (s.packets > t.packets) {
      t.packets = s.packets;
      reorder = true;
    }
    t.share = std::max(t.share, s.share);
    t.sightings++;
  }
  if (!reorder) return;
  std::sort(inc.sources.begin(), inc.sources.end(), before);
  if (inc.sources.size() > config_.maxSources) inc.sources.resize(config_.maxSources);
  sourceTables_.erase(&inc);  // its indexes are of the order before the sort
}

void Correlator::join(Incident& inc, const Anomaly& a, const SourceEvidence& ev, int64_t nowNs,
                      bool fresh) {
  inc.droppingNoted = false;
  IncidentMember* m = inc.findMember(a.sensorId, a.victim, a.vector, a.reflectionPort);
  const bool added = m == nullptr && inc.members.size() < config_.maxMembers;
  if (m == nullptr && !added) inc.anomaliesPastMemberCap++;
  // What a member about to be added brings that the incident lacked: asked
  // of newcomers only, not at every window of an attack's known members nor
  // of the anomalies past the member cap.
  bool newSensor = false, newVictim = false, newClass = false;
  if (added) {
    const auto& idx = inc.index();
    newSensor = idx.sensors.find(a.sensorId) == idx.sensors.end();
    newVictim = idx.victims.find(a.victim) == idx.victims.end();
    newClass = idx.classifications.find(a.classification) == idx.classifications.end();
    auto& member = inc.members.emplace_back();
    member.sensorId = a.sensorId;
    member.victim = a.victim;
    member.vector = a.vector;
    member.reflectionPort = a.reflectionPort;
    member.classification = std::string(a.classification);
    member.firstNs = a.windowStartNs;
    m = &member;
  }
  if (m != nullptr) {
    if (!m->active && !fresh)
      addEvent(inc, a.windowStartNs, "vector_added", "again: " + memberText(*m));
    m->active = true;
    inc.updateMember(*m, a.pps, a.bps, a.windowStartNs);
    m->peakPps = std::max(m->peakPps, a.pps);
    m->peakBps = std::max(m->peakBps, a.bps);
  }
  // Only for a member taken in (one past the cap would be "new" at every
  // window); a full timeline counts it without formatting its text.
  if (!fresh && added && (newSensor || newVictim || newClass)) {
    if (inc.timeline.size() >= config_.maxTimeline) {
      inc.timelineDropped++;
    } else {
      const std::string what = fmt::format("{} on {} at {}: {}", a.classification,
                                           a.victim.toString(), a.sensorId, rateText(a.pps));
      if (newSensor)
        addEvent(inc, a.windowStartNs, "sensor_joined",
                 fmt::format("sensor {} joined: {}", a.sensorId, what));
      else if (newVictim)
        addEvent(inc, a.windowStartNs, "victim_added", "new victim: " + what);
      else
        addEvent(inc, a.windowStartNs, "vector_added", "new vector: " + what);
    }
  }

  mergeSources(inc, ev);
  inc.spoofedSources = inc.spoofedSources || ev.spoofed;
  inc.distinctSources = std::max(inc.distinctSources, a.distinctSources);
  inc.lastAnomalyNs = std::max(inc.lastAnomalyNs, a.windowStartNs);
  inc.updatedNs = std::max(inc.updatedNs, a.windowStartNs);
  inc.lastArrivalNs = std::max(inc.lastArrivalNs, nowNs);

  // Concurrent rate: the members whose latest anomalous window is this one.
  const auto rate = inc.rateAt(a.windowStartNs);
  inc.peakPps = std::max(inc.peakPps, rate.pps);
  inc.peakBps = std::max(inc.peakBps, rate.bps);

  const size_t sensors = inc.sensorCount();
  Severity sev = Severity::kLow;
  if (sensors >= config_.criticalSensors || inc.peakPps >= config_.criticalPps ||
      inc.peakBps >= config_.criticalBps)
    sev = Severity::kCritical;
  else if (sensors >= config_.highSensors || inc.peakPps >= config_.highPps ||
           inc.peakBps >= config_.highBps)
    sev = Severity::kHigh;
  else if (inc.peakPps >= config_.mediumPps || inc.peakBps >= config_.mediumBps)
    sev = Severity::kMedium;
  if (sev > inc.severity) {
    inc.severity = sev;
    if (!fresh || sev > Severity::kLow)
      addEvent(inc, a.windowStartNs, "escalated",
               fmt::format("severity {}: {} sensor{}, peak {}", severityName(sev), sensors,
                           sensors == 1 ? "" : "s", rateText(inc.peakPps)));
  }
  note(IncidentChangeKind::kUpdated, inc.id, false);
}

bool Correlator::quietEverywhere(const Incident& inc) const {
  const int64_t after = static_cast<int64_t>(config_.resolveAfterMs) * kNsPerMs;
  // Quiet at a sensor: its latest window is `after` past the incident's
  // latest anomaly there. Windows where the incident's orders still dropped
  // the attack count as anomalies (droppingAt: one entry per sensor, few).
  auto quietAt = [&](const std::string& sensor, int64_t last) {
    auto it = sensorLatestNs_.find(sensor);
    return it != sensorLatestNs_.end() && it->second - last >= after;
  };
  const auto& sensors = inc.index().sensors;
  for (const auto& [sensor, entry] : sensors) {
    int64_t last = entry.latestNs;
    for (const auto& d : inc.droppingAt)
      if (d.sensorId == sensor) last = std::max(last, d.lastWindowNs);
    if (!quietAt(sensor, last)) return false;
  }
  for (const auto& d : inc.droppingAt)
    if (sensors.find(d.sensorId) == sensors.end() && !quietAt(d.sensorId, d.lastWindowNs))
      return false;
  return !sensors.empty() || !inc.droppingAt.empty();
}

void Correlator::resolve(Incident& inc, int64_t atNs, std::string text) {
  inc.state = IncidentState::kResolved;
  inc.resolvedNs = atNs;
  inc.updatedNs = std::max(inc.updatedNs, atNs);
  for (auto& m : inc.members) m.active = false;
  addEvent(inc, atNs, "resolved", std::move(text));
  note(IncidentChangeKind::kResolved, inc.id, true);
  auto node = open_.extract(inc.id);
  resolvedRecently_.push_back(std::move(node.mapped()));
}

std::vector<IncidentChange> Correlator::finishCall() {
  std::vector<IncidentChange> out;
  out.swap(changes_);
  return out;
}

std::vector<IncidentChange> Correlator::observe(const DetectBatch& batch, int64_t nowNs) {
  resolvedRecently_.clear();
  auto& latest = sensorLatestNs_[batch.sensorId];
  latest = std::max(latest, batch.windowStartNs);

  SourceEvidence ev;
  const Anomaly* evidenceOf = nullptr;
  for (const Anomaly& a : batch.anomalies) {
    counters_.anomalies++;
    // A victim's anomalies in one window (one per vector) come together and
    // carry the same sources: their evidence is worked out once.
    if (evidenceOf == nullptr || evidenceOf->victim != a.victim ||
        evidenceOf->victimPackets != a.victimPackets ||
        evidenceOf->distinctSources != a.distinctSources ||
        evidenceOf->topSources != a.topSources) {
      ev = sourceEvidence(a, config_);
      evidenceOf = &a;
    }
    bool byVictim = false;
    Incident* inc = match(a, ev, byVictim);
    const bool fresh = inc == nullptr;
    if (fresh) {
      inc = &open(a, nowNs);
    } else if (byVictim) {
      counters_.joinedByVictim++;
    } else {
      counters_.joinedByEvidence++;
    }
    join(*inc, a, ev, nowNs, fresh);
  }
  for (const Quiet& q : batch.quiets) {
    counters_.quiets++;
    for (auto& [id, inc] : open_) {
      IncidentMember* m = inc.findMember(q.sensorId, q.victim, q.vector, q.reflectionPort);
      if (m == nullptr || !m->active) continue;
      m->active = false;
      addEvent(inc, q.windowStartNs, "quiet", "back to normal: " + memberText(*m));
    }
  }
  std::vector<Incident*> done;
  for (auto& [id, inc] : open_) {
    const bool here = inc.index().sensors.count(batch.sensorId) > 0;
    if (here && quietEverywhere(inc)) done.push_back(&inc);
  }
  for (Incident* inc : done) {
    counters_.resolvedQuiet++;
    int64_t at = 0;
    for (const auto& s : inc->sensors()) at = std::max(at, sensorLatestNs_[s]);
    resolve(
        *inc, at,
        fmt::format("no anomaly for {} s at any of its sensors", config_.resolveAfterMs / 1000.0));
  }
  return finishCall();
}

std::vector<IncidentChange> Correlator::tick(int64_t nowNs) {
  resolvedRecently_.clear();
  const int64_t idle = static_cast<int64_t>(config_.idleResolveMs) * kNsPerMs;
  std::vector<Incident*> done;
  for (auto& [id, inc] : open_)
    if (nowNs - inc.lastArrivalNs >= idle) done.push_back(&inc);
  for (Incident* inc : done) {
    counters_.resolvedIdle++;
    // Data time: the last anomaly plus the quiet period it would have needed.
    resolve(*inc, inc->lastAnomalyNs + static_cast<int64_t>(config_.resolveAfterMs) * kNsPerMs,
            fmt::format("no anomaly reported for {} s (sensors silent)",
                        config_.idleResolveMs / 1000.0));
  }
  return finishCall();
}

std::vector<IncidentChange> Correlator::holdOpen(std::string_view id, const std::string& sensorId,
                                                 int64_t windowStartNs, double dropPps,
                                                 int64_t nowNs) {
  auto it = open_.find(id);
  if (it == open_.end()) return {};
  Incident& inc = it->second;
  inc.lastArrivalNs = nowNs;
  auto at = std::find_if(inc.droppingAt.begin(), inc.droppingAt.end(),
                         [&](const auto& d) { return d.sensorId == sensorId; });
  if (at == inc.droppingAt.end()) {
    inc.droppingAt.push_back({sensorId, windowStartNs, true});
    at = std::prev(inc.droppingAt.end());
  }
  at->lastWindowNs = std::max(at->lastWindowNs, windowStartNs);
  at->now = true;
  const bool seen = std::any_of(inc.members.begin(), inc.members.end(),
                                [](const IncidentMember& m) { return m.active; });
  if (!seen && !inc.droppingNoted) {
    inc.droppingNoted = true;
    addEvent(
        inc, windowStartNs, "dropping",
        fmt::format("attack goes on: its orders at {} still drop {}", sensorId, rateText(dropPps)));
  }
  return finishCall();
}

void Correlator::endHold(std::string_view id, const std::string& sensorId) {
  auto it = open_.find(id);
  if (it == open_.end()) return;
  for (auto& d : it->second.droppingAt)
    if (d.sensorId == sensorId) d.now = false;
}

std::optional<IncidentChange> Correlator::setMitigating(std::string_view id, int64_t atNs,
                                                        std::string_view text) {
  auto it = open_.find(id);
  if (it == open_.end() || it->second.state != IncidentState::kOpen) return std::nullopt;
  Incident& inc = it->second;
  inc.state = IncidentState::kMitigating;
  inc.updatedNs = std::max(inc.updatedNs, atNs);
  addEvent(inc, atNs, "mitigating", std::string(text));
  note(IncidentChangeKind::kUpdated, inc.id, true);
  auto out = finishCall();
  return out.front();
}

void Correlator::restore(const nlohmann::json& json, int64_t nowNs) {
  Incident inc = incidentFromJson(json);
  setNextSequence(inc.sequence + 1);
  if (inc.state == IncidentState::kResolved) return;
  inc.lastArrivalNs = nowNs;
  counters_.restored++;
  std::string id = inc.id;
  open_.insert_or_assign(std::move(id), std::move(inc));
}

const Incident* Correlator::find(std::string_view id) const {
  if (auto it = open_.find(id); it != open_.end()) return &it->second;
  for (const auto& inc : resolvedRecently_)
    if (inc.id == id) return &inc;
  return nullptr;
}

std::vector<const Incident*> Correlator::openIncidents() const {
  std::vector<const Incident*> out;
  for (const auto& [id, inc] : open_) out.push_back(&inc);
  return out;
}

}  // namespace garda::aggregator
