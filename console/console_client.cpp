#include "console/console_client.h"

#include "common/clock.h"
#include "common/envelope.h"
#include "common/keys.h"
#include "common/zmq_link.h"

namespace garda::console {

ConsoleClient::ConsoleClient(const ConnectionSettings& settings)
    : settings_(settings), ctx_(1), socket_(ctx_, zmq::socket_type::dealer) {
  std::string serverKey, secretKey;
  try {
    serverKey = common::readCurveKeyFile(settings_.serverKeyFile, false);
    secretKey = common::readCurveKeyFile(settings_.keyFile, true);
  } catch (const std::exception& e) {
    throw ConsoleError(e.what());
  }
  common::applyLinkOptions(socket_, 64 << 20);
  common::makeCurveClient(socket_, serverKey, secretKey);
  socket_.connect(settings_.endpoint);
}

nlohmann::json ConsoleClient::call(const std::function<void(wire::Query::Builder)>& fill,
                                   std::string* data) {
  capnp::MallocMessageBuilder message;
  auto q = common::initEnvelope(message).getBody().initQuery();
  const uint64_t requestId = nextRequestId_++;
  q.setRequestId(requestId);
  fill(q);
  std::string bytes = common::encodeMessage(message);
  socket_.send(zmq::buffer(bytes), zmq::send_flags::none);

  const int64_t deadline = common::monoNowNs() + int64_t{settings_.timeoutMs} * 1'000'000;
  common::EnvelopeDecoder decoder(common::DecodeLimits{64 << 20});
  for (;;) {
    int64_t left = (deadline - common::monoNowNs()) / 1'000'000;
    if (left <= 0) break;
    zmq::pollitem_t item = {socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(left));
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;
    }
    if (!(item.revents & ZMQ_POLLIN)) continue;
    zmq::message_t msg;
    if (!socket_.recv(msg, zmq::recv_flags::dontwait)) continue;
    auto r = decoder.decode(std::span(static_cast<const uint8_t*>(msg.data()), msg.size()));
    if (r != common::EnvelopeReject::kNone)
      throw ConsoleError(std::string("unreadable reply from the aggregator: ") +
                         common::envelopeRejectName(r) + " " + decoder.detail());
    auto body = decoder.envelope().getBody();
    if (body.which() != wire::Envelope::Body::REPLY) continue;
    auto reply = body.getReply();
    if (reply.getRequestId() != requestId && reply.getRequestId() != 0) continue;
    std::string error, text;
    try {
      error = reply.getError().cStr();
      text = reply.getJson().cStr();
      if (data) {
        auto d = reply.getData();
        data->assign(reinterpret_cast<const char*>(d.begin()), d.size());
      }
    } catch (const kj::Exception& e) {
      throw ConsoleError(std::string("malformed reply from the aggregator: ") +
                         e.getDescription().cStr());
    }
    if (!reply.getOk()) throw ConsoleError("aggregator: " + error);
    auto json = nlohmann::json::parse(text, nullptr, false);
    if (json.is_discarded()) throw ConsoleError("aggregator sent a reply that is not JSON");
    return json;
  }
  throw ConsoleError("no answer from the aggregator at " + settings_.endpoint + " within " +
                     std::to_string(settings_.timeoutMs) +
                     " ms (is it running, and is this console's key listed in its "
                     "aggregator.toml [[console]]?)");
}

}  // namespace garda::console
