#include "aggregator/export.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>

#include "aggregator/correlate.h"

namespace garda::aggregator {
namespace {

using nlohmann::json;

// 2021-03-04T05:06:07Z
constexpr int64_t kT0 = 1'614'834'367'000'000'000;

common::IpAddress ip(const char* text) { return *common::IpAddress::parse(text); }

Incident reflectionIncident() {
  Incident inc;
  inc.id = "inc-20210304T050607Z-000007";
  inc.sequence = 7;
  inc.state = IncidentState::kResolved;
  inc.severity = Severity::kHigh;
  inc.openedNs = kT0;
  inc.updatedNs = kT0 + 30'000'000'000;
  inc.resolvedNs = inc.updatedNs;
  inc.lastAnomalyNs = kT0 + 20'000'000'000;
  inc.peakPps = 120'000;
  inc.peakBps = 9.6e8;
  IncidentMember m;
  m.sensorId = "opd-a";
  m.victim = ip("10.10.10.5");
  m.vector = wire::Vector::UDP_REFLECTION;
  m.reflectionPort = 123;
  m.classification = "ntp_reflection";
  m.peakPps = 120'000;
  m.peakBps = 9.6e8;
  m.firstNs = kT0;
  m.lastNs = kT0 + 20'000'000'000;
  inc.members.push_back(m);
  inc.sources.push_back({ip("198.51.100.3"), 5000, 0.4, 3});
  inc.sources.push_back({ip("2001:db8::7"), 4000, 0.3, 1});
  return inc;
}

Incident synFlood() {
  Incident inc = reflectionIncident();
  inc.state = IncidentState::kOpen;
  inc.members[0].vector = wire::Vector::TCP_SYN;
  inc.members[0].reflectionPort = 0;
  inc.members[0].classification = "syn_flood";
  inc.sources.clear();
  inc.spoofedSources = true;
  return inc;
}

// STIX 2.1 (OASIS CS02) required properties of each object type used, and
// the JSON type each must have ("s" string, "i" integer, "a" list, "o"
// object). Written from the specification's property tables.
const std::map<std::string, std::map<std::string, char>> kStixRequired = {
    {"identity", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                  {"modified", 's'}, {"name", 's'}}},
    {"marking-definition", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                            {"definition_type", 's'}, {"definition", 'o'}}},
    {"attack-pattern", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                        {"modified", 's'}, {"name", 's'}}},
    {"indicator", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                   {"modified", 's'}, {"pattern", 's'}, {"pattern_type", 's'},
                   {"valid_from", 's'}}},
    {"observed-data", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                       {"modified", 's'}, {"first_observed", 's'}, {"last_observed", 's'},
                       {"number_observed", 'i'}, {"object_refs", 'a'}}},
    {"sighting", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                  {"modified", 's'}, {"sighting_of_ref", 's'}}},
    {"relationship", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                      {"modified", 's'}, {"relationship_type", 's'}, {"source_ref", 's'},
                      {"target_ref", 's'}}},
    {"report", {{"type", 's'}, {"spec_version", 's'}, {"id", 's'}, {"created", 's'},
                {"modified", 's'}, {"name", 's'}, {"published", 's'}, {"object_refs", 'a'}}},
    {"ipv4-addr", {{"type", 's'}, {"id", 's'}, {"value", 's'}}},
    {"ipv6-addr", {{"type", 's'}, {"id", 's'}, {"value", 's'}}},
};

bool hasType(const json& v, char t) {
  switch (t) {
    case 's': return v.is_string();
    case 'i': return v.is_number_integer();
    case 'a': return v.is_array();
    case 'o': return v.is_object();
  }
  return false;
}

const std::regex kTimestamp(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
const std::regex kStixId(R"([a-z0-9-]+--[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})");

std::vector<json> ofType(const json& bundle, const std::string& type) {
  std::vector<json> out;
  for (const auto& o : bundle["objects"])
    if (o["type"] == type) out.push_back(o);
  return out;
}

TEST(UuidV5, MatchesTheRfc4122ExampleComputedByPython) {
  // uuid.uuid5(uuid.NAMESPACE_DNS, "python.org") in Python's documentation.
  EXPECT_EQ(uuidV5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org"),
            "886313e1-3b8a-5372-9b90-0c9aee199e5d");
  EXPECT_THROW(uuidV5("not-a-uuid", "x"), std::invalid_argument);
}

TEST(StixExport, EveryObjectHasTheSpecRequiredPropertiesWithTheirTypes) {
  json bundle = stixBundle(incidentToJson(reflectionIncident()), {});
  ASSERT_EQ(bundle["type"], "bundle");
  EXPECT_TRUE(std::regex_match(bundle["id"].get<std::string>(), kStixId));
  EXPECT_FALSE(bundle.contains("spec_version"));  // 2.1 bundles carry none
  std::set<std::string> ids;
  for (const auto& o : bundle["objects"]) {
    const std::string type = o["type"];
    auto req = kStixRequired.find(type);
    ASSERT_NE(req, kStixRequired.end()) << "unexpected type " << type;
    for (const auto& [key, t] : req->second) {
      ASSERT_TRUE(o.contains(key)) << type << " lacks " << key;
      EXPECT_TRUE(hasType(o[key], t)) << type << "." << key << " = " << o[key];
    }
    const std::string id = o["id"];
    EXPECT_TRUE(std::regex_match(id, kStixId)) << id;
    EXPECT_EQ(id.substr(0, type.size() + 2), type + "--");
    EXPECT_TRUE(ids.insert(id).second) << "duplicate id " << id;
    if (o.contains("spec_version")) {
      EXPECT_EQ(o["spec_version"], "2.1");
    }
    for (const char* ts : {"created", "modified", "valid_from", "first_observed",
                           "last_observed", "published", "first_seen", "last_seen"})
      if (o.contains(ts)) {
        EXPECT_TRUE(std::regex_match(o[ts].get<std::string>(), kTimestamp)) << o[ts];
      }
  }
  // Every reference resolves inside the bundle.
  for (const auto& o : bundle["objects"])
    for (auto it = o.begin(); it != o.end(); ++it) {
      const std::string& key = it.key();
      auto check = [&](const json& ref) { EXPECT_TRUE(ids.count(ref)) << key << " -> " << ref; };
      if (key.size() > 4 && key.substr(key.size() - 4) == "_ref") check(*it);
      if (key.size() > 5 && key.substr(key.size() - 5) == "_refs")
        for (const auto& r : *it) check(r);
    }
}

TEST(StixExport, ReflectionIsT1498_002WithMitreReferenceAndSourcesBecomeIndicators) {
  json bundle = stixBundle(incidentToJson(reflectionIncident()), {"Kota CSIRT", "amber", 20});
  auto patterns = ofType(bundle, "attack-pattern");
  ASSERT_EQ(patterns.size(), 1u);
  const json& ref = patterns[0]["external_references"][0];
  EXPECT_EQ(ref["source_name"], "mitre-attack");
  EXPECT_EQ(ref["external_id"], "T1498.002");
  EXPECT_EQ(ref["url"], "https://attack.mitre.org/techniques/T1498/002/");
  auto identity = ofType(bundle, "identity");
  ASSERT_EQ(identity.size(), 1u);
  EXPECT_EQ(identity[0]["name"], "Kota CSIRT");
  auto indicators = ofType(bundle, "indicator");
  ASSERT_EQ(indicators.size(), 2u);
  std::set<std::string> pats;
  for (const auto& i : indicators) {
    pats.insert(i["pattern"]);
    EXPECT_EQ(i["pattern_type"], "stix");
    EXPECT_EQ(i["created_by_ref"], identity[0]["id"]);
    EXPECT_EQ(i["object_marking_refs"][0],
              "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82");
    EXPECT_EQ(i["valid_from"], "2021-03-04T05:06:07.000Z");
  }
  EXPECT_EQ(pats, (std::set<std::string>{"[ipv4-addr:value = '198.51.100.3']",
                                         "[ipv6-addr:value = '2001:db8::7']"}));
  // The SCO id is the spec's deterministic one (uuid5 over {"value":...},
  // computed with Python's uuid module).
  bool found = false;
  for (const auto& o : ofType(bundle, "ipv4-addr"))
    if (o["value"] == "198.51.100.3") {
      EXPECT_EQ(o["id"], "ipv4-addr--28bb3599-77cd-5a82-a950-b5bc3caf07c4");
      found = true;
    }
  EXPECT_TRUE(found);
  // indicator indicates attack-pattern, attack-pattern targets the victim.
  std::multiset<std::string> kinds;
  for (const auto& r : ofType(bundle, "relationship")) kinds.insert(r["relationship_type"]);
  EXPECT_EQ(kinds.count("indicates"), 2u);
  EXPECT_EQ(kinds.count("targets"), 1u);
  auto observed = ofType(bundle, "observed-data");
  ASSERT_EQ(observed.size(), 3u);  // the victims, and one per source
  for (const auto& o : observed) {
    EXPECT_EQ(o["first_observed"], "2021-03-04T05:06:07.000Z");
    EXPECT_EQ(o["last_observed"], "2021-03-04T05:06:27.000Z");
    EXPECT_GE(o["number_observed"].get<int>(), 1);
  }
}

TEST(StixExport, SpoofedSynFloodIsT1498_001WithoutSourceIndicators) {
  json bundle = stixBundle(incidentToJson(synFlood()), {});
  auto patterns = ofType(bundle, "attack-pattern");
  ASSERT_EQ(patterns.size(), 1u);
  EXPECT_EQ(patterns[0]["external_references"][0]["external_id"], "T1498.001");
  EXPECT_TRUE(ofType(bundle, "indicator").empty());
  EXPECT_EQ(ofType(bundle, "ipv4-addr").size(), 1u);  // the victim
}

TEST(StixExport, ReExportGivesTheSameDocumentAndAnotherIncidentOtherIds) {
  json a = stixBundle(incidentToJson(reflectionIncident()), {});
  EXPECT_EQ(a, stixBundle(incidentToJson(reflectionIncident()), {}));
  Incident other = reflectionIncident();
  other.id = "inc-20210304T050607Z-000008";
  json b = stixBundle(incidentToJson(other), {});
  EXPECT_NE(a["id"], b["id"]);
  EXPECT_NE(ofType(a, "indicator")[0]["id"], ofType(b, "indicator")[0]["id"]);
  // ... but the same CSIRT and the same addresses keep their ids.
  EXPECT_EQ(ofType(a, "identity")[0]["id"], ofType(b, "identity")[0]["id"]);
}

TEST(StixExport, NotAnIncidentIsRefusedNamingTheField) {
  json j = incidentToJson(reflectionIncident());
  j.erase("victims");
  try {
    stixBundle(j, {});
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("victims"), std::string::npos) << e.what();
  }
  EXPECT_THROW(mispEvent(json::array(), {}), std::invalid_argument);
  EXPECT_FALSE(exportIncident(incidentToJson(reflectionIncident()), "csv", {}));
}

// The ddos template (MISP objects repository, objects/ddos/definition.json,
// version 6): each object_relation's MISP attribute type, and the categories
// it allows (empty: the type's default).
const std::map<std::string, std::pair<std::string, std::set<std::string>>> kDdosTemplate = {
    {"ip-src", {"ip-src", {"Network activity", "External analysis"}}},
    {"ip-dst", {"ip-dst", {"Network activity", "External analysis"}}},
    {"src-port", {"port", {"Network activity", "External analysis"}}},
    {"dst-port", {"port", {"Network activity", "External analysis"}}},
    {"domain-dst", {"domain", {"Network activity", "External analysis"}}},
    {"protocol", {"text", {}}},
    {"first-seen", {"datetime", {}}},
    {"last-seen", {"datetime", {}}},
    {"total-pps", {"counter", {}}},
    {"total-bps", {"counter", {}}},
    {"text", {"text", {}}},
};

TEST(MispExport, EventAndDdosObjectFollowTheTemplate) {
  json doc = mispEvent(incidentToJson(reflectionIncident()), {"Kota CSIRT", "amber", 20});
  const json& e = doc["Event"];
  for (const char* key : {"uuid", "info", "date", "threat_level_id", "analysis", "distribution",
                          "timestamp"})
    EXPECT_TRUE(e.contains(key) && e[key].is_string()) << key;
  EXPECT_EQ(e["date"], "2021-03-04");
  EXPECT_EQ(e["threat_level_id"], "1");  // high
  EXPECT_EQ(e["analysis"], "2");          // resolved: completed
  EXPECT_EQ(e["Orgc"]["name"], "Kota CSIRT");
  std::set<std::string> tags;
  for (const auto& t : e["Tag"]) tags.insert(t["name"]);
  EXPECT_TRUE(tags.count("tlp:amber"));
  EXPECT_TRUE(tags.count("misp-galaxy:mitre-attack-pattern=\"Reflection Amplification - T1498.002\""));
  ASSERT_EQ(e["Object"].size(), 1u);
  const json& o = e["Object"][0];
  EXPECT_EQ(o["name"], "ddos");
  EXPECT_EQ(o["template_uuid"], "e2f124d6-f57c-4f93-99e6-8450545fa05d");
  EXPECT_EQ(o["template_version"], "6");
  std::map<std::string, std::string> values;
  for (const auto& a : o["Attribute"]) {
    const std::string rel = a["object_relation"];
    auto t = kDdosTemplate.find(rel);
    ASSERT_NE(t, kDdosTemplate.end()) << rel;
    EXPECT_EQ(a["type"], t->second.first) << rel;
    if (!t->second.second.empty()) {
      EXPECT_TRUE(t->second.second.count(a["category"])) << rel;
    }
    EXPECT_TRUE(a["value"].is_string()) << rel;
    EXPECT_TRUE(values.emplace(rel, a["value"]).second) << rel << " twice (not `multiple`)";
    EXPECT_EQ(a.value("disable_correlation", false),
              rel == "first-seen" || rel == "last-seen" || rel == "text")
        << rel;
  }
  EXPECT_EQ(values["ip-dst"], "10.10.10.5");
  EXPECT_EQ(values["protocol"], "UDP");
  EXPECT_EQ(values["src-port"], "123");
  EXPECT_EQ(values["total-pps"], "120000");
  EXPECT_EQ(values["total-bps"], "960000000");
  EXPECT_EQ(values["first-seen"], "2021-03-04T05:06:07.000Z");
  EXPECT_EQ(values["last-seen"], "2021-03-04T05:06:27.000Z");
  std::set<std::string> sources;
  for (const auto& a : e["Attribute"]) {
    EXPECT_EQ(a["type"], "ip-src");
    EXPECT_EQ(a["category"], "Network activity");
    EXPECT_EQ(a["to_ids"], true);
    sources.insert(a["value"]);
  }
  EXPECT_EQ(sources, (std::set<std::string>{"198.51.100.3", "2001:db8::7"}));
  EXPECT_EQ(doc, mispEvent(incidentToJson(reflectionIncident()), {"Kota CSIRT", "amber", 20}));
}

TEST(MispExport, OpenSynFloodIsOngoingDirectFloodOverTcp) {
  json e = mispEvent(incidentToJson(synFlood()), {})["Event"];
  EXPECT_EQ(e["analysis"], "1");
  bool direct = false;
  for (const auto& t : e["Tag"])
    direct |= t["name"] == "misp-galaxy:mitre-attack-pattern=\"Direct Network Flood - T1498.001\"";
  EXPECT_TRUE(direct);
  EXPECT_TRUE(e["Attribute"].empty());
  for (const auto& a : e["Object"][0]["Attribute"]) {
    if (a["object_relation"] == "protocol") {
      EXPECT_EQ(a["value"], "TCP");
    }
    EXPECT_NE(a["object_relation"], "src-port");  // no reflection port
  }
}

}  // namespace
}  // namespace garda::aggregator
