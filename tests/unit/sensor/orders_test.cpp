// The sensor's side of the order channel: safety checks, reconciliation with
// orderSync, expiry, and what it reports.
#include <gtest/gtest.h>

#include <capnp/message.h>

#include "common/envelope.h"
#include "sensor/orders.h"
#include "sensor/uplink.h"

namespace garda::sensor {
namespace {

constexpr int64_t kNow = 1'800'000'000'000'000'000;
constexpr int64_t kSecond = 1'000'000'000;

// Records what the manager asks of a backend; can be told to fail.
class RecordingEnforcer final : public Enforcer {
 public:
  const char* name() const noexcept override { return "recording"; }
  std::string apply(const Rule& r) override {
    if (!failWith.empty()) return failWith;
    applied.push_back(r.id + "@" + std::to_string(r.expiresAtNs));
    return {};
  }
  std::string remove(const Rule& r) override {
    removed.push_back(r.id);
    return {};
  }
  uint64_t packetsDropped(const Rule&) override { return 42; }
  bool readDropCounts(const std::vector<const Rule*>& rules, std::vector<DropCount>& out) override {
    if (!counting) return false;
    reads++;
    out.clear();
    for (const Rule* r : rules) out.push_back({r->id.size() * 100, r->id.size() * 6000});
    return true;
  }
  std::vector<std::string> applied, removed;
  std::string failWith;
  bool counting = false;
  int reads = 0;
};

struct OrderSpecForTest {
  explicit OrderSpecForTest(std::string orderId) : id(std::move(orderId)) {}
  OrderSpecForTest& src(std::string p) { source = std::move(p); return *this; }
  OrderSpecForTest& dst(std::string p) { destination = std::move(p); return *this; }
  OrderSpecForTest& expires(int64_t ns) { expiresAtNs = ns; return *this; }
  OrderSpecForTest& proto(uint8_t p) { protocol = p; return *this; }
  OrderSpecForTest& withdraw() { remove = true; return *this; }

  std::string id;
  std::string source = "203.0.113.0/24";
  std::string destination;  // empty: any
  int64_t expiresAtNs = kNow + 60 * kSecond;
  bool remove = false;
  uint8_t protocol = 0;
  uint16_t sourcePort = 0;
};

void fill(wire::Order::Builder o, const OrderSpecForTest& s) {
  o.setOrderId(s.id);
  if (!s.source.empty()) common::writePrefix(o.initSource(), *common::Prefix::parse(s.source));
  if (!s.destination.empty())
    common::writePrefix(o.initDestination(), *common::Prefix::parse(s.destination));
  o.setExpiresAtNs(s.expiresAtNs);
  o.setRemove(s.remove);
  o.setProtocol(s.protocol);
  o.setSourcePort(s.sourcePort);
  o.setReason("test");
  o.setCreatedBy("console:analyst");
}

class OrderManagerTest : public ::testing::Test {
 protected:
  static common::SensorConfig makeConfig() {
    common::SensorConfig c;
    c.id = "dukcapil";
    c.neverBlock = {*common::Prefix::parse("198.18.100.0/24")};
    c.maxRules = 3;
    return c;
  }

  std::vector<OrderReportOut> order(const OrderSpecForTest& s, int64_t now = kNow) {
    capnp::MallocMessageBuilder m;
    auto o = m.initRoot<wire::Order>();
    fill(o, s);
    return orders_.onOrder(o.asReader(), now);
  }

  std::vector<OrderReportOut> sync(const std::vector<OrderSpecForTest>& list, int64_t now = kNow) {
    capnp::MallocMessageBuilder m;
    auto l = m.initRoot<wire::OrderSync>().initOrders(static_cast<unsigned>(list.size()));
    for (unsigned i = 0; i < list.size(); ++i) fill(l[i], list[i]);
    return orders_.onSync(l.asReader(), now);
  }

  common::SensorConfig config_ = makeConfig();
  RecordingEnforcer enforcer_;
  OrderManager orders_{config_, enforcer_};
};

TEST_F(OrderManagerTest, AppliesAnOrderAndReportsItWithTheBackendsCount) {
  auto r = order(OrderSpecForTest("o1"));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].orderId, "o1");
  EXPECT_EQ(r[0].state, wire::OrderState::APPLIED);
  EXPECT_EQ(r[0].packetsDropped, 42u);
  EXPECT_EQ(enforcer_.applied.size(), 1u);
  EXPECT_EQ(orders_.active(), 1u);
}

TEST_F(OrderManagerTest, RefusesOrdersTouchingTheNeverBlockList) {
  auto bySource = order(OrderSpecForTest("o1").src("198.18.100.7/32"));
  EXPECT_EQ(bySource[0].state, wire::OrderState::REJECTED);
  EXPECT_NE(bySource[0].reason.find("never_block"), std::string::npos) << bySource[0].reason;
  // A wider prefix that holds a never-block address is refused too.
  auto wider = order(OrderSpecForTest("o2").src("198.18.0.0/16"));
  EXPECT_EQ(wider[0].state, wire::OrderState::REJECTED);
  // So is cutting off a never-block destination.
  auto byDestination = order(OrderSpecForTest("o3").src("").dst("198.18.100.1/32").proto(17));
  EXPECT_EQ(byDestination[0].state, wire::OrderState::REJECTED);
  EXPECT_TRUE(enforcer_.applied.empty());
  EXPECT_EQ(orders_.counters().rejected, 3u);
}

TEST_F(OrderManagerTest, RefusesAnOrderMatchingEverything) {
  config_.neverBlock.clear();
  OrderManager orders(config_, enforcer_);
  capnp::MallocMessageBuilder m;
  auto o = m.initRoot<wire::Order>();
  fill(o, OrderSpecForTest("all").src(""));
  auto r = orders.onOrder(o.asReader(), kNow);
  EXPECT_EQ(r[0].state, wire::OrderState::REJECTED);
  EXPECT_EQ(r[0].reason, "matches all traffic");
}

TEST_F(OrderManagerTest, RefusesPastTheRuleCapButRenewsExistingRules) {
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(order(OrderSpecForTest("o" + std::to_string(i)).src("203.0.113." + std::to_string(i) + "/32"))[0].state,
              wire::OrderState::APPLIED);
  auto over = order(OrderSpecForTest("o9").src("203.0.113.9/32"));
  EXPECT_EQ(over[0].state, wire::OrderState::REJECTED);
  EXPECT_NE(over[0].reason.find("max_rules = 3"), std::string::npos) << over[0].reason;
  // A renewal of a rule already held is not a new rule.
  auto renewed = order(OrderSpecForTest("o1").src("203.0.113.1/32").expires(kNow + 120 * kSecond));
  EXPECT_EQ(renewed[0].state, wire::OrderState::APPLIED);
  EXPECT_EQ(enforcer_.applied.back(), "o1@" + std::to_string(kNow + 120 * kSecond));
}

TEST_F(OrderManagerTest, AnOrderAlreadyExpiredIsReportedExpiredAndNotInstalled) {
  auto r = order(OrderSpecForTest("late").expires(kNow - kSecond));
  EXPECT_EQ(r[0].state, wire::OrderState::EXPIRED);
  EXPECT_TRUE(enforcer_.applied.empty());
}

TEST_F(OrderManagerTest, ExpiresRulesOnTimeAndReportsThem) {
  order(OrderSpecForTest("short").expires(kNow + 2 * kSecond));
  order(OrderSpecForTest("long").src("203.0.114.0/24").expires(kNow + 60 * kSecond));
  EXPECT_TRUE(orders_.tick(kNow + kSecond).empty());
  auto r = orders_.tick(kNow + 2 * kSecond);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].orderId, "short");
  EXPECT_EQ(r[0].state, wire::OrderState::EXPIRED);
  EXPECT_EQ(enforcer_.removed, std::vector<std::string>{"short"});
  EXPECT_EQ(orders_.active(), 1u);
}

TEST_F(OrderManagerTest, RemoveWithdrawsTheRule) {
  order(OrderSpecForTest("o1"));
  auto r = order(OrderSpecForTest("o1").withdraw());
  EXPECT_EQ(r[0].state, wire::OrderState::REMOVED);
  EXPECT_EQ(enforcer_.removed, std::vector<std::string>{"o1"});
  EXPECT_EQ(orders_.active(), 0u);
}

TEST_F(OrderManagerTest, SyncAppliesTheMissingKeepsTheHeldAndRemovesTheStale) {
  order(OrderSpecForTest("keep"));
  order(OrderSpecForTest("stale").src("203.0.114.0/24"));
  enforcer_.applied.clear();
  auto r = sync({OrderSpecForTest("keep"), OrderSpecForTest("new").src("203.0.115.0/24")});
  // One report per listed order, plus one for the stale rule removed.
  ASSERT_EQ(r.size(), 3u);
  std::map<std::string, wire::OrderState> states;
  for (const auto& x : r) states[x.orderId] = x.state;
  EXPECT_EQ(states["keep"], wire::OrderState::APPLIED);
  EXPECT_EQ(states["new"], wire::OrderState::APPLIED);
  EXPECT_EQ(states["stale"], wire::OrderState::REMOVED);
  // "keep" was held unchanged: not installed again.
  EXPECT_EQ(enforcer_.applied, std::vector<std::string>{"new@" + std::to_string(kNow + 60 * kSecond)});
  EXPECT_EQ(enforcer_.removed, std::vector<std::string>{"stale"});
  EXPECT_EQ(orders_.active(), 2u);
}

TEST_F(OrderManagerTest, ABackendFailureIsReportedRejectedWithItsReason) {
  enforcer_.failWith = "table garda: permission denied";
  auto r = order(OrderSpecForTest("o1"));
  EXPECT_EQ(r[0].state, wire::OrderState::REJECTED);
  EXPECT_EQ(r[0].reason, "recording: table garda: permission denied");
  EXPECT_EQ(orders_.active(), 0u);
}

TEST_F(OrderManagerTest, SameIdWithAnotherMatchReplacesTheOldRule) {
  order(OrderSpecForTest("o1").src("203.0.113.0/24"));
  order(OrderSpecForTest("o1").src("203.0.114.0/24"));
  EXPECT_EQ(enforcer_.removed, std::vector<std::string>{"o1"});
  EXPECT_EQ(enforcer_.applied.size(), 2u);
  EXPECT_EQ(orders_.active(), 1u);
}

// ---- drop counters in summaries ----------------------------------------------

TEST_F(OrderManagerTest, DropCountsAreReadInOneGoForEveryActiveRule) {
  EXPECT_TRUE(orders_.dropCounts().empty()) << "no rules: nothing to read";
  order(OrderSpecForTest("o1"));
  order(OrderSpecForTest("order-22").src("192.0.2.0/24"));
  EXPECT_TRUE(orders_.dropCounts().empty()) << "a backend that cannot count reports none";
  enforcer_.counting = true;
  auto counts = orders_.dropCounts();
  EXPECT_EQ(enforcer_.reads, 1);
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[0].orderId, "o1");
  EXPECT_EQ(counts[0].count.packets, 200u);
  EXPECT_EQ(counts[1].orderId, "order-22");
  EXPECT_EQ(counts[1].count.bytes, 48000u);
  order(OrderSpecForTest("o1").withdraw());
  EXPECT_EQ(orders_.dropCounts().size(), 1u) << "a removed rule is no longer reported";
}

TEST_F(OrderManagerTest, ASummaryCarriesTheCountersAndTheAggregatorChecksThem) {
  auto decode = [](const std::string& bytes, common::EnvelopeDecoder& d) {
    return d.decode(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  };
  WindowStats w;
  w.startNs = kNow;
  w.windowMs = 1000;
  const std::string bytes =
      encodeSummary(w, "dukcapil", 7, 1, 0, 0, {{"o1", {5, 300}}, {"o2", {0, 0}}});
  common::EnvelopeDecoder d;
  ASSERT_EQ(decode(bytes, d), common::EnvelopeReject::kNone) << d.detail();
  auto c = d.envelope().getBody().getSummary().getOrderCounters();
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(std::string(c[0].getOrderId().cStr()), "o1");
  EXPECT_EQ(c[0].getPackets(), 5u);
  EXPECT_EQ(c[0].getBytes(), 300u);
  // Without counters the list is empty (exec, dry-run).
  // (The decoder reads the bytes in place: they must outlive the reads.)
  const std::string none = encodeSummary(w, "dukcapil", 7, 2, 0, 0);
  ASSERT_EQ(decode(none, d), common::EnvelopeReject::kNone);
  EXPECT_EQ(d.envelope().getBody().getSummary().getOrderCounters().size(), 0u);
  // Insane counters are refused with the reason.
  ASSERT_EQ(decode(encodeSummary(w, "dukcapil", 7, 3, 0, 0, {{std::string(65, 'x'), {1, 60}}}), d),
            common::EnvelopeReject::kInsane);
  EXPECT_NE(d.detail().find("order counter id length"), std::string::npos) << d.detail();
  ASSERT_EQ(decode(encodeSummary(w, "dukcapil", 7, 4, 0, 0, {{"o1", {10, 5}}}), d),
            common::EnvelopeReject::kInsane);
  EXPECT_NE(d.detail().find("fewer bytes than packets"), std::string::npos) << d.detail();
}

}  // namespace
}  // namespace garda::sensor
