#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "aggregator/correlate.h"
#include "aggregator/http_auth.h"
#include "aggregator/metrics.h"
#include "aggregator/query.h"
#include "common/config.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace garda::aggregator {

// One route of the HTTP API: what the server registers, what the route list
// (/api/v1/routes) and the OpenAPI test see. `path` is written as in
// docs/openapi.json ({id} for a parameter).
struct RouteSpec {
  const char* method;
  const char* path;
  enum class Auth : uint8_t { kNone, kViewer, kOperator, kMetrics } auth;
};
const std::vector<RouteSpec>& routeTable();
// `path` as the regular expression httplib matches ({x} -> one segment).
std::string routeRegex(const std::string& path);

// Jobs handed from HTTP worker threads to the aggregator's loop thread, which
// owns every store, view and tracker. Bounded: post() refuses when full (the
// request gets 503), so a flood of requests costs the loop at most
// `maxPerTurn` jobs per turn, never an unbounded backlog. The loop polls
// fd() (an eventfd) with its sockets.
class LoopBridge {
 public:
  explicit LoopBridge(size_t capacity);
  ~LoopBridge();
  LoopBridge(const LoopBridge&) = delete;
  LoopBridge& operator=(const LoopBridge&) = delete;

  int fd() const noexcept { return fd_; }
  bool post(std::function<void()> job);
  // Loop thread: runs up to `max` jobs; returns how many ran.
  size_t runPending(size_t max);
  size_t depth() const;

 private:
  const size_t capacity_;
  int fd_ = -1;
  mutable std::mutex mutex_;
  std::deque<std::function<void()>> jobs_;
};

// Server-Sent Event streams: each client has its own bounded queue; the loop
// publishes into every queue (a short lock per client, never waiting on the
// network); a client whose queue is full is dropped (its stream ends) rather
// than slowing anyone.
class EventHub {
 public:
  struct Client {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::string> queue;
    bool dropped = false;
  };
  EventHub(size_t maxClients, size_t queueCapacity)
      : maxClients_(maxClients), capacity_(queueCapacity) {}

  // nullptr when maxClients streams are open.
  std::shared_ptr<Client> subscribe();
  void unsubscribe(const std::shared_ptr<Client>& c);
  // `event: NAME\ndata: JSON\n\n` to every client.
  void publish(const std::string& name, const nlohmann::json& data);
  // Ends every stream (shutdown).
  void closeAll();
  size_t clients() const;
  uint64_t dropped() const noexcept { return dropped_.load(); }
  uint64_t published() const noexcept { return published_.load(); }

 private:
  const size_t maxClients_;
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::set<std::shared_ptr<Client>> clients_;
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> published_{0};
};

// Orders whose state (or a sensor's delivery state) changed since the last
// look, for the event stream: compares snapshots of the order list, taken
// once a second on the loop thread. (Incidents come from the tracker's
// change observer instead: one can open and resolve between two looks.)
class OrderWatcher {
 public:
  // Calls `emit("order", order)` for each order new or changed since the
  // previous call; the first call only takes the snapshot.
  void look(const nlohmann::json& list,
            const std::function<void(const std::string&, const nlohmann::json&)>& emit);

 private:
  bool primed_ = false;
  std::map<std::string, std::string> orders_;  // id -> state and delivery states
};

// The HTTP API, SSE, /metrics and the web page's files on [aggregator] http.
// httplib's accept thread and a fixed pool of worker threads; every query
// runs on the aggregator's loop (through LoopBridge and QueryService::run),
// so the HTTP side never holds a lock the ingest path waits for.
class HttpService {
 public:
  HttpService(const common::AggregatorConfig& config, QueryService& queries,
              MetricsSources metrics);
  ~HttpService();
  HttpService(const HttpService&) = delete;
  HttpService& operator=(const HttpService&) = delete;

  // Loop thread: what the bridge posted, the event stream's ticks, and the
  // insecure-plaintext warning. Call every loop turn.
  void onLoop(int64_t wallNs, int64_t monoNs);
  // Loop thread: an incident was stored (IncidentTracker's observer).
  void onIncident(const IncidentChange& change);
  int wakeFd() const noexcept { return bridge_.fd(); }
  static constexpr size_t kLoopJobsPerTurn = 32;

 private:
  void registerRoutes();
  void publishTicks(int64_t wallNs);
  // Runs `fn` on the loop thread and waits for it (at most http_timeout_ms);
  // nullopt when the bridge is full or the loop did not get to it in time.
  template <class T>
  std::optional<T> onLoopThread(std::function<T()> fn);
  // The caller's token, or nullopt after writing the 401.
  std::optional<TokenIdentity> authenticate(const httplib::Request& req, httplib::Response& res);
  // When the current worker's request started (for the latency histogram).
  static std::chrono::steady_clock::time_point& requestStart();

  common::AggregatorConfig config_;
  QueryService& queries_;
  MetricsSources metrics_;
  TokenAuth auth_;
  LoopBridge bridge_;
  EventHub events_;
  OrderWatcher watcher_;
  std::map<std::string, unsigned> incidentChanges_;  // id -> bit per IncidentChangeKind, this second
  HttpCounters counters_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int64_t nextTickNs_ = 0;
  int64_t nextWarningNs_ = 0;
  std::atomic<bool> stopping_{false};
};

}  // namespace garda::aggregator
