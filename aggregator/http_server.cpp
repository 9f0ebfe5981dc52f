#include "aggregator/http_server.h"

#include <capnp/message.h>
#include <httplib.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <future>
#include <limits>
#include <regex>

#include "common/clock.h"
#include "common/duration.h"
#include "common/envelope.h"

namespace garda::aggregator {

extern const char* const kOpenApiJson;  // docs/openapi.json, embedded at build time

namespace {

using Auth = RouteSpec::Auth;
using Clock = std::chrono::steady_clock;

constexpr size_t kSseQueueCapacity = 256;
constexpr auto kSseKeepAlive = std::chrono::seconds(5);
constexpr int64_t kTickNs = 1'000'000'000;
constexpr int64_t kWarnEveryNs = 60'000'000'000;
constexpr uint32_t kMaxLimit = 1'000'000;

// Bounded worker pool for httplib: a fixed set of threads and at most
// `capacity` accepted connections waiting. When the queue is full the accept
// thread waits (new connections wait in the kernel's listen backlog) instead
// of growing memory; httplib 0.11's TaskQueue::enqueue cannot refuse.
class BoundedPool : public httplib::TaskQueue {
 public:
  BoundedPool(size_t threads, size_t capacity) : capacity_(capacity) {
    for (size_t i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~BoundedPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lk(mutex_);
    notFull_.wait(lk, [&] { return jobs_.size() < capacity_ || stop_; });
    jobs_.push_back(std::move(fn));
    notEmpty_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard lk(mutex_);
      if (stop_ && workers_.empty()) return;
      stop_ = true;
    }
    notEmpty_.notify_all();
    notFull_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lk(mutex_);
        notEmpty_.wait(lk, [&] { return !jobs_.empty() || stop_; });
        // Queued connections are still served (and closed) at shutdown.
        if (jobs_.empty()) return;
        fn = std::move(jobs_.front());
        jobs_.pop_front();
      }
      notFull_.notify_one();
      fn();
    }
  }

  const size_t capacity_;
  std::mutex mutex_;
  std::condition_variable notEmpty_, notFull_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
};

const char* reasonOf(int status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 409: return "conflict";
    case 413: return "request body too large";
    case 414: return "request URI too long";
    case 500: return "internal error";
    case 501: return "not implemented";
    case 503: return "service unavailable";
    default: return "error";
  }
}

void sendJson(httplib::Response& res, int status, const nlohmann::json& j) {
  res.status = status;
  res.set_content(j.dump(), "application/json");
}

void sendError(httplib::Response& res, int status, const std::string& why) {
  sendJson(res, status, {{"error", why}, {"status", status}});
}

// A bad query parameter: the request gets 400 with this reason.
struct BadParam : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string param(const httplib::Request& req, const char* name) {
  return req.has_param(name) ? req.get_param_value(name) : std::string();
}

uint64_t uintParam(const httplib::Request& req, const char* name, uint64_t max) {
  std::string v = param(req, name);
  if (v.empty()) return 0;
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9' || n > max) throw BadParam(std::string(name) + "=" + v + ": not a number 0.." + std::to_string(max));
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n > max) throw BadParam(std::string(name) + "=" + v + ": at most " + std::to_string(max));
  return n;
}

// A point in time: nanoseconds since the epoch, or a duration ("10m") back
// from now. 0 when absent.
int64_t timeParam(const httplib::Request& req, const char* name) {
  std::string v = param(req, name);
  if (v.empty()) return 0;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return static_cast<int64_t>(
        uintParam(req, name, static_cast<uint64_t>(std::numeric_limits<int64_t>::max())));
  if (auto d = common::parseDurationNs(v)) return std::max<int64_t>(common::wallNowNs() - *d, 1);
  throw BadParam(std::string(name) + "=" + v +
                 ": expected nanoseconds since the epoch or a duration back from now (e.g. 10m)");
}

bool flagParam(const httplib::Request& req, const char* name) {
  std::string v = param(req, name);
  if (v.empty() || v == "0" || v == "false") return false;
  if (v == "1" || v == "true") return true;
  throw BadParam(std::string(name) + "=" + v + ": expected 1/0 or true/false");
}

std::string pathId(const httplib::Request& req) {
  return req.matches.size() > 1 ? std::string(req.matches[1]) : std::string();
}

// Fills the Query for a route from the request; throws BadParam.
using QueryBuilder = std::function<void(const httplib::Request&, wire::Query::Command::Builder)>;

QueryBuilder topQuery(bool sources) {
  return [sources](const httplib::Request& req, wire::Query::Command::Builder c) {
    auto t = c.initTop();
    t.setSources(sources);
    t.setSinceNs(timeParam(req, "since"));
    t.setSensorId(param(req, "sensor"));
    t.setLimit(static_cast<uint32_t>(uintParam(req, "limit", 1000)));
  };
}

struct QueryRoute {
  const char* method;
  const char* path;
  QueryBuilder build;
};

const std::vector<QueryRoute>& queryRoutes() {
  static const std::vector<QueryRoute> routes = {
      {"GET", "/api/v1/status", [](const auto&, auto c) { c.setStatus(); }},
      {"GET", "/api/v1/incidents",
       [](const auto& req, auto c) {
         auto q = c.initIncidents();
         q.setOpenOnly(flagParam(req, "open"));
         q.setSinceNs(timeParam(req, "since"));
       }},
      {"GET", "/api/v1/incidents/{id}", [](const auto& req, auto c) { c.setIncidentShow(pathId(req)); }},
      {"GET", "/api/v1/incidents/{id}/pcap",
       [](const auto& req, auto c) { c.setIncidentPcap(pathId(req)); }},
      {"GET", "/api/v1/incidents/{id}/export",
       [](const auto& req, auto c) {
         std::string format = param(req, "format");
         if (format != "stix" && format != "misp")
           throw BadParam("format=" + format + ": expected stix or misp");
         auto e = c.initIncidentExport();
         e.setIncidentId(pathId(req));
         e.setFormat(format);
       }},
      {"GET", "/api/v1/top/victims", topQuery(false)},
      {"GET", "/api/v1/top/sources", topQuery(true)},
      {"GET", "/api/v1/history",
       [](const auto& req, auto c) {
         auto h = c.initHistory();
         h.setSensorId(param(req, "sensor"));
         h.setVictim(param(req, "victim"));
         h.setSinceNs(timeParam(req, "since"));
         h.setUntilNs(timeParam(req, "until"));
         h.setLimit(static_cast<uint32_t>(uintParam(req, "limit", kMaxLimit)));
         h.setPoints(static_cast<uint32_t>(uintParam(req, "points", kMaxLimit)));
       }},
      {"GET", "/api/v1/orders", [](const auto&, auto c) { c.setBlockList(); }},
      {"POST", "/api/v1/orders",
       [](const auto& req, auto c) {
         auto body = nlohmann::json::parse(req.body, nullptr, false);
         if (!body.is_object()) throw BadParam("body: expected a JSON object {prefix, ttl, reason}");
         auto text = [&](const char* key) {
           if (!body.contains(key)) return std::string();
           if (!body[key].is_string()) throw BadParam(std::string(key) + ": must be a string");
           return body[key].template get<std::string>();
         };
         std::string prefixText = text("prefix");
         auto prefix = common::Prefix::parse(prefixText);
         if (!prefix && prefixText.find('/') == std::string::npos)
           if (auto a = common::IpAddress::parse(prefixText))
             prefix = common::Prefix::make(*a, a->isV4() ? 32 : 128);
         if (!prefix)
           throw BadParam("prefix=\"" + prefixText + "\": expected an address or a prefix such as "
                          "198.51.100.0/24 (no host bits past the length)");
         std::string ttlText = text("ttl");
         auto ttl = common::parseDurationNs(ttlText.empty() ? "1h" : ttlText);
         if (!ttl || *ttl <= 0) throw BadParam("ttl=\"" + ttlText + "\": expected a duration such as 1h");
         auto b = c.initBlockAdd();
         common::writePrefix(b.initPrefix(), *prefix);
         b.setTtlMs(static_cast<uint64_t>(*ttl / 1'000'000));
         b.setReason(text("reason"));
       }},
      {"DELETE", "/api/v1/orders/{id}", [](const auto& req, auto c) { c.setBlockRemove(pathId(req)); }},
      {"POST", "/api/v1/orders/{id}/approve",
       [](const auto& req, auto c) { c.setOrderApprove(pathId(req)); }},
      {"POST", "/api/v1/orders/{id}/reject",
       [](const auto& req, auto c) { c.setOrderReject(pathId(req)); }},
      {"GET", "/api/v1/audit",
       [](const auto& req, auto c) {
         auto a = c.initAudit();
         a.setSinceNs(timeParam(req, "since"));
         a.setLimit(static_cast<uint32_t>(uintParam(req, "limit", 10'000)));
       }},
  };
  return routes;
}

}  // namespace

const std::vector<RouteSpec>& routeTable() {
  static const std::vector<RouteSpec> table = [] {
    std::vector<RouteSpec> t;
    // Query routes need a valid token; QueryService::run checks the role
    // of actions (403) and audits them, for HTTP and the console alike.
    for (const auto& r : queryRoutes()) t.push_back({r.method, r.path, Auth::kViewer});
    t.push_back({"GET", "/api/v1/events", Auth::kViewer});
    t.push_back({"GET", "/api/v1/whoami", Auth::kViewer});
    t.push_back({"GET", "/api/v1/routes", Auth::kViewer});
    t.push_back({"GET", "/api/v1/openapi.json", Auth::kNone});
    t.push_back({"GET", "/metrics", Auth::kMetrics});
    return t;
  }();
  return table;
}

std::string routeRegex(const std::string& path) {
  static const std::regex placeholder(R"(\{[a-z_]+\})");
  return std::regex_replace(path, placeholder, "([A-Za-z0-9._:-]+)");
}

// ---- LoopBridge ----

LoopBridge::LoopBridge(size_t capacity) : capacity_(capacity) {
  fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error(std::string("http: eventfd: ") + std::strerror(errno));
}

LoopBridge::~LoopBridge() {
  if (fd_ >= 0) ::close(fd_);
}

bool LoopBridge::post(std::function<void()> job) {
  {
    std::lock_guard lk(mutex_);
    if (jobs_.size() >= capacity_) return false;
    jobs_.push_back(std::move(job));
  }
  uint64_t one = 1;
  (void)!::write(fd_, &one, sizeof one);
  return true;
}

size_t LoopBridge::runPending(size_t max, std::chrono::steady_clock::duration budget) {
  uint64_t n = 0;
  (void)!::read(fd_, &n, sizeof n);  // clears the wakeup; jobs left over re-arm below
  const auto until = std::chrono::steady_clock::now() + budget;
  size_t ran = 0;
  while (ran < max && (ran == 0 || std::chrono::steady_clock::now() < until)) {
    std::function<void()> job;
    {
      std::lock_guard lk(mutex_);
      if (jobs_.empty()) break;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
    ++ran;
  }
  if (depth() > 0) {
    uint64_t one = 1;
    (void)!::write(fd_, &one, sizeof one);
  }
  return ran;
}

size_t LoopBridge::depth() const {
  std::lock_guard lk(mutex_);
  return jobs_.size();
}

// ---- EventHub ----

std::shared_ptr<EventHub::Client> EventHub::subscribe() {
  std::lock_guard lk(mutex_);
  if (clients_.size() >= maxClients_) return nullptr;
  auto c = std::make_shared<Client>();
  clients_.insert(c);
  return c;
}

void EventHub::unsubscribe(const std::shared_ptr<Client>& c) {
  std::lock_guard lk(mutex_);
  clients_.erase(c);
}

void EventHub::publish(const std::string& name, const nlohmann::json& data) {
  std::string frame = "event: " + name + "\ndata: " + data.dump() + "\n\n";
  std::lock_guard lk(mutex_);
  published_++;
  for (const auto& c : clients_) {
    std::lock_guard ck(c->mutex);
    if (c->dropped) continue;
    if (c->queue.size() >= capacity_) {
      c->dropped = true;
      c->queue.clear();
      dropped_++;
    } else {
      c->queue.push_back(frame);
    }
    c->cv.notify_one();
  }
}

void EventHub::closeAll() {
  std::lock_guard lk(mutex_);
  for (const auto& c : clients_) {
    std::lock_guard ck(c->mutex);
    c->dropped = true;
    c->cv.notify_one();
  }
}

size_t EventHub::clients() const {
  std::lock_guard lk(mutex_);
  return clients_.size();
}

// ---- OrderWatcher ----

void OrderWatcher::look(
    const nlohmann::json& list,
    const std::function<void(const std::string&, const nlohmann::json&)>& emit) {
  std::map<std::string, std::string> now;
  for (const auto& o : list) {
    std::string id = o.value("id", "");
    std::string key = o.value("state", "");
    const nlohmann::json deliveries = o.value("deliveries", nlohmann::json::object());
    for (const auto& [sensor, d] : deliveries.items()) key += "|" + sensor + "=" + d.value("state", "");
    now[id] = key;
    auto it = orders_.find(id);
    if (primed_ && (it == orders_.end() || it->second != key)) {
      nlohmann::json j = o;
      j.erase("history");
      emit("order", j);
    }
  }
  orders_ = std::move(now);
  primed_ = true;
}

// ---- HttpService ----

HttpService::HttpService(const common::AggregatorConfig& config, QueryService& queries,
                         MetricsSources metrics)
    : config_(config),
      queries_(queries),
      metrics_(metrics),
      auth_(config.tokens),
      bridge_(std::max<size_t>(config.httpThreads * 4, 64)),
      events_(config.httpSseClients, kSseQueueCapacity) {
  // A client that hangs up mid-answer must not kill the aggregator (TLS
  // writes go through write(2), which raises SIGPIPE).
  std::signal(SIGPIPE, SIG_IGN);
  const bool tls = !config_.httpTlsCert.empty();
  if (tls) {
    server_ = std::make_unique<httplib::SSLServer>(config_.httpTlsCert.c_str(),
                                                   config_.httpTlsKey.c_str());
    if (!server_->is_valid())
      throw std::runtime_error("cannot start HTTPS: " + config_.path +
                               ": aggregator.http_tls_cert / http_tls_key (\"" +
                               config_.httpTlsCert + "\", \"" + config_.httpTlsKey +
                               "\"): not a PEM certificate and its matching private key");
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  const size_t threads = config_.httpThreads, queue = config_.httpQueue;
  server_->new_task_queue = [threads, queue] { return new BoundedPool(threads, queue); };
  const time_t sec = config_.httpTimeoutMs / 1000;
  const time_t usec = (config_.httpTimeoutMs % 1000) * 1000;
  server_->set_read_timeout(sec, usec);
  server_->set_write_timeout(sec, usec);
  // Headers and body go out in separate writes: without TCP_NODELAY, Nagle
  // and the client's delayed ACK add 40 ms to every keep-alive answer.
  server_->set_tcp_nodelay(true);
  server_->set_keep_alive_timeout(5);
  server_->set_keep_alive_max_count(100);
  server_->set_payload_max_length(config_.httpMaxBodyBytes);
  // The web console's files at / (a GET no file answers goes on to the API).
  if (!config_.webRoot.empty() && !server_->set_mount_point("/", config_.webRoot))
    spdlog::warn("http: web_root \"{}\" is not a folder: the web console is not served",
                 config_.webRoot);
  registerRoutes();
  if (!server_->bind_to_port(config_.httpHost, config_.httpPort))
    throw std::runtime_error("cannot listen for HTTP on " + config_.http + " (aggregator.http): " +
                             std::strerror(errno));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  spdlog::info("http: API on {}://{} ({} tokens, {} worker threads)", tls ? "https" : "http",
               config_.http, auth_.size(), config_.httpThreads);
}

HttpService::~HttpService() {
  stopping_ = true;
  events_.closeAll();
  server_->stop();
  // Workers still waiting on the loop get their answers from here: this is
  // the loop thread, and the query service outlives this object.
  auto done = std::async(std::launch::async, [this] { thread_.join(); });
  while (done.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready)
    bridge_.runPending(kLoopJobsPerTurn);
}

void HttpService::onLoop(int64_t wallNs, int64_t monoNs) {
  bridge_.runPending(kLoopJobsPerTurn);
  if (monoNs >= nextTickNs_) {
    publishTicks(wallNs);
    nextTickNs_ = monoNs + kTickNs;
  }
  if (!config_.httpLoopback && config_.httpTlsCert.empty() && monoNs >= nextWarningNs_) {
    spdlog::warn("http: INSECURE: the HTTP API on {} is plaintext (http_insecure_plaintext = "
                 "true): bearer tokens and answers cross the network in clear",
                 config_.http);
    nextWarningNs_ = monoNs + kWarnEveryNs;
  }
}

void HttpService::publishTicks(int64_t wallNs) {
  const bool listening = events_.clients() > 0;
  auto emit = [&](const std::string& name, const nlohmann::json& j) {
    if (listening) events_.publish(name, j);
  };
  if (listening) {
    auto status = queries_.status();
    emit("status", {{"at_ns", wallNs}, {"sensors", status.body["sensors"]}});
  }
  watcher_.look(queries_.blockList().body["orders"], emit);
  // Incident changes of the last second, one look each: opened and
  // resolved are always told (both, for one that did both), updates once.
  auto changed = std::move(incidentChanges_);
  incidentChanges_.clear();
  if (!listening) return;
  for (const auto& [id, kinds] : changed) {
    auto r = queries_.incidentShow(id);
    if (!r.ok) continue;
    r.body.erase("members");
    r.body.erase("timeline");
    const bool opened = kinds & (1u << static_cast<unsigned>(IncidentChangeKind::kOpened));
    const bool resolved = kinds & (1u << static_cast<unsigned>(IncidentChangeKind::kResolved));
    if (opened) emit("incident_opened", r.body);
    if (resolved) emit("incident_resolved", r.body);
    if (!opened && !resolved) emit("incident_updated", r.body);
  }
}

void HttpService::onIncident(const IncidentChange& change) {
  incidentChanges_[change.id] |= 1u << static_cast<unsigned>(change.kind);
}

template <class T>
std::optional<T> HttpService::onLoopThread(std::function<T()> fn) {
  auto promise = std::make_shared<std::promise<T>>();
  auto future = promise->get_future();
  if (!bridge_.post([promise, fn = std::move(fn)] {
        try {
          promise->set_value(fn());
        } catch (...) {
          promise->set_exception(std::current_exception());
        }
      }))
    return std::nullopt;
  if (future.wait_for(std::chrono::milliseconds(config_.httpTimeoutMs)) !=
      std::future_status::ready)
    return std::nullopt;
  return future.get();
}

std::optional<TokenIdentity> HttpService::authenticate(const httplib::Request& req,
                                                       httplib::Response& res) {
  const std::string header = req.get_header_value("Authorization");
  auto token = TokenAuth::bearer(header);
  auto who = auth_.check(token);
  if (!who) {
    counters_.unauthorized++;
    res.set_header("WWW-Authenticate", "Bearer realm=\"garda\"");
    sendError(res, 401,
              token.empty() ? "missing bearer token (Authorization: Bearer TOKEN)"
                            : "unknown bearer token");
  }
  return who;
}

void HttpService::registerRoutes() {
  auto& s = *server_;
  auto add = [&](const std::string& method, const std::string& path, httplib::Server::Handler h) {
    const std::string re = routeRegex(path);
    if (method == "GET") s.Get(re, h);
    else if (method == "POST") s.Post(re, h);
    else if (method == "DELETE") s.Delete(re, h);
  };

  for (const auto& route : queryRoutes()) {
    add(route.method, route.path, [this, &route](const httplib::Request& req, httplib::Response& res) {
      auto who = authenticate(req, res);
      if (!who) return;
      auto message = std::make_shared<capnp::MallocMessageBuilder>();
      auto q = message->initRoot<wire::Query>();
      try {
        route.build(req, q.initCommand());
      } catch (const BadParam& e) {
        return sendError(res, 400, e.what());
      }
      Caller caller{"token:" + who->name, who->role};
      auto result = onLoopThread<QueryResult>([this, message, caller] {
        return queries_.run(message->getRoot<wire::Query>().asReader(), caller);
      });
      if (!result) {
        counters_.busy++;
        res.set_header("Retry-After", "1");
        return sendError(res, 503, "the aggregator is busy: try again");
      }
      if (!result->ok) {
        if (result->code == 403) counters_.forbidden++;
        return sendError(res, result->code, result->error);
      }
      if (!result->data.empty()) {
        res.status = 200;
        res.set_content(result->data, result->contentType.empty() ? "application/octet-stream"
                                                                  : result->contentType.c_str());
        return;
      }
      sendJson(res, 200, result->body);
    });
  }

  s.Get("/api/v1/whoami", [this](const httplib::Request& req, httplib::Response& res) {
    auto who = authenticate(req, res);
    if (who) sendJson(res, 200, {{"name", who->name}, {"role", common::roleName(who->role)}});
  });
  s.Get("/api/v1/routes", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authenticate(req, res)) return;
    nlohmann::json list = nlohmann::json::array();
    for (const auto& r : routeTable()) list.push_back({{"method", r.method}, {"path", r.path}});
    sendJson(res, 200, {{"routes", list}});
  });
  s.Get("/api/v1/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kOpenApiJson, "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (!config_.metricsOpen && !authenticate(req, res)) return;
    auto text = onLoopThread<std::string>([this] {
      HttpGauges g{bridge_.depth(), events_.clients(), events_.published()};
      return renderMetrics(metrics_, counters_, g, common::wallNowNs());
    });
    if (!text) {
      counters_.busy++;
      return sendError(res, 503, "the aggregator is busy: try again");
    }
    res.set_content(*text, "text/plain; version=0.0.4; charset=utf-8");
  });
  s.Get("/api/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
    auto who = authenticate(req, res);
    if (!who) return;
    auto client = events_.subscribe();
    if (!client) {
      res.set_header("Retry-After", "5");
      return sendError(res, 503, "too many event streams open (http_sse_clients = " +
                                     std::to_string(config_.httpSseClients) + ")");
    }
    {
      std::lock_guard lk(client->mutex);
      client->queue.push_back("retry: 3000\nevent: hello\ndata: " +
                              nlohmann::json{{"name", who->name},
                                             {"role", common::roleName(who->role)}}
                                  .dump() +
                              "\n\n");
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, client](size_t, httplib::DataSink& sink) {
          std::string out;
          {
            std::unique_lock lk(client->mutex);
            client->cv.wait_for(lk, kSseKeepAlive,
                                [&] { return !client->queue.empty() || client->dropped; });
            if (client->dropped || stopping_) {
              if (!stopping_) counters_.sseDropped++;
              return false;
            }
            for (auto& f : client->queue) out += f;
            client->queue.clear();
          }
          if (out.empty()) out = ": keep-alive\n\n";
          return sink.write(out.data(), out.size());
        },
        [this, client](bool) { events_.unsubscribe(client); });
  });

  // The same paths with other methods: 405 with the allowed ones.
  std::map<std::string, std::set<std::string>> methods;
  for (const auto& r : routeTable()) methods[r.path].insert(r.method);
  for (const auto& [path, allowed] : methods) {
    std::string allow;
    for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    auto refuse = [allow](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", allow);
      sendError(res, 405, req.method + " is not allowed here (allowed: " + allow + ")");
    };
    const std::string re = routeRegex(path);
    for (const char* m : {"GET", "POST", "DELETE", "PUT", "PATCH"}) {
      if (allowed.count(m)) continue;
      std::string method = m;
      if (method == "GET") s.Get(re, refuse);
      else if (method == "POST") s.Post(re, refuse);
      else if (method == "DELETE") s.Delete(re, refuse);
      else if (method == "PUT") s.Put(re, refuse);
      else s.Patch(re, refuse);
    }
  }

  // Every other error (unknown path, body too large, unreadable request) as
  // JSON with a reason, unless the handler already wrote one.
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string why = reasonOf(res.status);
    if (res.status == 404) why = "no such route: " + req.method + " " + req.path;
    if (res.status == 413)
      why = "request body over http_max_body_bytes (" + std::to_string(config_.httpMaxBodyBytes) +
            " bytes)";
    sendError(res, res.status, why);
  });
  s.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string why = "internal error";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          why = e.what();
        } catch (...) {
        }
        spdlog::error("http: handler failed: {}", why);
        sendError(res, 500, why);
      });
  s.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    requestStart() = Clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_logger([this](const httplib::Request&, const httplib::Response& res) {
    auto& start = requestStart();
    const double seconds =
        start == Clock::time_point{} ? 0.0 : std::chrono::duration<double>(Clock::now() - start).count();
    start = Clock::time_point{};
    counters_.observe(res.status, seconds);
  });
}

Clock::time_point& HttpService::requestStart() {
  thread_local Clock::time_point start{};
  return start;
}

}  // namespace garda::aggregator
