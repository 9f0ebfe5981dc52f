// The aggregator's sensor link end to end in one process: a real
// AggregatorServer (ZAP, ROUTER, RocksDB in a temp dir) on an ipc:// socket,
// and a real CURVE DEALER speaking as a sensor.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>
#include <zmq.hpp>

#include "aggregator/server.h"
#include "common/envelope.h"
#include "common/keys.h"
#include "common/zmq_link.h"
#include "sensor/uplink.h"

namespace garda::aggregator {
namespace {

class IngestOverCurve : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("garda-ingest-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    server_ = common::generateCurveKeyPair();
    sensor_ = common::generateCurveKeyPair();
    common::AggregatorConfig c;
    c.listenSensors = "ipc://" + (dir_ / "sensors.sock").string();
    c.listenConsole = "ipc://" + (dir_ / "console.sock").string();
    c.secretKey = server_.secretKey;
    c.dataDir = (dir_ / "data").string();
    c.sensors.push_back({"alpha", "", sensor_.publicKey});
    config_ = c;
    aggregator_ = std::make_unique<AggregatorServer>(config_);
    thread_ = std::thread([this] { aggregator_->run(stop_); });

    dealer_.set(zmq::sockopt::linger, 0);
    common::makeCurveClient(dealer_, server_.publicKey, sensor_.secretKey);
    dealer_.connect(config_.listenSensors);
  }

  void TearDown() override {
    stop_.store(true);
    thread_.join();
    aggregator_.reset();
    std::filesystem::remove_all(dir_);
  }

  void send(const std::string& bytes) { dealer_.send(zmq::buffer(bytes), zmq::send_flags::none); }

  // The next ack, or nothing within two seconds.
  std::optional<std::pair<wire::AckStatus, std::string>> nextAck(uint64_t seq) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      zmq::message_t msg;
      if (!dealer_.recv(msg, zmq::recv_flags::dontwait)) continue;
      common::EnvelopeDecoder d;
      if (d.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size())) !=
          common::EnvelopeReject::kNone)
        continue;
      auto body = d.envelope().getBody();
      if (body.which() != wire::Envelope::Body::ACK || body.getAck().getSeq() != seq) continue;
      return std::pair{body.getAck().getStatus(), std::string(body.getAck().getReason().cStr())};
    }
    return std::nullopt;
  }

  static sensor::WindowStats window(int64_t startNs, unsigned windowMs) {
    sensor::WindowStats w;
    w.startNs = startNs;
    w.windowMs = windowMs;
    w.totals.packets = 10;
    w.totals.bytes = 640;
    w.totals.tcp = 10;
    return w;
  }

  std::filesystem::path dir_;
  common::CurveKeyPair server_, sensor_;
  common::AggregatorConfig config_;
  std::unique_ptr<AggregatorServer> aggregator_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  zmq::context_t ctx_{1};
  zmq::socket_t dealer_{ctx_, zmq::socket_type::dealer};
};

TEST_F(IngestOverCurve, StoresThenAcksAndAResendIsADuplicate) {
  const std::string summary =
      sensor::encodeSummary(window(1'700'000'000'000'000'000, 1000), "alpha", 7, 1, 0, 0);
  send(summary);
  auto first = nextAck(1);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->first, wire::AckStatus::STORED);
  send(summary);
  auto second = nextAck(1);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->first, wire::AckStatus::DUPLICATE);
}

TEST_F(IngestOverCurve, InsaneSummaryIsAnsweredInvalidWithTheReason) {
  // A window start that is not a multiple of the window: well-formed, untrue.
  send(sensor::encodeSummary(window(1'700'000'000'000'000'001, 1000), "alpha", 7, 1, 0, 0));
  auto ack = nextAck(1);
  ASSERT_TRUE(ack) << "an insane summary must still be answered, or the sensor resends forever";
  EXPECT_EQ(ack->first, wire::AckStatus::INVALID);
  EXPECT_NE(ack->second.find("not a multiple of the window"), std::string::npos) << ack->second;
}

TEST_F(IngestOverCurve, GarbageAndOversizedFramesDoNotCloseTheLink) {
  send("this is not a capnp message");
  send(std::string(4096, '\xff'));
  send(std::string(config_.maxMessageBytes - 8, '\0'));
  send(sensor::encodeSummary(window(1'700'000'000'000'000'000, 1000), "alpha", 7, 5, 0, 0));
  auto ack = nextAck(5);
  ASSERT_TRUE(ack) << "the link must survive bad frames";
  EXPECT_EQ(ack->first, wire::AckStatus::STORED);
}

TEST_F(IngestOverCurve, SummaryClaimingAnotherSensorIsRefused) {
  send(sensor::encodeSummary(window(1'700'000'000'000'000'000, 1000), "bravo", 7, 1, 0, 0));
  auto ack = nextAck(1);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->first, wire::AckStatus::REFUSED);
  EXPECT_NE(ack->second.find("bound to sensor 'alpha'"), std::string::npos) << ack->second;
}

}  // namespace
}  // namespace garda::aggregator
