#pragma once

#include <cstdint>
#include <string>
#include <zmq.hpp>

namespace garda::common {

// Socket options shared by every Garda link: no linger on close, a cap on
// incoming message size (the first line of defence against oversized frames;
// libzmq drops the connection that sends one), and ZMTP heartbeats so a dead
// peer is noticed even when no application data flows.
void applyLinkOptions(zmq::socket_t& s, int64_t maxMessageBytes, int heartbeatMs = 1000);

// A CURVE server: `secretKey` is this side's Z85 secret; connections are
// authenticated by the ZAP handler for `zapDomain`.
void makeCurveServer(zmq::socket_t& s, const std::string& secretKey, const std::string& zapDomain);

// A plaintext server (NULL mechanism) whose connections still go through the
// ZAP handler for `zapDomain`, which may admit or refuse them. Development
// only: nothing is encrypted or authenticated.
void makePlainServer(zmq::socket_t& s, const std::string& zapDomain);

// A CURVE client that pins the server's public key: it talks to nobody else.
void makeCurveClient(zmq::socket_t& s, const std::string& serverPublicKey,
                     const std::string& secretKey);

// What recvRouterMessage found.
enum class RouterReceive {
  kNothing,     // no message waiting
  kNoBody,      // a routing id alone: nothing to handle
  kMessage,     // `body` holds the first body frame
};

// Receives one message from a ROUTER socket without blocking: the peer's
// routing id and its first body frame. Garda messages are one frame; any
// further frames are read and dropped, and `extraFrames` says so.
RouterReceive recvRouterMessage(zmq::socket_t& router, zmq::message_t& id, zmq::message_t& body,
                                bool& extraFrames);

// The ZAP User-Id bound to the connection a message came in on ("" if none).
std::string messageUserId(zmq::message_t& m);

}  // namespace garda::common
