#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "aggregator/city_view.h"
#include "aggregator/dispatch.h"
#include "aggregator/evidence.h"
#include "aggregator/incidents.h"
#include "aggregator/plan.h"
#include "aggregator/ingest.h"
#include "aggregator/notify.h"
#include "aggregator/query.h"
#include "aggregator/store.h"
#include "aggregator/zap_authenticator.h"
#include "common/config.h"
#include "common/service_notify.h"

namespace garda::aggregator {

// The aggregator's stages wired together around one event loop: the ZAP
// handler, the sensors' ROUTER (ingest), the console's ROUTER (queries), and
// the store. Construction binds every socket (throwing with the endpoint and
// reason if one cannot be bound); run() loops until `stop` becomes true,
// telling systemd it is ready, alive (watchdog) and stopping. Whenever
// `reloadRequested` is set (SIGHUP), run() clears it and calls reload().
class AggregatorServer {
 public:
  using ReloadListener = std::function<void(const common::AggregatorConfig&)>;

  explicit AggregatorServer(const common::AggregatorConfig& config);
  ~AggregatorServer();

  void run(const std::atomic<bool>& stop, std::atomic<bool>* reloadRequested = nullptr);

  // Re-reads the config file this server was started with and applies it:
  // the [[sensor]] and [[console]] lists (new handshakes are checked against
  // the new keys; a sensor no longer listed is refused from its next message
  // on, while connections of sensors that stay are kept), [[token]], and the
  // settings each stage reloads (rates, modes, never_block, [mitigate]).
  // Settings bound at start (listen addresses, secret_key, data_dir, http,
  // insecure_plaintext, max_message_bytes, [detect], [correlate]) keep their
  // old values and are named in a warning. A config with an error changes
  // nothing: false, with the loader's message (file, key, reason) in `error`.
  bool reload(std::string& error);
  // Called with the applied config after every successful reload (e.g. the
  // HTTP server's [[token]] list).
  void addReloadListener(ReloadListener listener) { reloadListeners_.push_back(std::move(listener)); }

 private:
  // Sends one message to a sensor on its current connection; false if the
  // sensor has none or the send would block.
  bool sendToSensor(const std::string& sensorId, const std::string& bytes);
  void sendHeartbeats(int64_t nowNs);
  std::string statusLine(int64_t nowNs) const;

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
  common::ServiceNotifier notifier_;
  std::vector<ReloadListener> reloadListeners_;
  Notifier incidentNotifier_;  // webhooks and syslog on incident changes
  EvidenceCollector evidence_;
};

}  // namespace garda::aggregator
