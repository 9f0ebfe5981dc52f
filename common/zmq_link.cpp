#include "common/zmq_link.h"

#include "common/keys.h"

namespace garda::common {

void applyLinkOptions(zmq::socket_t& s, int64_t maxMessageBytes, int heartbeatMs) {
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::maxmsgsize, maxMessageBytes);
  s.set(zmq::sockopt::heartbeat_ivl, heartbeatMs);
  s.set(zmq::sockopt::heartbeat_timeout, heartbeatMs * 3);
  s.set(zmq::sockopt::heartbeat_ttl, heartbeatMs * 3);
}

void makeCurveServer(zmq::socket_t& s, const std::string& secretKey, const std::string& zapDomain) {
  s.set(zmq::sockopt::curve_server, 1);
  s.set(zmq::sockopt::curve_secretkey, secretKey);
  s.set(zmq::sockopt::zap_domain, zapDomain);
#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
  // Without a handler answering, refuse everyone rather than admit everyone.
  s.set(zmq::sockopt::zap_enforce_domain, 1);
#endif
}

void makePlainServer(zmq::socket_t& s, const std::string& zapDomain) {
  s.set(zmq::sockopt::zap_domain, zapDomain);
#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
  s.set(zmq::sockopt::zap_enforce_domain, 1);
#endif
}

void makeCurveClient(zmq::socket_t& s, const std::string& serverPublicKey,
                     const std::string& secretKey) {
  s.set(zmq::sockopt::curve_serverkey, serverPublicKey);
  s.set(zmq::sockopt::curve_publickey, curvePublicFromSecret(secretKey));
  s.set(zmq::sockopt::curve_secretkey, secretKey);
}

RouterReceive recvRouterMessage(zmq::socket_t& router, zmq::message_t& id, zmq::message_t& body,
                                bool& extraFrames) {
  extraFrames = false;
  if (!router.recv(id, zmq::recv_flags::dontwait)) return RouterReceive::kNothing;
  if (!id.more()) return RouterReceive::kNoBody;
  (void)router.recv(body, zmq::recv_flags::dontwait);
  for (bool more = body.more(); more;) {
    zmq::message_t extra;
    if (!router.recv(extra, zmq::recv_flags::dontwait)) break;
    extraFrames = true;
    more = extra.more();
  }
  return RouterReceive::kMessage;
}

std::string messageUserId(zmq::message_t& m) {
  const char* v = zmq_msg_gets(m.handle(), "User-Id");
  return v ? std::string(v) : std::string();
}

}  // namespace garda::common
