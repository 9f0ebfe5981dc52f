#include "sensor/uplink.h"

#include <capnp/message.h>
#include <spdlog/spdlog.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "common/clock.h"
#include "common/envelope.h"
#include "common/zmq_link.h"

namespace garda::sensor {
namespace {

constexpr int64_t kResendAfterNs = 5'000'000'000;
constexpr int64_t kThrottledRetryNs = 1'000'000'000;
constexpr int64_t kOrderTickNs = 200'000'000;
constexpr int64_t kInsecureWarningNs = 60'000'000'000;
constexpr int64_t kAggregatorSilentNs = 5'000'000'000;
// Frame bytes per evidence message: well under the aggregator's default
// max_message_bytes (4 MiB), with room for the envelope around them.
constexpr size_t kEvidencePartBytes = 1 << 20;
constexpr const char* kMonitorEndpoint = "inproc://garda-uplink-monitor";

uint64_t randomBootId() {
  std::random_device rd;
  uint64_t id = (uint64_t{rd()} << 32) ^ rd();
  return id == 0 ? 1 : id;
}

void fillSources(capnp::List<wire::SourceCount>::Builder out, const std::vector<SourceCount>& in) {
  for (unsigned i = 0; i < in.size(); ++i) {
    out[i].setAddress(common::AddressBytes(in[i].address));
    out[i].setPackets(in[i].packets);
    out[i].setError(in[i].error);
  }
}

void fillPorts(capnp::List<wire::PortCount>::Builder out, const std::vector<PortCount>& in) {
  for (unsigned i = 0; i < in.size(); ++i) {
    out[i].setPort(in[i].port);
    out[i].setPackets(in[i].packets);
  }
}

}  // namespace

std::string encodeSummary(const WindowStats& w, const std::string& sensorId, uint64_t bootId,
                          uint64_t seq, uint64_t kernelDrops, uint64_t droppedSummaries,
                          const std::vector<OrderDropCount>& orderCounters) {
  capnp::MallocMessageBuilder message;
  auto s = common::initEnvelope(message).getBody().initSummary();
  s.setSensorId(sensorId);
  s.setBootId(bootId);
  s.setSeq(seq);
  s.setWindowStartNs(w.startNs);
  s.setWindowMs(w.windowMs);
  s.setKernelDrops(kernelDrops);
  s.setDroppedSummaries(droppedSummaries);
  s.setVictimsCut(w.victimsCut);
  s.setVictimPacketsCut(w.victimPacketsCut);
  auto t = s.initTotals();
  t.setPackets(w.totals.packets);
  t.setBytes(w.totals.bytes);
  t.setTcp(w.totals.tcp);
  t.setUdp(w.totals.udp);
  t.setIcmp(w.totals.icmp);
  t.setOther(w.totals.other);

  auto victims = s.initVictims(static_cast<unsigned>(w.victims.size()));
  for (size_t i = 0; i < w.victims.size(); ++i) {
    const auto& v = w.victims[i];
    auto out = victims[static_cast<unsigned>(i)];
    out.setAddress(common::AddressBytes(v.address));
    out.setPackets(v.packets);
    out.setBytes(v.bytes);
    unsigned nonZero = 0;
    for (uint64_t p : v.vectorPackets) nonZero += p != 0;
    auto vectors = out.initVectors(nonZero);
    unsigned j = 0;
    for (size_t k = 0; k < kVectorCount; ++k) {
      if (v.vectorPackets[k] == 0) continue;
      vectors[j].setVector(static_cast<wire::Vector>(k));
      vectors[j].setPackets(v.vectorPackets[k]);
      vectors[j].setBytes(v.vectorBytes[k]);
      ++j;
    }
    unsigned reflecting = 0;
    for (uint64_t n : v.reflectionPackets) reflecting += n != 0;
    auto refl = out.initReflectionPorts(reflecting);
    j = 0;
    for (size_t k = 0; k < kReflectionPortCount; ++k) {
      if (v.reflectionPackets[k] == 0) continue;
      refl[j].setPort(reflectionPortAt(k));
      refl[j].setPackets(v.reflectionPackets[k]);
      refl[j].setBytes(v.reflectionBytes[k]);
      ++j;
    }
    fillSources(out.initTopSources(static_cast<unsigned>(v.topSources.size())), v.topSources);
    out.setDistinctSources(v.distinctSources);
    fillPorts(out.initTopSrcPorts(static_cast<unsigned>(v.topSrcPorts.size())), v.topSrcPorts);
    fillPorts(out.initTopDstPorts(static_cast<unsigned>(v.topDstPorts.size())), v.topDstPorts);
  }
  fillSources(s.initOutbound(static_cast<unsigned>(w.outbound.size())), w.outbound);
  if (!orderCounters.empty()) {
    auto counters = s.initOrderCounters(static_cast<unsigned>(orderCounters.size()));
    for (unsigned i = 0; i < counters.size(); ++i) {
      counters[i].setOrderId(orderCounters[i].orderId);
      counters[i].setPackets(orderCounters[i].count.packets);
      counters[i].setBytes(orderCounters[i].count.bytes);
    }
  }

  unsigned errorKinds = 0;
  for (size_t k = 0; k < w.decodeStatus.size(); ++k)
    errorKinds += (k > static_cast<size_t>(DecodeStatus::kNotIp) && w.decodeStatus[k] != 0);
  auto errors = s.initDecodeErrors(errorKinds);
  unsigned j = 0;
  for (size_t k = static_cast<size_t>(DecodeStatus::kNotIp) + 1; k < w.decodeStatus.size(); ++k) {
    if (w.decodeStatus[k] == 0) continue;
    errors[j].setReason(decodeStatusName(static_cast<DecodeStatus>(k)));
    errors[j].setCount(w.decodeStatus[k]);
    ++j;
  }
  return common::encodeMessage(message);
}

Uplink::Uplink(zmq::context_t& ctx, const common::SensorConfig& config, Identity identity,
               bool waitWhenFull)
    : config_(config),
      identity_(std::move(identity)),
      waitWhenFull_(waitWhenFull),
      bootId_(randomBootId()),
      socket_(ctx, zmq::socket_type::dealer),
      monitor_(ctx, zmq::socket_type::pair) {
  common::applyLinkOptions(socket_, 64 << 20, static_cast<int>(config_.heartbeatMs));
  if (!config_.insecurePlaintext)
    common::makeCurveClient(socket_, config_.aggregatorPublicKey, config_.secretKey);
  // Queue only to completed connections: what cannot be sent stays in our own
  // backlog, which we resend after the handshake, instead of in a ZMQ queue.
  socket_.set(zmq::sockopt::immediate, 1);
  socket_.set(zmq::sockopt::reconnect_ivl, 100);
  socket_.set(zmq::sockopt::reconnect_ivl_max, 5000);
  if (zmq_socket_monitor(socket_.handle(), kMonitorEndpoint,
                         ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED |
                             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                             ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0)
    throw std::runtime_error(std::string("cannot monitor the uplink socket: ") +
                             zmq_strerror(zmq_errno()));
  monitor_.connect(kMonitorEndpoint);
  socket_.connect(config_.aggregator);
  spdlog::info("uplink: sensor {} boot {:016x} connecting to {}", config_.id, bootId_,
               config_.aggregator);
}

Uplink::~Uplink() { zmq_socket_monitor(socket_.handle(), nullptr, 0); }

bool Uplink::trySend(const std::string& bytes) {
  if (!connected_) return false;
  auto sent = socket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  return sent.has_value();
}

void Uplink::sendSummary(const WindowStats& window, uint64_t kernelDrops) {
  while (pending_.size() >= config_.replayBuffer) {
    if (waitWhenFull_ && !interrupted_.load()) {
      poll(100);
      continue;
    }
    erasePending(pending_.begin());
    counters_.summariesDropped++;
  }
  uint64_t seq = nextSeq_++;
  Pending& p = pending_[seq];
  p.bytes = encodeSummary(window, config_.id, bootId_, seq, kernelDrops, counters_.summariesDropped,
                          orders_ ? orders_->dropCounts() : std::vector<OrderDropCount>{});
  p.lastSentMonoNs = common::monoNowNs();
  // Behind older unsent ones it waits its turn (sendUnsent), in order; while
  // earlier ones are unacked it waits to go with them in a batch.
  if (unsentFrom_ != 0) return;
  unsentFrom_ = seq;
  if (!holding()) sendUnsent();
}

void Uplink::markSent(Pending& p, int64_t nowNs) {
  p.lastSentMonoNs = nowNs;
  if (p.sent) {
    counters_.summariesResent++;
  } else {
    p.sent = true;
    counters_.summariesSent++;
  }
}

void Uplink::sendAlert(const Windower::Alert& a, uint64_t thresholdPps) {
  capnp::MallocMessageBuilder message;
  auto m = common::initEnvelope(message).getBody().initAlert();
  m.setSensorId(config_.id);
  m.setBootId(bootId_);
  m.setVictim(common::AddressBytes(a.victim));
  m.setVector(static_cast<wire::Vector>(a.vector));
  m.setPackets(a.packets);
  m.setWindowStartNs(a.windowStartNs);
  m.setAtNs(a.atNs);
  m.setThresholdPps(thresholdPps);
  if (trySend(common::encodeMessage(message))) counters_.alertsSent++;
}

void Uplink::sendHello() {
  capnp::MallocMessageBuilder message;
  auto h = common::initEnvelope(message).getBody().initHello();
  h.setSensorId(config_.id);
  h.setBootId(bootId_);
  h.setVersion(identity_.version);
  h.setOpd(config_.opd);
  h.setWindowMs(config_.windowMs);
  h.setCaptureSource(identity_.captureSource);
  h.setTakesAckBatches(true);
  auto prefixes = h.initProtected(static_cast<unsigned>(config_.protectedPrefixes.size()));
  for (size_t i = 0; i < config_.protectedPrefixes.size(); ++i)
    common::writePrefix(prefixes[static_cast<unsigned>(i)], config_.protectedPrefixes[i]);
  trySend(common::encodeMessage(message));
}

void Uplink::sendHeartbeat() {
  capnp::MallocMessageBuilder message;
  auto h = common::initEnvelope(message).getBody().initHeartbeat();
  h.setSensorId(config_.id);
  h.setBootId(bootId_);
  h.setAtNs(common::wallNowNs());
  h.setBacklog(static_cast<uint32_t>(pending_.size()));
  trySend(common::encodeMessage(message));
}

bool Uplink::holding() {
  if (!peerTakesBatches_) return false;
  // A message whose last summary is acked is done (a summary of it still
  // throttled goes again on its own).
  while (!messagesInFlight_.empty() && !pending_.contains(messagesInFlight_.front()))
    messagesInFlight_.pop_front();
  return messagesInFlight_.size() >= common::kSummaryMessagesInFlight;
}

void Uplink::resendAll() {
  messagesInFlight_.clear();
  unsentFrom_ = pending_.empty() ? 0 : pending_.begin()->first;
  sendUnsent();
}

void Uplink::sendUnsent() {
  const int64_t now = common::monoNowNs();
  std::vector<std::string_view> batch;
  auto it = pending_.lower_bound(unsentFrom_);
  while (it != pending_.end()) {
    // As many as fit in one batch (one alone to an aggregator that takes
    // none).
    const auto end =
        peerTakesBatches_
            ? common::summaryBatchEnd(it, pending_.end(),
                                      [](const auto& entry) { return entry.second.bytes.size(); })
            : std::next(it);
    bool sent;
    if (std::next(it) == end) {
      sent = trySend(it->second.bytes);
    } else {
      batch.clear();
      for (auto b = it; b != end; ++b) batch.push_back(b->second.bytes);
      sent = trySend(common::encodeSummaryBatch(batch));
      if (sent) counters_.summaryBatchesSent++;
    }
    if (!sent) {
      unsentFrom_ = it->first;
      queueFull_ = connected_;
      return;
    }
    if (peerTakesBatches_) messagesInFlight_.push_back(std::prev(end)->first);
    for (; it != end; ++it) markSent(it->second, now);
  }
  unsentFrom_ = 0;
  queueFull_ = false;
}

void Uplink::sendReports(const std::vector<OrderReportOut>& reports) {
  for (const auto& r : reports) {
    capnp::MallocMessageBuilder message;
    auto m = common::initEnvelope(message).getBody().initOrderReport();
    m.setOrderId(r.orderId);
    m.setState(r.state);
    m.setReason(r.reason);
    m.setPacketsDropped(r.packetsDropped);
    m.setAtNs(r.atNs);
    m.setBootId(bootId_);
    // A report lost with the link is not resent: the hello after the next
    // handshake brings an orderSync, and the sensor reports every order again.
    if (trySend(common::encodeMessage(message))) counters_.orderReportsSent++;
  }
}

void Uplink::sendEvidence(const std::optional<EvidenceResult>& result) {
  if (!result) return;
  spdlog::info("uplink: evidence for incident {} (request {}): {} packets ({})",
               result->request.incidentId, result->request.requestId, result->frames.size(),
               result->reason);
  for (const auto& bytes : encodeEvidence(*result, config_.id, kEvidencePartBytes)) {
    // Not kept for a resend: the aggregator asks again if it has nothing.
    if (trySend(bytes)) counters_.evidenceSent++;
    else counters_.evidenceUnsent++;
  }
}

void Uplink::finishEvidence() {
  if (evidence_) sendEvidence(evidence_->take(common::wallNowNs(), "end_of_capture"));
}

void Uplink::onHandshake() {
  connected_ = true;
  lastHeardMonoNs_ = common::monoNowNs();
  silent_ = false;
  counters_.connects++;
  peerTakesBatches_ = false;  // until this connection's orderSync says so
  spdlog::info("uplink: connected to {} (backlog {})", config_.aggregator, pending_.size());
  sendHello();
  resendAll();
  lastAckMonoNs_ = common::monoNowNs();
}

void Uplink::handleMonitorEvent() {
  zmq::message_t event, address;
  if (!monitor_.recv(event, zmq::recv_flags::dontwait)) return;
  if (event.more()) (void)monitor_.recv(address, zmq::recv_flags::dontwait);
  if (event.size() < 6) return;
  uint16_t id;
  std::memcpy(&id, event.data(), sizeof id);
  switch (id) {
    case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: onHandshake(); break;
    case ZMQ_EVENT_DISCONNECTED:
      if (connected_) spdlog::warn("uplink: disconnected from {}", config_.aggregator);
      connected_ = false;
      peerTakesBatches_ = false;
      messagesInFlight_.clear();
      break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
      counters_.authFailures++;
      if (counters_.authFailures == 1 || counters_.authFailures % 100 == 0)
        spdlog::error("uplink: the aggregator at {} refused this sensor's key ({}): is {} listed "
                      "in its aggregator.toml with this public key?",
                      config_.aggregator, config_.secretKeyFile, config_.id);
      break;
    case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      counters_.authFailures++;
      if (counters_.authFailures == 1)
        spdlog::error("uplink: CURVE handshake with {} failed: check aggregator_public_key",
                      config_.aggregator);
      break;
    default: break;
  }
}

void Uplink::handleMessage(zmq::message_t& msg) {
  common::EnvelopeDecoder decoder;
  auto reject = decoder.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size()));
  if (reject != common::EnvelopeReject::kNone) {
    counters_.badMessages++;
    spdlog::warn("uplink: bad message from aggregator ({}: {})",
                 common::envelopeRejectName(reject), decoder.detail());
    return;
  }
  try {
    handleEnvelope(decoder.envelope());
  } catch (const kj::Exception& e) {
    // The decoder checks structure and values, not the type of every text
    // field: a field of the wrong kind throws here. Count it, keep going.
    counters_.badMessages++;
    spdlog::warn("uplink: malformed message from aggregator: {}", e.getDescription().cStr());
  }
}

void Uplink::handleEnvelope(wire::Envelope::Reader envelope) {
  auto body = envelope.getBody();
  lastHeardMonoNs_ = common::monoNowNs();
  if (silent_) {
    spdlog::info("uplink: the aggregator at {} answers again", config_.aggregator);
    silent_ = false;
  }
  switch (body.which()) {
    case wire::Envelope::Body::ACK: {
      auto ack = body.getAck();
      handleAck(ack);
      // A batch (the decoder allows no deeper nesting): each as if alone.
      if (ack.getMore().size() > 0) counters_.ackBatches++;
      for (auto more : ack.getMore()) handleAck(more);
      break;
    }
    case wire::Envelope::Body::HEARTBEAT: counters_.aggregatorHeartbeats++; break;
    case wire::Envelope::Body::ORDER:
      counters_.ordersReceived++;
      if (orders_) sendReports(orders_->onOrder(body.getOrder(), common::wallNowNs()));
      break;
    case wire::Envelope::Body::ORDER_SYNC:
      if (body.getOrderSync().getTakesSummaryBatches() && !peerTakesBatches_) {
        peerTakesBatches_ = true;
        spdlog::debug("uplink: the aggregator takes summary batches");
      }
      counters_.ordersReceived += body.getOrderSync().getOrders().size();
      if (orders_) sendReports(orders_->onSync(body.getOrderSync().getOrders(), common::wallNowNs()));
      break;
    case wire::Envelope::Body::EVIDENCE_REQUEST: {
      if (!evidence_) break;
      auto request = evidenceRequestFrom(body.getEvidenceRequest());
      if (!request) {
        counters_.badMessages++;
        break;
      }
      counters_.evidenceRequests++;
      spdlog::info("uplink: evidence request {} for incident {}: up to {} packets toward {}",
                   request->requestId, request->incidentId, request->maxPackets,
                   request->filter.victim.toString());
      sendEvidence(evidence_->arm(std::move(*request)));
      break;
    }
    default:
      spdlog::debug("uplink: ignoring message kind {}", static_cast<int>(body.which()));
      break;
  }
}

void Uplink::handleAck(wire::Ack::Reader ack) {
  if (ack.getBootId() != bootId_) return;  // for an earlier life of this sensor
  auto it = pending_.find(ack.getSeq());
  if (it == pending_.end()) return;
  switch (ack.getStatus()) {
    case wire::AckStatus::STORED:
    case wire::AckStatus::DUPLICATE: counters_.summariesAcked++; break;
    case wire::AckStatus::REFUSED:
    case wire::AckStatus::INVALID:
      counters_.summariesRefused++;
      spdlog::error("uplink: aggregator refused summary seq {}: {}", ack.getSeq(),
                    ack.getReason().cStr());
      break;
    case wire::AckStatus::THROTTLED:
      // Over this sensor's rate limit at the aggregator: keep it and
      // resend after a pause.
      counters_.summariesThrottled++;
      if (throttled_.empty()) resendThrottledAtNs_ = common::monoNowNs() + kThrottledRetryNs;
      throttled_.push_back(ack.getSeq());
      lastAckMonoNs_ = common::monoNowNs();
      return;
  }
  erasePending(it);
  lastAckMonoNs_ = common::monoNowNs();
}

void Uplink::erasePending(std::map<uint64_t, Pending>::iterator it) {
  if (unsentFrom_ == it->first) {
    auto next = std::next(it);
    unsentFrom_ = next == pending_.end() ? 0 : next->first;
    if (unsentFrom_ == 0) queueFull_ = false;
  }
  pending_.erase(it);
}

void Uplink::poll(int timeoutMs) {
  // With summaries ZeroMQ could not take, also wake when it has room.
  const short events = ZMQ_POLLIN | (connected_ && queueFull_ ? ZMQ_POLLOUT : 0);
  zmq::pollitem_t items[] = {{socket_.handle(), 0, events, 0},
                             {monitor_.handle(), 0, ZMQ_POLLIN, 0}};
  try {
    zmq::poll(items, 2, std::chrono::milliseconds(timeoutMs));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) throw;
    return;  // a signal (SIGTERM): the caller decides what to do next
  }
  if (items[1].revents & ZMQ_POLLIN)
    for (int i = 0; i < 64; ++i) {
      zmq::pollitem_t m = {monitor_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&m, 1, std::chrono::milliseconds(0)) <= 0) break;
      handleMonitorEvent();
    }
  for (int i = 0; i < 1024; ++i) {
    zmq::message_t msg;
    if (!socket_.recv(msg, zmq::recv_flags::dontwait)) break;
    handleMessage(msg);
  }
  // A backlog larger than ZeroMQ's queue (its high-water mark) goes on as
  // the queue drains, not after the no-ack timeout; summaries held for a
  // batch go once what was in flight is acked.
  if (connected_ && unsentFrom_ != 0 && (queueFull_ || !holding())) sendUnsent();
  int64_t now = common::monoNowNs();
  if (evidence_) sendEvidence(evidence_->take(common::wallNowNs()));
  if (orders_ && now >= nextOrderTickNs_) {
    sendReports(orders_->tick(common::wallNowNs()));
    nextOrderTickNs_ = now + kOrderTickNs;
  }
  if (config_.insecurePlaintext && now >= nextInsecureWarningNs_) {
    spdlog::warn("uplink: INSECURE: the link to {} is plaintext and unauthenticated "
                 "(uplink.insecure_plaintext = true): anyone on the path can read the summaries "
                 "and forge orders",
                 config_.aggregator);
    nextInsecureWarningNs_ = now + kInsecureWarningNs;
  }
  // The aggregator's loop sends a heartbeat every second: several missed
  // with the TCP link still up means it is stuck or gone.
  if (connected_ && !silent_ && now - lastHeardMonoNs_ > kAggregatorSilentNs) {
    silent_ = true;
    counters_.aggregatorSilences++;
    spdlog::warn("uplink: nothing heard from the aggregator at {} for {} ms", config_.aggregator,
                 (now - lastHeardMonoNs_) / 1'000'000);
  }
  if (connected_ && !throttled_.empty() && now >= resendThrottledAtNs_) {
    std::vector<uint64_t> due;
    due.swap(throttled_);
    for (uint64_t seq : due) {
      auto it = pending_.find(seq);
      if (it == pending_.end()) continue;
      if (trySend(it->second.bytes)) counters_.summariesResent++;
      it->second.lastSentMonoNs = now;
    }
  }
  if (connected_ && now >= nextHeartbeatMonoNs_) {
    sendHeartbeat();
    nextHeartbeatMonoNs_ = now + int64_t{config_.heartbeatMs} * 1'000'000;
  }
  // No ack progress for a while with a backlog: the aggregator may have lost
  // what it had not yet stored (a restart without a reconnect we noticed).
  if (connected_ && !pending_.empty() && now - lastAckMonoNs_ > kResendAfterNs) {
    spdlog::warn("uplink: no ack for {} s; resending {} summaries", kResendAfterNs / 1'000'000'000,
                 pending_.size());
    resendAll();
    lastAckMonoNs_ = now;
  }
}

}  // namespace garda::sensor
