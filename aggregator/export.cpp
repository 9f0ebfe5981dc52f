#include "aggregator/export.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <ctime>
#include <map>
#include <set>
#include <stdexcept>

#include "common/duration.h"
#include "common/hex.h"
#include "common/ip.h"

namespace garda::aggregator {
namespace {

using nlohmann::json;

// Garda's own UUIDv5 namespace for the ids of exported SDOs and MISP
// entities (a fixed random UUID: changing it would change every id).
constexpr std::string_view kGardaNamespace = "6f1d3c2a-8e4b-4f0a-9b6e-2d7c5a1e9f30";
// STIX 2.1 section 2.9: the namespace for deterministic SCO ids.
constexpr std::string_view kStixScoNamespace = "00abedb4-aa42-466c-9c01-fed23315a9b7";
// MISP objects repository, objects/ddos/definition.json.
constexpr std::string_view kMispDdosTemplateUuid = "e2f124d6-f57c-4f93-99e6-8450545fa05d";
constexpr int kMispDdosTemplateVersion = 6;

struct TlpMarking {
  std::string_view name;  // settings.tlp
  std::string_view id;    // STIX 2.1 section 7.2.1.4
};
constexpr std::array<TlpMarking, 4> kTlp = {{
    {"clear", "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"},
    {"green", "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"},
    {"amber", "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"},
    {"red", "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"},
}};
constexpr std::string_view kTlpCreated = "2017-01-20T00:00:00.000Z";
// The CSIRT identity is one object shared by every export (its id depends on
// the name only), so its version times are fixed too.
constexpr std::string_view kIdentityCreated = "2020-01-01T00:00:00.000Z";

struct Technique {
  std::string_view id, name, misp;
};
constexpr Technique kDirectFlood = {"T1498.001", "Network Denial of Service: Direct Network Flood",
                                    "Direct Network Flood - T1498.001"};
constexpr Technique kReflection = {"T1498.002",
                                   "Network Denial of Service: Reflection Amplification",
                                   "Reflection Amplification - T1498.002"};

bool isReflection(std::string_view classification) {
  constexpr std::string_view suffix = "_reflection";
  return classification.size() >= suffix.size() &&
         classification.substr(classification.size() - suffix.size()) == suffix;
}

std::string techniqueUrl(std::string_view id) {
  // "T1498.001" -> https://attack.mitre.org/techniques/T1498/001/
  std::string path(id);
  std::replace(path.begin(), path.end(), '.', '/');
  return "https://attack.mitre.org/techniques/" + path + "/";
}

// The parts of the incident an export uses, read once with clear errors.
struct IncidentFacts {
  std::string id, state, severity;
  std::vector<std::string> classifications;
  std::vector<common::IpAddress> victims;
  struct Source {
    common::IpAddress address;
    uint64_t packets = 0;
    uint32_t sightings = 0;
  };
  std::vector<Source> sources;
  std::set<uint16_t> reflectionPorts;
  std::set<std::string> protocols;
  std::map<std::string, std::pair<double, double>> victimPeaks;  // pps, bps (sum over members)
  int64_t firstNs = 0, lastNs = 0, openedNs = 0, updatedNs = 0;
  double peakPps = 0, peakBps = 0;
  bool spoofed = false;
  std::vector<std::string> sensors;
};

template <typename T>
T field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) throw std::invalid_argument(std::string("not an incident: no '") + key + "'");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw std::invalid_argument(std::string("not an incident: '") + key + "' has the wrong type");
  }
}

std::string protocolOf(std::string_view vector) {
  if (vector.rfind("tcp", 0) == 0) return "TCP";
  if (vector.rfind("udp", 0) == 0) return "UDP";
  if (vector == "icmp") return "ICMP";
  return "IP";
}

IncidentFacts readFacts(const json& inc, size_t maxSources) {
  if (!inc.is_object()) throw std::invalid_argument("not an incident: not a JSON object");
  IncidentFacts f;
  f.id = field<std::string>(inc, "id");
  if (f.id.empty()) throw std::invalid_argument("not an incident: empty 'id'");
  f.state = field<std::string>(inc, "state");
  f.severity = field<std::string>(inc, "severity");
  f.classifications = field<std::vector<std::string>>(inc, "classifications");
  f.openedNs = field<int64_t>(inc, "opened_at_ns");
  f.updatedNs = field<int64_t>(inc, "updated_at_ns");
  f.peakPps = field<double>(inc, "peak_pps");
  f.peakBps = field<double>(inc, "peak_bps");
  f.spoofed = field<bool>(inc, "spoofed_sources");
  f.sensors = field<std::vector<std::string>>(inc, "sensors");
  for (const auto& v : field<std::vector<std::string>>(inc, "victims")) {
    auto a = common::IpAddress::parse(v);
    if (!a) throw std::invalid_argument("not an incident: victim '" + v + "' is not an address");
    f.victims.push_back(*a);
  }
  for (const auto& s : field<json>(inc, "top_sources")) {
    if (f.sources.size() >= maxSources) break;
    auto a = common::IpAddress::parse(field<std::string>(s, "address"));
    if (!a) throw std::invalid_argument("not an incident: a top source is not an address");
    f.sources.push_back({*a, field<uint64_t>(s, "packets"), field<uint32_t>(s, "sightings")});
  }
  f.firstNs = f.openedNs;
  f.lastNs = std::max(f.openedNs, inc.value("last_anomaly_ns", f.openedNs));
  bool any = false;
  for (const auto& m : field<json>(inc, "members")) {
    const int64_t first = field<int64_t>(m, "first_ns"), last = field<int64_t>(m, "last_ns");
    f.firstNs = any ? std::min(f.firstNs, first) : first;
    f.lastNs = any ? std::max(f.lastNs, last) : std::max(last, first);
    any = true;
    f.protocols.insert(protocolOf(field<std::string>(m, "vector")));
    if (auto port = field<uint16_t>(m, "reflection_port"); port != 0) f.reflectionPorts.insert(port);
    auto& peak = f.victimPeaks[field<std::string>(m, "victim")];
    peak.first += field<double>(m, "peak_pps");
    peak.second += field<double>(m, "peak_bps");
  }
  if (f.protocols.empty())
    for (const auto& v : field<std::vector<std::string>>(inc, "vectors"))
      f.protocols.insert(protocolOf(v));
  return f;
}

std::vector<Technique> techniquesOf(const IncidentFacts& f) {
  bool reflection = false, direct = false;
  for (const auto& c : f.classifications) (isReflection(c) ? reflection : direct) = true;
  std::vector<Technique> out;
  if (direct || !reflection) out.push_back(kDirectFlood);
  if (reflection) out.push_back(kReflection);
  return out;
}

std::string_view tlpId(std::string_view tlp) {
  for (const auto& t : kTlp)
    if (t.name == tlp) return t.id;
  throw std::invalid_argument("unknown TLP '" + std::string(tlp) + "'");
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string victimsText(const IncidentFacts& f) {
  std::string out;
  for (const auto& v : f.victims) out += (out.empty() ? "" : ", ") + v.toString();
  return out;
}

std::string classificationText(const IncidentFacts& f) {
  std::string out;
  for (const auto& c : f.classifications) out += (out.empty() ? "" : ", ") + c;
  return out.empty() ? "DDoS" : out;
}

// ---- STIX 2.1 -------------------------------------------------------------

std::string scoId(const common::IpAddress& a) {
  const char* type = a.isV4() ? "ipv4-addr" : "ipv6-addr";
  // The ID-contributing property of both is `value`, in canonical JSON.
  return std::string(type) + "--" + uuidV5(kStixScoNamespace, json{{"value", a.toString()}}.dump());
}

json addressSco(const common::IpAddress& a) {
  return {{"type", a.isV4() ? "ipv4-addr" : "ipv6-addr"},
          {"spec_version", "2.1"},
          {"id", scoId(a)},
          {"value", a.toString()}};
}

class StixBuilder {
 public:
  StixBuilder(const IncidentFacts& f, const ExportSettings& s)
      : f_(f), marking_(tlpId(s.tlp)), created_(common::formatTimeNs(f.openedNs)),
        modified_(common::formatTimeNs(std::max(f.updatedNs, f.openedNs))) {
    identity_ = sdoId("identity", "csirt:" + s.csirtName);
    // The identity is the CSIRT's, not the incident's: one id across exports.
    objects_.push_back({{"type", "identity"},
                        {"spec_version", "2.1"},
                        {"id", identity_},
                        {"created", kIdentityCreated},
                        {"modified", kIdentityCreated},
                        {"name", s.csirtName},
                        {"identity_class", "organization"},
                        {"sectors", {"government-local"}},
                        {"object_marking_refs", {marking_}}});
    objects_.push_back({{"type", "marking-definition"},
                        {"spec_version", "2.1"},
                        {"id", marking_},
                        {"created", kTlpCreated},
                        {"definition_type", "tlp"},
                        {"name", "TLP:" + upper(s.tlp == "clear" ? "white" : s.tlp)},
                        {"definition", {{"tlp", s.tlp == "clear" ? "white" : s.tlp}}}});
  }

  json build() {
    std::vector<std::string> patterns;
    for (const auto& t : techniquesOf(f_)) {
      std::string id = sdo("attack-pattern", std::string(t.id),
                           {{"name", t.name},
                            {"external_references",
                             {{{"source_name", "mitre-attack"},
                               {"external_id", t.id},
                               {"url", techniqueUrl(t.id)}}}}});
      patterns.push_back(id);
    }
    const std::string first = common::formatTimeNs(f_.firstNs);
    const std::string last = common::formatTimeNs(f_.lastNs);
    std::vector<std::string> victimIds;
    for (const auto& v : f_.victims) {
      objects_.push_back(addressSco(v));
      victimIds.push_back(scoId(v));
      for (const auto& p : patterns) relationship("targets", p, scoId(v));
    }
    if (!victimIds.empty())
      sdo("observed-data", "victims",
          {{"first_observed", first},
           {"last_observed", last},
           {"number_observed", 1},
           {"object_refs", victimIds}});
    for (const auto& s : f_.sources) {
      const std::string addr = s.address.toString();
      objects_.push_back(addressSco(s.address));
      const std::string kind = s.address.isV4() ? "ipv4-addr" : "ipv6-addr";
      std::string indicator =
          sdo("indicator", "source:" + addr,
              {{"name", "DDoS source " + addr},
               {"description", "Certain source of " + classificationText(f_) + " against " +
                                   victimsText(f_) + " (" + std::to_string(s.packets) +
                                   " packets in its heaviest window)"},
               {"indicator_types", {"malicious-activity"}},
               {"pattern", "[" + kind + ":value = '" + addr + "']"},
               {"pattern_type", "stix"},
               {"valid_from", first}});
      std::string observed = sdo("observed-data", "source:" + addr,
                                 {{"first_observed", first},
                                  {"last_observed", last},
                                  {"number_observed", std::clamp<uint32_t>(s.sightings, 1,
                                                                           999'999'999)},
                                  {"object_refs", {scoId(s.address)}}});
      sdo("sighting", "source:" + addr,
          {{"sighting_of_ref", indicator},
           {"observed_data_refs", {observed}},
           {"where_sighted_refs", {identity_}},
           {"first_seen", first},
           {"last_seen", last},
           {"count", std::clamp<uint32_t>(s.sightings, 1, 999'999'999)}});
      for (const auto& p : patterns) relationship("indicates", indicator, p);
    }
    std::vector<std::string> refs;
    for (const auto& o : objects_)
      if (o["type"] != "marking-definition") refs.push_back(o["id"]);
    sdo("report", "report",
        {{"name", "DDoS incident " + f_.id + ": " + classificationText(f_) + " against " +
                      victimsText(f_)},
         {"description", "Garda incident " + f_.id + ", state " + f_.state + ", severity " +
                             f_.severity + ", peak " + std::to_string(std::llround(f_.peakPps)) +
                             " pps, seen by " + std::to_string(f_.sensors.size()) + " OPD(s)" +
                             (f_.spoofed ? "; sources spoofed (no source indicators)" : "")},
         {"report_types", {"attack-pattern", "indicator", "observed-data"}},
         {"published", modified_},
         {"object_refs", refs}});
    return {{"type", "bundle"}, {"id", "bundle--" + uuidV5(kGardaNamespace, f_.id + "/bundle")},
            {"objects", objects_}};
  }

 private:
  std::string sdoId(const std::string& type, const std::string& key) const {
    return type + "--" + uuidV5(kGardaNamespace, key);
  }

  // An SDO or SRO of this incident: common properties plus `extra`.
  std::string sdo(const std::string& type, const std::string& key, json extra) {
    std::string id = sdoId(type, f_.id + "/" + type + "/" + key);
    json o = {{"type", type},
              {"spec_version", "2.1"},
              {"id", id},
              {"created", created_},
              {"modified", modified_},
              {"created_by_ref", identity_},
              {"object_marking_refs", {marking_}}};
    o.update(extra);
    objects_.push_back(std::move(o));
    return id;
  }

  void relationship(const std::string& kind, const std::string& from, const std::string& to) {
    sdo("relationship", kind + ":" + from + ":" + to,
        {{"relationship_type", kind}, {"source_ref", from}, {"target_ref", to}});
  }

  const IncidentFacts& f_;
  std::string marking_;
  std::string created_, modified_;
  std::string identity_;
  json objects_ = json::array();
};

// ---- MISP -----------------------------------------------------------------

std::string epochSeconds(int64_t ns) { return std::to_string(ns / 1'000'000'000); }

std::string dateOf(int64_t ns) {
  std::time_t t = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

// MISP's threat levels: 1 high, 2 medium, 3 low, 4 undefined.
std::string threatLevel(std::string_view severity) {
  if (severity == "critical" || severity == "high") return "1";
  if (severity == "medium") return "2";
  return "3";
}

class MispBuilder {
 public:
  MispBuilder(const IncidentFacts& f, const ExportSettings& s)
      : f_(f), s_(s), timestamp_(epochSeconds(std::max(f.updatedNs, f.openedNs))) {}

  json build() {
    json tags = json::array({{{"name", "tlp:" + s_.tlp}}});
    for (const auto& t : techniquesOf(f_))
      tags.push_back({{"name", "misp-galaxy:mitre-attack-pattern=\"" + std::string(t.misp) + "\""}});
    tags.push_back({{"name", "garda:incident=\"" + f_.id + "\""}});
    json objects = json::array();
    for (const auto& v : f_.victims) objects.push_back(ddosObject(v));
    json attributes = json::array();
    for (const auto& src : f_.sources)
      attributes.push_back(attribute("source:" + src.address.toString(), "", "ip-src",
                                     "Network activity", src.address.toString(), true,
                                     "certain source, " + std::to_string(src.packets) +
                                         " packets in its heaviest window"));
    return {{"Event",
             {{"uuid", uuidV5(kGardaNamespace, f_.id + "/misp/event")},
              {"info", "DDoS " + classificationText(f_) + " against " + victimsText(f_) + " (" +
                           f_.id + ")"},
              {"date", dateOf(f_.firstNs)},
              {"timestamp", timestamp_},
              {"published", false},
              {"threat_level_id", threatLevel(f_.severity)},
              // 1 ongoing, 2 completed: a resolved incident is fully analysed by Garda.
              {"analysis", f_.state == "resolved" ? "2" : "1"},
              // 1: this community only (the receiver decides on further sharing, per TLP).
              {"distribution", "1"},
              {"Orgc", {{"name", s_.csirtName}}},
              {"Tag", tags},
              {"Attribute", attributes},
              {"Object", objects}}}};
  }

 private:
  json attribute(const std::string& key, const std::string& relation, const std::string& type,
                 const std::string& category, const std::string& value, bool toIds,
                 const std::string& comment = "") {
    json a = {{"uuid", uuidV5(kGardaNamespace, f_.id + "/misp/attribute/" + key)},
              {"type", type},
              {"category", category},
              {"value", value},
              {"to_ids", toIds},
              {"distribution", "5"},  // inherit the event's
              {"timestamp", timestamp_},
              {"comment", comment}};
    if (!relation.empty()) a["object_relation"] = relation;
    return a;
  }

  json ddosObject(const common::IpAddress& victim) {
    const std::string v = victim.toString();
    const std::string key = "ddos:" + v + "/";
    json attrs = json::array();
    auto add = [&](const char* relation, const char* type, const char* category,
                   const std::string& value, bool toIds = false) {
      json a = attribute(key + relation, relation, type, category, value, toIds);
      // As the template says: times and free text would correlate every event.
      if (std::string_view(type) == "datetime" || std::string_view(relation) == "text")
        a["disable_correlation"] = true;
      attrs.push_back(std::move(a));
    };
    add("ip-dst", "ip-dst", "Network activity", v);
    // One protocol and one source port per object (the template marks
    // neither `multiple`): "IP" when the attack mixes protocols.
    add("protocol", "text", "Other", f_.protocols.size() == 1 ? *f_.protocols.begin() : "IP");
    if (f_.reflectionPorts.size() == 1)
      add("src-port", "port", "Network activity", std::to_string(*f_.reflectionPorts.begin()));
    add("first-seen", "datetime", "Other", common::formatTimeNs(f_.firstNs));
    add("last-seen", "datetime", "Other", common::formatTimeNs(f_.lastNs));
    auto peak = f_.victimPeaks.count(v) ? f_.victimPeaks.at(v) : std::pair{f_.peakPps, f_.peakBps};
    if (f_.victims.size() == 1) peak = {f_.peakPps, f_.peakBps};
    add("total-pps", "counter", "Other", std::to_string(std::llround(peak.first)));
    add("total-bps", "counter", "Other", std::to_string(std::llround(peak.second)));
    add("text", "text", "Other",
        "Garda incident " + f_.id + ": " + classificationText(f_) + ", severity " + f_.severity);
    return {{"uuid", uuidV5(kGardaNamespace, f_.id + "/misp/object/" + v)},
            {"name", "ddos"},
            {"meta-category", "network"},
            {"description", "DDoS activity against " + v},
            {"template_uuid", kMispDdosTemplateUuid},
            {"template_version", std::to_string(kMispDdosTemplateVersion)},
            {"distribution", "5"},
            {"sharing_group_id", "0"},
            {"timestamp", timestamp_},
            {"comment", ""},
            {"Attribute", attrs}};
  }

  const IncidentFacts& f_;
  const ExportSettings& s_;
  std::string timestamp_;
};

}  // namespace

bool isExportTlp(std::string_view tlp) noexcept {
  return std::any_of(kTlp.begin(), kTlp.end(), [&](const auto& t) { return t.name == tlp; });
}

std::string uuidV5(std::string_view namespaceUuid, std::string_view name) {
  std::array<unsigned char, 16> ns{};
  size_t n = 0;
  for (size_t i = 0; i < namespaceUuid.size(); ++i) {
    if (namespaceUuid[i] == '-') continue;
    int hi = common::hexValue(namespaceUuid[i]);
    int lo = i + 1 < namespaceUuid.size() ? common::hexValue(namespaceUuid[i + 1]) : -1;
    if (hi < 0 || lo < 0 || n >= ns.size())
      throw std::invalid_argument("not a UUID: '" + std::string(namespaceUuid) + "'");
    ns[n++] = static_cast<unsigned char>(hi << 4 | lo);
    ++i;
  }
  if (n != ns.size() || namespaceUuid.size() != 36)
    throw std::invalid_argument("not a UUID: '" + std::string(namespaceUuid) + "'");
  std::string input(reinterpret_cast<const char*>(ns.data()), ns.size());
  input.append(name);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &len, EVP_sha1(), nullptr) != 1 || len < 16)
    throw std::runtime_error("SHA-1 failed");
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x50);
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);
  std::string out = common::toHex(digest, 16);
  for (size_t at : {8, 13, 18, 23}) out.insert(at, 1, '-');  // 8-4-4-4-12
  return out;
}

json stixBundle(const json& incident, const ExportSettings& settings) {
  IncidentFacts f = readFacts(incident, settings.maxSources);
  return StixBuilder(f, settings).build();
}

json mispEvent(const json& incident, const ExportSettings& settings) {
  (void)tlpId(settings.tlp);
  IncidentFacts f = readFacts(incident, settings.maxSources);
  return MispBuilder(f, settings).build();
}

std::optional<json> exportIncident(const json& incident, std::string_view format,
                                   const ExportSettings& settings) {
  if (format == "stix") return stixBundle(incident, settings);
  if (format == "misp") return mispEvent(incident, settings);
  return std::nullopt;
}

}  // namespace garda::aggregator
