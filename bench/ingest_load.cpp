// ingest_load: many simulated sensors against one garda-aggregator, to see
// how many summaries per second it stores and how long each waits for its ack.
//
//   ingest_load --aggregator tcp://127.0.0.1:PORT --server-key aggregator.pub
//               --keys-dir DIR --sensors N --seconds S [--rate R] [--window-victims V]
//
// Sensor i is "load-<i>" with the CURVE key pair DIR/sensor-<i>.key and its
// own DEALER socket, as a real sensor has (all sockets in one context with
// --io-threads I/O threads, served by one epoll loop). Each sends hello, then
// summaries built like the sensor's (encodeSummary of a WindowStats with V
// victims, each with top sources, ports, vectors, reflection ports; a new
// window start per seq), keeping at most --inflight unacked, and batching
// them as garda-sensor does (held while a message of them is unacked, then
// sent in one summaryBatch; --single-summaries: never). Each sensor
// encodes its summary once and then only sets seq, window start and send time
// in the built message: the aggregator gets the same bytes as from a real
// sensor, and the generator, sharing the machine, spends its CPU on CURVE and
// the sockets rather than on re-encoding (a real sensor encodes one summary
// per window). Phases: warm-up (every sensor connected and one summary
// acked), then S measured seconds, then a drain with no new sends that waits
// for what is still in flight. Prints one line of key=value figures
// (acked_per_s and the p50/p99 ack latency, from when a summary was made to
// its ack, time held for a batch included, are over the measured seconds
// only); exits 3 if any ack was lost or refused; with
// --acked-out, also the seqs load-0 saw acked as stored (to check against
// `garda history`).
#include <CLI/CLI.hpp>
#include <capnp/serialize-packed.h>
#include <capnp/serialize.h>
#include <kj/io.h>
#include <fmt/core.h>
#include <malloc.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "bench/load_window.h"
#include "common/clock.h"
#include "common/envelope.h"
#include "common/ip.h"
#include "common/keys.h"
#include "common/zmq_link.h"
#include "sensor/uplink.h"
#include "sensor/window.h"

namespace {

using namespace garda;

std::atomic<bool> gStop{false};
void onSignal(int) { gStop.store(true); }

struct Options {
  std::string aggregator;
  std::string serverKeyFile;
  std::string keysDir;
  unsigned sensors = 10;
  double seconds = 10;
  double rate = 0;  // per sensor; 0 = as fast as acks allow
  unsigned victims = 10;
  double attacked = 1.0;  // share of sensors whose windows are under attack
  unsigned inflight = 32;
  int ioThreads = 2;
  double warmupTimeout = 60;
  double drainSeconds = 5;
  unsigned windowMs = 1000;
  std::string ackedOut;
  bool singleAcks = false;  // the hello does not offer batched acks
  bool singleSummaries = false;  // never batch summaries, whatever the aggregator takes
};

std::string packWords(kj::ArrayPtr<const capnp::word> words) {
  kj::VectorOutputStream out(words.size() * sizeof(capnp::word) / 2 + 64);
  {
    capnp::_::PackedOutputStream packed(out);
    packed.write(words.begin(), words.size() * sizeof(capnp::word));
  }
  auto bytes = out.getArray();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

// A sensor's summary envelope, packed once, so that the generator does not
// spend a core packing 20,000 summaries a second (each real sensor packs its
// own 20). What changes between sends (send time, seq, window start) is one
// whole 64-bit word each of a data section: encode() sets them in the flat
// form, packs the words up to the last of them and appends the rest, packed
// once. Packing may thus split a run of zero words in two: still a valid
// packed stream of the same flat message (checked once, at make()).
struct PackedTemplate {
  kj::Array<capnp::word> flat;
  size_t sentAtWord = 0, seqWord = 0, startWord = 0, head = 0;
  std::string tail;

  static std::unique_ptr<PackedTemplate> make(capnp::MallocMessageBuilder& message) {
    // Sentinels, to find the three words in the flat form.
    constexpr uint64_t kSentAt = 0x1d1d1d1d1d1d1d01, kSeq = 0x1d1d1d1d1d1d1d02,
                       kStart = 0x1d1d1d1d1d1d1d03;
    auto envelope = message.getRoot<wire::Envelope>();
    envelope.setSentAtNs(static_cast<int64_t>(kSentAt));
    envelope.getBody().getSummary().setSeq(kSeq);
    envelope.getBody().getSummary().setWindowStartNs(static_cast<int64_t>(kStart));
    auto t = std::make_unique<PackedTemplate>();
    t->flat = capnp::messageToFlatArray(message);
    int found = 0;
    for (size_t i = 0; i < t->flat.size(); ++i) {
      uint64_t v;
      std::memcpy(&v, &t->flat[i], sizeof v);
      if (v == kSentAt) t->sentAtWord = i, found |= 1;
      if (v == kSeq) t->seqWord = i, found |= 2;
      if (v == kStart) t->startWord = i, found |= 4;
    }
    if (found != 7) throw std::runtime_error("ingest_load: summary template fields not found");
    t->head = std::max({t->sentAtWord, t->seqWord, t->startWord}) + 1;
    t->tail = packWords(t->flat.slice(t->head, t->flat.size()));
    // The spliced form must unpack to the very flat message.
    const std::string sent = t->encode(1, 2, 3);
    const std::string unpacked =
        common::toFlat(std::span(reinterpret_cast<const uint8_t*>(sent.data()), sent.size()));
    if (unpacked.size() != t->flat.asBytes().size() ||
        std::memcmp(unpacked.data(), t->flat.begin(), unpacked.size()) != 0)
      throw std::runtime_error("ingest_load: spliced summary does not unpack to its message");
    return t;
  }

  std::string encode(int64_t sentAtNs, uint64_t seq, int64_t startNs) {
    set(sentAtWord, static_cast<uint64_t>(sentAtNs));
    set(seqWord, seq);
    set(startWord, static_cast<uint64_t>(startNs));
    return packWords(flat.slice(0, head)) + tail;
  }

 private:
  void set(size_t word, uint64_t v) { std::memcpy(static_cast<void*>(&flat[word]), &v, sizeof v); }
};

struct Sensor {
  unsigned index = 0;
  std::string id;
  uint64_t bootId = 0;
  zmq::socket_t socket;
  uint64_t nextSeq = 1;
  std::map<uint64_t, int64_t> inflight;  // seq -> time made (mono ns): held or sent, unacked
  // As garda-sensor's uplink: once the aggregator's orderSync says it takes
  // batches, a summary made while a message of summaries is unacked
  // (kSummaryMessagesInFlight) is held, and the held ones go in one
  // summaryBatch when that message is acked.
  bool takesBatches = false;
  std::deque<uint64_t> messages;  // last seq of each message sent, maybe unacked
  std::vector<std::string> held;  // seqs heldFrom, heldFrom + 1, ...
  uint64_t heldFrom = 0;
  int64_t nextDueNs = 0;                 // paced mode
  bool queued = false;                   // paced mode: waiting in Load::due_
  uint64_t acked = 0;                    // stored or duplicate
  std::vector<uint64_t> storedSeqs;      // kept for sensor 0 only
  // Its summary envelope, packed once (see PackedTemplate).
  std::unique_ptr<PackedTemplate> summary;
};

struct Totals {
  uint64_t sent = 0, stored = 0, duplicate = 0, refused = 0, invalid = 0, badMessages = 0,
           unknownAcks = 0, orderReports = 0, ackMessages = 0, summaryMessages = 0;
};

int64_t secondsToNs(double s) { return static_cast<int64_t>(s * 1e9); }

double percentileMs(std::vector<int64_t>& v, double q) {
  if (v.empty()) return NAN;
  size_t k = static_cast<size_t>(std::min<double>(v.size() - 1, std::floor(q * (v.size() - 1) + 0.5)));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]) / 1e6;
}

double cpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::string encodeHello(const Sensor& s, unsigned windowMs, bool takesAckBatches) {
  capnp::MallocMessageBuilder message;
  auto h = common::initEnvelope(message).getBody().initHello();
  h.setSensorId(s.id);
  h.setBootId(s.bootId);
  h.setVersion("ingest_load");
  h.setOpd("load");
  h.setWindowMs(windowMs);
  h.setCaptureSource("synthetic");
  h.setTakesAckBatches(takesAckBatches);
  auto prefixes = h.initProtected(1);
  common::writePrefix(prefixes[0], *common::Prefix::parse("198.51.100.0/24"));
  return common::encodeMessage(message);
}

std::string encodeHeartbeat(const Sensor& s) {
  capnp::MallocMessageBuilder message;
  auto h = common::initEnvelope(message).getBody().initHeartbeat();
  h.setSensorId(s.id);
  h.setBootId(s.bootId);
  h.setAtNs(common::wallNowNs());
  h.setBacklog(static_cast<uint32_t>(s.inflight.size()));
  return common::encodeMessage(message);
}

class Load {
 public:
  explicit Load(const Options& o)
      : o_(o),
        ctx_(o.ioThreads),
        window_(bench::makeLoadWindow(o.victims, o.windowMs)),
        normalWindow_(bench::makeLoadWindow(o.victims, o.windowMs, 4000)),
        attackedSensors_(static_cast<unsigned>(std::ceil(o.attacked * o.sensors))) {
    ctx_.set(zmq::ctxopt::max_sockets, static_cast<int>(o.sensors) + 64);
    const std::string serverKey = common::readCurveKeyFile(o.serverKeyFile, false);
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    std::random_device rd;
    // Window starts far enough in the past that no real sensor shares them,
    // a multiple of the window length as the decoder insists.
    const int64_t windowNs = int64_t{o.windowMs} * 1'000'000;
    baseStartNs_ = (common::wallNowNs() / windowNs - 10'000'000) * windowNs;
    sensors_.reserve(o.sensors);
    for (unsigned i = 0; i < o.sensors; ++i) {
      Sensor s;
      s.index = i;
      s.id = fmt::format("load-{}", i);
      s.bootId = ((uint64_t{rd()} << 32) ^ rd()) | 1;
      s.socket = zmq::socket_t(ctx_, zmq::socket_type::dealer);
      const std::string secret =
          common::readCurveKeyFile(fmt::format("{}/sensor-{}.key", o.keysDir, i), true);
      common::applyLinkOptions(s.socket, 64 << 20, 1000);
      common::makeCurveClient(s.socket, serverKey, secret);
      s.socket.set(zmq::sockopt::reconnect_ivl, 100);
      s.socket.set(zmq::sockopt::reconnect_ivl_max, 5000);
      // zmq_poll over a thousand sockets costs O(N) per wake-up; epoll on
      // each socket's ZMQ_FD costs O(ready). The fd only says "look again":
      // service() reads until EAGAIN, and every socket sent on is looked at
      // again (sending may consume the signal).
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = i;
      if (epoll_ctl(epfd_, EPOLL_CTL_ADD, s.socket.get(zmq::sockopt::fd), &ev) != 0)
        throw std::runtime_error(std::string("epoll_ctl: ") + std::strerror(errno));
      sensors_.push_back(std::move(s));
    }
    // Without ZMQ_IMMEDIATE the hello queues until the CURVE handshake is done.
    for (auto& s : sensors_) {
      s.socket.connect(o.aggregator);
      sendBytes(s, encodeHello(s, o.windowMs, !o.singleAcks));
    }
  }
  ~Load() {
    if (epfd_ >= 0) ::close(epfd_);
  }
  Load(const Load&) = delete;
  Load& operator=(const Load&) = delete;

  int run() {
    const int64_t t0 = common::monoNowNs();
    // Warm-up: one summary each, until every sensor has had its ack.
    for (size_t i = 0; i < sensors_.size(); ++i) {
      sendSummary(sensors_[i], common::monoNowNs());
      service(i, common::monoNowNs());
    }
    const int64_t warmDeadline = t0 + secondsToNs(o_.warmupTimeout);
    while (!gStop.load() && warmedUp_ < sensors_.size() && common::monoNowNs() < warmDeadline)
      pollOnce(10);
    const double warmupS = static_cast<double>(common::monoNowNs() - t0) / 1e9;
    if (warmedUp_ < sensors_.size())
      fmt::print(stderr, "ingest_load: only {} of {} sensors had an ack after {:.1f} s of warm-up\n",
                 warmedUp_, sensors_.size(), warmupS);

    // Measured phase.
    const Totals before = totals_;
    measuring_ = true;
    const double cpu0 = cpuSeconds();
    const int64_t m0 = common::monoNowNs();
    const int64_t mEnd = m0 + secondsToNs(o_.seconds);
    periodNs_ = o_.rate > 0 ? static_cast<int64_t>(1e9 / o_.rate) : 0;
    sending_ = true;
    for (size_t i = 0; i < sensors_.size(); ++i) {
      // Paced sensors' phases are spread over one period.
      sensors_[i].nextDueNs =
          m0 + periodNs_ * static_cast<int64_t>(i) / static_cast<int64_t>(sensors_.size());
      fill(i, m0);
      service(i, m0);
    }
    int64_t nextHeartbeat = m0 + 1'000'000'000;
    int64_t now = m0;
    while (!gStop.load() && now < mEnd) {
      int timeoutMs = 10;
      if (!due_.empty())
        timeoutMs = static_cast<int>(
            std::clamp<int64_t>((due_.top().first - now + 999'999) / 1'000'000, 0, 10));
      pollOnce(timeoutMs);
      now = common::monoNowNs();
      while (!due_.empty() && due_.top().first <= now) {
        const size_t i = due_.top().second;
        due_.pop();
        sensors_[i].queued = false;
        fill(i, now);
        service(i, now);
      }
      if (now >= nextHeartbeat) {
        for (size_t i = 0; i < sensors_.size(); ++i) {
          sendBytes(sensors_[i], encodeHeartbeat(sensors_[i]));
          service(i, now);
        }
        nextHeartbeat = now + 1'000'000'000;
      }
    }
    sending_ = false;
    const double measuredS = static_cast<double>(now - m0) / 1e9;
    measuring_ = false;
    const double cpuMeasured = cpuSeconds() - cpu0;
    const Totals during = minus(totals_, before);

    // Drain: nothing new; wait for what is in flight while acks keep coming
    // (a deep queue takes a while), and give up after drainSeconds without
    // one: what is still unacked then was lost.
    int64_t lastProgress = now;
    size_t left = inflight_;
    while (!gStop.load() && left > 0) {
      pollOnce(10);
      const int64_t t = common::monoNowNs();
      if (inflight_ < left) lastProgress = t;
      left = inflight_;
      if (t - lastProgress > secondsToNs(o_.drainSeconds)) break;
    }
    const double drainS = static_cast<double>(common::monoNowNs() - now) / 1e9;

    uint64_t minAcked = UINT64_MAX, maxAcked = 0;
    for (const auto& s : sensors_) {
      minAcked = std::min(minAcked, s.acked);
      maxAcked = std::max(maxAcked, s.acked);
    }
    const double p50 = percentileMs(latencies_, 0.50);
    const double p99 = percentileMs(latencies_, 0.99);
    const double pmax = latencies_.empty() ? NAN : static_cast<double>(*std::max_element(
                                                        latencies_.begin(), latencies_.end())) / 1e6;
    fmt::print(
        "sensors={} attacked={} victims={} summary_bytes={} inflight={} rate={} window_ms={} "
        "warmup_s={:.2f} "
        "drain_s={:.2f} "
        "acked_per_s={:.0f} p50_ms={:.2f} p99_ms={:.2f} max_ms={:.2f} sent={} stored={} "
        "duplicate={} refused={} invalid={} unacked={} bad_messages={} min_sensor_acked={} "
        "max_sensor_acked={} order_reports={} acks_per_message={:.2f} "
        "summaries_per_message={:.2f} load_cpu_per_s={:.2f}\n",
        sensors_.size(), attackedSensors_, o_.victims, summaryBytes_, o_.inflight, o_.rate,
        o_.windowMs, warmupS,
        drainS, static_cast<double>(during.stored + during.duplicate) / measuredS, p50, p99, pmax,
        totals_.sent, totals_.stored, totals_.duplicate, totals_.refused, totals_.invalid,
        inflight_, totals_.badMessages, minAcked, maxAcked, totals_.orderReports,
        during.ackMessages ? static_cast<double>(during.stored + during.duplicate + during.refused +
                                                 during.invalid) /
                                 static_cast<double>(during.ackMessages)
                           : 0.0,
        during.summaryMessages
            ? static_cast<double>(during.sent) / static_cast<double>(during.summaryMessages)
            : 0.0,
        cpuMeasured / measuredS);
    if (!o_.ackedOut.empty() && !sensors_.empty()) {
      std::ofstream out(o_.ackedOut);
      out << fmt::format("{:016x}\n", sensors_[0].bootId);
      for (uint64_t seq : sensors_[0].storedSeqs) out << seq << '\n';
      if (!out) throw std::runtime_error(o_.ackedOut + ": cannot write");
    }
    bool ok = totals_.refused == 0 && totals_.invalid == 0 && inflight_ == 0 &&
              warmedUp_ == sensors_.size();
    return ok ? 0 : 3;
  }

 private:
  static Totals minus(const Totals& a, const Totals& b) {
    return {a.sent - b.sent,
            a.stored - b.stored,
            a.duplicate - b.duplicate,
            a.refused - b.refused,
            a.invalid - b.invalid,
            a.badMessages - b.badMessages,
            a.unknownAcks - b.unknownAcks,
            a.orderReports - b.orderReports,
            a.ackMessages - b.ackMessages,
            a.summaryMessages - b.summaryMessages};
  }

  bool sendBytes(Sensor& s, const std::string& bytes) {
    return s.socket.send(zmq::buffer(bytes), zmq::send_flags::dontwait).has_value();
  }

  bool sendSummary(Sensor& s, int64_t nowNs) {
    const uint64_t seq = s.nextSeq;
    const int64_t startNs =
        baseStartNs_ + static_cast<int64_t>(seq) * int64_t{o_.windowMs} * 1'000'000;
    if (!s.summary) {
      auto& window = s.index < attackedSensors_ ? window_ : normalWindow_;
      window.startNs = startNs;
      const std::string packed = sensor::encodeSummary(window, s.id, s.bootId, seq, 0, 0);
      kj::ArrayInputStream in(
          kj::arrayPtr(reinterpret_cast<const kj::byte*>(packed.data()), packed.size()));
      capnp::PackedMessageReader reader(in);
      capnp::MallocMessageBuilder message;
      message.setRoot(reader.getRoot<wire::Envelope>());
      s.summary = PackedTemplate::make(message);
    }
    std::string bytes = s.summary->encode(common::wallNowNs(), seq, startNs);
    summaryBytes_ = bytes.size();
    if (holding(s) || !s.held.empty()) {
      if (s.held.empty()) s.heldFrom = seq;
      s.held.push_back(std::move(bytes));
    } else {
      if (!sendBytes(s, bytes)) return false;  // HWM reached: try again later
      if (s.takesBatches) s.messages.push_back(seq);
      totals_.summaryMessages++;
    }
    s.nextSeq++;
    s.inflight.emplace(seq, nowNs);
    inflight_++;
    totals_.sent++;
    return true;
  }

  // Sends what sensor i may send now: up to the in-flight bound, and when
  // paced only what is due (then it waits in due_ for its next turn; a
  // sensor held back by the bound is woken by its acks instead).
  void fill(size_t i, int64_t nowNs) {
    if (!sending_) return;
    Sensor& s = sensors_[i];
    while (s.inflight.size() < o_.inflight) {
      if (periodNs_ && nowNs < s.nextDueNs) break;
      if (!sendSummary(s, nowNs)) break;
      if (periodNs_) {
        s.nextDueNs += periodNs_;
        // Behind by more than a second (acks slow): do not burst to catch up.
        if (s.nextDueNs < nowNs - 1'000'000'000) s.nextDueNs = nowNs;
      }
    }
    if (periodNs_ && !s.queued && s.nextDueNs > nowNs) {
      due_.emplace(s.nextDueNs, i);
      s.queued = true;
    }
  }

  // As Uplink::holding(): a message of summaries is unacked (its last one).
  bool holding(Sensor& s) {
    if (!s.takesBatches) return false;
    while (!s.messages.empty() && !s.inflight.contains(s.messages.front())) s.messages.pop_front();
    return s.messages.size() >= common::kSummaryMessagesInFlight;
  }

  // Sends the held summaries once none is held back, in batches as
  // garda-sensor's uplink makes them.
  void flushHeld(Sensor& s) {
    if (s.held.empty() || holding(s)) return;
    size_t from = 0;
    while (from < s.held.size()) {
      const auto first = s.held.begin() + static_cast<long>(from);
      const auto end = common::summaryBatchEnd(first, s.held.end(),
                                               [](const std::string& b) { return b.size(); });
      const size_t to = static_cast<size_t>(end - s.held.begin());
      bool sent;
      if (to - from == 1) {
        sent = sendBytes(s, s.held[from]);
      } else {
        views_.assign(first, end);
        sent = sendBytes(s, common::encodeSummaryBatch(views_));
      }
      if (!sent) break;  // HWM reached: the rest on a later look
      totals_.summaryMessages++;
      s.messages.push_back(s.heldFrom + to - 1);
      from = to;
    }
    s.held.erase(s.held.begin(), s.held.begin() + static_cast<long>(from));
    s.heldFrom += from;
  }

  // Reads everything waiting on sensor i's socket, refilling as acks free
  // room, until the socket has nothing more to say.
  void service(size_t i, int64_t now) {
    Sensor& s = sensors_[i];
    for (int round = 0; round < 64; ++round) {
      bool any = false;
      for (;;) {
        zmq::message_t msg;
        if (!s.socket.recv(msg, zmq::recv_flags::dontwait)) break;
        handle(s, msg, now);
        any = true;
      }
      if (!any) return;
      flushHeld(s);
      const uint64_t sent = totals_.sent;
      fill(i, now);
      if (totals_.sent == sent) return;
    }
  }

  void pollOnce(int timeoutMs) {
    epoll_event events[256];
    int n = epoll_wait(epfd_, events, 256, timeoutMs);
    if (n < 0) {
      if (errno == EINTR) return;
      throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
    }
    const int64_t now = common::monoNowNs();
    for (int k = 0; k < n; ++k) service(events[k].data.u32, now);
    // A safety net against a signal consumed unseen: look at every socket
    // once a second. (Every 100 ms, the look cost the generator a poll and a
    // getpid system call per socket inside ZeroMQ, 20,000 a second at
    // N=1000: CPU taken from the aggregator it measures.)
    if (now >= nextSweepNs_) {
      for (size_t i = 0; i < sensors_.size(); ++i) service(i, now);
      nextSweepNs_ = now + 1'000'000'000;
    }
  }

  void answerOrder(Sensor& s, capnp::Text::Reader orderId, int64_t now) {
    capnp::MallocMessageBuilder message(64);
    auto r = common::initEnvelope(message).getBody().initOrderReport();
    r.setOrderId(orderId);
    r.setState(wire::OrderState::APPLIED);
    r.setAtNs(now);
    r.setBootId(s.bootId);
    if (sendBytes(s, common::encodeMessage(message))) totals_.orderReports++;
  }

  void handle(Sensor& s, zmq::message_t& msg, int64_t now) {
    auto r = decoder_.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size()));
    if (r != common::EnvelopeReject::kNone) {
      totals_.badMessages++;
      return;
    }
    auto body = decoder_.envelope().getBody();
    // Orders are answered `applied`, as a sensor with the dry-run enforcer
    // would: unanswered, the aggregator resends them (and rewrites them)
    // every retry interval, a cost no real city pays.
    if (body.which() == wire::Envelope::Body::ORDER) {
      answerOrder(s, body.getOrder().getOrderId(), now);
      return;
    }
    if (body.which() == wire::Envelope::Body::ORDER_SYNC) {
      s.takesBatches = !o_.singleSummaries && body.getOrderSync().getTakesSummaryBatches();
      for (auto o : body.getOrderSync().getOrders()) answerOrder(s, o.getOrderId(), now);
      return;
    }
    if (body.which() != wire::Envelope::Body::ACK) return;
    totals_.ackMessages++;
    auto ack = body.getAck();
    handleAck(s, ack, now);
    for (auto more : ack.getMore()) handleAck(s, more, now);
  }

  void handleAck(Sensor& s, wire::Ack::Reader ack, int64_t now) {
    if (ack.getSeq() == 0) {  // a refused hello
      totals_.refused++;
      fmt::print(stderr, "ingest_load: {}: hello refused: {}\n", s.id, ack.getReason().cStr());
      return;
    }
    auto it = ack.getBootId() == s.bootId ? s.inflight.find(ack.getSeq()) : s.inflight.end();
    if (it == s.inflight.end()) {
      totals_.unknownAcks++;
      return;
    }
    switch (ack.getStatus()) {
      case wire::AckStatus::STORED:
        totals_.stored++;
        if (&s == &sensors_[0]) s.storedSeqs.push_back(ack.getSeq());
        s.acked++;
        break;
      case wire::AckStatus::DUPLICATE:
        totals_.duplicate++;
        s.acked++;
        break;
      case wire::AckStatus::REFUSED:
        totals_.refused++;
        break;
      case wire::AckStatus::INVALID:
      case wire::AckStatus::THROTTLED:  // ingest_load.sh lifts the rate limit: a failure here
        totals_.invalid++;
        break;
    }
    if (measuring_) latencies_.push_back(now - it->second);
    s.inflight.erase(it);
    inflight_--;
    if (s.acked == 1) warmedUp_++;
  }

  const Options& o_;
  zmq::context_t ctx_;
  int epfd_ = -1;
  sensor::WindowStats window_;        // under attack
  sensor::WindowStats normalWindow_;  // the same shape, under every floor
  unsigned attackedSensors_;          // sensors 0 .. this - 1 send window_
  int64_t baseStartNs_ = 0;
  std::vector<Sensor> sensors_;
  // Paced mode: (next due time, sensor), earliest first.
  std::priority_queue<std::pair<int64_t, size_t>, std::vector<std::pair<int64_t, size_t>>,
                      std::greater<>>
      due_;
  int64_t periodNs_ = 0;
  int64_t nextSweepNs_ = 0;
  bool sending_ = false;
  common::EnvelopeDecoder decoder_;
  std::vector<std::string_view> views_;  // flushHeld's scratch
  Totals totals_;
  size_t inflight_ = 0;
  std::vector<int64_t> latencies_;
  size_t warmedUp_ = 0;
  size_t summaryBytes_ = 0;
  bool measuring_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  // The generator stands in for sensors on other machines, so it should
  // leave the aggregator as much of the shared cores as it can. With glibc's
  // defaults its heap top was trimmed after the frees of each round of
  // messages (CURVE boxes of ~100 KB batches) and grown again for the next,
  // every page faulted in afresh: 0.15-0.25 of a core at N=1000. Keep the
  // heap instead (docs/decisions.md, "The last step to 20,000/s at N=1000
  // (session 10)").
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
  Options o;
  CLI::App app{"ingest_load: N simulated sensors (real CURVE keys) against a garda-aggregator"};
  app.add_option("--aggregator", o.aggregator, "sensor endpoint, e.g. tcp://127.0.0.1:7450")
      ->required();
  app.add_option("--server-key", o.serverKeyFile, "the aggregator's public key file")->required();
  app.add_option("--keys-dir", o.keysDir, "holds sensor-<i>.key for i < N")->required();
  app.add_option("--sensors", o.sensors, "simulated sensors, ids load-0 ..")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--seconds", o.seconds, "measured time")->check(CLI::Range(0.1, 3600.0));
  app.add_option("--rate", o.rate, "summaries/s per sensor; 0 = as fast as acks allow")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--window-victims", o.victims, "victims per summary")
      ->check(CLI::Range(0u, 2048u));
  app.add_option("--attacked", o.attacked,
                 "share of sensors whose windows are under attack (every victim above every "
                 "floor); the others send the same shape at an office's normal rates")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--inflight", o.inflight, "unacked summaries allowed per sensor")
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--io-threads", o.ioThreads, "ZeroMQ I/O threads")->check(CLI::Range(1, 8));
  app.add_option("--window-ms", o.windowMs,
                 "each summary's window (data time advances this much per summary; "
                 "counts are scaled to keep the same rates)")
      ->check(CLI::Range(100, 60'000));
  app.add_option("--warmup-timeout", o.warmupTimeout, "seconds to wait for every sensor's first ack");
  app.add_option("--drain-seconds", o.drainSeconds, "give up on acks after this long without one (after the measured time)");
  app.add_option("--acked-out", o.ackedOut, "write load-0's boot id and stored seqs here");
  app.add_flag("--single-acks", o.singleAcks,
               "do not offer batched acks in the hello: one ack message per summary, as "
               "sensors before them");
  app.add_flag("--single-summaries", o.singleSummaries,
               "send every summary alone, even to an aggregator that takes summary batches, "
               "as sensors before them");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  try {
    Load load(o);
    return load.run();
  } catch (const std::exception& e) {
    fmt::print(stderr, "ingest_load: {}\n", e.what());
    return 1;
  }
}
