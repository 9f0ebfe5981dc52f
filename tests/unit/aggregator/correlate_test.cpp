#include "aggregator/correlate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "console/render.h"
#include "tests/unit/aggregator/summary_builder.h"

namespace garda::aggregator {
namespace {

using testing::BuiltSummary;
using testing::ip;
using testing::kSecond;
using testing::kT0;
using testing::SourceSpec;
using testing::VictimSpec;

constexpr int64_t kNow = 5'000'000'000'000;  // the caller's clock, unrelated to data time

// An anomaly as the detector emits it, for one 1 s window.
Anomaly anomaly(const std::string& sensor, const std::string& victim, wire::Vector v, uint16_t port,
                int64_t window, double pps, const std::vector<SourceSpec>& srcs,
                uint64_t distinct = 0) {
  Anomaly a;
  a.sensorId = sensor;
  a.victim = ip(victim);
  a.vector = v;
  a.reflectionPort = port;
  a.classification = classifyAttack(v, port);
  a.victimClassification = a.classification;
  a.pps = pps;
  a.bps = pps * 800;
  a.windowStartNs = kT0 + window * kSecond;
  a.windowMs = 1000;
  a.victimPackets = static_cast<uint64_t>(pps);
  a.distinctSources = distinct ? distinct : srcs.size();
  for (const auto& s : srcs) a.topSources.push_back({ip(s.address), s.packets, s.error});
  return a;
}

DetectBatch batchOf(const std::string& sensor, int64_t window, std::vector<Anomaly> anomalies) {
  DetectBatch b;
  b.sensorId = sensor;
  b.windowStartNs = kT0 + window * kSecond;
  b.windowMs = 1000;
  b.anomalies = std::move(anomalies);
  return b;
}

// Detector and correlator wired as the aggregator wires them.
class Pipeline {
 public:
  std::vector<IncidentChange> feed(const std::string& sensor, int64_t window,
                                   const std::vector<VictimSpec>& victims) {
    BuiltSummary s(sensor, kT0 + window * kSecond, 1000, victims);
    auto changes = correlator.observe(detector.observe(s.reader()), kNow + window * kSecond);
    for (const auto& c : changes) seen.push_back(c);
    return changes;
  }
  Detector detector;
  Correlator correlator;
  std::vector<IncidentChange> seen;
};

bool hasEvent(const Incident& inc, std::string_view kind) {
  return std::any_of(inc.timeline.begin(), inc.timeline.end(),
                     [&](const TimelineEvent& e) { return e.kind == kind; });
}

TEST(Correlator, SharedSourcesAtThreeSensorsAreOneCityWideIncident) {
  Pipeline p;
  const auto botnet = testing::sources("203.0.113", 1, 10, 3000);
  const std::pair<const char*, const char*> opds[] = {
      {"dukcapil", "198.18.2.10"}, {"bapenda", "198.18.3.10"}, {"dinkes", "198.18.4.10"}};
  for (int64_t w = 0; w < 5; ++w)
    for (const auto& [sensor, victim] : opds)
      p.feed(sensor, w, {{victim, {{wire::Vector::UDP, 30000}}, {}, botnet, 10}});
  auto open = p.correlator.openIncidents();
  ASSERT_EQ(open.size(), 1u);
  const Incident& inc = *open[0];
  EXPECT_EQ(inc.sensors(), (std::vector<std::string>{"bapenda", "dinkes", "dukcapil"}));
  EXPECT_EQ(inc.victims().size(), 3u);
  EXPECT_TRUE(inc.cityWide());
  EXPECT_EQ(inc.severity, Severity::kCritical);
  EXPECT_EQ(inc.classification(), "udp_flood");
  EXPECT_EQ(inc.openedNs, kT0) << "30 kpps over a 5 kpps floor opens in the first window";
  EXPECT_DOUBLE_EQ(inc.peakPps, 90000) << "three victims at 30 kpps in the same window";
  EXPECT_EQ(inc.sources.size(), 10u);
  EXPECT_EQ(std::count_if(inc.timeline.begin(), inc.timeline.end(),
                          [](const auto& e) { return e.kind == "sensor_joined"; }),
            2);
  EXPECT_TRUE(hasEvent(inc, "escalated"));
  EXPECT_EQ(p.correlator.counters().joinedByEvidence, 2u);
  auto j = incidentToJson(inc);
  EXPECT_EQ(j["city_wide"], true);
  EXPECT_EQ(j["severity"], "critical");
  EXPECT_EQ(j["sensors"].size(), 3u);
  ASSERT_EQ(j["source_prefixes"].size(), 1u);
  EXPECT_EQ(j["source_prefixes"][0]["prefix"], "203.0.113.0/24");
  EXPECT_EQ(p.seen.front().kind, IncidentChangeKind::kOpened);
}

TEST(Correlator, MergedSourcesAgreeWithAPlainScanThroughManyWindows) {
  // An incident's sources, merged window after window from a pool larger
  // than the cut, against the rule done the plain way: the largest count
  // and share seen, a sighting per anomaly, sorted by packets then address,
  // cut at maxSources, and a newcomer that cannot make the cut left out.
  Correlator c;
  std::mt19937_64 rng(4242);
  struct Ref {
    common::IpAddress address;
    uint64_t packets;
    double share;
    uint32_t sightings;
  };
  std::vector<Ref> ref;
  auto before = [](const Ref& a, const Ref& b) {
    return a.packets != b.packets ? a.packets > b.packets : a.address < b.address;
  };
  const size_t cut = CorrelateConfig{}.maxSources;
  std::vector<SourceSpec> srcs;
  for (int64_t w = 0; w < 300; ++w) {
    if (w % 3 != 0 && !srcs.empty()) {
      // A steady window: the same sources, no more packets than before (the
      // incident's sources keep their order, and mergeSources its table).
      for (auto& s : srcs) s.packets = 500 + s.packets % 500;
    } else {
      srcs.clear();
      std::set<unsigned> picked;
      while (picked.size() < 20) picked.insert(static_cast<unsigned>(rng() % 150));
      for (unsigned host : picked)
        srcs.push_back(
            {"203.0." + std::to_string(113 + host / 100) + "." + std::to_string(host % 100 + 1),
             1000 + rng() % 4000, 0});
    }
    const double pps = 100000;
    c.observe(batchOf("dukcapil", w,
                      {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, w, pps, srcs)}),
              kNow + w * kSecond);
    bool reorder = false;
    for (const auto& s : srcs) {
      const Ref r{ip(s.address), s.packets, static_cast<double>(s.packets) / pps, 1};
      auto it = std::find_if(ref.begin(), ref.end(),
                             [&](const Ref& t) { return t.address == r.address; });
      if (it == ref.end()) {
        if (ref.size() >= cut && !before(r, ref.back())) continue;
        ref.push_back(r);
        reorder = true;
        continue;
      }
      if (r.packets > it->packets) it->packets = r.packets, reorder = true;
      it->share = std::max(it->share, r.share);
      it->sightings++;
    }
    if (reorder) {
      std::sort(ref.begin(), ref.end(), before);
      if (ref.size() > cut) ref.resize(cut);
    }
    auto open = c.openIncidents();
    ASSERT_EQ(open.size(), 1u) << "window " << w;
    const auto& got = open[0]->sources;
    ASSERT_EQ(got.size(), ref.size()) << "window " << w;
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_EQ(got[i].address, ref[i].address) << "window " << w << " #" << i;
      ASSERT_EQ(got[i].packets, ref[i].packets) << "window " << w << " #" << i;
      ASSERT_DOUBLE_EQ(got[i].share, ref[i].share) << "window " << w << " #" << i;
      ASSERT_EQ(got[i].sightings, ref[i].sightings) << "window " << w << " #" << i;
    }
  }
}

TEST(Correlator, UnrelatedAttacksAtTwoSensorsAreTwoIncidents) {
  Pipeline p;
  for (int64_t w = 0; w < 4; ++w) {
    p.feed("dukcapil", w,
           {{"198.18.2.10",
             {{wire::Vector::TCP_SYN, 40000}},
             {},
             testing::sources("203.0.113", 1, 5, 8000),
             5}});
    p.feed("bapenda", w,
           {{"198.18.3.10",
             {{wire::Vector::UDP, 40000}},
             {},
             testing::sources("192.0.2", 1, 5, 8000),
             5}});
  }
  auto open = p.correlator.openIncidents();
  ASSERT_EQ(open.size(), 2u);
  for (const Incident* inc : open) {
    EXPECT_FALSE(inc->cityWide());
    EXPECT_EQ(inc->members.size(), 1u);
  }
  EXPECT_NE(open[0]->classification(), open[1]->classification());
}

TEST(Correlator, SpoofedSourcesAreNoEvidenceEvenWhenTheyCollide) {
  // Random spoofed sources: Space-Saving counts that are mostly error, a huge
  // distinct count. By chance the two victims' top lists share two
  // addresses and several /24s; that must not merge two attacks.
  std::vector<SourceSpec> a, b;
  for (int i = 0; i < 20; ++i) {
    a.push_back({"100.64." + std::to_string(i) + ".1", 110, 100});
    b.push_back({"100.64." + std::to_string(i) + (i < 2 ? ".1" : ".2"), 110, 100});
  }
  Correlator c;
  c.observe(
      batchOf("dukcapil", 1,
              {anomaly("dukcapil", "198.18.2.10", wire::Vector::TCP_SYN, 0, 1, 200000, a, 800000)}),
      kNow);
  c.observe(
      batchOf("bapenda", 1,
              {anomaly("bapenda", "198.18.3.10", wire::Vector::TCP_SYN, 0, 1, 200000, b, 800000)}),
      kNow);
  auto open = c.openIncidents();
  ASSERT_EQ(open.size(), 2u);
  EXPECT_TRUE(open[0]->spoofedSources);
  EXPECT_TRUE(open[0]->sources.empty());

  // The same collision between certain (real) sources does link them.
  for (auto& s : a) s.error = 0;
  for (auto& s : b) s.error = 0;
  Correlator real;
  real.observe(
      batchOf("dukcapil", 1,
              {anomaly("dukcapil", "198.18.2.10", wire::Vector::TCP_SYN, 0, 1, 2200, a, 20)}),
      kNow);
  real.observe(
      batchOf("bapenda", 1,
              {anomaly("bapenda", "198.18.3.10", wire::Vector::TCP_SYN, 0, 1, 2200, b, 20)}),
      kNow);
  EXPECT_EQ(real.openIncidents().size(), 1u);
}

TEST(Correlator, LightLegitimateSourcesAreNoEvidence) {
  // Two unrelated floods whose victims are both polled by the same two
  // monitoring hosts, at a tiny share of each victim's packets.
  std::vector<SourceSpec> monitors = {{"198.18.100.5", 20, 0}, {"198.18.100.6", 20, 0}};
  auto a = monitors, b = monitors;
  a.push_back({"203.0.113.7", 90000, 0});
  b.push_back({"192.0.2.9", 90000, 0});
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, 1, 100000, a)}),
            kNow);
  c.observe(batchOf("bapenda", 1,
                    {anomaly("bapenda", "198.18.3.10", wire::Vector::UDP, 0, 1, 100000, b)}),
            kNow);
  EXPECT_EQ(c.openIncidents().size(), 2u);
}

TEST(Correlator, OneDominantSourceSharedLinksTwoAttacks) {
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::TCP_OTHER, 0, 1, 50000,
                             {{"203.0.113.66", 50000, 0}})}),
            kNow);
  c.observe(batchOf("bapenda", 2,
                    {anomaly("bapenda", "198.18.3.10", wire::Vector::UDP, 0, 2, 30000,
                             {{"203.0.113.66", 30000, 0}})}),
            kNow);
  auto open = c.openIncidents();
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0]->classification(), "mixed");
}

TEST(Correlator, SameReflectorPortLinksOpdsAndOtherPortsDoNot) {
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP_REFLECTION, 123, 1, 50000,
                             testing::sources("192.0.2", 1, 5, 9000))}),
            kNow);
  c.observe(batchOf("bapenda", 1,
                    {anomaly("bapenda", "198.18.3.10", wire::Vector::UDP_REFLECTION, 123, 1, 50000,
                             testing::sources("198.51.100", 1, 5, 9000))}),
            kNow);
  c.observe(batchOf("dinkes", 1,
                    {anomaly("dinkes", "198.18.4.10", wire::Vector::UDP_REFLECTION, 53, 1, 50000,
                             testing::sources("100.64.1", 1, 5, 9000))}),
            kNow);
  auto open = c.openIncidents();
  ASSERT_EQ(open.size(), 2u);
  const Incident* ntp = open[0]->classification() == "ntp_reflection" ? open[0] : open[1];
  EXPECT_EQ(ntp->classification(), "ntp_reflection");
  EXPECT_EQ(ntp->sensors().size(), 2u);
  auto j = incidentToJson(*ntp);
  EXPECT_EQ(j["reflection_ports"], nlohmann::json::array({123}));
}

TEST(Correlator, ConcentratedSourceSlash24LinksAttacks) {
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::TCP_SYN, 0, 1, 40000,
                             testing::sources("198.51.100", 1, 4, 9000))}),
            kNow);
  c.observe(batchOf("bapenda", 1,
                    {anomaly("bapenda", "198.18.3.10", wire::Vector::ICMP, 0, 1, 40000,
                             testing::sources("198.51.100", 101, 4, 9000))}),
            kNow);
  EXPECT_EQ(c.openIncidents().size(), 1u);
}

TEST(Correlator, CarpetBombingOfOneOpdIsOneIncident) {
  // A spoofed SYN flood spread over a protected /24: no source evidence,
  // but one attack.
  Correlator c;
  std::vector<Anomaly> batch;
  for (int host = 1; host <= 40; ++host)
    batch.push_back(anomaly("dukcapil", "198.18.2." + std::to_string(host), wire::Vector::TCP_SYN,
                            0, 1, 5000, {{"100.64.0.1", 60, 55}}, 900000));
  // The same vector on another /24 of the same sensor is not part of it.
  batch.push_back(anomaly("dukcapil", "198.18.9.1", wire::Vector::TCP_SYN, 0, 1, 5000, {}, 900000));
  c.observe(batchOf("dukcapil", 1, batch), kNow);
  ASSERT_EQ(c.openIncidents().size(), 2u);
  const Incident* carpet =
      c.openIncidents()[0]->victims().size() > 1 ? c.openIncidents()[0] : c.openIncidents()[1];
  EXPECT_EQ(carpet->victims().size(), 40u);
  EXPECT_DOUBLE_EQ(carpet->peakPps, 200000);
  EXPECT_EQ(carpet->severity, Severity::kHigh);
}

TEST(Correlator, FarApartInTimeAreTwoIncidents) {
  CorrelateConfig cfg;
  cfg.resolveAfterMs = 600000;  // keep the first open; only the join window separates
  Correlator c(cfg);
  const auto botnet = testing::sources("203.0.113", 1, 5, 9000);
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, 1, 45000, botnet)}),
            kNow);
  c.observe(batchOf("bapenda", 300,
                    {anomaly("bapenda", "198.18.3.10", wire::Vector::UDP, 0, 300, 45000, botnet)}),
            kNow);
  EXPECT_EQ(c.openIncidents().size(), 2u);
}

TEST(Correlator, ResolvesAfterQuietWindowsAtItsSensors) {
  Pipeline p;
  std::vector<VictimSpec> attack = {{"198.18.2.10", {{wire::Vector::TCP_SYN, 40000}}, {}, {}, 0}};
  std::vector<VictimSpec> normal = {{"198.18.2.10", {{wire::Vector::TCP_SYN, 50}}, {}, {}, 0}};
  for (int64_t w = 0; w < 5; ++w) p.feed("dukcapil", w, attack);
  ASSERT_EQ(p.correlator.openIncidents().size(), 1u);
  const std::string id = p.correlator.openIncidents()[0]->id;
  // Last anomaly in window 4; quiet windows 5..13 are not yet 10 s.
  for (int64_t w = 5; w < 14; ++w) {
    p.feed("dukcapil", w, normal);
    ASSERT_EQ(p.correlator.openIncidents().size(), 1u) << "resolved early, at window " << w;
  }
  const Incident* inc = p.correlator.find(id);
  ASSERT_TRUE(inc);
  EXPECT_FALSE(inc->members[0].active) << "the detector's quiet marks the member";
  EXPECT_TRUE(hasEvent(*inc, "quiet"));
  // Another sensor's windows do not count for this incident.
  p.feed("bapenda", 100, {});
  ASSERT_EQ(p.correlator.openIncidents().size(), 1u);
  auto changes = p.feed("dukcapil", 14, normal);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, IncidentChangeKind::kResolved);
  EXPECT_EQ(changes[0].id, id);
  EXPECT_TRUE(p.correlator.openIncidents().empty());
  inc = p.correlator.find(id);
  ASSERT_TRUE(inc) << "a resolved incident is served until the next call";
  EXPECT_EQ(inc->state, IncidentState::kResolved);
  EXPECT_EQ(inc->resolvedNs, kT0 + 14 * kSecond);
  EXPECT_EQ(inc->timeline.back().kind, "resolved");
  p.feed("dukcapil", 15, normal);
  EXPECT_EQ(p.correlator.find(id), nullptr);
  // A new attack on the same victim is a new incident.
  p.feed("dukcapil", 16, attack);
  p.feed("dukcapil", 17, attack);
  ASSERT_EQ(p.correlator.openIncidents().size(), 1u);
  EXPECT_NE(p.correlator.openIncidents()[0]->id, id);
}

TEST(Correlator, ResolvesWhenItsSensorsFallSilent) {
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, 1, 45000, {})}),
            kNow);
  EXPECT_TRUE(c.tick(kNow + 59 * kSecond).empty());
  auto changes = c.tick(kNow + 60 * kSecond);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, IncidentChangeKind::kResolved);
  EXPECT_EQ(c.counters().resolvedIdle, 1u);
  EXPECT_TRUE(c.openIncidents().empty());
}

TEST(Correlator, SameVictimJoinsWithoutOtherEvidence) {
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::TCP_SYN, 0, 1, 45000,
                             testing::sources("203.0.113", 1, 4, 9000))}),
            kNow);
  auto changes =
      c.observe(batchOf("dukcapil", 3,
                        {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP_REFLECTION, 1900, 3,
                                 45000, testing::sources("192.0.2", 1, 4, 9000))}),
                kNow);
  ASSERT_EQ(c.openIncidents().size(), 1u);
  const Incident& inc = *c.openIncidents()[0];
  EXPECT_EQ(inc.classification(), "mixed");
  EXPECT_EQ(inc.classifications(), (std::vector<std::string>{"ssdp_reflection", "syn_flood"}));
  EXPECT_TRUE(hasEvent(inc, "vector_added"));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].kind, IncidentChangeKind::kUpdated);
  EXPECT_TRUE(changes[0].timeline);
}

TEST(Correlator, AnomaliesPastTheMemberCapAreCountedAndAnnounceNothing) {
  CorrelateConfig config;
  config.maxMembers = 3;
  Correlator c(config);
  // Six OPDs see one botnet (the same sources) on their own servers, for
  // two windows: the incident takes three members and counts the rest.
  for (int64_t w = 1; w <= 2; ++w)
    for (int k = 0; k < 6; ++k) {
      const std::string sensor = "opd" + std::to_string(k);
      c.observe(
          batchOf(sensor, w,
                  {anomaly(sensor, "198.18." + std::to_string(k) + ".10", wire::Vector::TCP_SYN, 0,
                           w, 45000, testing::sources("203.0.113", 1, 4, 9000))}),
          kNow + w * kSecond);
    }
  ASSERT_EQ(c.openIncidents().size(), 1u);
  const Incident& inc = *c.openIncidents()[0];
  EXPECT_EQ(inc.members.size(), 3u);
  EXPECT_EQ(inc.anomaliesPastMemberCap, 6u);  // opd3..opd5, twice each
  // "joined" only for the two members taken in after the first.
  const auto joined =
      std::count_if(inc.timeline.begin(), inc.timeline.end(),
                    [](const TimelineEvent& e) { return e.kind == "sensor_joined"; });
  EXPECT_EQ(joined, 2);
  const auto j = incidentToJson(inc);
  EXPECT_EQ(j["anomalies_past_member_cap"], 6u);
  EXPECT_EQ(j["sensors"].size(), 3u);
  Incident back = incidentFromJson(j);
  EXPECT_EQ(back.anomaliesPastMemberCap, 6u);
  // The console tells the agent the lists are not whole.
  EXPECT_NE(console::renderIncident(j).find("larger than listed: 6 anomalies"), std::string::npos)
      << console::renderIncident(j);
}

TEST(Correlator, MitigatingIsSetByTheCaller) {
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, 1, 45000, {})}),
            kNow);
  const std::string id = c.openIncidents()[0]->id;
  auto change = c.setMitigating(id, kT0 + 2 * kSecond, "planner: 3 orders to dukcapil");
  ASSERT_TRUE(change);
  EXPECT_EQ(change->id, id);
  EXPECT_FALSE(c.setMitigating(id, kT0 + 3 * kSecond, "again"));
  EXPECT_FALSE(c.setMitigating("inc-nope-000001", kT0, "x"));
  const Incident* inc = c.find(id);
  EXPECT_EQ(inc->state, IncidentState::kMitigating);
  EXPECT_EQ(inc->timeline.back().kind, "mitigating");
  EXPECT_EQ(incidentToJson(*inc)["state"], "mitigating");
}

TEST(Correlator, SourcesReplacedUnderTheSameIncidentAreMergedAsTheyNowAre) {
  // restore() over an open incident of the same id replaces its sources in
  // place (same object, same count): mergeSources' table of the old ones
  // must not be trusted, or the new sources would be added a second time.
  Correlator c;
  const auto botnet = testing::sources("203.0.113", 1, 5, 9000);
  for (int64_t w = 1; w <= 3; ++w)
    c.observe(batchOf("dukcapil", w,
                      {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, w, 45000, botnet)}),
              kNow + w * kSecond);
  ASSERT_EQ(c.openIncidents().size(), 1u);
  const Incident* inc = c.openIncidents()[0];
  ASSERT_EQ(inc->sources.size(), 5u);
  auto json = incidentToJson(*inc);
  for (auto& src : json["top_sources"]) {
    std::string a = src["address"];
    src["address"] = "192.0.2" + a.substr(a.rfind('.'));
  }
  c.restore(json, kNow + 4 * kSecond);
  ASSERT_EQ(c.openIncidents()[0], inc) << "restored in place";
  const auto moved = testing::sources("192.0.2", 1, 5, 9000);
  c.observe(batchOf("dukcapil", 5,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, 5, 45000, moved)}),
            kNow + 5 * kSecond);
  ASSERT_EQ(inc->sources.size(), 5u);
  for (const auto& src : inc->sources) {
    EXPECT_EQ(src.address.toString().rfind("192.0.2.", 0), 0u) << src.address.toString();
    EXPECT_EQ(src.sightings, 4u) << src.address.toString();
  }
}

TEST(Correlator, RestoredFromJsonTheIncidentContinues) {
  Correlator before;
  const auto botnet = testing::sources("203.0.113", 1, 5, 9000);
  before.observe(
      batchOf("dukcapil", 1,
              {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, 1, 45000, botnet)}),
      kNow);
  before.observe(
      batchOf("bapenda", 2,
              {anomaly("bapenda", "198.18.3.10", wire::Vector::UDP, 0, 2, 45000, botnet)}),
      kNow);
  ASSERT_EQ(before.openIncidents().size(), 1u);
  const Incident& inc = *before.openIncidents()[0];
  const std::string stored = incidentToJson(inc).dump();

  // JSON -> Incident -> JSON is the identity.
  auto parsed = nlohmann::json::parse(stored);
  EXPECT_EQ(incidentToJson(incidentFromJson(parsed)), parsed);

  Correlator after;
  after.restore(parsed, kNow + 30 * kSecond);
  ASSERT_EQ(after.openIncidents().size(), 1u);
  // A third OPD with the same botnet joins the restored incident by evidence.
  auto changes = after.observe(
      batchOf("dinkes", 3,
              {anomaly("dinkes", "198.18.4.10", wire::Vector::UDP, 0, 3, 45000, botnet)}),
      kNow + 31 * kSecond);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].id, inc.id);
  EXPECT_EQ(changes[0].kind, IncidentChangeKind::kUpdated);
  EXPECT_EQ(after.find(inc.id)->sensors().size(), 3u);
  // New ids continue past the restored one.
  EXPECT_GT(after.nextSequence(), inc.sequence);
  after.observe(
      batchOf("dinkes", 4, {anomaly("dinkes", "198.18.4.99", wire::Vector::ICMP, 0, 4, 45000, {})}),
      kNow + 32 * kSecond);
  ASSERT_EQ(after.openIncidents().size(), 2u);
  EXPECT_GT(*Correlator::sequenceOf(after.openIncidents()[1]->id), inc.sequence);
}

TEST(Correlator, RestoreRejectsWhatIsNotAnIncident) {
  Correlator c;
  EXPECT_THROW(c.restore(nlohmann::json::parse(R"({"id":"inc-x-000001"})"), kNow),
               std::runtime_error);
  EXPECT_THROW(c.restore(nlohmann::json::parse(R"({"id":"nope"})"), kNow), std::runtime_error);
  EXPECT_THROW(c.restore(nlohmann::json::array(), kNow), std::runtime_error);
  EXPECT_TRUE(c.openIncidents().empty());
}

TEST(Correlator, IdsSortByStartTimeAndCarryTheCounter) {
  EXPECT_EQ(Correlator::makeId(kT0, 42), "inc-20231114T221320Z-000042");
  EXPECT_EQ(Correlator::sequenceOf("inc-20231114T221320Z-000042"), 42u);
  EXPECT_EQ(Correlator::sequenceOf("inc-20231114T221320Z-1234567"), 1234567u);
  EXPECT_FALSE(Correlator::sequenceOf("order-1"));
  EXPECT_LT(Correlator::makeId(kT0, 999), Correlator::makeId(kT0 + kSecond, 1));
  Correlator c;
  c.setNextSequence(500);
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::UDP, 0, 1, 45000, {})}),
            kNow);
  EXPECT_EQ(c.openIncidents()[0]->id, "inc-20231114T221321Z-000500");
  EXPECT_EQ(c.nextSequence(), 501u);
}

TEST(Correlator, SeverityFollowsRateAndSensors) {
  Correlator c;
  c.observe(batchOf("dukcapil", 1,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::ICMP, 0, 1, 2000, {})}),
            kNow);
  EXPECT_EQ(c.openIncidents()[0]->severity, Severity::kLow);
  c.observe(batchOf("dukcapil", 2,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::ICMP, 0, 2, 20000, {})}),
            kNow);
  EXPECT_EQ(c.openIncidents()[0]->severity, Severity::kMedium);
  c.observe(batchOf("dukcapil", 3,
                    {anomaly("dukcapil", "198.18.2.10", wire::Vector::ICMP, 0, 3, 2000, {})}),
            kNow);
  EXPECT_EQ(c.openIncidents()[0]->severity, Severity::kMedium) << "severity never goes down";
  EXPECT_TRUE(hasEvent(*c.openIncidents()[0], "escalated"));
}

// The index an incident keeps beside its members answers what a scan of the
// members would, through joins in and out of order, late windows, quiets,
// and a round trip through JSON (restore).
void expectIndexMatchesMembers(const Incident& inc, const std::vector<int64_t>& windows) {
  std::set<std::string> sensors, classes;
  std::set<common::IpAddress> victims;
  for (const auto& m : inc.members) {
    sensors.insert(m.sensorId);
    victims.insert(m.victim);
    classes.insert(m.classification);
  }
  EXPECT_EQ(inc.sensors(), std::vector<std::string>(sensors.begin(), sensors.end()));
  EXPECT_EQ(inc.sensorCount(), sensors.size());
  EXPECT_EQ(inc.victims(), std::vector<common::IpAddress>(victims.begin(), victims.end()));
  EXPECT_EQ(inc.classifications(), std::vector<std::string>(classes.begin(), classes.end()));
  Incident& mutableInc = const_cast<Incident&>(inc);
  for (const auto& m : inc.members)
    EXPECT_EQ(mutableInc.findMember(m.sensorId, m.victim, m.vector, m.reflectionPort), &m);
  EXPECT_EQ(mutableInc.findMember("nobody", inc.members.front().victim, inc.members.front().vector,
                                  inc.members.front().reflectionPort),
            nullptr);
  for (int64_t w : windows) {
    double pps = 0, bps = 0;
    uint32_t n = 0;
    for (const auto& m : inc.members)
      if (m.lastNs == w) pps += m.lastPps, bps += m.lastBps, ++n;
    auto rate = inc.rateAt(w);
    EXPECT_NEAR(rate.pps, pps, 1e-6 * (1 + pps)) << "window " << w;
    EXPECT_NEAR(rate.bps, bps, 1e-6 * (1 + bps)) << "window " << w;
    EXPECT_EQ(rate.members, n) << "window " << w;
  }
}

TEST(Correlator, TheMemberIndexAgreesWithTheMembersThroughAnyOrderOfJoins) {
  Correlator c;
  std::mt19937 rng(7);
  const std::vector<std::string> sensors = {"alpha", "bravo", "charlie", "delta", "echo"};
  const std::vector<wire::Vector> vectors = {wire::Vector::TCP_SYN, wire::Vector::UDP,
                                             wire::Vector::ICMP};
  std::vector<int64_t> windows;
  for (int64_t w = 0; w < 40; ++w) windows.push_back(kT0 + w * kSecond);
  for (int step = 0; step < 400; ++step) {
    // Mostly moving forward, sometimes a late window from the past.
    const int64_t w =
        std::max<int64_t>(0, step / 10 - static_cast<int64_t>(rng() % 4 == 0 ? rng() % 5 : 0));
    const std::string& sensor = sensors[rng() % sensors.size()];
    std::vector<Anomaly> anomalies;
    for (int k = 0; k < 3; ++k)
      anomalies.push_back(anomaly(sensor, "198.18.2." + std::to_string(1 + rng() % 6),
                                  vectors[rng() % vectors.size()], 0, w,
                                  1000 + static_cast<double>(rng() % 90000), {}));
    c.observe(batchOf(sensor, w, anomalies), kNow + step * kSecond / 10);
  }
  ASSERT_FALSE(c.openIncidents().empty());
  const Incident* biggest = nullptr;
  for (const Incident* open : c.openIncidents()) {
    expectIndexMatchesMembers(*open, windows);
    if (!biggest || open->members.size() > biggest->members.size()) biggest = open;
  }
  const Incident& inc = *biggest;
  ASSERT_GT(inc.members.size(), 20u);
  // Peak concurrent rate: never less than any window's sum now.
  for (int64_t w : windows) EXPECT_GE(inc.peakPps + 1e-6, inc.rateAt(w).pps);

  // Restored from JSON, the index is rebuilt from the members.
  Incident back = incidentFromJson(incidentToJson(inc));
  expectIndexMatchesMembers(back, windows);
  // A copy keeps answering for its own members.
  Incident copy = inc;
  expectIndexMatchesMembers(copy, windows);
  // Members replaced: rebuilt.
  copy.members.resize(3);
  expectIndexMatchesMembers(copy, windows);
}

}  // namespace
}  // namespace garda::aggregator
