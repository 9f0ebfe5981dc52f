#include "aggregator/server.h"

#include <spdlog/spdlog.h>

#include <capnp/message.h>

#include <algorithm>
#include <tuple>

#include "common/clock.h"
#include "common/duration.h"
#include "common/envelope.h"
#include "common/zmq_link.h"

namespace garda::aggregator {
namespace {

constexpr int64_t kRetentionEveryNs = 3'600'000'000'000;  // and once at start
constexpr int64_t kStatusEveryNs = 10'000'000'000;         // systemd STATUS= line

bool sameDetect(const common::DetectSettings& a, const common::DetectSettings& b) {
  return std::tie(a.k, a.sustainMs, a.clearMs, a.warmupMs, a.baselineHalfLifeMs, a.floorPps,
                  a.reflectionTotalFloorPps) == std::tie(b.k, b.sustainMs, b.clearMs, b.warmupMs,
                                                         b.baselineHalfLifeMs, b.floorPps,
                                                         b.reflectionTotalFloorPps);
}

bool sameCorrelate(const common::CorrelateSettings& a, const common::CorrelateSettings& b) {
  return std::tie(a.resolveAfterMs, a.idleResolveMs, a.joinWindowMs) ==
         std::tie(b.resolveAfterMs, b.idleResolveMs, b.joinWindowMs);
}

// The settings bound when the server starts (sockets, store, detector): a
// reload keeps their old values in `fresh` and returns the keys that differed.
std::vector<std::string> keepRestartOnly(const common::AggregatorConfig& old,
                                         common::AggregatorConfig& fresh) {
  std::vector<std::string> changed;
  auto keep = [&](auto& freshValue, const auto& oldValue, const char* key) {
    if (freshValue == oldValue) return;
    changed.emplace_back(key);
    freshValue = oldValue;
  };
  keep(fresh.listenSensors, old.listenSensors, "listen_sensors");
  keep(fresh.listenConsole, old.listenConsole, "listen_console");
  keep(fresh.http, old.http, "http");
  keep(fresh.secretKeyFile, old.secretKeyFile, "secret_key");
  keep(fresh.secretKey, old.secretKey, "secret_key (contents)");
  keep(fresh.dataDir, old.dataDir, "data_dir");
  keep(fresh.maxMessageBytes, old.maxMessageBytes, "max_message_bytes");
  keep(fresh.logLevel, old.logLevel, "log_level");
  keep(fresh.insecurePlaintext, old.insecurePlaintext, "insecure_plaintext");
  if (!sameDetect(fresh.detect, old.detect)) {
    changed.emplace_back("[detect]");
    fresh.detect = old.detect;
  }
  if (!sameCorrelate(fresh.correlate, old.correlate)) {
    changed.emplace_back("[correlate]");
    fresh.correlate = old.correlate;
  }
  return changed;
}

std::string joinIds(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out += (out.empty() ? "" : ", ") + id;
  return out.empty() ? "none" : out;
}

void bindOrThrow(zmq::socket_t& s, const std::string& endpoint, const char* what) {
  try {
    s.bind(endpoint);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error(std::string("cannot listen for ") + what + " on " + endpoint + ": " +
                             e.what());
  }
}

}  // namespace

AggregatorServer::AggregatorServer(const common::AggregatorConfig& config)
    : config_(config),
      ctx_(1),
      zap_(ctx_, config_),
      store_(config_.dataDir),
      city_(store_, config_),
      incidents_(store_, common::wallNowNs(), detectConfigFrom(config_.detect),
                 correlateConfigFrom(config_.correlate)),
      sensorSocket_(ctx_, zmq::socket_type::router),
      consoleSocket_(ctx_, zmq::socket_type::router),
      dispatcher_(store_, city_, config_,
                  [this](const std::string& id, const std::string& bytes) {
                    return sendToSensor(id, bytes);
                  }),
      planner_(dispatcher_, config_, incidents_.detector().config().floorPps),
      ingest_(sensorSocket_, store_, city_, dispatcher_, config_),
      queries_(store_, city_, dispatcher_, incidents_),
      console_(consoleSocket_, queries_, config_),
      incidentNotifier_(config_.notify),
      evidence_(store_, [this](const std::string& id, const std::string& bytes) {
        return sendToSensor(id, bytes);
      }) {
  ingest_.setIncidentTracker(&incidents_);
  ingest_.setEvidenceCollector(&evidence_);
  queries_.setEvidence(&evidence_);
  incidents_.addChangeObserver([this](const Incident& inc, const IncidentChange& c, int64_t now) {
    incidentNotifier_.onChange(inc, c.kind, now);
  });
  queries_.setExportSettings({config_.csirtName, config_.exportTlp});
  incidents_.setPlanner(&planner_);
  common::applyLinkOptions(sensorSocket_, static_cast<int64_t>(config_.maxMessageBytes));
  if (config_.insecurePlaintext)
    common::makePlainServer(sensorSocket_, ZapAuthenticator::kSensorDomain);
  else
    common::makeCurveServer(sensorSocket_, config_.secretKey, ZapAuthenticator::kSensorDomain);
  // Acks to a sensor that has gone are dropped, not queued forever.
  sensorSocket_.set(zmq::sockopt::sndhwm, 10000);
  // A message to a sensor that is not connected fails at once (and is
  // counted) instead of vanishing silently.
  sensorSocket_.set(zmq::sockopt::router_mandatory, 1);
  bindOrThrow(sensorSocket_, config_.listenSensors, "sensors");

  common::applyLinkOptions(consoleSocket_, 1 << 20);
  common::makeCurveServer(consoleSocket_, config_.secretKey, ZapAuthenticator::kConsoleDomain);
  bindOrThrow(consoleSocket_, config_.listenConsole, "consoles");
  ingest_.setSummaryObserver([this](wire::Summary::Reader s) { sensorTotals_.add(s); });
  if (!config_.http.empty())
    http_ = std::make_unique<HttpService>(
        config_, queries_,
        MetricsSources{&store_, &city_, &dispatcher_, &incidents_, &ingest_, &console_,
                       &sensorTotals_});
  if (http_)
    incidents_.addChangeObserver(
        [this](const Incident&, const IncidentChange& c, int64_t) { http_->onIncident(c); });
  spdlog::info("aggregator: sensors on {}, console on {}, store in {}, {} sensors listed",
               config_.listenSensors, config_.listenConsole, config_.dataDir,
               config_.sensors.size());
}

AggregatorServer::~AggregatorServer() {
  http_.reset();
  city_.persist();
}

bool AggregatorServer::reload(std::string& error) {
  common::AggregatorConfig fresh;
  try {
    fresh = common::loadAggregatorConfig(config_.path);
  } catch (const std::exception& e) {
    error = e.what();
    spdlog::error("reload: keeping the running configuration: {}", error);
    return false;
  }
  auto restartOnly = keepRestartOnly(config_, fresh);
  if (!restartOnly.empty())
    spdlog::warn("reload: changed settings that take effect only after a restart: {}",
                 joinIds(restartOnly));
  std::vector<std::string> removed, added;
  for (const auto& id : city_.listed()) {
    bool stays = std::any_of(fresh.sensors.begin(), fresh.sensors.end(),
                             [&](const common::SensorEntry& e) { return e.id == id; });
    if (!stays) removed.push_back(id);
  }
  for (const auto& e : fresh.sensors)
    if (!city_.isListed(e.id)) added.push_back(e.id);

  config_ = std::move(fresh);
  zap_.reload(config_);
  city_.reload(config_);
  ingest_.reload(config_);
  dispatcher_.reload(config_);
  planner_.reload(config_);
  console_.reload(config_);
  for (const auto& listener : reloadListeners_) listener(config_);
  spdlog::info("reload: {} sensors and {} consoles listed; sensors added: {}; removed (refused "
               "from now on): {}",
               config_.sensors.size(), config_.consoles.size(), joinIds(added), joinIds(removed));
  return true;
}

std::string AggregatorServer::statusLine(int64_t nowNs) const {
  size_t up = 0;
  for (const auto& id : city_.listed()) up += city_.isUp(id, nowNs);
  return fmt::format("{} of {} sensors up; sensors on {}, console on {}", up,
                     city_.listed().size(), config_.listenSensors, config_.listenConsole);
}

bool AggregatorServer::sendToSensor(const std::string& sensorId, const std::string& bytes) {
  // A sensor removed by a reload may still hold its connection: it gets
  // nothing more from us.
  auto* s = city_.isListed(sensorId) ? city_.find(sensorId) : nullptr;
  if (!s || s->routingId.empty()) return false;
  try {
    if (!sensorSocket_.send(zmq::buffer(s->routingId),
                            zmq::send_flags::sndmore | zmq::send_flags::dontwait))
      return false;
    // Messages are built packed; a sensor that spoke flat (an older
    // release, during a rolling upgrade) gets them flat.
    if (s->encoding == common::WireEncoding::kFlat)
      return sensorSocket_
          .send(zmq::buffer(common::toFlat(
                    std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()))),
                zmq::send_flags::dontwait)
          .has_value();
    return sensorSocket_.send(zmq::buffer(bytes), zmq::send_flags::dontwait).has_value();
  } catch (const zmq::error_t& e) {
    // EHOSTUNREACH (router_mandatory): the connection is gone.
    if (e.num() != EHOSTUNREACH) throw;
    s->routingId.clear();
    return false;
  }
}

void AggregatorServer::sendHeartbeats(int64_t nowNs) {
  capnp::MallocMessageBuilder message;
  common::initEnvelope(message).getBody().initHeartbeat().setAtNs(nowNs);
  std::string bytes = common::encodeMessage(message);
  const int64_t intervalNs = int64_t{config_.heartbeatMs} * 1'000'000;
  for (const auto& id : city_.listed()) {
    if (!city_.isUp(id, nowNs)) continue;
    // A sensor whose summaries were answered within the interval has heard
    // from this loop already: at 1,000 sensors that is 1,000 messages a
    // second fewer at each end.
    const SensorState* s = city_.find(id);
    if (s != nullptr && nowNs - s->lastAnsweredNs < intervalNs) continue;
    (void)sendToSensor(id, bytes);
  }
}

void AggregatorServer::run(const std::atomic<bool>& stop, std::atomic<bool>* reloadRequested) {
  int64_t nextPersist = 0, nextHeartbeat = 0, nextInsecureWarning = 0, nextRetention = 0;
  int64_t nextStatus = common::monoNowNs() + kStatusEveryNs;
  notifier_.ready(statusLine(common::wallNowNs()));
  while (!stop.load()) {
    if (reloadRequested && reloadRequested->exchange(false)) {
      notifier_.reloading();
      std::string error;
      bool ok = reload(error);
      notifier_.reloaded(ok ? statusLine(common::wallNowNs())
                            : "reload refused, running the previous configuration: " + error);
    }
    // While the writer has its fill of batches, sensor messages wait in
    // ZeroMQ's queue; a written batch wakes the loop to send its acks.
    zmq::pollitem_t items[] = {
        {zap_.socket().handle(), 0, ZMQ_POLLIN, 0},
        {sensorSocket_.handle(), 0, static_cast<short>(ingest_.takesMore() ? ZMQ_POLLIN : 0), 0},
        {consoleSocket_.handle(), 0, ZMQ_POLLIN, 0},
        {nullptr, ingest_.writtenFd(), ZMQ_POLLIN, 0},
        {nullptr, http_ ? http_->wakeFd() : -1, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, http_ ? 5 : 4, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[0].revents & ZMQ_POLLIN) zap_.handlePending();
    ingest_.collect();
    if ((items[1].revents & ZMQ_POLLIN) && ingest_.takesMore()) ingest_.drain(4096);
    if (items[2].revents & ZMQ_POLLIN) console_.drain(64);
    const int64_t wall = common::wallNowNs();
    dispatcher_.tick(wall);
    incidents_.tick(wall);
    int64_t now = common::monoNowNs();
    notifier_.keepAlive(now);
    if (now >= nextStatus) {
      notifier_.status(statusLine(wall));
      nextStatus = now + kStatusEveryNs;
    }
    if (http_) http_->onLoop(wall, now);
    if (now >= nextPersist) {
      evidence_.onOpen(incidents_.correlator().openIncidents(), wall);
      city_.persist();
      nextPersist = now + 1'000'000'000;
    }
    if (now >= nextHeartbeat) {
      sendHeartbeats(wall);
      nextHeartbeat = now + int64_t{config_.heartbeatMs} * 1'000'000;
    }
    if (now >= nextRetention) {
      // Data time: a summary's age is its window start's, not its arrival's.
      const int64_t cutoff = wall - config_.retentionMs * 1'000'000;
      try {
        auto r = store_.deleteOlderThan(cutoff);
        spdlog::info("retention: deleted what is older than {} (summaries of {} sensors, city "
                     "totals, audit records, {} incidents, {} orders)",
                     common::formatTimeNs(cutoff), r.sensorsSwept, r.incidents, r.orders);
      } catch (const std::exception& e) {
        spdlog::error("retention: {}", e.what());
      }
      nextRetention = now + kRetentionEveryNs;
    }
    if (config_.insecurePlaintext && now >= nextInsecureWarning) {
      spdlog::warn("aggregator: INSECURE: the sensor link on {} is plaintext and unauthenticated "
                   "(insecure_plaintext = true): anyone on the path can read summaries, forge "
                   "them for a listed sensor id, and read orders",
                   config_.listenSensors);
      nextInsecureWarning = now + 60'000'000'000;
    }
  }
  ingest_.flush();  // the acks of what is still being written
  dispatcher_.persistReported();
  notifier_.stopping();
  spdlog::info("aggregator: stopping");
}

}  // namespace garda::aggregator
