#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/config.h"
#include "schemas/garda.capnp.h"
#include "sensor/evidence.h"
#include "sensor/orders.h"
#include "sensor/window.h"

namespace garda::sensor {

// Counters of the link to the aggregator.
struct UplinkCounters {
  uint64_t summariesSent = 0;      // first sends
  uint64_t summariesResent = 0;
  uint64_t summariesAcked = 0;     // stored or duplicate
  uint64_t summariesRefused = 0;   // refused or invalid: will never be stored
  uint64_t summariesDropped = 0;   // replay buffer full (live capture only)
  uint64_t connects = 0;
  uint64_t alertsSent = 0;
  uint64_t authFailures = 0;       // the aggregator's ZAP handler said no
  uint64_t badMessages = 0;        // undecodable or insane messages received
  uint64_t summariesThrottled = 0; // answered `throttled`: kept and resent
  uint64_t ackBatches = 0;         // ack messages that answered more than one summary
  uint64_t summaryBatchesSent = 0; // messages that carried more than one summary
  uint64_t aggregatorHeartbeats = 0;
  uint64_t aggregatorSilences = 0; // connected, yet nothing heard for 3 heartbeats
  uint64_t ordersReceived = 0;
  uint64_t orderReportsSent = 0;
  uint64_t evidenceRequests = 0;   // armed on the capture path
  uint64_t evidenceSent = 0;       // evidence messages sent (a request may take several)
  uint64_t evidenceUnsent = 0;     // ... that could not be sent (no link): lost
};

// One window as a wire Envelope (summary), ready to send, with the active
// rules' drop counters read as the window closed.
std::string encodeSummary(const WindowStats& window, const std::string& sensorId, uint64_t bootId,
                          uint64_t seq, uint64_t kernelDrops, uint64_t droppedSummaries,
                          const std::vector<OrderDropCount>& orderCounters = {});

// The sensor's link to the aggregator: a DEALER socket that connects out
// (sensors behind NAT work), CURVE with the aggregator's public key pinned.
// Keeps every summary until the aggregator acks it as stored, and resends the
// backlog after each reconnect (a resend is idempotent at the aggregator).
// To an aggregator that takes summary batches (its orderSync says so), a
// window closed while a message of summaries is unacked
// (kSummaryMessagesInFlight) waits for its acks and then goes with the
// others that waited, in one message: the link self-clocks, batching only
// as much as the aggregator's pace asks for.
// The backlog is bounded by uplink.replay_buffer: in replay mode a full
// buffer makes sendSummary() wait for acks; in live mode the oldest summary
// is dropped and counted. Single-threaded: call everything from one thread.
class Uplink {
 public:
  struct Identity {
    std::string version;
    std::string captureSource;
  };

  Uplink(zmq::context_t& ctx, const common::SensorConfig& config, Identity identity,
         bool waitWhenFull);
  ~Uplink();
  Uplink(const Uplink&) = delete;
  Uplink& operator=(const Uplink&) = delete;

  void sendSummary(const WindowStats& window, uint64_t kernelDrops);
  // An early alert goes out at once and is not kept: the summary that
  // follows carries the same evidence reliably.
  void sendAlert(const Windower::Alert& alert, uint64_t thresholdPps);
  // Handles incoming messages, link events, heartbeats and resends; waits up
  // to timeoutMs for something to happen.
  void poll(int timeoutMs);

  // Orders and orderSyncs from the aggregator go to `orders`, and its reports
  // go back; also expires rules on time from poll(). Optional.
  void setOrderManager(OrderManager* orders) noexcept { orders_ = orders; }
  // Evidence requests arm `tap`; poll() sends what it collected when full
  // or at the deadline. Optional.
  void setEvidenceTap(EvidenceTap* tap) noexcept { evidence_ = tap; }
  // End of capture: sends what the armed request holds now.
  void finishEvidence();

  // Ends a wait for room in the backlog (async-signal-safe: SIGTERM during
  // a replay against an aggregator that does not answer).
  void interrupt() noexcept { interrupted_.store(true); }

  size_t backlog() const noexcept { return pending_.size(); }
  uint64_t bootId() const noexcept { return bootId_; }
  bool connected() const noexcept { return connected_; }
  // This connection's aggregator takes summary batches (its orderSync said so).
  bool sendsBatches() const noexcept { return peerTakesBatches_; }
  const UplinkCounters& counters() const noexcept { return counters_; }

 private:
  struct Pending {
    std::string bytes;
    int64_t lastSentMonoNs = 0;
    bool sent = false;  // handed to ZeroMQ at least once
  };
  void onHandshake();
  void sendHello();
  void sendHeartbeat();
  bool trySend(const std::string& bytes);
  // Summaries are held for a batch: the aggregator takes batches and
  // kSummaryMessagesInFlight messages of summaries sent to it are unacked.
  bool holding();
  void handleMessage(zmq::message_t& msg);
  void handleEnvelope(wire::Envelope::Reader envelope);
  void handleAck(wire::Ack::Reader ack);
  void handleMonitorEvent();
  void resendAll();
  // Hands ZeroMQ what it could not take before (its queue was full), from
  // unsentFrom_ on, until it is full again.
  void sendUnsent();
  // Counts a pending summary handed to ZeroMQ as a first send or a resend.
  void markSent(Pending& p, int64_t nowNs);
  // Forgets an acked (or dropped) summary; unsentFrom_ moves past it.
  void erasePending(std::map<uint64_t, Pending>::iterator it);
  void sendReports(const std::vector<OrderReportOut>& reports);
  void sendEvidence(const std::optional<EvidenceResult>& result);

  const common::SensorConfig& config_;
  Identity identity_;
  bool waitWhenFull_;
  uint64_t bootId_;
  uint64_t nextSeq_ = 1;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;
  bool connected_ = false;
  std::map<uint64_t, Pending> pending_;
  // The oldest pending summary ZeroMQ did not take since the last (re)send
  // of the backlog (0: none): it and the newer ones go as room frees up.
  uint64_t unsentFrom_ = 0;
  bool queueFull_ = false;          // ZeroMQ refused the one at unsentFrom_
  bool peerTakesBatches_ = false;   // this connection's orderSync said so
  // The last seq of each message of summaries sent on this connection and
  // maybe unacked, oldest first (pruned by holding(); cleared by a resend
  // of the whole backlog).
  std::deque<uint64_t> messagesInFlight_;
  int64_t nextHeartbeatMonoNs_ = 0;
  int64_t lastAckMonoNs_ = 0;
  int64_t lastHeardMonoNs_ = 0;     // any message from the aggregator
  bool silent_ = false;             // logged that the aggregator went quiet
  std::vector<uint64_t> throttled_; // seqs to resend after a pause
  int64_t resendThrottledAtNs_ = 0;
  int64_t nextOrderTickNs_ = 0;
  int64_t nextInsecureWarningNs_ = 0;
  OrderManager* orders_ = nullptr;
  EvidenceTap* evidence_ = nullptr;
  UplinkCounters counters_;
  std::atomic<bool> interrupted_{false};
};

}  // namespace garda::sensor
