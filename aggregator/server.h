#pragma once

#include <atomic>
#include <memory>
#include <zmq.hpp>

#include "aggregator/city_view.h"
#include "aggregator/dispatch.h"
#include "aggregator/http_server.h"
#include "aggregator/metrics.h"
#include "aggregator/incidents.h"
#include "aggregator/plan.h"
#include "aggregator/ingest.h"
#include "aggregator/query.h"
#include "aggregator/store.h"
#include "aggregator/zap_authenticator.h"
#include "common/config.h"

namespace garda::aggregator {

// The aggregator's stages wired together around one event loop: the ZAP
// handler, the sensors' ROUTER (ingest), the console's ROUTER (queries), and
// the store. Construction binds every socket (throwing with the endpoint and
// reason if one cannot be bound); run() loops until `stop` becomes true.
class AggregatorServer {
 public:
  explicit AggregatorServer(const common::AggregatorConfig& config);
  ~AggregatorServer();

  void run(const std::atomic<bool>& stop);

 private:
  // Sends one message to a sensor on its current connection; false if the
  // sensor has none or the send would block.
  bool sendToSensor(const std::string& sensorId, const std::string& bytes);
  void sendHeartbeats(int64_t nowNs);

  common::AggregatorConfig config_;
  zmq::context_t ctx_;
  ZapAuthenticator zap_;
  Store store_;
  CityView city_;
  IncidentTracker incidents_;
  zmq::socket_t sensorSocket_;
  zmq::socket_t consoleSocket_;
  Dispatcher dispatcher_;
  Planner planner_;
  SensorIngest ingest_;
  QueryService queries_;
  ConsoleServer console_;
  SensorTotals sensorTotals_;
  std::unique_ptr<HttpService> http_;  // with [aggregator] http set
};

}  // namespace garda::aggregator
