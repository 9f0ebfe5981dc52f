#pragma once

#include <capnp/message.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <zmq.hpp>

#include "schemas/garda.capnp.h"

namespace garda::console {

// Where and as whom the console connects.
struct ConnectionSettings {
  std::string endpoint;       // tcp://HOST:PORT of the aggregator's console socket
  std::string serverKeyFile;  // the aggregator's public key (pinned)
  std::string keyFile;        // this console's secret key
  int timeoutMs = 5000;
};

// Thrown when the aggregator cannot be reached or answers with an error.
class ConsoleError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One request/reply exchange with the aggregator's console socket over CURVE.
// Owns its ZeroMQ context and socket; not thread-safe.
class ConsoleClient {
 public:
  explicit ConsoleClient(const ConnectionSettings& settings);

  // Sends the query that `fill` builds and returns the reply's JSON document;
  // the reply's binary payload (incident pcap) goes to `data` if given.
  // Throws ConsoleError with the aggregator's reason, or on timeout.
  nlohmann::json call(const std::function<void(wire::Query::Builder)>& fill,
                      std::string* data = nullptr);

 private:
  ConnectionSettings settings_;
  zmq::context_t ctx_;
  zmq::socket_t socket_;
  uint64_t nextRequestId_ = 1;
};

}  // namespace garda::console
