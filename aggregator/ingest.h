#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

#include "aggregator/city_view.h"
#include "aggregator/dispatch.h"
#include "aggregator/evidence.h"
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
  kUnlisted,         // a sensor not listed (plaintext, or removed by a reload)
  kCount
};
const char* ingestRejectName(IngestReject r) noexcept;

struct IngestCounters {
  uint64_t messages = 0;
  uint64_t hellos = 0;
  uint64_t summariesStored = 0;
  uint64_t summariesDuplicate = 0;
  uint64_t summaryBatches = 0;  // messages of several summaries (each also counted above)
  uint64_t heartbeats = 0;
  uint64_t alerts = 0;
  uint64_t orderReports = 0;
  uint64_t evidence = 0;
  std::array<uint64_t, static_cast<size_t>(IngestReject::kCount)> rejects{};
  std::array<uint64_t, static_cast<size_t>(common::EnvelopeReject::kCount)> decodeRejects{};
};

// Takes in what sensors send on the aggregator's ROUTER socket: checks that
// each message speaks for the sensor its CURVE key is bound to, writes
// summaries to the store in one batch per drain, and only then acks them. A
// bad message is counted, logged at a limited rate and answered where the
// sender can use the answer; it never closes the connection.
// Used from one thread (the aggregator loop). The batches go through the
// write-ahead log on a writer thread of its own, so that the loop decodes,
// detects on and acks the summaries around it meanwhile; the acks of a batch
// leave only once it is written (collect()).
class SensorIngest {
 public:
  SensorIngest(zmq::socket_t& router, Store& store, CityView& city, Dispatcher& dispatcher,
               const common::AggregatorConfig& config);
  // Waits for the batches still being written and sends their acks.
  ~SensorIngest();
  void reload(const common::AggregatorConfig& config);
  // Fresh summaries and alerts also go to detection (optional).
  void setIncidentTracker(IncidentTracker* tracker) noexcept { incidents_ = tracker; }
  // Evidence messages go to `evidence` (optional; without, they are rejected).
  void setEvidenceCollector(EvidenceCollector* evidence) noexcept { evidence_ = evidence; }
  // Every freshly stored summary is also shown to `fn` (metrics; optional).
  void setSummaryObserver(std::function<void(wire::Summary::Reader)> fn) { observer_ = std::move(fn); }

  // Receives and handles up to `maxMessages` waiting messages (or fewer,
  // once their summaries number that many), and hands their batch to the
  // writer. Call only while takesMore().
  void drain(size_t maxMessages);
  // False while kMaxBatchesInFlight batches are being written: the messages
  // then wait in ZeroMQ's queue (and the sensors' windows of unacked ones).
  bool takesMore() const noexcept { return writer_.inFlight() < kMaxBatchesInFlight; }
  // Readable when a written batch waits for collect().
  int writtenFd() const noexcept { return writer_.wakeFd(); }
  // Sends the acks of every batch written since the last call (or drops them
  // when the write failed: the sensors resend).
  void collect();
  // collect() after every batch handed over is written (shutdown, tests).
  void flush();
  const IngestCounters& counters() const noexcept { return counters_; }

  static constexpr size_t kMaxBatchesInFlight = 2;

 private:
  struct Ack {
    std::string routingId;
    uint64_t bootId;
    uint64_t seq;
    wire::AckStatus status;
    std::string reason;
    common::WireEncoding encoding;  // the summary's: a flat sender reads flat
    bool batch;                     // its sensor takes batched acks
  };
  // One drain's batch and the acks that wait for it.
  struct Job {
    std::unique_ptr<Store::Batch> batch;
    std::vector<Ack> acks;
    Store::WriteResult result;
  };
  // Writes jobs' batches in order on its own thread.
  class Writer {
   public:
    explicit Writer(Store& store);
    ~Writer();  // writes what is queued, then stops
    void submit(std::unique_ptr<Job> job);
    // Written jobs, oldest first; `wait` blocks until every one is.
    std::vector<std::unique_ptr<Job>> takeWritten(bool wait);
    size_t inFlight() const noexcept { return inFlight_; }
    int wakeFd() const noexcept { return wakeFd_; }

   private:
    void run();
    Store& store_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<Job>> queued_, written_;
    bool stop_ = false;
    size_t inFlight_ = 0;  // submitted, not yet taken back (loop thread only)
    int wakeFd_ = -1;      // eventfd: written_ is not empty
    std::thread thread_;
  };
  void handle(const std::string& routingId, zmq::message_t& msg, Store::Batch& batch);
  // One summary, alone or out of a batch, from `keyId`'s connection: stored
  // as `frame` (its envelope as sent) unless a duplicate, then queued to ack.
  void handleSummary(const std::string& routingId, const std::string& keyId,
                     wire::Summary::Reader sum, std::span<const uint8_t> frame, bool packed,
                     Store::Batch& batch, int64_t nowNs);
  // A message (or a batch's summary: `where` says so) that `decoder` refused
  // with `r`: counted, logged, and answered `invalid` when it is an insane
  // summary.
  void undecodable(const common::EnvelopeDecoder& decoder, common::EnvelopeReject r,
                   const std::string& routingId, const std::string& keyId, const char* where);
  // Decodes each summary of a batch with batchDecoder_ and hands it to `fn`
  // with its frame, in order. One that does not decode is counted and
  // skipped (answered `invalid` when it is an insane summary), as it would
  // be alone.
  void eachBatched(const std::string& routingId, const std::string& keyId,
                   wire::SummaryBatch::Reader batch,
                   const std::function<void(wire::Summary::Reader, std::span<const uint8_t>)>& fn);
  void reject(IngestReject why, const std::string& who, const std::string& detail);
  // The encoding the sender of the message being handled reads.
  common::WireEncoding replyEncoding() const;
  // An ack to send with this drain's batch, in the encoding of the message
  // being handled.
  void queueAck(const std::string& routingId, uint64_t bootId, uint64_t seq, wire::AckStatus status,
                std::string reason);
  // A summary over its sensor's rate: answered `throttled`, resent later.
  void queueThrottled(const std::string& routingId, wire::Summary::Reader sum);
  // Sends acks as they are due: a sensor that takes batched acks gets all of
  // its acks here in one message (kMaxAcksPerMessage at most each, in their
  // order), any other one message per ack.
  void sendAcks(const std::vector<Ack>& acks);
  // One message: the first ack, and the others in its `more`.
  void sendAck(std::span<const Ack* const> acks);
  // A written job: its keys leave inFlightKeys_, its acks go (or not).
  void finish(Job& job);
  // A job to fill: a spare one when there is one (its batch buffer already
  // grown to a drain's size), else a new one.
  std::unique_ptr<Job> takeJob();
  void giveBack(std::unique_ptr<Job> job);
  void auditRefusal(const std::string& keyId, const char* what, const std::string& why);
  // A message on a connection whose sensor a reload removed: counted,
  // audited once per sensor and reload, and a hello or summary answered
  // `refused`.
  void refuseUnlisted(const std::string& routingId, const std::string& keyId,
                      wire::Envelope::Body::Reader body);
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
  EvidenceCollector* evidence_ = nullptr;
  std::function<void(wire::Summary::Reader)> observer_;
  common::EnvelopeDecoder decoder_;
  common::EnvelopeDecoder batchDecoder_;  // a batch's summaries, inside decoder_'s message
  double ratePerS_ = 5000;
  std::map<std::string, Bucket> buckets_;
  common::LogLimiter logLimiter_;
  std::vector<Ack> acks_;
  bool peerTakesAckBatches_ = false;  // of the message being handled
  std::vector<std::vector<const Ack*>> ackGroups_;  // sendAcks' scratch, kept warm
  std::set<std::string> unlistedAudited_;
  IngestCounters counters_;
  // Summary keys in batches handed to the writer and not yet written: a
  // resend arriving meanwhile is a duplicate too.
  std::unordered_set<std::string> inFlightKeys_;
  std::vector<std::unique_ptr<Job>> spareJobs_;
  Writer writer_;  // last: its thread stops before the rest goes
};

}  // namespace garda::aggregator
