#include "aggregator/server.h"

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/zmq_link.h"

namespace garda::aggregator {
namespace {

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
      sensorSocket_(ctx_, zmq::socket_type::router),
      consoleSocket_(ctx_, zmq::socket_type::router),
      ingest_(sensorSocket_, store_, city_, config_.maxMessageBytes),
      queries_(store_, city_),
      console_(consoleSocket_, queries_, store_, config_) {
  common::applyLinkOptions(sensorSocket_, static_cast<int64_t>(config_.maxMessageBytes));
  common::makeCurveServer(sensorSocket_, config_.secretKey, ZapAuthenticator::kSensorDomain);
  // Acks to a sensor that has gone are dropped, not queued forever.
  sensorSocket_.set(zmq::sockopt::sndhwm, 10000);
  bindOrThrow(sensorSocket_, config_.listenSensors, "sensors");

  common::applyLinkOptions(consoleSocket_, 1 << 20);
  common::makeCurveServer(consoleSocket_, config_.secretKey, ZapAuthenticator::kConsoleDomain);
  bindOrThrow(consoleSocket_, config_.listenConsole, "consoles");
  spdlog::info("aggregator: sensors on {}, console on {}, store in {}, {} sensors listed",
               config_.listenSensors, config_.listenConsole, config_.dataDir,
               config_.sensors.size());
}

AggregatorServer::~AggregatorServer() { city_.persist(); }

void AggregatorServer::run(const std::atomic<bool>& stop) {
  int64_t nextPersist = 0;
  while (!stop.load()) {
    zmq::pollitem_t items[] = {{zap_.socket().handle(), 0, ZMQ_POLLIN, 0},
                               {sensorSocket_.handle(), 0, ZMQ_POLLIN, 0},
                               {consoleSocket_.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 3, std::chrono::milliseconds(100));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      throw;
    }
    if (items[0].revents & ZMQ_POLLIN) zap_.handlePending();
    if (items[1].revents & ZMQ_POLLIN) ingest_.drain(4096);
    if (items[2].revents & ZMQ_POLLIN) console_.drain(64);
    int64_t now = common::monoNowNs();
    if (now >= nextPersist) {
      city_.persist();
      nextPersist = now + 1'000'000'000;
    }
  }
  spdlog::info("aggregator: stopping");
}

}  // namespace garda::aggregator
