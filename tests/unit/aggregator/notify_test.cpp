#include "aggregator/notify.h"

#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <thread>

namespace garda::aggregator {
namespace {

using nlohmann::json;

Incident incident(Severity severity, std::vector<std::string> sensors,
                  std::vector<std::string> classifications) {
  Incident inc;
  inc.id = "inc-20210304T050607Z-000007";
  inc.severity = severity;
  inc.openedNs = 1'614'834'367'000'000'000;
  inc.peakPps = 54321;
  for (size_t i = 0; i < sensors.size(); ++i)
    for (const auto& c : classifications) {
      IncidentMember m;
      m.sensorId = sensors[i];
      m.victim = *common::IpAddress::parse("10.10.10.5");
      m.classification = c;
      inc.members.push_back(m);
    }
  return inc;
}

TEST(HmacSha256, MatchesRfc4231TestCase2) {
  EXPECT_EQ(hmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(EscalationTracker, OpenEscalateOnSeverityOpdOrVectorThenResolve) {
  EscalationTracker t;
  auto e = t.onChange(incident(Severity::kMedium, {"a"}, {"syn_flood"}), IncidentChangeKind::kOpened, 1);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, NotifyKind::kOpened);
  EXPECT_FALSE(e->incident.contains("members"));
  // Same severity, same OPD and attack: rates changed only. Nothing.
  EXPECT_FALSE(t.onChange(incident(Severity::kMedium, {"a"}, {"syn_flood"}),
                          IncidentChangeKind::kUpdated, 2));
  e = t.onChange(incident(Severity::kHigh, {"a"}, {"syn_flood"}), IncidentChangeKind::kUpdated, 3);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, NotifyKind::kEscalated);
  EXPECT_EQ(e->reason, "severity medium -> high");
  e = t.onChange(incident(Severity::kHigh, {"a", "b"}, {"syn_flood", "udp_flood"}),
                 IncidentChangeKind::kUpdated, 4);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->reason, "OPD joined: b; new vector: udp_flood");
  e = t.onChange(incident(Severity::kHigh, {"a", "b"}, {"syn_flood"}), IncidentChangeKind::kResolved, 5);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, NotifyKind::kResolved);
  EXPECT_EQ(t.tracked(), 0u);
  // An incident first seen as an update (taken back after a restart): remembered, quiet.
  EXPECT_FALSE(t.onChange(incident(Severity::kLow, {"a"}, {"syn_flood"}), IncidentChangeKind::kUpdated, 6));
  EXPECT_EQ(t.tracked(), 1u);
}

TEST(WebhookBody, CarriesEventIncidentAndTime) {
  EscalationTracker t;
  auto e = t.onChange(incident(Severity::kHigh, {"a"}, {"syn_flood"}), IncidentChangeKind::kOpened,
                      1'700'000'000'123'000'000);
  json body = json::parse(webhookBody(*e));
  EXPECT_EQ(body["event"], "incident.opened");
  EXPECT_EQ(body["incident_id"], "inc-20210304T050607Z-000007");
  EXPECT_EQ(body["sent_at"], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(body["incident"]["severity"], "high");
  EXPECT_EQ(body["delivery"], "inc-20210304T050607Z-000007/incident.opened/1700000000123000000");
}

TEST(SyslogMessage, IsRfc5424WithStructuredDataAndMappedSeverity) {
  EscalationTracker t;
  Incident inc = incident(Severity::kHigh, {"opd-\"x]"}, {"syn_flood"});
  auto e = t.onChange(inc, IncidentChangeKind::kOpened, 1'700'000'000'123'000'000);
  std::string m = syslogMessage(*e, 16, "soc host", 42);
  // <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
  std::smatch g;
  ASSERT_TRUE(std::regex_match(
      m, g, std::regex(R"(<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) \[garda@32473 (.*)\] (.*))")))
      << m;
  EXPECT_EQ(g[1], "131");  // local0 (16) * 8 + error (3) for a high incident
  EXPECT_EQ(g[2], "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(g[3], "sochost");
  EXPECT_EQ(g[4], "garda-aggregator");
  EXPECT_EQ(g[5], "42");
  EXPECT_EQ(g[6], "incident.opened");
  EXPECT_NE(g[7].str().find(R"(id="inc-20210304T050607Z-000007")"), std::string::npos);
  EXPECT_NE(g[7].str().find(R"(sensors="opd-\"x\]")"), std::string::npos) << g[7];
  EXPECT_NE(g[8].str().find("opened: syn_flood against 10.10.10.5"), std::string::npos) << g[8];
  auto r = t.onChange(inc, IncidentChangeKind::kResolved, 2);
  EXPECT_EQ(syslogSeverity(*r), 6);
  EXPECT_LE(syslogMessage(*r, 16, std::string(5000, 'h'), 1).size(), kSyslogMaxBytes);
}

template <typename F>
bool waitFor(F&& done) {
  for (int i = 0; i < 1000 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return done();
}

TEST(DeliveryQueue, RetriesWithBackoffUntilDeliveredInOrder) {
  std::vector<std::string> got;
  std::atomic<int> calls{0};
  std::mutex mu;
  DeliveryQueue q("test", 10, 3, 1, [&](const NotifyDelivery& d, std::string& error) {
    if (calls++ < 2) {
      error = "HTTP status 500";
      return false;
    }
    std::lock_guard lock(mu);
    got.push_back(d.id);
    return true;
  });
  q.push({"incident.opened", "1", "a"});
  q.push({"incident.resolved", "2", "b"});
  ASSERT_TRUE(waitFor([&] { return q.counters().ok.load() == 2; }));
  EXPECT_EQ(q.counters().retries.load(), 2u);
  EXPECT_EQ(q.counters().failed.load(), 0u);
  std::lock_guard lock(mu);
  EXPECT_EQ(got, (std::vector<std::string>{"1", "2"}));
}

TEST(DeliveryQueue, GivesUpAfterRetriesAndDropsWhenFull) {
  std::atomic<bool> release{false};
  DeliveryQueue q("test", 2, 1, 1, [&](const NotifyDelivery& d, std::string& error) {
    while (d.id == "block" && !release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    error = "refused";
    return false;
  });
  EXPECT_TRUE(q.push({"e", "block", ""}));
  // "block" stays queued (capacity 2) until its delivery ends: one more fits.
  int accepted = 0;
  for (int i = 0; i < 3; ++i) accepted += q.push({"e", std::to_string(i), ""});
  EXPECT_EQ(accepted, 1);
  EXPECT_EQ(q.counters().dropped.load(), 2u);
  release = true;
  ASSERT_TRUE(waitFor([&] { return q.counters().failed.load() == 1u + accepted; }));
  EXPECT_EQ(q.counters().ok.load(), 0u);
  EXPECT_EQ(q.counters().retries.load(), 1u + accepted);
}

}  // namespace
}  // namespace garda::aggregator
