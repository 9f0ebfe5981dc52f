#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <zmq.hpp>

#include "common/config.h"

namespace garda::aggregator {

struct ZapCounters {
  uint64_t admitted = 0;
  uint64_t refusedUnknownKey = 0;
  uint64_t refusedMechanism = 0;
  uint64_t malformed = 0;
};

// The ZeroMQ authentication (ZAP, RFC 27) handler for every listening socket
// in this process. It admits a CURVE client only if its public key is listed
// in aggregator.toml, and binds the connection to exactly one identity: the
// User-Id it returns is "sensor:<id>" for domain "sensors" and
// "console:<name>" for domain "console". A key listed for the other domain is
// refused. With `insecure_plaintext` the sensor domain admits plaintext (NULL
// mechanism) connections as User-Id "insecure", and ingest then trusts the
// sensor id a message claims if it is listed. Must be bound before any socket that uses it; single-threaded (its
// socket is polled by the aggregator's loop). reload() swaps the key lists.
class ZapAuthenticator {
 public:
  static constexpr const char* kSensorDomain = "sensors";
  static constexpr const char* kConsoleDomain = "console";
  static constexpr const char* kInsecureUserId = "insecure";

  ZapAuthenticator(zmq::context_t& ctx, const common::AggregatorConfig& config);

  void reload(const common::AggregatorConfig& config);
  zmq::socket_t& socket() noexcept { return socket_; }
  // Answers every pending request.
  void handlePending();
  const ZapCounters& counters() const noexcept { return counters_; }

 private:
  void handleOne(std::vector<zmq::message_t>& frames);

  zmq::socket_t socket_;
  std::map<std::string, std::string> sensorKeys_;   // Z85 public key -> sensor id
  std::map<std::string, std::string> consoleKeys_;  // Z85 public key -> console name
  bool insecureSensors_ = false;
  ZapCounters counters_;
};

}  // namespace garda::aggregator
