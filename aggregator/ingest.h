#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "aggregator/city_view.h"
#include "aggregator/dispatch.h"
#include "aggregator/incidents.h"
#include "aggregator/store.h"
#include "common/envelope.h"
#include "common/log.h"

namespace garda::aggregator {

// Why a sensor message was not taken; stable names for metrics.
enum class IngestReject : uint8_t {
  kDecode = 0,       // EnvelopeDecoder said no (see its own counters)
  kNoIdentity,       // no ZAP User-Id: should not happen with CURVE on
  kWrongSensorId,    // message claims a sensor id other than its key's
  kUnexpectedBody,   // a console or aggregator message on the sensor socket
  kStoreError,
  kRateLimited,      // over sensor_rate_limit messages per second
  kUnlisted,         // plaintext (insecure) message for a sensor not listed
  kCount
};
const char* ingestRejectName(IngestReject r) noexcept;

struct IngestCounters {
  uint64_t messages = 0;
  uint64_t hellos = 0;
  uint64_t summariesStored = 0;
  uint64_t summariesDuplicate = 0;
  uint64_t heartbeats = 0;
  uint64_t alerts = 0;
  uint64_t orderReports = 0;
  std::array<uint64_t, static_cast<size_t>(IngestReject::kCount)> rejects{};
  std::array<uint64_t, static_cast<size_t>(common::EnvelopeReject::kCount)> decodeRejects{};
};

// Takes in what sensors send on the aggregator's ROUTER socket: checks that
// each message speaks for the sensor its CURVE key is bound to, writes
// summaries to the store in one batch per call, and only then acks them. A
// bad message is counted, logged at a limited rate and answered where the
// sender can use the answer; it never closes the connection. Single-threaded.
class SensorIngest {
 public:
  SensorIngest(zmq::socket_t& router, Store& store, CityView& city, Dispatcher& dispatcher,
               const common::AggregatorConfig& config);
  void reload(const common::AggregatorConfig& config);
  // Fresh summaries and alerts also go to detection (optional).
  void setIncidentTracker(IncidentTracker* tracker) noexcept { incidents_ = tracker; }
  // Every freshly stored summary is also shown to `fn` (metrics; optional).
  void setSummaryObserver(std::function<void(wire::Summary::Reader)> fn) { observer_ = std::move(fn); }

  // Receives and handles up to `maxMessages` waiting messages.
  void drain(size_t maxMessages);
  const IngestCounters& counters() const noexcept { return counters_; }

 private:
  struct Ack {
    std::string routingId;
    uint64_t bootId;
    uint64_t seq;
    wire::AckStatus status;
    std::string reason;
  };
  void handle(const std::string& routingId, zmq::message_t& msg, Store::Batch& batch);
  void reject(IngestReject why, const std::string& who, const std::string& detail);
  void sendAck(const Ack& ack);
  void auditRefusal(const std::string& keyId, const std::string& claimed, const char* what);
  // Takes one token from the sensor's bucket; false when it is empty.
  bool admit(const std::string& who, int64_t nowNs);

  // A token bucket per sender: `rate` per second, up to 2 s worth banked.
  struct Bucket {
    double tokens = 0;
    int64_t lastNs = 0;
  };

  zmq::socket_t& router_;
  Store& store_;
  CityView& city_;
  Dispatcher& dispatcher_;
  IncidentTracker* incidents_ = nullptr;
  std::function<void(wire::Summary::Reader)> observer_;
  common::EnvelopeDecoder decoder_;
  double ratePerS_ = 5000;
  std::map<std::string, Bucket> buckets_;
  common::LogLimiter logLimiter_;
  std::vector<Ack> acks_;
  IngestCounters counters_;
};

}  // namespace garda::aggregator
