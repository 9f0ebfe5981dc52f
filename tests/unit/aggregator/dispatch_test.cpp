// The aggregator's end of the order channel, on a real RocksDB in a temp dir:
// persisted before sent, refused when unsafe, synced on hello, retried,
// expired, and kept across a restart.
#include <gtest/gtest.h>

#include <filesystem>

#include "aggregator/dispatch.h"
#include "common/envelope.h"

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
    config_.sensors = {{"alpha", "", ""}, {"bravo", "", ""}};
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
