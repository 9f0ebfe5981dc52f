// The aggregator's end of the order channel, on a real RocksDB in a temp dir:
// persisted before sent, refused when unsafe, synced on hello, retried,
// expired, and kept across a restart.
#include <gtest/gtest.h>

#include <filesystem>

#include "aggregator/dispatch.h"
#include "bench/load_window.h"
#include "common/envelope.h"
#include "sensor/uplink.h"

namespace garda::aggregator {
namespace {

constexpr int64_t kNow = 1'800'000'000'000'000'000;
constexpr int64_t kSecond = 1'000'000'000;

struct Sent {
  std::string sensor;
  wire::Envelope::Body::Which kind;
  std::vector<std::string> orderIds;
  bool remove = false;
};

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("garda-dispatch-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    config_.sensors = {{"alpha", "", "", std::nullopt}, {"bravo", "", "", std::nullopt}};
    config_.neverBlock = {*common::Prefix::parse("198.18.100.0/24")};
    config_.orderRetryMs = 2000;
    open();
  }
  void TearDown() override {
    dispatcher_.reset();
    city_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void open() {
    dispatcher_.reset();
    city_.reset();
    store_.reset();
    store_ = std::make_unique<Store>(dir_.string());
    city_ = std::make_unique<CityView>(*store_, config_);
    dispatcher_ = std::make_unique<Dispatcher>(
        *store_, *city_, config_, [this](const std::string& id, const std::string& bytes) {
          return record(id, bytes);
        });
  }

  bool record(const std::string& sensor, const std::string& bytes) {
    common::EnvelopeDecoder d;
    EXPECT_EQ(d.decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())),
              common::EnvelopeReject::kNone)
        << d.detail();
    auto body = d.envelope().getBody();
    Sent s{sensor, body.which(), {}, false};
    if (body.which() == wire::Envelope::Body::ORDER) {
      s.orderIds.push_back(body.getOrder().getOrderId());
      s.remove = body.getOrder().getRemove();
    } else if (body.which() == wire::Envelope::Body::ORDER_SYNC) {
      for (auto o : body.getOrderSync().getOrders()) s.orderIds.push_back(o.getOrderId());
    }
    sent_.push_back(s);
    return true;
  }

  void connect(const std::string& id, int64_t now) { city_->touch(id, now).routingId = "r-" + id; }

  OrderSpec block(const std::string& prefix, int64_t ttlS = 600) {
    OrderSpec s;
    s.match.source = *common::Prefix::parse(prefix);
    s.ttlNs = ttlS * kSecond;
    s.reason = "test";
    return s;
  }

  // A report from `sensor` for `id`.
  void report(const std::string& sensor, const std::string& id, wire::OrderState state,
              uint64_t boot, int64_t now) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<wire::OrderReport>();
    r.setOrderId(id);
    r.setState(state);
    r.setBootId(boot);
    dispatcher_->onReport(sensor, r.asReader(), now);
  }

  std::filesystem::path dir_;
  common::AggregatorConfig config_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<CityView> city_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::vector<Sent> sent_;
};

TEST_F(DispatcherTest, ACityWideOrderGoesToEveryConnectedSensorAndWaitsForTheOthers) {
  connect("alpha", kNow);
  std::string error;
  auto id = dispatcher_->add(block("203.0.113.0/24"), "console:analyst", kNow, error);
  ASSERT_TRUE(id) << error;
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].sensor, "alpha");
  EXPECT_EQ(sent_[0].kind, wire::Envelope::Body::ORDER);
  const auto* o = dispatcher_->find(*id);
  EXPECT_EQ(o->deliveries.at("alpha").state, "sent");
  EXPECT_EQ(o->deliveries.at("bravo").state, "pending");
  // bravo connects later: its hello brings the order in an orderSync.
  connect("bravo", kNow + kSecond);
  dispatcher_->onHello("bravo", kNow + kSecond);
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].kind, wire::Envelope::Body::ORDER_SYNC);
  EXPECT_EQ(sent_[1].orderIds, std::vector<std::string>{*id});
}

TEST_F(DispatcherTest, RefusesUnsafeOrdersAndSendsNothing) {
  connect("alpha", kNow);
  std::string error;
  EXPECT_FALSE(dispatcher_->add(block("198.18.100.53/32"), "console:a", kNow, error));
  EXPECT_NE(error.find("never_block"), std::string::npos) << error;
  EXPECT_FALSE(dispatcher_->add(block("198.18.0.0/15"), "console:a", kNow, error))
      << "a prefix holding a never-block address";
  OrderSpec everything;
  everything.ttlNs = kSecond;
  EXPECT_FALSE(dispatcher_->add(everything, "console:a", kNow, error));
  EXPECT_EQ(error, "the order would match all traffic");
  EXPECT_FALSE(dispatcher_->add(block("203.0.113.0/24", 0), "console:a", kNow, error));
  auto unknown = block("203.0.113.0/24");
  unknown.targets = {"charlie"};
  EXPECT_FALSE(dispatcher_->add(unknown, "console:a", kNow, error));
  EXPECT_TRUE(sent_.empty());
  EXPECT_EQ(dispatcher_->counters().refused, 5u);
}

TEST_F(DispatcherTest, ReportsAreKeptPerSensorAndBootAndUnansweredOrdersAreRetried) {
  connect("alpha", kNow);
  std::string error;
  auto id = *dispatcher_->add(block("203.0.113.0/24"), "planner", kNow, error);
  // No answer within order_retry_ms: sent again.
  city_->touch("alpha", kNow + 2 * kSecond);
  dispatcher_->tick(kNow + 2 * kSecond);
  ASSERT_EQ(sent_.size(), 2u);
  report("alpha", id, wire::OrderState::APPLIED, 7, kNow + 3 * kSecond);
  city_->touch("alpha", kNow + 6 * kSecond);
  dispatcher_->tick(kNow + 6 * kSecond);
  EXPECT_EQ(sent_.size(), 2u) << "an applied order is not resent";
  const auto& d = dispatcher_->find(id)->deliveries.at("alpha");
  EXPECT_EQ(d.state, "applied");
  EXPECT_EQ(d.bootId, 7u);
  // The same sensor after a restart reports again: the new boot is kept.
  report("alpha", id, wire::OrderState::APPLIED, 8, kNow + 7 * kSecond);
  EXPECT_EQ(dispatcher_->find(id)->deliveries.at("alpha").bootId, 8u);
}

TEST_F(DispatcherTest, OrdersExpireAndRemovedOrdersAreWithdrawnAndLeftOutOfSyncs) {
  connect("alpha", kNow);
  std::string error;
  auto shortId = *dispatcher_->add(block("203.0.113.0/24", 2), "a", kNow, error);
  auto longId = *dispatcher_->add(block("203.0.114.0/24"), "a", kNow, error);
  dispatcher_->tick(kNow + 3 * kSecond);
  EXPECT_EQ(dispatcher_->find(shortId)->state, "expired");
  ASSERT_TRUE(dispatcher_->remove(longId, "console:analyst", kNow + 3 * kSecond, error)) << error;
  EXPECT_TRUE(sent_.back().remove);
  EXPECT_FALSE(dispatcher_->remove(longId, "console:analyst", kNow + 3 * kSecond, error));
  EXPECT_NE(error.find("already removed"), std::string::npos) << error;
  sent_.clear();
  dispatcher_->onHello("alpha", kNow + 4 * kSecond);
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_TRUE(sent_[0].orderIds.empty()) << "neither expired nor removed orders are synced";
}

TEST_F(DispatcherTest, OrdersAreStoredBeforeSendingAndSurviveARestart) {
  connect("alpha", kNow);
  std::string error;
  auto id = *dispatcher_->add(block("203.0.113.0/24"), "console:analyst", kNow, error);
  report("alpha", id, wire::OrderState::APPLIED, 7, kNow + kSecond);
  // Reports are written at the next tick, all of an order's together.
  {
    std::vector<std::string> stored;
    store_->forEachOrder(
        [&](std::string_view, std::string_view json) { stored.emplace_back(json); });
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_NE(stored[0].find("\"sent\""), std::string::npos) << "not yet: " << stored[0];
  }
  dispatcher_->tick(kNow + kSecond);
  open();  // a new aggregator process on the same store
  const auto* o = dispatcher_->find(id);
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->state, "active");
  EXPECT_EQ(o->createdBy, "console:analyst");
  EXPECT_EQ(o->spec.match.source.toString(), "203.0.113.0/24");
  EXPECT_EQ(o->deliveries.at("alpha").state, "applied");
  EXPECT_EQ(o->deliveries.at("alpha").bootId, 7u);
  // A new order after the restart does not reuse the id.
  connect("alpha", kNow);
  auto next = *dispatcher_->add(block("203.0.114.0/24"), "a", kNow, error);
  EXPECT_NE(next, id);
  // And the audit log holds the add.
  int adds = 0;
  store_->forEachAudit(0, [&](std::string_view json) {
    adds += json.find("\"order_add\"") != std::string_view::npos;
  });
  EXPECT_EQ(adds, 2);
}

}  // namespace
}  // namespace garda::aggregator

namespace garda::aggregator {
namespace {

// The registry's states, on the same store fixture.
TEST_F(DispatcherTest, RegistryShowsUpLaggingAndDown) {
  auto state = [&](int64_t now) {
    const nlohmann::json status = city_->statusJson(now);
    for (const auto& s : status["sensors"])
      if (s["id"] == "alpha") return s["state"].get<std::string>();
    return std::string("missing");
  };
  connect("alpha", kNow);
  EXPECT_EQ(state(kNow), "up");
  city_->touch("alpha", kNow).backlog = 12;  // from its heartbeat
  EXPECT_EQ(state(kNow), "lagging");
  EXPECT_EQ(state(kNow + 6 * kSecond), "down") << "sensor_down_after_ms defaults to 5 s";
}

}  // namespace
}  // namespace garda::aggregator

// ---- the planner, on the same real store and dispatcher --------------------

#include "aggregator/plan.h"

namespace garda::aggregator {
namespace {

class PlannerTest : public DispatcherTest {
 protected:
  void SetUp() override {
    DispatcherTest::SetUp();
    config_.sensors.push_back({"charlie", "", "", std::nullopt});
    reopen();
  }
  void reopen() {
    open();
    planner_ = std::make_unique<Planner>(*dispatcher_, config_, DetectConfig{}.floorPps);
    for (const char* s : {"alpha", "bravo", "charlie"}) connect(s, kNow);
  }

  static IncidentMember member(const std::string& sensor, const char* victim, wire::Vector v,
                               uint16_t port = 0) {
    IncidentMember m;
    m.sensorId = sensor;
    m.victim = *common::IpAddress::parse(victim);
    m.vector = v;
    m.reflectionPort = port;
    m.classification = std::string(classifyAttack(v, port));
    return m;
  }
  static IncidentSource source(const char* a) {
    IncidentSource s;
    s.address = *common::IpAddress::parse(a);
    s.packets = 1000;
    s.share = 0.1;
    return s;
  }
  // The orders the dispatcher holds, by what they match.
  std::map<std::string, const OrderRecord*> orders() {
    std::map<std::string, const OrderRecord*> out;
    const nlohmann::json list = dispatcher_->listJson(kNow);
    for (const auto& j : list["orders"])
      if (auto* o = dispatcher_->find(j["id"].get<std::string>())) out[o->spec.match.describe()] = o;
    return out;
  }

  std::unique_ptr<Planner> planner_;
};

TEST_F(PlannerTest, ReflectionIsDroppedBySourcePortTowardTheVictimAtItsSensor) {
  Incident inc;
  inc.id = "inc-1";
  inc.members = {member("alpha", "198.18.2.10", wire::Vector::UDP_REFLECTION, 53)};
  inc.spoofedSources = true;
  auto text = planner_->plan(inc, kNow);
  ASSERT_TRUE(text);
  auto o = orders();
  ASSERT_EQ(o.size(), 1u);
  const auto* order = o.begin()->second;
  EXPECT_EQ(o.begin()->first, "drop udp any:53 -> 198.18.2.10/32:any");
  EXPECT_EQ(order->spec.targets, std::vector<std::string>{"alpha"});
  EXPECT_EQ(order->spec.incidentId, "inc-1");
  EXPECT_EQ(order->createdBy, "planner");
  EXPECT_EQ(order->deliveries.at("alpha").state, "sent") << "enforce mode: sent at once";
  // Planning again renews nothing early and creates nothing twice.
  EXPECT_FALSE(planner_->plan(inc, kNow + kSecond));
  EXPECT_EQ(orders().size(), 1u);
  // Past half the TTL the order is renewed, not duplicated.
  const int64_t later = kNow + 400 * kSecond;
  city_->touch("alpha", later);
  EXPECT_FALSE(planner_->plan(inc, later));
  EXPECT_EQ(dispatcher_->find(order->id)->expiresAtNs, later + 600 * kSecond);
  EXPECT_EQ(planner_->counters().renewed, 1u);
}

TEST_F(PlannerTest, SpoofedFloodsAreRateLimitedAtATenthOfTheVectorsFloor) {
  Incident inc;
  inc.id = "inc-2";
  inc.members = {member("bravo", "198.18.3.10", wire::Vector::TCP_SYN)};
  inc.spoofedSources = true;
  ASSERT_TRUE(planner_->plan(inc, kNow));
  auto o = orders();
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o.begin()->first, "rate-limit 200 pps tcp any:any -> 198.18.3.10/32:any");
}

TEST_F(PlannerTest, RealSourcesAreBlockedByConcentratedPrefixAndCityWideOnceTwoOpdsSeeThem) {
  Incident inc;
  inc.id = "inc-3";
  inc.members = {member("alpha", "198.18.2.10", wire::Vector::UDP),
                 member("bravo", "198.18.3.10", wire::Vector::UDP)};
  inc.sources = {source("203.0.113.1"), source("203.0.113.2"), source("203.0.113.3"),
                 source("192.0.2.77")};
  ASSERT_TRUE(planner_->plan(inc, kNow));
  auto o = orders();
  ASSERT_EQ(o.size(), 2u);
  ASSERT_TRUE(o.count("drop any 203.0.113.0/24:any -> any:any")) << "three sources in one /24";
  ASSERT_TRUE(o.count("drop any 192.0.2.77/32:any -> any:any"));
  const auto* block = o["drop any 203.0.113.0/24:any -> any:any"];
  EXPECT_TRUE(block->spec.targets.empty()) << "two OPDs: every sensor of the city";
  EXPECT_EQ(block->deliveries.size(), 3u) << "charlie is not attacked, and is immunized too";
}

TEST_F(PlannerTest, LeavesOutBlocksThatWouldCutOffTheVictimsLegitimateClients) {
  // The victim's normal clients live in 203.0.113.0/24 too. They count once
  // three more quiet windows have passed.
  const auto victim = *common::IpAddress::parse("198.18.2.10");
  const std::vector<common::IpAddress> clients = {*common::IpAddress::parse("203.0.113.50"),
                                                  *common::IpAddress::parse("198.51.100.9")};
  // An attack's first window, not yet anomalous, then the anomaly: not trusted.
  planner_->noteLegitimate("alpha", victim, {*common::IpAddress::parse("192.0.2.77")});
  planner_->noteAttacked("alpha", victim);
  for (int w = 0; w < 4; ++w) planner_->noteLegitimate("alpha", victim, clients);
  Incident inc;
  inc.id = "inc-4";
  inc.members = {member("alpha", "198.18.2.10", wire::Vector::TCP_OTHER)};
  inc.sources = {source("203.0.113.1"), source("203.0.113.2"), source("203.0.113.3"),
                 source("192.0.2.77")};
  planner_->plan(inc, kNow);
  auto o = orders();
  EXPECT_FALSE(o.count("drop any 203.0.113.0/24:any -> any:any"));
  EXPECT_TRUE(o.count("drop any 192.0.2.77/32:any -> any:any"));
  EXPECT_EQ(planner_->counters().skippedLegit, 1u);
}

TEST_F(PlannerTest, AKnownLegitimateClientIsNeverBlockedByItselfHoweverManyOthersThereAre) {
  // The drill's citizens: 20 clients of the victim, one of them among the
  // attack's top sources at its offices. One of 20 is under the 10% share a
  // prefix may cut off, but a host block of a known client is left out.
  const auto victim = *common::IpAddress::parse("198.18.2.10");
  std::vector<common::IpAddress> clients;
  for (int k = 1; k <= 20; ++k)
    clients.push_back(*common::IpAddress::parse("198.18.200." + std::to_string(k)));
  for (int w = 0; w < 4; ++w) planner_->noteLegitimate("alpha", victim, clients);
  Incident inc;
  inc.id = "inc-7";
  inc.members = {member("alpha", "198.18.2.10", wire::Vector::TCP_OTHER)};
  inc.sources = {source("192.0.2.77"), source("198.18.200.1")};
  planner_->plan(inc, kNow);
  auto o = orders();
  EXPECT_TRUE(o.count("drop any 192.0.2.77/32:any -> any:any"));
  EXPECT_FALSE(o.count("drop any 198.18.200.1/32:any -> any:any"));
  EXPECT_EQ(planner_->counters().skippedLegit, 1u);
}

TEST_F(PlannerTest, ConfirmModeProposesUntilAnOperatorApprovesAndDryRunNeverSends) {
  config_.mode = common::MitigationMode::kConfirm;
  config_.sensors[1].mode = common::MitigationMode::kDryRun;  // bravo
  reopen();
  Incident a;
  a.id = "inc-5";
  a.members = {member("alpha", "198.18.2.10", wire::Vector::UDP_REFLECTION, 123)};
  a.spoofedSources = true;
  Incident b = a;
  b.id = "inc-6";
  b.members = {member("bravo", "198.18.3.10", wire::Vector::UDP_REFLECTION, 123)};
  sent_.clear();
  planner_->plan(a, kNow);
  planner_->plan(b, kNow);
  EXPECT_TRUE(sent_.empty()) << "nothing leaves before approval, nor in dry-run";
  auto o = orders();
  const auto* proposal = o["drop udp any:123 -> 198.18.2.10/32:any"];
  const auto* dry = o["drop udp any:123 -> 198.18.3.10/32:any"];
  EXPECT_EQ(proposal->deliveries.at("alpha").state, "proposed");
  EXPECT_EQ(dry->deliveries.at("bravo").state, "dry_run");
  std::string error;
  EXPECT_FALSE(dispatcher_->approve(dry->id, "console:a", kNow, error));
  ASSERT_TRUE(dispatcher_->approve(proposal->id, "console:analyst", kNow, error)) << error;
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].sensor, "alpha");
  EXPECT_EQ(dispatcher_->find(proposal->id)->deliveries.at("alpha").state, "sent");
  // A hello syncs the approved order but never the dry-run one.
  sent_.clear();
  dispatcher_->onHello("bravo", kNow);
  EXPECT_TRUE(sent_[0].orderIds.empty());
}

TEST_F(PlannerTest, UnapprovedProposalsLapse) {
  config_.mode = common::MitigationMode::kConfirm;
  config_.proposalTtlS = 60;
  reopen();
  Incident a;
  a.id = "inc-7";
  a.members = {member("alpha", "198.18.2.10", wire::Vector::UDP_REFLECTION, 1900)};
  a.spoofedSources = true;
  planner_->plan(a, kNow);
  const auto* o = orders().begin()->second;
  dispatcher_->tick(kNow + 61 * kSecond);
  EXPECT_EQ(dispatcher_->find(o->id)->deliveries.at("alpha").state, "lapsed");
  std::string error;
  EXPECT_FALSE(dispatcher_->approve(o->id, "console:a", kNow + 62 * kSecond, error));
}

}  // namespace
}  // namespace garda::aggregator

// ---- order counters from summaries, and what they do to renewal ------------

#include "aggregator/incidents.h"
#include "tests/unit/aggregator/summary_builder.h"

namespace garda::aggregator {
namespace {

using Counter = testing::BuiltSummary::Counter;

// A summary of `sensor` at `windowNs` carrying only the given order counters.
testing::BuiltSummary countersOnly(const std::string& sensor, int64_t windowNs,
                                   const std::vector<Counter>& counters) {
  testing::BuiltSummary s(sensor, windowNs, 1000, {});
  s.withOrderCounters(counters);
  return s;
}

TEST_F(DispatcherTest, SummaryCountersGiveEachDeliveryItsCountAndDropRate) {
  connect("alpha", kNow);
  std::string error;
  auto id = dispatcher_->add(block("203.0.113.0/24"), "console:a", kNow, error);
  ASSERT_TRUE(id) << error;
  report("alpha", *id, wire::OrderState::APPLIED, 1, kNow);
  dispatcher_->onCounters("alpha", countersOnly("alpha", kNow, {{*id, 3000, 300000}}).reader());
  const Delivery* d = &dispatcher_->find(*id)->deliveries.at("alpha");
  EXPECT_EQ(d->packetsDropped, 3000u);
  EXPECT_EQ(d->bytesDropped, 300000u);
  EXPECT_DOUBLE_EQ(d->dropPps, 3000) << "first reading: all of it in one window";
  // Two windows later (one summary lost): the increase over two seconds.
  dispatcher_->onCounters(
      "alpha", countersOnly("alpha", kNow + 2 * kSecond, {{*id, 7000, 700000}}).reader());
  EXPECT_DOUBLE_EQ(d->dropPps, 2000);
  // A late older window changes nothing; an unknown id is counted.
  dispatcher_->onCounters("alpha",
                          countersOnly("alpha", kNow + kSecond, {{*id, 9999, 999900}}).reader());
  EXPECT_EQ(d->packetsDropped, 7000u);
  dispatcher_->onCounters(
      "alpha",
      countersOnly("alpha", kNow + 3 * kSecond, {{*id, 7000, 700000}, {"nope", 1, 1}}).reader());
  EXPECT_DOUBLE_EQ(d->dropPps, 0) << "no increase";
  EXPECT_EQ(dispatcher_->counters().countersUnknown, 1u);
  // A counter that went down is a new rule (the sensor restarted).
  dispatcher_->onCounters("alpha",
                          countersOnly("alpha", kNow + 4 * kSecond, {{*id, 500, 50000}}).reader());
  EXPECT_DOUBLE_EQ(d->dropPps, 500);
  // A late window with no counters at all changes nothing either...
  dispatcher_->onCounters("alpha", countersOnly("alpha", kNow + 3 * kSecond, {}).reader());
  EXPECT_DOUBLE_EQ(d->dropPps, 500);
  // ... and another sensor's summaries never touch alpha's deliveries.
  dispatcher_->onCounters("beta", countersOnly("beta", kNow + 5 * kSecond, {}).reader());
  EXPECT_DOUBLE_EQ(d->dropPps, 500);
  // Left out of the summary: the rule drops nothing there any more.
  dispatcher_->onCounters("alpha", countersOnly("alpha", kNow + 5 * kSecond, {}).reader());
  EXPECT_DOUBLE_EQ(d->dropPps, 0);
  // `block list` shows them.
  const auto listed = dispatcher_->listJson(kNow + 5 * kSecond)["orders"][0]["deliveries"]["alpha"];
  EXPECT_EQ(listed["packets_dropped"], 500);
  EXPECT_EQ(listed["bytes_dropped"], 50000);
  EXPECT_EQ(listed["drop_pps"], 0.0);
}

TEST_F(PlannerTest, APerSensorSourceBlockIsStillRenewedAfterItsIncidentGoesCityWide) {
  Incident inc;
  inc.id = "inc-8";
  inc.members = {member("alpha", "198.18.2.10", wire::Vector::UDP)};
  inc.sources = {source("192.0.2.77")};
  ASSERT_TRUE(planner_->plan(inc, kNow));
  const auto* local = orders().at("drop any 192.0.2.77/32:any -> any:any");
  EXPECT_EQ(local->spec.targets, std::vector<std::string>{"alpha"});
  // bravo joins: the city-wide twin is planned beside it.
  inc.members.push_back(member("bravo", "198.18.3.10", wire::Vector::UDP));
  ASSERT_TRUE(planner_->plan(inc, kNow + kSecond));
  ASSERT_EQ(dispatcher_->listJson(kNow)["orders"].size(), 2u) << "the same match, twice";
  // Past half the TTL both are renewed: the per-sensor one does not lapse.
  const int64_t later = kNow + 400 * kSecond;
  for (const char* s : {"alpha", "bravo", "charlie"}) city_->touch(s, later);
  planner_->plan(inc, later);
  const nlohmann::json list = dispatcher_->listJson(later)["orders"];
  for (const auto& j : list)
    EXPECT_EQ(dispatcher_->find(j["id"].get<std::string>())->expiresAtNs, later + 600 * kSecond)
        << j["id"] << (j["city_wide"].get<bool>() ? " (city-wide)" : " (alpha only)");
  EXPECT_EQ(planner_->counters().renewed, 2u);
}

TEST_F(PlannerTest, OrdersOfAQuietMemberAreRenewedOnlyWhileTheyStillDropTheAttack) {
  Incident inc;
  inc.id = "inc-9";
  inc.members = {member("alpha", "198.18.2.10", wire::Vector::UDP_REFLECTION, 53)};
  inc.spoofedSources = true;
  ASSERT_TRUE(planner_->plan(inc, kNow));
  const std::string id = orders().begin()->second->id;
  // Its traffic is dropped before the sensor sees it: the detector calls it
  // quiet, the order's counters say it goes on.
  inc.members[0].active = false;
  inc.droppingAt = {{"alpha", kNow + 399 * kSecond, true}};
  int64_t later = kNow + 400 * kSecond;
  city_->touch("alpha", later);
  planner_->plan(inc, later);
  EXPECT_EQ(dispatcher_->find(id)->expiresAtNs, later + 600 * kSecond);
  // The drops stopped: the open incident no longer renews it.
  inc.droppingAt[0].now = false;
  const int64_t renewedUntil = later + 600 * kSecond;
  later += 400 * kSecond;
  city_->touch("alpha", later);
  planner_->plan(inc, later);
  EXPECT_EQ(dispatcher_->find(id)->expiresAtNs, renewedUntil);
  EXPECT_EQ(planner_->counters().renewed, 1u);
}

// The whole loop on the aggregator's side: detection, the planner, the
// dispatcher and the summaries' order counters, one window per second.
class DroppingIncidentTest : public PlannerTest {
 protected:
  static constexpr const char* kVictim = "198.18.2.10";
  void SetUp() override {
    PlannerTest::SetUp();
    config_.orderTtlS = 10;
    reopen();
    CorrelateConfig correlate;
    correlate.idleResolveMs = 20000;  // shorter than the attack below
    tracker_ = std::make_unique<IncidentTracker>(*store_, kNow, DetectConfig{}, correlate);
    tracker_->setPlanner(planner_.get());
  }
  void TearDown() override {
    tracker_.reset();
    PlannerTest::TearDown();
  }
  // One second of data from alpha: a spoofed SYN flood the sensor sees, or
  // nothing it sees (its enforcer drops it first), with its order counters.
  void window(int64_t second, uint64_t synPackets, const std::vector<Counter>& counters,
              const std::vector<testing::SourceSpec>& sources = {}) {
    const int64_t start = kNow + second * kSecond, now = start + kSecond;
    std::vector<testing::VictimSpec> victims;
    if (synPackets > 0) {
      testing::VictimSpec v;
      v.address = kVictim;
      v.vectors = {{wire::Vector::TCP_SYN, synPackets}};
      v.sources = sources;
      v.distinctSources = sources.empty() ? 50000 : 0;  // none: spoofed, no source evidence
      victims.push_back(v);
    }
    testing::BuiltSummary s("alpha", start, 1000, victims);
    s.withOrderCounters(counters);
    city_->touch("alpha", now);
    dispatcher_->onCounters("alpha", s.reader());
    tracker_->onSummary(s.reader(), now);
    tracker_->tick(now);
    dispatcher_->tick(now);
  }
  nlohmann::json incidents() { return tracker_->listJson(false, 10)["incidents"]; }
  // The one order, once planned.
  const OrderRecord* order() {
    auto list = dispatcher_->listJson(kNow)["orders"];
    return list.empty() ? nullptr : dispatcher_->find(list[0]["id"].get<std::string>());
  }
  // Attack for 4 s (detected, rate-limit order planned), then the enforcer
  // drops it before capture for `droppedS` seconds at `dropPps`.
  int64_t attackThenDrops(int64_t droppedS, uint64_t dropPps) {
    int64_t t = 0;
    for (; t < 4; ++t) window(t, 20000, {});
    EXPECT_NE(order(), nullptr) << "the flood was not mitigated";
    if (!order()) return t;
    report("alpha", order()->id, wire::OrderState::APPLIED, 1, kNow + t * kSecond);
    uint64_t dropped = 0;
    for (int64_t end = t + droppedS; t < end; ++t) {
      dropped += dropPps;
      window(t, 0, {{order()->id, dropped, dropped * 60}});
    }
    return t;
  }
  std::unique_ptr<IncidentTracker> tracker_;
};

TEST_F(DroppingIncidentTest, OrdersStillDroppingKeepTheIncidentOpenAndRenewedThenItResolves) {
  // 36 s of drops above the SYN floor (2000 pps): longer than 3 TTLs and
  // than idle resolution, far longer than the 10 s quiet resolution.
  int64_t t = attackThenDrops(36, 18000);
  ASSERT_NE(order(), nullptr);
  const std::string id = order()->id;
  ASSERT_EQ(incidents().size(), 1u);
  EXPECT_NE(incidents()[0]["state"], "resolved") << "resolved while its orders still drop";
  EXPECT_EQ(tracker_->correlator().counters().opened, 1u);
  const int64_t lastWindowEnd = kNow + t * kSecond;
  EXPECT_GT(order()->expiresAtNs, lastWindowEnd) << "not renewed: it would have lapsed";
  EXPECT_EQ(order()->state, "active");
  EXPECT_GE(planner_->counters().renewed, 6u);  // every ~5 s (half of 10 s)
  auto shown = tracker_->showJson(incidents()[0]["id"].get<std::string>());
  ASSERT_TRUE(shown);
  EXPECT_EQ((*shown)["orders"][0]["sensors"]["alpha"]["drop_pps"], 18000.0);
  bool noted = false;
  for (const auto& e : (*shown)["timeline"]) noted |= e["kind"] == "dropping";
  EXPECT_TRUE(noted) << shown->dump();

  // The attack stops: the counter stands still. The incident resolves after
  // the usual quiet period and the order lapses at its TTL, not renewed.
  const uint64_t total = order()->deliveries.at("alpha").packetsDropped;
  for (int64_t end = t + 25; t < end; ++t) window(t, 0, {{id, total, total * 60}});
  ASSERT_EQ(incidents().size(), 1u);
  EXPECT_EQ(incidents()[0]["state"], "resolved");
  EXPECT_EQ(tracker_->correlator().counters().opened, 1u);
  EXPECT_EQ(dispatcher_->find(id)->state, "expired");
  EXPECT_LE(dispatcher_->find(id)->expiresAtNs, lastWindowEnd + 10 * kSecond);
}

TEST_F(DroppingIncidentTest, TheAttacksTailUnderTheThresholdIsNotLearntAsLegitimateClients) {
  // A botnet in one /24: blocked by its prefix.
  int64_t t = 0;
  for (; t < 4; ++t) window(t, 20000, {}, testing::sources("203.0.113", 1, 10, 2000));
  ASSERT_NE(order(), nullptr);
  EXPECT_EQ(order()->spec.match.describe(), "drop any 203.0.113.0/24:any -> any:any");
  const std::string id = order()->id;
  // The windows as the rule cuts it off: under the threshold, the same
  // sources certain among the victim's top ones, while the rule drops the rest.
  uint64_t dropped = 0;
  for (int64_t end = t + 12; t < end; ++t) {
    dropped += 18000;
    window(t, 300, {{id, dropped, dropped * 60}}, testing::sources("203.0.113", 1, 10, 30));
  }
  EXPECT_EQ(planner_->counters().skippedLegit, 0u)
      << "the attack's own sources were taken for the victim's clients";
  EXPECT_EQ(order()->state, "active");
}

TEST_F(DroppingIncidentTest, ClientsAreLearntOncePerSecondOfDataTimeWhateverTheWindow) {
  // A sensor with 100 ms windows: its victim's 5 clients, quiet traffic.
  Incident inc;
  IncidentMember member;
  member.sensorId = "alpha";
  member.victim = *common::IpAddress::parse(kVictim);
  inc.members.push_back(member);
  const auto clients = *common::Prefix::parse("192.0.2.0/24");
  auto window100 = [&](int64_t k, const char* from = "192.0.2") {
    testing::VictimSpec v;
    v.address = kVictim;
    v.vectors = {{wire::Vector::TCP_SYN, 5}};
    v.sources = testing::sources(from, 1, 5, 2);
    const int64_t start = kNow + k * kSecond / 10;
    testing::BuiltSummary s("alpha", start, 100, {v});
    tracker_->onSummary(s.reader(), start + kSecond / 10);
  };
  // 2.5 s: taught at 0, 1 and 2 s, still waiting (trusted after three more
  // lessons without an anomaly). Taught every window, 25 would be trusted.
  int64_t k = 0;
  for (; k < 25; ++k) window100(k);
  EXPECT_EQ(planner_->legitimateIn(inc, clients), std::make_pair(size_t{0}, size_t{0}));
  // The fourth lesson, at 3 s, trusts the first.
  for (; k < 31; ++k) window100(k);
  EXPECT_EQ(planner_->legitimateIn(inc, clients), std::make_pair(size_t{5}, size_t{5}));
  // A sensor whose clock went back a minute (a reset) is taught from its
  // new time on, not only once its data time passes the old schedule.
  const auto others = *common::Prefix::parse("198.51.100.0/24");
  for (k = -600; k < -569; ++k) window100(k, "198.51.100");
  EXPECT_EQ(planner_->legitimateIn(inc, others), std::make_pair(size_t{5}, size_t{10}));
}

TEST_F(DroppingIncidentTest, DropsUnderTheFloorDoNotHoldTheIncident) {
  // 500 pps dropped is under the SYN floor: the attack is over.
  int64_t t = attackThenDrops(30, 500);
  ASSERT_NE(order(), nullptr);
  ASSERT_EQ(incidents().size(), 1u);
  EXPECT_EQ(incidents()[0]["state"], "resolved");
  EXPECT_EQ(order()->state, "expired");
  EXPECT_LT(order()->expiresAtNs, kNow + t * kSecond);
}

// A busy window as a sensor sends it (100 victims, each with vectors,
// reflection ports, 20 top sources and top ports), decoded with the
// aggregator's own limits, goes through every stage that reads a summary.
// Several of them walk a victim's lists once per detection key, so the
// decoder's traversal budget must cover the stages' reads, not only the
// first validating walk (a 10-victim summary used to throw "Exceeded message
// traversal limit" in detection, after it was stored and before its ack).
TEST_F(DroppingIncidentTest, ABusySummaryOffTheWireGoesThroughEveryStage) {
  sensor::WindowStats w = bench::makeLoadWindow(100, 1000);
  w.startNs = kNow;
  const std::string bytes = sensor::encodeSummary(w, "alpha", 7, 1, 0, 0);
  common::EnvelopeDecoder decoder(common::DecodeLimits{config_.maxMessageBytes});
  ASSERT_EQ(decoder.decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())),
            common::EnvelopeReject::kNone)
      << decoder.detail();
  auto summary = decoder.envelope().getBody().getSummary();
  const int64_t now = kNow + kSecond;
  city_->touch("alpha", now);
  EXPECT_NO_THROW({
    dispatcher_->onCounters("alpha", summary);
    tracker_->onSummary(summary, now);
    tracker_->tick(now);
  });
  EXPECT_GE(tracker_->correlator().counters().opened, 1u);
}

}  // namespace
}  // namespace garda::aggregator
