// The aggregator's sensor link end to end in one process: a real
// AggregatorServer (ZAP, ROUTER, RocksDB in a temp dir) on an ipc:// socket,
// and a real CURVE DEALER speaking as a sensor.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <zmq.hpp>

#include "aggregator/server.h"
#include "aggregator/store.h"
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
    c.sensors.push_back({"alpha", "", sensor_.publicKey, std::nullopt});
    configure(c);
    config_ = c;
    aggregator_ = std::make_unique<AggregatorServer>(config_);
    thread_ = std::thread([this] { aggregator_->run(stop_, &reload_); });

    dealer_.set(zmq::sockopt::linger, 0);
    if (!config_.insecurePlaintext)
      common::makeCurveClient(dealer_, server_.publicKey, sensor_.secretKey);
    dealer_.connect(config_.listenSensors);
  }

  void TearDown() override {
    stopAggregator();
    std::filesystem::remove_all(dir_);
  }

  virtual void configure(common::AggregatorConfig&) {}

  void stopAggregator() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    aggregator_.reset();
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

  // garda-sensor's own link to this aggregator as sensor alpha, once it is
  // connected (or after a second). It keeps a reference to its config.
  std::unique_ptr<sensor::Uplink> connectedUplink(zmq::context_t& ctx) {
    sensorConfig_.id = "alpha";
    sensorConfig_.aggregator = config_.listenSensors;
    sensorConfig_.aggregatorPublicKey = server_.publicKey;
    sensorConfig_.secretKey = sensor_.secretKey;
    auto uplink = std::make_unique<sensor::Uplink>(
        ctx, sensorConfig_, sensor::Uplink::Identity{"test", "test"}, /*waitWhenFull=*/true);
    for (int i = 0; i < 50 && !uplink->connected(); ++i) uplink->poll(20);
    return uplink;
  }

  // Sends `windows` summaries, one a second of data time, and polls the
  // link until all are acked or `within` has passed.
  static void sendUntilAcked(sensor::Uplink& uplink, int windows, std::chrono::seconds within) {
    for (int i = 0; i < windows; ++i)
      uplink.sendSummary(window(1'700'000'000'000'000'000 + int64_t(i) * 1'000'000'000, 1000), 0);
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (uplink.backlog() > 0 && std::chrono::steady_clock::now() < deadline) uplink.poll(50);
  }

  // The acks that come within `within`, until `want` have come (those in an
  // ack's `more` each counted): by seq in arrival order, and how they came.
  struct Acks {
    std::map<uint64_t, std::vector<wire::AckStatus>> bySeq;
    size_t received = 0, messages = 0, largest = 0;  // acks, ack messages, most in one
  };
  Acks receiveAcks(size_t want, std::chrono::seconds within) {
    Acks acks;
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (acks.received < want && std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      zmq::message_t msg;
      while (dealer_.recv(msg, zmq::recv_flags::dontwait)) {
        common::EnvelopeDecoder d;
        EXPECT_EQ(d.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size())),
                  common::EnvelopeReject::kNone)
            << d.detail();
        if (d.envelope().getBody().which() != wire::Envelope::Body::ACK) continue;
        auto ack = d.envelope().getBody().getAck();
        acks.bySeq[ack.getSeq()].push_back(ack.getStatus());
        for (auto more : ack.getMore()) {
          EXPECT_EQ(more.getBootId(), ack.getBootId());
          acks.bySeq[more.getSeq()].push_back(more.getStatus());
        }
        acks.received += ack.getMore().size() + 1;
        acks.messages++;
        acks.largest = std::max<size_t>(acks.largest, ack.getMore().size() + 1);
      }
    }
    return acks;
  }

  size_t storedSummaries(size_t atMost) {
    Store store(config_.dataDir);
    size_t stored = 0;
    store.scanSummaries("alpha", 0, INT64_MAX, atMost,
                        [&](std::string_view, std::string_view) { ++stored; });
    return stored;
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
  common::SensorConfig sensorConfig_;
  std::unique_ptr<AggregatorServer> aggregator_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> reload_{false};
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

TEST_F(IngestOverCurve, BurstOfResendsStoredOnceAndAckedAfterTheirOriginals) {
  // 4000 windows in chunks of 500, each chunk sent again after the next
  // one: the resends meet their originals in the same drain, in a batch the
  // writer thread is still writing, or in the store, as timing has it.
  // Whichever, each window is stored once, and its DUPLICATE ack never
  // comes before its STORED one (a duplicate is acked only once the
  // original's write is done).
  constexpr uint64_t kWindows = 4000, kChunk = 500;
  std::vector<std::string> summaries;
  for (uint64_t seq = 1; seq <= kWindows; ++seq)
    summaries.push_back(sensor::encodeSummary(
        window(1'700'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000, 1000),
        "alpha", 7, seq, 0, 0));
  for (uint64_t chunk = 0; chunk <= kWindows / kChunk; ++chunk) {
    for (uint64_t i = chunk * kChunk; i < std::min(kWindows, (chunk + 1) * kChunk); ++i)
      send(summaries[i]);
    if (chunk > 0)
      for (uint64_t i = (chunk - 1) * kChunk; i < chunk * kChunk; ++i) send(summaries[i]);
  }
  const auto got = receiveAcks(2 * kWindows, std::chrono::seconds(20));
  ASSERT_EQ(got.received, 2 * kWindows);
  EXPECT_EQ(got.largest, 1u) << "its hello (none here) did not offer to take batched acks";
  for (uint64_t seq = 1; seq <= kWindows; ++seq) {
    const auto& acks = got.bySeq.at(seq);
    ASSERT_EQ(acks.size(), 2u) << seq;
    EXPECT_EQ(acks[0], wire::AckStatus::STORED) << seq;
    EXPECT_EQ(acks[1], wire::AckStatus::DUPLICATE) << seq;
  }
  // And in the store, once each.
  stopAggregator();
  EXPECT_EQ(storedSummaries(10 * kWindows), kWindows);
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

// The bytes of the next message of `kind` from the aggregator, or nothing
// within `ms`.
std::optional<std::string> receiveBytes(zmq::socket_t& dealer, wire::Envelope::Body::Which kind,
                                        int ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < deadline) {
    zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(50));
    zmq::message_t msg;
    if (!dealer.recv(msg, zmq::recv_flags::dontwait)) continue;
    common::EnvelopeDecoder d;
    if (d.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size())) ==
            common::EnvelopeReject::kNone &&
        d.envelope().getBody().which() == kind)
      return msg.to_string();
  }
  return std::nullopt;
}

bool receive(zmq::socket_t& dealer, wire::Envelope::Body::Which kind, int ms) {
  return receiveBytes(dealer, kind, ms).has_value();
}

bool packed(const std::string& bytes) {
  return common::isPackedWire(
      std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::string flat(const std::string& bytes) {
  return common::toFlat(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

std::string hello(const std::string& id, uint64_t boot) {
  capnp::MallocMessageBuilder m;
  auto h = common::initEnvelope(m).getBody().initHello();
  h.setSensorId(id);
  h.setBootId(boot);
  h.setWindowMs(1000);
  return common::encodeMessage(m);
}

TEST_F(IngestOverCurve, ASensorThatTakesAckBatchesGetsManyAcksAMessageEachOnceInOrder) {
  send([] {
    capnp::MallocMessageBuilder m;
    auto h = common::initEnvelope(m).getBody().initHello();
    h.setSensorId("alpha");
    h.setBootId(7);
    h.setWindowMs(1000);
    h.setTakesAckBatches(true);
    return common::encodeMessage(m);
  }());
  ASSERT_TRUE(receive(dealer_, wire::Envelope::Body::ORDER_SYNC, 2000));
  // 3000 windows at once, then the first 1000 again: the aggregator drains
  // them faster than one at a time while two batches are being written.
  constexpr uint64_t kWindows = 3000, kResent = 1000;
  std::vector<std::string> summaries;
  for (uint64_t seq = 1; seq <= kWindows; ++seq)
    summaries.push_back(sensor::encodeSummary(
        window(1'700'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000, 1000),
        "alpha", 7, seq, 0, 0));
  for (const auto& s : summaries) send(s);
  for (uint64_t i = 0; i < kResent; ++i) send(summaries[i]);
  const auto got = receiveAcks(kWindows + kResent, std::chrono::seconds(20));
  ASSERT_EQ(got.received, kWindows + kResent);
  for (uint64_t seq = 1; seq <= kWindows; ++seq) {
    const auto& acks = got.bySeq.at(seq);
    ASSERT_EQ(acks.size(), seq <= kResent ? 2u : 1u) << seq;
    EXPECT_EQ(acks[0], wire::AckStatus::STORED) << seq;
    if (seq <= kResent) {
      EXPECT_EQ(acks[1], wire::AckStatus::DUPLICATE) << seq;
    }
  }
  EXPECT_LT(got.messages, got.received) << "no ack message carried more than one ack";
  EXPECT_LE(got.largest, size_t{common::kMaxAcksPerMessage});
}

TEST_F(IngestOverCurve, HelloIsAnsweredWithAnOrderSyncAndThenHeartbeats) {
  send(hello("alpha", 7));
  EXPECT_TRUE(receive(dealer_, wire::Envelope::Body::ORDER_SYNC, 2000))
      << "every hello gets the sensor's active orders (none yet)";
  EXPECT_TRUE(receive(dealer_, wire::Envelope::Body::HEARTBEAT, 3000))
      << "the aggregator's loop heartbeats every connected sensor";
}

TEST_F(IngestOverCurve, ASummaryBatchIsStoredAndAckedAsIfEachSummaryCameAlone) {
  send(hello("alpha", 7));
  auto sync = receiveBytes(dealer_, wire::Envelope::Body::ORDER_SYNC, 2000);
  ASSERT_TRUE(sync);
  common::EnvelopeDecoder d;
  ASSERT_EQ(d.decode(std::span(reinterpret_cast<const uint8_t*>(sync->data()), sync->size())),
            common::EnvelopeReject::kNone);
  EXPECT_TRUE(d.envelope().getBody().getOrderSync().getTakesSummaryBatches())
      << "the answer to a hello says that this aggregator takes summary batches";

  const auto summary = [](uint64_t seq, const char* id = "alpha", int64_t offsetNs = 0) {
    return sensor::encodeSummary(
        window(1'700'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000 + offsetNs,
               1000),
        id, 7, seq, 0, 0);
  };
  // Windows 1..200 and, in the same batch: window 1 again, an insane
  // summary (201: its start is no multiple of its window), one claiming
  // another sensor (202), bytes that are no envelope and a hello.
  std::vector<std::string> parts;
  for (uint64_t seq = 1; seq <= 200; ++seq) parts.push_back(summary(seq));
  parts.push_back(parts[0]);
  parts.push_back(summary(201, "alpha", 1));
  parts.push_back(summary(202, "beta"));
  parts.push_back("no envelope at all");
  parts.push_back(hello("alpha", 7));
  const std::vector<std::string_view> first(parts.begin(), parts.end());
  send(common::encodeSummaryBatch(first));
  // Then windows 101..200 again, in a batch of their own.
  const std::vector<std::string_view> again(parts.begin() + 100, parts.begin() + 200);
  send(common::encodeSummaryBatch(again));

  auto acks = receiveAcks(200 + 1 + 1 + 1 + 100, std::chrono::seconds(20)).bySeq;
  for (uint64_t seq = 1; seq <= 200; ++seq) {
    const bool twice = seq == 1 || seq > 100;
    ASSERT_EQ(acks[seq].size(), twice ? 2u : 1u) << seq;
    EXPECT_EQ(acks[seq][0], wire::AckStatus::STORED) << seq;
    if (twice) {
      EXPECT_EQ(acks[seq][1], wire::AckStatus::DUPLICATE) << seq;
    }
  }
  ASSERT_EQ(acks[201].size(), 1u);
  EXPECT_EQ(acks[201][0], wire::AckStatus::INVALID);
  ASSERT_EQ(acks[202].size(), 1u);
  EXPECT_EQ(acks[202][0], wire::AckStatus::REFUSED);
  EXPECT_EQ(acks.size(), 202u) << "nothing else was answered";
  // The link still serves a summary sent alone.
  send(summary(203));
  auto alone = nextAck(203);
  ASSERT_TRUE(alone);
  EXPECT_EQ(alone->first, wire::AckStatus::STORED);
  stopAggregator();
  EXPECT_EQ(storedSummaries(1000), 201u);
}

TEST_F(IngestOverCurve, ABatchOverTheLimitIsRefusedAsInsaneAndTheLinkGoesOn) {
  // 257 summaries in one message: more than any sensor sends at once.
  capnp::MallocMessageBuilder m;
  auto list = common::initEnvelope(m).getBody().initSummaryBatch().initSummaries(
      common::kMaxSummariesPerBatch + 1);
  std::vector<std::string> parts;
  for (uint64_t seq = 1; seq <= common::kMaxSummariesPerBatch + 1; ++seq) {
    parts.push_back(sensor::encodeSummary(
        window(1'700'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000, 1000),
        "alpha", 7, seq, 0, 0));
    list.set(static_cast<unsigned>(seq - 1),
             capnp::Data::Reader(reinterpret_cast<const kj::byte*>(parts.back().data()),
                                 parts.back().size()));
  }
  send(common::encodeMessage(m));
  send(parts[0]);
  auto ack = nextAck(1);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->first, wire::AckStatus::STORED) << "the batch stored nothing, the link goes on";
  stopAggregator();
  EXPECT_EQ(storedSummaries(1000), 1u);
}

TEST_F(IngestOverCurve, ASensorWhoseSummariesAreAnsweredGetsNoHeartbeatsMeanwhile) {
  // Its acks show it that the aggregator's loop is alive; a heartbeat
  // (every second here) would only add a message at each end.
  send(hello("alpha", 7));
  ASSERT_TRUE(receive(dealer_, wire::Envelope::Body::ORDER_SYNC, 2000));
  size_t acks = 0, heartbeats = 0;
  const auto count = [&](std::chrono::milliseconds within) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
      zmq::pollitem_t item{dealer_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
      zmq::message_t msg;
      while (dealer_.recv(msg, zmq::recv_flags::dontwait)) {
        common::EnvelopeDecoder d;
        if (d.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size())) !=
            common::EnvelopeReject::kNone)
          continue;
        acks += d.envelope().getBody().which() == wire::Envelope::Body::ACK;
        heartbeats += d.envelope().getBody().which() == wire::Envelope::Body::HEARTBEAT;
      }
    }
  };
  // A window every 100 ms for 3 s (heartbeats counted from the first ack).
  for (uint64_t seq = 1; seq <= 30; ++seq) {
    send(sensor::encodeSummary(
        window(1'700'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000, 1000),
        "alpha", 7, seq, 0, 0));
    if (seq == 1) {
      ASSERT_TRUE(nextAck(1));
      acks = 1;
      heartbeats = 0;
    }
    count(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(acks, 30u);
  EXPECT_LE(heartbeats, 1u) << "3 s of answered summaries, and a heartbeat every second too";
  // Quiet again: heartbeats come back.
  heartbeats = 0;
  count(std::chrono::milliseconds(2500));
  EXPECT_GE(heartbeats, 1u);
}

TEST_F(IngestOverCurve, AnOlderSensorSpeakingFlatIsStoredAndAnsweredFlat) {
  // A sensor of a release before the packed wire, during a rolling upgrade.
  const std::string summary =
      sensor::encodeSummary(window(1'700'000'000'000'000'000, 1000), "alpha", 7, 1, 0, 0);
  ASSERT_TRUE(packed(summary));
  send(flat(hello("alpha", 7)));
  auto sync = receiveBytes(dealer_, wire::Envelope::Body::ORDER_SYNC, 2000);
  ASSERT_TRUE(sync);
  EXPECT_FALSE(packed(*sync)) << "what the aggregator sends a flat sensor is flat";
  send(flat(summary));
  auto ack = receiveBytes(dealer_, wire::Envelope::Body::ACK, 2000);
  ASSERT_TRUE(ack);
  EXPECT_FALSE(packed(*ack));
  common::EnvelopeDecoder d;
  ASSERT_EQ(d.decode(std::span(reinterpret_cast<const uint8_t*>(ack->data()), ack->size())),
            common::EnvelopeReject::kNone);
  EXPECT_EQ(d.envelope().getBody().getAck().getStatus(), wire::AckStatus::STORED);
  // Upgraded, it resends the same window packed: the same key, a duplicate,
  // and from then on it is answered packed.
  send(summary);
  ack = receiveBytes(dealer_, wire::Envelope::Body::ACK, 2000);
  ASSERT_TRUE(ack);
  EXPECT_TRUE(packed(*ack));
  ASSERT_EQ(d.decode(std::span(reinterpret_cast<const uint8_t*>(ack->data()), ack->size())),
            common::EnvelopeReject::kNone);
  EXPECT_EQ(d.envelope().getBody().getAck().getStatus(), wire::AckStatus::DUPLICATE);
  auto beat = receiveBytes(dealer_, wire::Envelope::Body::HEARTBEAT, 3000);
  ASSERT_TRUE(beat);
  EXPECT_TRUE(packed(*beat));
}

class IngestRateLimited : public IngestOverCurve {
 protected:
  void configure(common::AggregatorConfig& c) override { c.sensorRateLimit = 10; }

  // A hello, then one batch of 60 summaries against 10/s with 20 banked:
  // each summary takes a token from the sender's bucket as if it came alone,
  // so after the hello's token 19 are stored and 41 answered `throttled`.
  void expectABatchTakesATokenPerSummary() {
    send(hello("alpha", 7));
    ASSERT_TRUE(receive(dealer_, wire::Envelope::Body::ORDER_SYNC, 2000));
    std::vector<std::string> parts;
    for (uint64_t seq = 1; seq <= 60; ++seq)
      parts.push_back(sensor::encodeSummary(
          window(1'700'000'000'000'000'000 + static_cast<int64_t>(seq) * 1'000'000'000, 1000),
          "alpha", 7, seq, 0, 0));
    const std::vector<std::string_view> views(parts.begin(), parts.end());
    send(common::encodeSummaryBatch(views));
    const auto got = receiveAcks(60, std::chrono::seconds(10));
    ASSERT_EQ(got.received, 60u);
    size_t stored = 0, throttled = 0;
    for (const auto& [seq, statuses] : got.bySeq) {
      ASSERT_EQ(statuses.size(), 1u) << seq;
      stored += statuses[0] == wire::AckStatus::STORED;
      throttled += statuses[0] == wire::AckStatus::THROTTLED;
    }
    EXPECT_EQ(stored, 19u);
    EXPECT_EQ(throttled, 41u);
  }
};

TEST_F(IngestRateLimited, EachSummaryOfABatchTakesAToken) { expectABatchTakesATokenPerSummary(); }

// Plaintext (development only): no key, so the bucket is the connection's,
// for a batch's summaries as for the message that carries them.
class IngestRateLimitedPlaintext : public IngestRateLimited {
 protected:
  void configure(common::AggregatorConfig& c) override {
    c.sensorRateLimit = 10;
    c.insecurePlaintext = true;
  }
};

TEST_F(IngestRateLimitedPlaintext, ABatchTakesItsTokensFromItsConnectionsBucket) {
  expectABatchTakesATokenPerSummary();
}

TEST_F(IngestRateLimited, AFloodingSensorIsThrottledNotStoredAndStillServedLater) {
  // 10 messages/s with 2 s banked: of 60 sent at once about 20 pass.
  constexpr uint64_t kSent = 60;
  for (uint64_t seq = 1; seq <= kSent; ++seq)
    send(sensor::encodeSummary(window(1'700'000'000'000'000'000 + int64_t(seq) * 1'000'000'000, 1000),
                               "alpha", 7, seq, 0, 0));
  uint64_t stored = 0, throttled = 0;
  uint64_t firstThrottled = 0;
  for (uint64_t seq = 1; seq <= kSent; ++seq) {
    auto ack = nextAck(seq);
    ASSERT_TRUE(ack) << "every summary is answered, seq " << seq;
    if (ack->first == wire::AckStatus::STORED) ++stored;
    if (ack->first == wire::AckStatus::THROTTLED) {
      ++throttled;
      if (!firstThrottled) firstThrottled = seq;
    }
  }
  EXPECT_EQ(stored + throttled, kSent);
  EXPECT_GE(stored, 20u);
  EXPECT_LE(stored, 25u);
  // After a pause the bucket refills and the resend is stored.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  send(sensor::encodeSummary(
      window(1'700'000'000'000'000'000 + int64_t(firstThrottled) * 1'000'000'000, 1000), "alpha",
      7, firstThrottled, 0, 0));
  auto ack = nextAck(firstThrottled);
  ASSERT_TRUE(ack);
  EXPECT_EQ(ack->first, wire::AckStatus::STORED);
}

TEST_F(IngestRateLimited, AThrottledSensorKeepsItsSummariesAndGetsThemAllStored) {
  zmq::context_t ctx(1);
  auto uplink = connectedUplink(ctx);
  ASSERT_TRUE(uplink->connected());
  constexpr int kWindows = 40;
  sendUntilAcked(*uplink, kWindows, std::chrono::seconds(15));
  EXPECT_EQ(uplink->backlog(), 0u);
  EXPECT_EQ(uplink->counters().summariesAcked, uint64_t{kWindows});
  EXPECT_GT(uplink->counters().summariesThrottled, 0u) << "the limit must have been hit";
  EXPECT_EQ(uplink->counters().summariesRefused, 0u);
}

TEST_F(IngestOverCurve, ASensorsUplinkTakesBatchedAcks) {
  // The real sensor link offers batched acks in its hello and clears its
  // backlog by them: every window acked once, none refused, none resent.
  zmq::context_t ctx(1);
  auto uplink = connectedUplink(ctx);
  ASSERT_TRUE(uplink->connected());
  constexpr int kWindows = 900;
  sendUntilAcked(*uplink, kWindows, std::chrono::seconds(20));
  EXPECT_EQ(uplink->backlog(), 0u);
  EXPECT_EQ(uplink->counters().summariesAcked, uint64_t{kWindows});
  EXPECT_EQ(uplink->counters().summariesResent, 0u);
  EXPECT_EQ(uplink->counters().badMessages, 0u);
  EXPECT_GT(uplink->counters().ackBatches, 0u) << "no ack message answered more than one window";
}

TEST_F(IngestOverCurve, AnUplinkBacklogLargerThanZeroMQsQueueGoesOnAsTheQueueDrains) {
  // 3000 windows at once: ZeroMQ's queue takes 1000 (its high-water mark);
  // the rest go as it drains, each sent once, none after the 5 s no-ack
  // timeout (which resends the whole backlog).
  zmq::context_t ctx(1);
  auto uplink = connectedUplink(ctx);
  ASSERT_TRUE(uplink->connected());
  constexpr int kWindows = 3000;
  sendUntilAcked(*uplink, kWindows, std::chrono::seconds(20));
  EXPECT_EQ(uplink->backlog(), 0u);
  EXPECT_EQ(uplink->counters().summariesAcked, uint64_t{kWindows});
  EXPECT_EQ(uplink->counters().summariesSent, uint64_t{kWindows});
  EXPECT_EQ(uplink->counters().summariesResent, 0u);
}

TEST_F(IngestOverCurve, ASensorsUplinkSendsWhatWaitsForAcksInBatches) {
  // A sensor making windows faster than their acks come back (a replay, or
  // an aggregator behind): each window made while others are unacked waits
  // for their acks and goes with the rest that waited, in one message. Each
  // is sent once, acked once and stored once.
  zmq::context_t ctx(1);
  auto uplink = connectedUplink(ctx);
  ASSERT_TRUE(uplink->connected());
  for (int i = 0; i < 100 && !uplink->sendsBatches(); ++i) uplink->poll(20);
  ASSERT_TRUE(uplink->sendsBatches()) << "no orderSync offering batches came";
  constexpr int kWindows = 2000;
  for (int i = 0; i < kWindows; ++i) {
    uplink->sendSummary(window(1'700'000'000'000'000'000 + int64_t(i) * 1'000'000'000, 1000), 0);
    uplink->poll(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (uplink->backlog() > 0 && std::chrono::steady_clock::now() < deadline) uplink->poll(50);
  EXPECT_EQ(uplink->backlog(), 0u);
  EXPECT_EQ(uplink->counters().summariesAcked, uint64_t{kWindows});
  EXPECT_EQ(uplink->counters().summariesSent, uint64_t{kWindows});
  EXPECT_EQ(uplink->counters().summariesResent, 0u);
  EXPECT_EQ(uplink->counters().summariesRefused, 0u);
  EXPECT_GT(uplink->counters().summaryBatchesSent, 0u) << "no message carried more than one window";
  uplink.reset();
  stopAggregator();
  EXPECT_EQ(storedSummaries(10 * kWindows), size_t{kWindows});
}

// An aggregator of a release before summary batches, as far as the sensor
// sees it: a CURVE ROUTER whose orderSync does not offer batches and that
// acks each summary it reads. The uplink never sends it a batch.
TEST(UplinkToAnOlderAggregator, SendsEachSummaryAlone) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("garda-uplink-older-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto server = common::generateCurveKeyPair(), sensorKeys = common::generateCurveKeyPair();
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.set(zmq::sockopt::curve_server, 1);
  router.set(zmq::sockopt::curve_secretkey, server.secretKey);
  const std::string endpoint = "ipc://" + (dir / "older.sock").string();
  router.bind(endpoint);
  common::SensorConfig config;
  config.id = "alpha";
  config.aggregator = endpoint;
  config.aggregatorPublicKey = server.publicKey;
  config.secretKey = sensorKeys.secretKey;
  sensor::Uplink uplink(ctx, config, {"test", "test"}, /*waitWhenFull=*/true);

  size_t summaries = 0, batches = 0, syncs = 0;
  const auto serve = [&] {
    zmq::message_t id, msg;
    while (router.recv(id, zmq::recv_flags::dontwait)) {
      if (!router.recv(msg, zmq::recv_flags::dontwait)) break;
      common::EnvelopeDecoder d;
      if (d.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size())) !=
          common::EnvelopeReject::kNone)
        continue;
      auto body = d.envelope().getBody();
      capnp::MallocMessageBuilder reply;
      if (body.which() == wire::Envelope::Body::HELLO) {
        common::initEnvelope(reply).getBody().initOrderSync();  // no takesSummaryBatches
        ++syncs;
      } else if (body.which() == wire::Envelope::Body::SUMMARY) {
        auto ack = common::initEnvelope(reply).getBody().initAck();
        ack.setBootId(body.getSummary().getBootId());
        ack.setSeq(body.getSummary().getSeq());
        ack.setStatus(wire::AckStatus::STORED);
        ++summaries;
      } else {
        batches += body.which() == wire::Envelope::Body::SUMMARY_BATCH;
        continue;
      }
      router.send(id, zmq::send_flags::sndmore);
      router.send(zmq::buffer(common::encodeMessage(reply)), zmq::send_flags::none);
    }
  };
  for (int i = 0; i < 100 && syncs == 0; ++i) {
    uplink.poll(10);
    serve();
  }
  ASSERT_EQ(syncs, 1u);
  for (int i = 0; i < 20; ++i) {  // the orderSync reaches the uplink
    uplink.poll(5);
    serve();
  }
  EXPECT_FALSE(uplink.sendsBatches());
  constexpr int kWindows = 300;
  for (int i = 0; i < kWindows; ++i) {
    sensor::WindowStats w;
    w.startNs = 1'700'000'000'000'000'000 + int64_t(i) * 1'000'000'000;
    w.windowMs = 1000;
    uplink.sendSummary(w, 0);
    uplink.poll(0);
    serve();
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (uplink.backlog() > 0 && std::chrono::steady_clock::now() < deadline) {
    uplink.poll(10);
    serve();
  }
  EXPECT_EQ(uplink.backlog(), 0u);
  EXPECT_EQ(summaries, size_t{kWindows});
  EXPECT_EQ(batches, 0u);
  EXPECT_EQ(uplink.counters().summaryBatchesSent, 0u);
  std::filesystem::remove_all(dir);
}

// SIGHUP's reload, driven as main() drives it (the flag run() polls), with
// aggregator.toml and its key files on disk.
class IngestReload : public IngestOverCurve {
 protected:
  void configure(common::AggregatorConfig& c) override {
    const auto keys = dir_ / "keys";
    std::filesystem::create_directories(keys);
    common::writeCurveKeyFiles(keys.string(), "aggregator", server_);
    common::writeCurveKeyFiles(keys.string(), "alpha", sensor_);
    c.path = (dir_ / "aggregator.toml").string();
    c.secretKeyFile = (keys / "aggregator.key").string();
    base_ = "[aggregator]\nlisten_sensors = \"" + c.listenSensors + "\"\nlisten_console = \"" +
            c.listenConsole + "\"\nsecret_key = \"" + (keys / "aggregator.key").string() +
            "\"\ndata_dir = \"" + c.dataDir + "\"\n";
    alpha_ = "[[sensor]]\nid = \"alpha\"\npublic_key = \"" + (keys / "alpha.pub").string() + "\"\n";
    write(base_ + alpha_);
  }

  void write(const std::string& text) { std::ofstream(dir_ / "aggregator.toml") << text; }

  // Returns once the server has taken the flag; what is sent after that is
  // handled after the reload (one thread does both, in that order).
  void reload() {
    reload_.store(true);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (reload_.load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_FALSE(reload_.load()) << "the server loop did not take the reload";
  }

  wire::AckStatus summary(uint64_t seq) {
    send(sensor::encodeSummary(window(1'700'000'000'000'000'000 + int64_t(seq) * 1'000'000'000,
                                      1000),
                               "alpha", 7, seq, 0, 0));
    auto ack = nextAck(seq);
    EXPECT_TRUE(ack) << "seq " << seq << " unanswered";
    if (ack) lastReason_ = ack->second;
    return ack ? ack->first : wire::AckStatus::INVALID;
  }

  std::string base_, alpha_, lastReason_;
};

TEST_F(IngestReload, ARemovedSensorIsRefusedOnItsOpenConnectionAndAuditedOnce) {
  EXPECT_EQ(summary(1), wire::AckStatus::STORED);
  write(base_);
  reload();
  EXPECT_EQ(summary(2), wire::AckStatus::REFUSED);
  EXPECT_NE(lastReason_.find("no longer listed"), std::string::npos) << lastReason_;
  EXPECT_EQ(summary(3), wire::AckStatus::REFUSED);

  // A config with an error is not taken: alpha stays removed.
  write(base_ + "[[sensor]]\nid = \"bravo\"\npublic_key = \"/nonexistent/bravo.pub\"\n");
  reload();
  EXPECT_EQ(summary(4), wire::AckStatus::REFUSED);

  // Listed again: the same connection (no new handshake) is served again.
  write(base_ + alpha_);
  reload();
  EXPECT_EQ(summary(5), wire::AckStatus::STORED);

  stopAggregator();
  Store store(config_.dataDir);
  std::vector<std::string> refusals;
  store.forEachAudit(0, [&](std::string_view json) {
    if (json.find("no longer listed") != std::string_view::npos) refusals.emplace_back(json);
  });
  ASSERT_EQ(refusals.size(), 1u) << "one audit record per removed sensor and reload";
  EXPECT_NE(refusals[0].find("\"who\":\"sensor:alpha\""), std::string::npos) << refusals[0];
  EXPECT_NE(refusals[0].find("\"action\":\"refused\""), std::string::npos) << refusals[0];
}

TEST_F(IngestReload, ABrokenConfigKeepsTheRunningLists) {
  write(base_ + "[[sensor]]\nid = \"Not A Valid Id\"\npublic_key = \"x\"\n");
  reload();
  EXPECT_EQ(summary(1), wire::AckStatus::STORED) << "alpha is still listed";
}

}  // namespace
}  // namespace garda::aggregator
