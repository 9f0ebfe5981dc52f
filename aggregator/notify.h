#pragma once

#include <atomic>
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
#include <string_view>
#include <thread>
#include <vector>

#include "aggregator/correlate.h"
#include "common/config.h"

namespace garda::aggregator {

enum class NotifyKind : uint8_t { kOpened = 0, kEscalated, kResolved };
// "incident.opened", "incident.escalated", "incident.resolved".
std::string_view notifyKindName(NotifyKind kind) noexcept;

// One thing people hear of. `incident` is the incident's JSON without its
// members and timeline (incidentToJson's list shape).
struct NotifyEvent {
  NotifyKind kind = NotifyKind::kOpened;
  int64_t atNs = 0;  // the aggregator's wall clock when it happened
  std::string incidentId;
  std::string severity;
  std::string reason;  // escalations: what changed, e.g. "severity medium -> high"
  nlohmann::json incident;
};

// Decides which incident changes are worth a notification: every open and
// resolve, and an escalation when the severity goes up or a new OPD or a new
// attack (classification) joins. Other updates (rates, sources, timeline
// notes) are not. An incident first seen as an update (taken back after a
// restart) is remembered without a notification. Single-threaded.
class EscalationTracker {
 public:
  std::optional<NotifyEvent> onChange(const Incident& incident, IncidentChangeKind kind,
                                      int64_t nowNs);
  size_t tracked() const noexcept { return open_.size(); }

 private:
  struct Seen {
    Severity severity = Severity::kLow;
    std::set<std::string> sensors, classifications;
  };
  std::map<std::string, Seen, std::less<>> open_;
};

// The webhook's JSON body: {"event","delivery","sent_at","at_ns",
// "incident_id","severity","reason","incident"}.
std::string webhookBody(const NotifyEvent& event);
// Lowercase hex HMAC-SHA256 of `body` under `key` (the X-Garda-Signature value
// after "sha256=").
std::string hmacSha256Hex(std::string_view key, std::string_view body);
// One RFC 5424 message: <PRI>1 TIMESTAMP HOSTNAME garda-aggregator PROCID MSGID
// [garda@32473 ...] MSG, at most kSyslogMaxBytes.
inline constexpr size_t kSyslogMaxBytes = 2048;
std::string syslogMessage(const NotifyEvent& event, unsigned facility, std::string_view hostname,
                          int pid);
// RFC 5424 severity of an event: critical 2, high 3, medium 4, low 5; resolved 6.
int syslogSeverity(const NotifyEvent& event) noexcept;

struct DeliveryCounters {
  std::atomic<uint64_t> ok{0};       // delivered
  std::atomic<uint64_t> failed{0};   // given up after every retry
  std::atomic<uint64_t> dropped{0};  // queue full, or left at shutdown
  std::atomic<uint64_t> retries{0};  // attempts after the first
};

// One delivery: what the sink's thread sends.
struct NotifyDelivery {
  std::string event;  // notifyKindName
  std::string id;     // unique per event: the receiver may use it to drop repeats
  std::string body;
};

// A bounded queue with its own sender thread: push() never blocks (a full
// queue drops and counts); the thread delivers in order, retrying a failed
// delivery `retries` times with exponential backoff (baseBackoffMs, doubling,
// at most 30 s). `deliver` returns false with a reason on failure. The
// destructor stops the thread (an attempt in flight finishes, bounded by the
// sink's own timeout) and counts what was left as dropped. Failures are
// logged at most once a second. push() from one thread; counters from any.
class DeliveryQueue {
 public:
  using Deliver = std::function<bool(const NotifyDelivery&, std::string& error)>;
  DeliveryQueue(std::string name, size_t capacity, unsigned retries, unsigned baseBackoffMs,
                Deliver deliver);
  ~DeliveryQueue();
  DeliveryQueue(const DeliveryQueue&) = delete;
  DeliveryQueue& operator=(const DeliveryQueue&) = delete;

  bool push(NotifyDelivery d);
  const DeliveryCounters& counters() const noexcept { return counters_; }
  const std::string& name() const noexcept { return name_; }

 private:
  void run();

  std::string name_;
  size_t capacity_;
  unsigned retries_;
  unsigned baseBackoffMs_;
  Deliver deliver_;
  DeliveryCounters counters_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<NotifyDelivery> queue_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once everything above exists
};

// Sends incident events to the configured webhooks and syslog collector,
// each through its own DeliveryQueue, so neither ingest nor detection ever
// waits on the network. onChange() runs on the aggregator loop.
class Notifier {
 public:
  explicit Notifier(const common::NotifySettings& settings);
  ~Notifier();

  void onChange(const Incident& incident, IncidentChangeKind kind, int64_t nowNs);
  // {"webhooks":[{"url","ok","failed","dropped","retries"}],"syslog":{...}}
  nlohmann::json countersJson() const;

 private:
  class Webhook;
  class Syslog;
  EscalationTracker tracker_;
  std::vector<std::unique_ptr<Webhook>> webhooks_;
  std::unique_ptr<Syslog> syslog_;
};

}  // namespace garda::aggregator
