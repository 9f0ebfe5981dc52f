#include "aggregator/zap_authenticator.h"

#include <spdlog/spdlog.h>
#include <zmq.h>
#include <zmq_addon.hpp>

namespace garda::aggregator {

ZapAuthenticator::ZapAuthenticator(zmq::context_t& ctx, const common::AggregatorConfig& config)
    : socket_(ctx, zmq::socket_type::rep) {
  socket_.set(zmq::sockopt::linger, 0);
  socket_.bind("inproc://zeromq.zap.01");
  reload(config);
}

void ZapAuthenticator::reload(const common::AggregatorConfig& config) {
  sensorKeys_.clear();
  consoleKeys_.clear();
  insecureSensors_ = config.insecurePlaintext;
  for (const auto& s : config.sensors) sensorKeys_[s.publicKey] = s.id;
  for (const auto& c : config.consoles) consoleKeys_[c.publicKey] = c.name;
}

void ZapAuthenticator::handlePending() {
  for (int i = 0; i < 256; ++i) {
    std::vector<zmq::message_t> frames;
    auto n = zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait);
    if (!n) return;
    handleOne(frames);
  }
}

void ZapAuthenticator::handleOne(std::vector<zmq::message_t>& frames) {
  // Request: version, request id, domain, address, identity, mechanism, credentials...
  std::string status = "400", text = "refused", userId;
  std::string requestId = frames.size() > 1 ? frames[1].to_string() : "";
  if (frames.size() < 6 || frames[0].to_string() != "1.0") {
    counters_.malformed++;
    status = "500";
    text = "malformed ZAP request";
  } else {
    std::string domain = frames[2].to_string();
    std::string address = frames[3].to_string();
    std::string mechanism = frames[5].to_string();
    if (mechanism == "NULL" && insecureSensors_ && domain == kSensorDomain) {
      status = "200";
      text = "OK";
      userId = kInsecureUserId;
      counters_.admitted++;
    } else if (mechanism != "CURVE" || frames.size() < 7 || frames[6].size() != 32) {
      counters_.refusedMechanism++;
      spdlog::warn("zap: refused {} connection from {}: mechanism {} (CURVE required)", domain,
                   address, mechanism);
    } else {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32);
      const auto& keys = domain == kSensorDomain ? sensorKeys_ : consoleKeys_;
      auto it = keys.find(z85);
      if ((domain == kSensorDomain || domain == kConsoleDomain) && it != keys.end()) {
        status = "200";
        text = "OK";
        userId = (domain == kSensorDomain ? "sensor:" : "console:") + it->second;
        counters_.admitted++;
      } else {
        counters_.refusedUnknownKey++;
        spdlog::warn("zap: refused {} connection from {}: public key {} is not listed", domain,
                     address, z85);
      }
    }
  }
  std::array<zmq::const_buffer, 6> reply = {
      zmq::str_buffer("1.0"), zmq::buffer(requestId), zmq::buffer(status),
      zmq::buffer(text),      zmq::buffer(userId),    zmq::const_buffer(nullptr, 0)};
  zmq::send_multipart(socket_, reply);
}

}  // namespace garda::aggregator
