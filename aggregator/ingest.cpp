#include "aggregator/ingest.h"

#include <spdlog/spdlog.h>

#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/zmq_link.h"
#include "common/envelope.h"
#include "aggregator/zap_authenticator.h"

namespace garda::aggregator {
namespace {

constexpr std::string_view kSensorPrefix = "sensor:";

}  // namespace

const char* ingestRejectName(IngestReject r) noexcept {
  switch (r) {
    case IngestReject::kDecode: return "decode";
    case IngestReject::kNoIdentity: return "no_identity";
    case IngestReject::kWrongSensorId: return "wrong_sensor_id";
    case IngestReject::kUnexpectedBody: return "unexpected_body";
    case IngestReject::kStoreError: return "store_error";
    case IngestReject::kRateLimited: return "rate_limited";
    case IngestReject::kUnlisted: return "unlisted";
    case IngestReject::kCount: break;
  }
  return "unknown";
}

namespace {

// The sensor id a message speaks for (orderReport carries none).
std::string claimedSensorId(wire::Envelope::Body::Reader body) {
  switch (body.which()) {
    case wire::Envelope::Body::HELLO: return body.getHello().getSensorId();
    case wire::Envelope::Body::SUMMARY: return body.getSummary().getSensorId();
    case wire::Envelope::Body::HEARTBEAT: return body.getHeartbeat().getSensorId();
    case wire::Envelope::Body::ALERT: return body.getAlert().getSensorId();
    case wire::Envelope::Body::EVIDENCE: return body.getEvidence().getSensorId();
    default: return {};
  }
}

}  // namespace

SensorIngest::SensorIngest(zmq::socket_t& router, Store& store, CityView& city,
                           Dispatcher& dispatcher, const common::AggregatorConfig& config)
    : router_(router),
      store_(store),
      city_(city),
      dispatcher_(dispatcher),
      decoder_(common::DecodeLimits{config.maxMessageBytes}),
      writer_(store) {
  reload(config);
}

SensorIngest::~SensorIngest() {
  try {
    flush();
  } catch (const std::exception& e) {
    spdlog::error("ingest: at shutdown: {}", e.what());
  }
}

SensorIngest::Writer::Writer(Store& store) : store_(store) {
  wakeFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakeFd_ < 0)
    throw std::runtime_error(std::string("ingest: eventfd: ") + std::strerror(errno));
  thread_ = std::thread([this] { run(); });
}

SensorIngest::Writer::~Writer() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  ::close(wakeFd_);
}

void SensorIngest::Writer::submit(std::unique_ptr<Job> job) {
  {
    std::lock_guard lock(mutex_);
    queued_.push_back(std::move(job));
  }
  ++inFlight_;
  cv_.notify_all();
}

void SensorIngest::Writer::run() {
  pthread_setname_np(pthread_self(), "garda-writer");
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queued_.empty(); });
    if (queued_.empty()) return;  // stopping, and nothing left to write
    auto job = std::move(queued_.front());
    queued_.pop_front();
    lock.unlock();
    try {
      job->result = store_.write(*job->batch);
    } catch (const std::exception& e) {
      job->result.written = true;
      job->result.error = e.what();
    }
    lock.lock();
    written_.push_back(std::move(job));
    const uint64_t one = 1;
    (void)!::write(wakeFd_, &one, sizeof one);
    cv_.notify_all();
  }
}

std::vector<std::unique_ptr<SensorIngest::Job>> SensorIngest::Writer::takeWritten(bool wait) {
  std::unique_lock lock(mutex_);
  if (wait) cv_.wait(lock, [&] { return written_.size() == inFlight_; });
  uint64_t count = 0;
  (void)!::read(wakeFd_, &count, sizeof count);  // drained: readable again at the next write
  std::vector<std::unique_ptr<Job>> out;
  for (auto& job : written_) out.push_back(std::move(job));
  written_.clear();
  inFlight_ -= out.size();
  return out;
}

void SensorIngest::reload(const common::AggregatorConfig& config) {
  ratePerS_ = config.sensorRateLimit;
  unlistedAudited_.clear();
}

bool SensorIngest::admit(const std::string& who, int64_t nowNs) {
  auto& b = buckets_[who];
  const double burst = 2 * ratePerS_;
  if (b.lastNs == 0) b.tokens = burst;
  else b.tokens = std::min(burst, b.tokens + ratePerS_ * static_cast<double>(nowNs - b.lastNs) / 1e9);
  b.lastNs = nowNs;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void SensorIngest::reject(IngestReject why, const std::string& who, const std::string& detail) {
  counters_.rejects[static_cast<size_t>(why)]++;
  if (logLimiter_.allow())
    spdlog::warn("ingest: rejected message from {}: {}: {} ({} similar messages not logged)", who,
                 ingestRejectName(why), detail, logLimiter_.suppressed());
}

void SensorIngest::auditRefusal(const std::string& keyId, const char* what,
                                const std::string& why) {
  nlohmann::json record = {{"at_ns", common::wallNowNs()},
                           {"who", std::string(kSensorPrefix) + keyId},
                           {"action", "refused"},
                           {"what", what},
                           {"why", why}};
  store_.appendAudit(common::wallNowNs(), record.dump());
}

void SensorIngest::refuseUnlisted(const std::string& routingId, const std::string& keyId,
                                  wire::Envelope::Body::Reader body) {
  const std::string why = "sensor '" + keyId + "' is no longer listed in aggregator.toml";
  reject(IngestReject::kUnlisted, keyId, why);
  // One audit record per sensor and reload, not one per message it keeps sending.
  const char* what = body.which() == wire::Envelope::Body::HELLO           ? "hello"
                     : body.which() == wire::Envelope::Body::SUMMARY       ? "summary"
                     : body.which() == wire::Envelope::Body::SUMMARY_BATCH ? "summary batch"
                                                                           : "message";
  if (unlistedAudited_.insert(keyId).second) auditRefusal(keyId, what, why);
  if (body.which() == wire::Envelope::Body::SUMMARY) {
    auto sum = body.getSummary();
    queueAck(routingId, sum.getBootId(), sum.getSeq(), wire::AckStatus::REFUSED, why);
  } else if (body.which() == wire::Envelope::Body::SUMMARY_BATCH) {
    eachBatched(routingId, keyId, body.getSummaryBatch(),
                [&](wire::Summary::Reader sum, std::span<const uint8_t>) {
                  queueAck(routingId, sum.getBootId(), sum.getSeq(), wire::AckStatus::REFUSED, why);
                });
  } else if (body.which() == wire::Envelope::Body::HELLO) {
    queueAck(routingId, body.getHello().getBootId(), 0, wire::AckStatus::REFUSED, why);
  }
}

void SensorIngest::handle(const std::string& routingId, zmq::message_t& msg, Store::Batch& batch) {
  counters_.messages++;
  peerTakesAckBatches_ = false;  // until the sender is known
  const int64_t now = common::wallNowNs();
  std::string userId = common::messageUserId(msg);
  const bool insecure = userId == ZapAuthenticator::kInsecureUserId;
  if (!insecure && userId.rfind(kSensorPrefix, 0) != 0) {
    reject(IngestReject::kNoIdentity, "?", "connection has no sensor identity");
    return;
  }
  std::string keyId = insecure ? std::string() : userId.substr(kSensorPrefix.size());
  // One sensor may not flood the aggregator: past its rate the message is
  // not handled (a summary is answered `throttled` and resent later).
  const std::string rateKey = insecure ? routingId : keyId;
  const bool admitted = admit(rateKey, now);
  auto r = decoder_.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size()));
  if (r != common::EnvelopeReject::kNone) {
    undecodable(decoder_, r, routingId, keyId, "");
    return;
  }
  auto body = decoder_.envelope().getBody();
  if (insecure) {
    // Plaintext: no key to bind an identity to. Trust the claimed id if it
    // is listed (development only; warned about every minute).
    // A message that names no sensor speaks for its connection's hello.
    keyId = body.which() == wire::Envelope::Body::ORDER_REPORT ||
                    body.which() == wire::Envelope::Body::SUMMARY_BATCH
                ? city_.byRoutingId(routingId)
                : claimedSensorId(body);
    if (!city_.isListed(keyId)) {
      reject(IngestReject::kUnlisted, keyId.empty() ? "?" : keyId, "plaintext message for a "
             "sensor not listed in aggregator.toml");
      return;
    }
  } else if (!city_.isListed(keyId)) {
    // Admitted by its key, then removed from aggregator.toml by a reload:
    // its connection outlives the listing, its messages do not.
    refuseUnlisted(routingId, keyId, body);
    return;
  }
  if (!admitted) {
    reject(IngestReject::kRateLimited, keyId,
           "over sensor_rate_limit = " + std::to_string(static_cast<uint64_t>(ratePerS_)) + "/s");
    if (body.which() == wire::Envelope::Body::SUMMARY) queueThrottled(routingId, body.getSummary());
    if (body.which() == wire::Envelope::Body::SUMMARY_BATCH)
      eachBatched(routingId, keyId, body.getSummaryBatch(),
                  [&](wire::Summary::Reader sum, std::span<const uint8_t>) {
                    queueThrottled(routingId, sum);
                  });
    return;
  }
  if (body.which() != wire::Envelope::Body::HELLO || claimedSensorId(body) == keyId) {
    auto& s = city_.touch(keyId, now);
    // A new connection takes batched acks once its hello says so.
    if (s.routingId != routingId) s.takesAckBatches = false;
    if (body.which() == wire::Envelope::Body::HELLO)
      s.takesAckBatches = body.getHello().getTakesAckBatches();
    s.routingId = routingId;
    s.encoding = replyEncoding();  // what we send it is encoded alike
    peerTakesAckBatches_ = s.takesAckBatches;
  }
  switch (body.which()) {
    case wire::Envelope::Body::HELLO: {
      auto h = body.getHello();
      std::string claimed = h.getSensorId();
      if (claimed != keyId) {
        reject(IngestReject::kWrongSensorId, keyId, "hello claims '" + claimed + "'");
        auditRefusal(keyId, "hello",
                     "key is bound to sensor '" + keyId + "' but the message claims '" + claimed +
                         "'");
        queueAck(routingId, h.getBootId(), 0, wire::AckStatus::REFUSED,
                 "this key is bound to sensor '" + keyId + "', not '" + claimed + "'");
        return;
      }
      counters_.hellos++;
      auto& s = city_.touch(keyId, now);
      bool reboot = s.bootId != h.getBootId();
      s.bootId = h.getBootId();
      s.opd = h.getOpd();
      s.version = h.getVersion();
      s.windowMs = h.getWindowMs();
      s.captureSource = h.getCaptureSource();
      spdlog::info("ingest: hello from sensor {} ({}), boot {:016x}{}, {}", keyId, s.opd, s.bootId,
                   reboot ? " (new boot)" : "", s.captureSource);
      dispatcher_.onHello(keyId, now);
      return;
    }
    case wire::Envelope::Body::SUMMARY:
      handleSummary(routingId, keyId, body.getSummary(),
                    std::span(static_cast<const uint8_t*>(msg.data()), msg.size()),
                    decoder_.packed(), batch, now);
      return;
    case wire::Envelope::Body::SUMMARY_BATCH: {
      counters_.summaryBatches++;
      bool first = true;  // the message's own token was taken above
      eachBatched(routingId, keyId, body.getSummaryBatch(),
                  [&](wire::Summary::Reader sum, std::span<const uint8_t> frame) {
                    // Each summary of a batch counts against the sensor's
                    // rate as if it had come alone.
                    if (!std::exchange(first, false) && !admit(rateKey, now)) {
                      reject(IngestReject::kRateLimited, keyId, "a batched summary over "
                             "sensor_rate_limit = " +
                                 std::to_string(static_cast<uint64_t>(ratePerS_)) + "/s");
                      queueThrottled(routingId, sum);
                      return;
                    }
                    handleSummary(routingId, keyId, sum, frame, batchDecoder_.packed(), batch, now);
                  });
      return;
    }
    case wire::Envelope::Body::HEARTBEAT: {
      auto hb = body.getHeartbeat();
      if (hb.getSensorId() != keyId) {
        reject(IngestReject::kWrongSensorId, keyId, "heartbeat claims another id");
        return;
      }
      counters_.heartbeats++;
      city_.touch(keyId, now).backlog = hb.getBacklog();
      return;
    }
    case wire::Envelope::Body::ALERT: {
      auto a = body.getAlert();
      if (a.getSensorId() != keyId) {
        reject(IngestReject::kWrongSensorId, keyId, "alert claims another id");
        return;
      }
      counters_.alerts++;
      auto victim = common::readAddress(a.getVictim());
      auto& s = city_.touch(keyId, now);
      s.alerts++;
      s.lastAlertNs = a.getAtNs();
      s.lastAlertVictim = victim ? victim->toString() : "?";
      spdlog::warn("ingest: ALERT from {}: victim {} at {} packets in the window so far "
                   "(threshold {} pps)",
                   keyId, s.lastAlertVictim, a.getPackets(), a.getThresholdPps());
      if (incidents_) incidents_->onAlert(a, now);
      return;
    }
    case wire::Envelope::Body::ORDER_REPORT:
      counters_.orderReports++;
      dispatcher_.onReport(keyId, body.getOrderReport(), now);
      return;
    case wire::Envelope::Body::EVIDENCE:
      if (body.getEvidence().getSensorId() != keyId) {
        reject(IngestReject::kWrongSensorId, keyId, "evidence claims another id");
        return;
      }
      if (!evidence_) break;
      counters_.evidence++;
      evidence_->onEvidence(keyId, body.getEvidence(), now);
      return;
    default: break;
  }
  reject(IngestReject::kUnexpectedBody, keyId,
         "message kind " + std::to_string(static_cast<int>(body.which())));
}

void SensorIngest::handleSummary(const std::string& routingId, const std::string& keyId,
                                 wire::Summary::Reader sum, std::span<const uint8_t> frame,
                                 bool packed, Store::Batch& batch, int64_t nowNs) {
  std::string claimed = sum.getSensorId();
  if (claimed != keyId) {
    reject(IngestReject::kWrongSensorId, keyId, "summary claims '" + claimed + "'");
    queueAck(routingId, sum.getBootId(), sum.getSeq(), wire::AckStatus::REFUSED,
             "this key is bound to sensor '" + keyId + "', not '" + claimed + "'");
    return;
  }
  // Stored as the packed envelope it came in, as it came; a flat one
  // (an older sensor) is packed first.
  std::string key = Store::summaryKey(keyId, sum.getWindowStartNs(), sum.getBootId());
  std::string repacked;
  if (!packed) repacked = common::packFlat(frame);
  bool fresh =
      inFlightKeys_.count(key) == 0 &&
      batch.putSummary(
          key, sum,
          packed
              ? std::string_view(reinterpret_cast<const char*>(frame.data()), frame.size())
              : std::string_view(repacked));
  auto& s = city_.touch(keyId, nowNs);
  s.lastAnsweredNs = nowNs;
  if (fresh) {
    counters_.summariesStored++;
    s.windowsStored++;
    s.kernelDrops += sum.getKernelDrops();
    if (sum.getWindowStartNs() >= s.lastWindowStartNs) {
      s.lastWindowStartNs = sum.getWindowStartNs();
      s.lastWindowPackets = sum.getTotals().getPackets();
      s.windowMs = sum.getWindowMs();
    }
    // Detection sees each window once, in arrival order. (If the batch
    // then fails to commit, the resend is seen again: a window counted
    // twice in a baseline, never a lost one.)
    // Order counters first: detection holds incidents whose orders drop.
    dispatcher_.onCounters(keyId, sum);
    if (incidents_) incidents_->onSummary(sum, nowNs);
    if (observer_) observer_(sum);
  } else {
    counters_.summariesDuplicate++;
  }
  queueAck(routingId, sum.getBootId(), sum.getSeq(),
           fresh ? wire::AckStatus::STORED : wire::AckStatus::DUPLICATE, "");
}

void SensorIngest::undecodable(const common::EnvelopeDecoder& decoder, common::EnvelopeReject r,
                               const std::string& routingId, const std::string& keyId,
                               const char* where) {
  counters_.decodeRejects[static_cast<size_t>(r)]++;
  reject(IngestReject::kDecode, keyId,
         where + std::string(common::envelopeRejectName(r)) + ": " + decoder.detail());
  // A well-formed summary with impossible values is answered `invalid`, so
  // the sensor drops it instead of resending it forever.
  if (r == common::EnvelopeReject::kInsane &&
      decoder.envelope().getBody().which() == wire::Envelope::Body::SUMMARY) {
    auto sum = decoder.envelope().getBody().getSummary();
    queueAck(routingId, sum.getBootId(), sum.getSeq(), wire::AckStatus::INVALID,
             decoder.detail());
  }
}

void SensorIngest::eachBatched(
    const std::string& routingId, const std::string& keyId, wire::SummaryBatch::Reader summaries,
    const std::function<void(wire::Summary::Reader, std::span<const uint8_t>)>& fn) {
  for (auto data : summaries.getSummaries()) {
    const std::span<const uint8_t> frame(data.begin(), data.size());
    auto r = batchDecoder_.decode(frame);
    if (r != common::EnvelopeReject::kNone) {
      undecodable(batchDecoder_, r, routingId, keyId, "in a summary batch: ");
      continue;
    }
    auto body = batchDecoder_.envelope().getBody();
    if (body.which() != wire::Envelope::Body::SUMMARY) {
      reject(IngestReject::kUnexpectedBody, keyId,
             "message kind " + std::to_string(static_cast<int>(body.which())) +
                 " in a summary batch");
      continue;
    }
    fn(body.getSummary(), frame);
  }
}

common::WireEncoding SensorIngest::replyEncoding() const {
  // A summary batch comes flat whatever its sender speaks (its summaries are
  // packed already); only releases that speak packed send one.
  const bool batch = decoder_.envelope().getBody().which() == wire::Envelope::Body::SUMMARY_BATCH;
  return batch ? common::WireEncoding::kPacked : decoder_.encoding();
}

void SensorIngest::queueThrottled(const std::string& routingId, wire::Summary::Reader sum) {
  queueAck(routingId, sum.getBootId(), sum.getSeq(), wire::AckStatus::THROTTLED,
           "over this sensor's rate limit: resend later");
}

void SensorIngest::queueAck(const std::string& routingId, uint64_t bootId, uint64_t seq,
                            wire::AckStatus status, std::string reason) {
  acks_.push_back({routingId, bootId, seq, status, std::move(reason), replyEncoding(),
                   peerTakesAckBatches_});
}

void SensorIngest::sendAcks(const std::vector<Ack>& acks) {
  // Grouped by connection in the order each first appears; a group keeps its
  // acks' order (a window's STORED before its resend's DUPLICATE).
  std::unordered_map<std::string_view, size_t> groupOf;
  size_t groups = 0;
  for (const auto& a : acks) {
    if (!a.batch) {
      const Ack* one = &a;
      sendAck(std::span(&one, 1));
      continue;
    }
    auto [it, added] = groupOf.try_emplace(a.routingId, groups);
    if (added) {
      if (ackGroups_.size() == groups) ackGroups_.emplace_back();
      ackGroups_[groups++].clear();
    }
    ackGroups_[it->second].push_back(&a);
  }
  for (size_t g = 0; g < groups; ++g) {
    std::span<const Ack* const> all(ackGroups_[g]);
    for (size_t i = 0; i < all.size(); i += common::kMaxAcksPerMessage)
      sendAck(all.subspan(i, std::min<size_t>(common::kMaxAcksPerMessage, all.size() - i)));
  }
}

void SensorIngest::sendAck(std::span<const Ack* const> acks) {
  const auto fill = [](wire::Ack::Builder ack, const Ack& a) {
    ack.setBootId(a.bootId);
    ack.setSeq(a.seq);
    ack.setStatus(a.status);
    if (!a.reason.empty()) ack.setReason(a.reason);
  };
  capnp::MallocMessageBuilder message;
  auto ack = common::initEnvelope(message).getBody().initAck();
  const Ack& first = *acks.front();
  fill(ack, first);
  if (acks.size() > 1) {
    auto more = ack.initMore(static_cast<unsigned>(acks.size() - 1));
    for (size_t i = 1; i < acks.size(); ++i) fill(more[static_cast<unsigned>(i - 1)], *acks[i]);
  }
  // A batch goes in its first ack's encoding: only packed-speaking releases
  // take batches.
  std::string bytes = common::encodeMessage(message, first.encoding);
  // A peer that went away meanwhile is not an error: it will resend.
  try {
    if (router_.send(zmq::buffer(first.routingId),
                     zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      (void)router_.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    if (e.num() != EHOSTUNREACH) throw;
  }
}

void SensorIngest::drain(size_t maxMessages) {
  auto job = takeJob();
  Store::Batch& batch = *job->batch;
  acks_.clear();
  // A batch of summaries counts as its summaries: one drain's write stays
  // as large as when each came alone.
  for (size_t i = 0; i < maxMessages && batch.size() < maxMessages; ++i) {
    zmq::message_t id, msg;
    bool extra = false;
    auto got = common::recvRouterMessage(router_, id, msg, extra);
    if (got == common::RouterReceive::kNothing) break;
    if (got == common::RouterReceive::kNoBody) continue;
    // A multi-frame message from a sensor is not ours.
    if (extra) {
      reject(IngestReject::kDecode, "?", "multi-frame message");
      continue;
    }
    try {
      handle(id.to_string(), msg, batch);
    } catch (const kj::Exception& e) {
      reject(IngestReject::kDecode, "?", e.getDescription().cStr());
    }
  }
  if (batch.size() > 0)
    city_.takeChanges([&](const std::string& id, const std::string& json) {
      batch.putSensor(id, json);
    });
  if (batch.size() == 0 && writer_.inFlight() == 0) {
    // Nothing to write, nothing being written: these acks (duplicates,
    // refusals) need not wait. (While a batch is being written they wait
    // their turn: a duplicate may be of a summary in that batch.)
    sendAcks(acks_);
    giveBack(std::move(job));
    return;
  }
  for (const auto& key : batch.keys()) inFlightKeys_.insert(key);
  std::swap(job->acks, acks_);  // acks_ takes the job's emptied vector
  writer_.submit(std::move(job));
}

void SensorIngest::collect() {
  for (auto& job : writer_.takeWritten(false)) {
    finish(*job);
    giveBack(std::move(job));
  }
}

void SensorIngest::flush() {
  for (auto& job : writer_.takeWritten(true)) {
    finish(*job);
    giveBack(std::move(job));
  }
}

std::unique_ptr<SensorIngest::Job> SensorIngest::takeJob() {
  if (spareJobs_.empty()) {
    auto job = std::make_unique<Job>();
    job->batch = std::make_unique<Store::Batch>(store_.batch());
    return job;
  }
  auto job = std::move(spareJobs_.back());
  spareJobs_.pop_back();
  return job;
}

void SensorIngest::giveBack(std::unique_ptr<Job> job) {
  // As many as can be in use at once (being filled, and in the writer).
  if (spareJobs_.size() > kMaxBatchesInFlight) return;
  job->batch->clear();
  job->acks.clear();
  job->result = {};
  spareJobs_.push_back(std::move(job));
}

void SensorIngest::finish(Job& job) {
  for (const auto& key : job.batch->keys()) inFlightKeys_.erase(key);
  store_.recordWrite(*job.batch, job.result);
  if (!job.result.error.empty()) {
    // Nothing of this batch is acked: the sensors keep it and resend.
    counters_.rejects[static_cast<size_t>(IngestReject::kStoreError)] += job.batch->size();
    spdlog::error("ingest: store write failed: {}", job.result.error);
    return;
  }
  sendAcks(job.acks);
}

}  // namespace garda::aggregator
