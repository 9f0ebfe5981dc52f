#include "aggregator/notify.h"

#include <curl/curl.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>

#include "common/duration.h"
#include "common/hex.h"
#include "common/log.h"

namespace garda::aggregator {
namespace {

using nlohmann::json;

constexpr unsigned kMaxBackoffMs = 30'000;
constexpr size_t kMaxListed = 8;  // victims / sensors named in a syslog message

std::string listText(const json& list) {
  std::string out;
  size_t n = 0;
  for (const auto& v : list) {
    if (n++ == kMaxListed) return out + " (+" + std::to_string(list.size() - kMaxListed) + ")";
    out += (out.empty() ? "" : ",") + v.get<std::string>();
  }
  return out;
}

std::string joined(const std::set<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// RFC 5424 section 6.3.3: '"', '\' and ']' are escaped in PARAM-VALUE.
std::string sdValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '"' || c == '\\' || c == ']') out += '\\';
    out += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return out;
}

// HOSTNAME and friends: printable US-ASCII, no spaces, or the nil value.
std::string headerField(std::string_view v, size_t max) {
  std::string out;
  for (char c : v)
    if (c > 32 && c < 127 && out.size() < max) out += c;
  return out.empty() ? "-" : out;
}

}  // namespace

std::string_view notifyKindName(NotifyKind kind) noexcept {
  switch (kind) {
    case NotifyKind::kOpened: return "incident.opened";
    case NotifyKind::kEscalated: return "incident.escalated";
    case NotifyKind::kResolved: return "incident.resolved";
  }
  return "incident.unknown";
}

std::optional<NotifyEvent> EscalationTracker::onChange(const Incident& inc,
                                                       IncidentChangeKind kind, int64_t nowNs) {
  Seen now;
  now.severity = inc.severity;
  for (auto& s : inc.sensors()) now.sensors.insert(std::move(s));
  for (auto& c : inc.classifications()) now.classifications.insert(std::move(c));
  NotifyEvent e;
  e.atNs = nowNs;
  e.incidentId = inc.id;
  e.severity = std::string(severityName(inc.severity));
  switch (kind) {
    case IncidentChangeKind::kOpened:
      e.kind = NotifyKind::kOpened;
      open_[inc.id] = std::move(now);
      break;
    case IncidentChangeKind::kResolved:
      e.kind = NotifyKind::kResolved;
      open_.erase(inc.id);
      break;
    case IncidentChangeKind::kUpdated: {
      auto it = open_.find(inc.id);
      if (it == open_.end()) {
        open_[inc.id] = std::move(now);
        return std::nullopt;
      }
      Seen& was = it->second;
      std::string reason;
      auto add = [&](const std::string& part) { reason += (reason.empty() ? "" : "; ") + part; };
      if (now.severity > was.severity)
        add("severity " + std::string(severityName(was.severity)) + " -> " + e.severity);
      std::set<std::string> newSensors, newAttacks;
      std::set_difference(now.sensors.begin(), now.sensors.end(), was.sensors.begin(),
                          was.sensors.end(), std::inserter(newSensors, newSensors.end()));
      std::set_difference(now.classifications.begin(), now.classifications.end(),
                          was.classifications.begin(), was.classifications.end(),
                          std::inserter(newAttacks, newAttacks.end()));
      if (!newSensors.empty()) add("OPD joined: " + joined(newSensors));
      if (!newAttacks.empty()) add("new vector: " + joined(newAttacks));
      // Remember the union: severity never goes down, members are not forgotten.
      was.severity = std::max(was.severity, now.severity);
      was.sensors.insert(now.sensors.begin(), now.sensors.end());
      was.classifications.insert(now.classifications.begin(), now.classifications.end());
      if (reason.empty()) return std::nullopt;
      e.kind = NotifyKind::kEscalated;
      e.reason = std::move(reason);
      break;
    }
  }
  json j = incidentToJson(inc);
  j.erase("members");
  j.erase("timeline");
  e.incident = std::move(j);
  return e;
}

std::string webhookBody(const NotifyEvent& e) {
  return json{{"event", notifyKindName(e.kind)},
              {"delivery", e.incidentId + "/" + std::string(notifyKindName(e.kind)) + "/" +
                               std::to_string(e.atNs)},
              {"sent_at", common::formatTimeNs(e.atNs)},
              {"at_ns", e.atNs},
              {"incident_id", e.incidentId},
              {"severity", e.severity},
              {"reason", e.reason},
              {"incident", e.incident}}
      .dump();
}

std::string hmacSha256Hex(std::string_view key, std::string_view body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len))
    throw std::runtime_error("HMAC-SHA256 failed");
  return common::toHex(mac, len);
}

int syslogSeverity(const NotifyEvent& e) noexcept {
  if (e.kind == NotifyKind::kResolved) return 6;
  if (e.severity == "critical") return 2;
  if (e.severity == "high") return 3;
  if (e.severity == "medium") return 4;
  return 5;
}

std::string syslogMessage(const NotifyEvent& e, unsigned facility, std::string_view hostname,
                          int pid) {
  const json& inc = e.incident;
  const std::string classification = inc.value("classification", "");
  const json victims = inc.value("victims", json::array());
  const json sensors = inc.value("sensors", json::array());
  const double peak = inc.value("peak_pps", 0.0);
  std::string out = "<" + std::to_string(facility * 8 + static_cast<unsigned>(syslogSeverity(e))) +
                    ">1 " + common::formatTimeNs(e.atNs) + " " + headerField(hostname, 255) +
                    " garda-aggregator " + std::to_string(pid) + " " +
                    headerField(notifyKindName(e.kind), 32) + " ";
  // 32473: the IANA enterprise number reserved for documentation (RFC 5612).
  out += "[garda@32473 event=\"" + sdValue(notifyKindName(e.kind)) + "\" id=\"" +
         sdValue(e.incidentId) + "\" severity=\"" + sdValue(e.severity) + "\" classification=\"" +
         sdValue(classification) + "\" victims=\"" + sdValue(listText(victims)) +
         "\" sensors=\"" + sdValue(listText(sensors)) + "\" peak_pps=\"" +
         std::to_string(std::llround(peak)) + "\"]";
  std::string text = "INCIDENT " + e.incidentId + " " +
                     std::string(notifyKindName(e.kind)).substr(9) + ": " + classification +
                     " against " + listText(victims) + " seen by " + listText(sensors) + ", peak " +
                     std::to_string(std::llround(peak)) + " pps, severity " + e.severity;
  if (!e.reason.empty()) text += " (" + e.reason + ")";
  out += " " + text;
  if (out.size() > kSyslogMaxBytes) out.resize(kSyslogMaxBytes);
  return out;
}

// ---- DeliveryQueue ----------------------------------------------------------

DeliveryQueue::DeliveryQueue(std::string name, size_t capacity, unsigned retries,
                             unsigned baseBackoffMs, Deliver deliver)
    : name_(std::move(name)),
      capacity_(capacity),
      retries_(retries),
      baseBackoffMs_(baseBackoffMs),
      deliver_(std::move(deliver)),
      thread_([this] { run(); }) {}

DeliveryQueue::~DeliveryQueue() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  counters_.dropped += queue_.size();
  spdlog::info("notify {}: {} delivered, {} failed, {} dropped ({} left at shutdown), {} retries",
               name_, counters_.ok.load(), counters_.failed.load(), counters_.dropped.load(),
               queue_.size(), counters_.retries.load());
}

bool DeliveryQueue::push(NotifyDelivery d) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= capacity_) {
      counters_.dropped++;
      return false;
    }
    queue_.push_back(std::move(d));
  }
  cv_.notify_one();
  return true;
}

void DeliveryQueue::run() {
  common::LogLimiter limiter;
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    NotifyDelivery d = queue_.front();
    lock.unlock();
    bool delivered = false;
    std::string error;
    for (unsigned attempt = 0; attempt <= retries_; ++attempt) {
      if (attempt > 0) {
        counters_.retries++;
        const unsigned backoff =
            std::min<unsigned>(kMaxBackoffMs, baseBackoffMs_ << std::min(attempt - 1, 16u));
        lock.lock();
        const bool stopping =
            cv_.wait_for(lock, std::chrono::milliseconds(backoff), [&] { return stop_; });
        lock.unlock();
        if (stopping) break;
      }
      error.clear();
      try {
        delivered = deliver_(d, error);
      } catch (const std::exception& ex) {
        error = ex.what();
      }
      if (delivered) break;
      if (limiter.allow())
        spdlog::warn("notify {}: {} {} attempt {} of {} failed: {}", name_, d.event, d.id,
                     attempt + 1, retries_ + 1, error);
    }
    lock.lock();
    // A stop during the backoff leaves the event in the queue: counted dropped.
    if (!delivered && stop_) return;
    queue_.pop_front();
    (delivered ? counters_.ok : counters_.failed)++;
    if (!delivered) spdlog::error("notify {}: gave up on {} {}: {}", name_, d.event, d.id, error);
  }
}

// ---- Webhook ----------------------------------------------------------------

class Notifier::Webhook {
 public:
  explicit Webhook(const common::WebhookTarget& t)
      : target_(t),
        queue_("webhook " + t.url, t.queue, t.retries, 500,
               [this](const NotifyDelivery& d, std::string& error) { return post(d, error); }) {}

  DeliveryQueue& queue() { return queue_; }
  const DeliveryQueue& queue() const { return queue_; }
  const std::string& url() const { return target_.url; }

 private:
  static size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

  bool post(const NotifyDelivery& d, std::string& error) {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) {
      error = "curl_easy_init failed";
      return false;
    }
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, ("X-Garda-Event: " + d.event).c_str());
    headers = curl_slist_append(headers, ("X-Garda-Delivery: " + d.id).c_str());
    if (!target_.secret.empty())
      headers = curl_slist_append(
          headers, ("X-Garda-Signature: sha256=" + hmacSha256Hex(target_.secret, d.body)).c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headerList(headers,
                                                                           curl_slist_free_all);
    char curlError[CURL_ERROR_SIZE] = {0};
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, target_.url.c_str());
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(d.body.size()));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(target_.timeoutMs));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(target_.timeoutMs));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "garda-aggregator");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Webhook::discard);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curlError);
    // Certificates are checked against the system CA store (libcurl's default).
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      error = curlError[0] ? curlError : curl_easy_strerror(rc);
      return false;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
      error = "HTTP status " + std::to_string(status);
      return false;
    }
    return true;
  }

  common::WebhookTarget target_;
  DeliveryQueue queue_;  // last: its thread uses the members above
};

// ---- Syslog -----------------------------------------------------------------

class Notifier::Syslog {
 public:
  explicit Syslog(const common::SyslogTarget& t)
      : target_(t),
        queue_("syslog " + t.address, t.queue, 5, 500,
               [this](const NotifyDelivery& d, std::string& error) { return send(d, error); }) {}

  DeliveryQueue& queue() { return queue_; }
  const DeliveryQueue& queue() const { return queue_; }
  const common::SyslogTarget& target() const { return target_; }

 private:
  // Closed after the queue's thread has stopped (declared before it).
  struct Socket {
    int fd = -1;
    ~Socket() { reset(); }
    void reset() {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
  };

  static std::string errnoText(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
  }

  bool open(std::string& error) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = target_.tcp ? SOCK_STREAM : SOCK_DGRAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(target_.port);
    if (int rc = ::getaddrinfo(target_.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
      error = std::string("cannot resolve ") + target_.host + ": " + ::gai_strerror(rc);
      return false;
    }
    std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
    error = "no address for " + target_.host;
    for (addrinfo* a = found; a; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) {
        error = errnoText("socket");
        continue;
      }
      Socket s;
      s.fd = fd;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
          error = errnoText("connect");
          continue;
        }
        pollfd p{fd, POLLOUT, 0};
        int soError = 0;
        socklen_t len = sizeof soError;
        if (::poll(&p, 1, kConnectTimeoutMs) != 1 ||
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &len) != 0 || soError != 0) {
          errno = soError != 0 ? soError : ETIMEDOUT;
          error = errnoText("connect");
          continue;
        }
      }
      sock_.reset();
      std::swap(sock_.fd, s.fd);
      return true;
    }
    return false;
  }

  bool send(const NotifyDelivery& d, std::string& error) {
    if (sock_.fd < 0 && !open(error)) return false;
    // RFC 6587 octet counting on TCP; one datagram per message on UDP.
    const std::string bytes =
        target_.tcp ? std::to_string(d.body.size()) + " " + d.body : d.body;
    size_t sent = 0;
    while (sent < bytes.size()) {
      pollfd p{sock_.fd, POLLOUT, 0};
      if (::poll(&p, 1, kConnectTimeoutMs) != 1) {
        error = "send timed out";
        sock_.reset();
        return false;
      }
      ssize_t n = ::send(sock_.fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        error = errnoText("send");
        sock_.reset();
        return false;
      }
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  static constexpr int kConnectTimeoutMs = 5000;
  common::SyslogTarget target_;
  Socket sock_;
  DeliveryQueue queue_;  // last: its thread uses the members above
};

// ---- Notifier ---------------------------------------------------------------

Notifier::Notifier(const common::NotifySettings& settings) {
  if (!settings.webhooks.empty()) {
    static std::once_flag curlInit;
    std::call_once(curlInit, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  for (const auto& w : settings.webhooks) webhooks_.push_back(std::make_unique<Webhook>(w));
  if (settings.syslog) syslog_ = std::make_unique<Syslog>(*settings.syslog);
  if (!webhooks_.empty() || syslog_)
    spdlog::info("notify: incident events to {} webhook(s){}", webhooks_.size(),
                 syslog_ ? " and syslog " + settings.syslog->address : std::string());
}

Notifier::~Notifier() = default;

void Notifier::onChange(const Incident& incident, IncidentChangeKind kind, int64_t nowNs) {
  if (webhooks_.empty() && !syslog_) return;
  auto event = tracker_.onChange(incident, kind, nowNs);
  if (!event) return;
  const std::string name(notifyKindName(event->kind));
  const std::string id = event->incidentId + "/" + name + "/" + std::to_string(event->atNs);
  if (!webhooks_.empty()) {
    std::string body = webhookBody(*event);
    for (auto& w : webhooks_) w->queue().push({name, id, body});
  }
  if (syslog_) {
    static const std::string host = [] {
      char buf[256] = {0};
      return ::gethostname(buf, sizeof buf - 1) == 0 ? std::string(buf) : std::string("-");
    }();
    syslog_->queue().push(
        {name, id, syslogMessage(*event, syslog_->target().facility, host, ::getpid())});
  }
}

json Notifier::countersJson() const {
  auto counts = [](const DeliveryQueue& q) {
    const auto& c = q.counters();
    return json{{"ok", c.ok.load()},
                {"failed", c.failed.load()},
                {"dropped", c.dropped.load()},
                {"retries", c.retries.load()}};
  };
  json hooks = json::array();
  for (const auto& w : webhooks_) {
    json j = counts(w->queue());
    j["url"] = w->url();
    hooks.push_back(std::move(j));
  }
  json sys = nullptr;
  if (syslog_) {
    sys = counts(syslog_->queue());
    sys["address"] = syslog_->target().address;
  }
  return {{"webhooks", hooks}, {"syslog", sys}};
}

}  // namespace garda::aggregator
