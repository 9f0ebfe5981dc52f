#include "common/order_match.h"

#include <fmt/core.h>

#include "common/envelope.h"

namespace garda::common {
namespace {

std::string endpoint(const Prefix& p, uint16_t port) {
  return fmt::format("{}:{}", p.length() == 0 ? std::string("any") : p.toString(),
                     port == 0 ? std::string("any") : std::to_string(port));
}

}  // namespace

const char* OrderMatch::protocolName(uint8_t p) {
  switch (p) {
    case 0: return "any";
    case 1: return "icmp";
    case 6: return "tcp";
    case 17: return "udp";
    case 58: return "icmpv6";
    default: return "ip";
  }
}

bool OrderMatch::matchesEverything() const noexcept {
  return source.length() == 0 && destination.length() == 0 && protocol == 0 && sourcePort == 0 &&
         destinationPort == 0;
}

std::string OrderMatch::describe() const {
  std::string what = action == Action::kDrop ? "drop" : fmt::format("rate-limit {} pps", ratePps);
  std::string proto = protocolName(protocol);
  if (proto == "ip") proto = "proto " + std::to_string(protocol);
  return fmt::format("{} {} {} -> {}", what, proto, endpoint(source, sourcePort),
                     endpoint(destination, destinationPort));
}

void OrderMatch::toWire(wire::Order::Builder b) const {
  b.setAction(action == Action::kRateLimit ? wire::OrderAction::RATE_LIMIT
                                           : wire::OrderAction::DROP);
  if (source.length() > 0) writePrefix(b.initSource(), source);
  if (destination.length() > 0) writePrefix(b.initDestination(), destination);
  b.setProtocol(protocol);
  b.setSourcePort(sourcePort);
  b.setDestinationPort(destinationPort);
  b.setRatePps(ratePps);
}

std::optional<OrderMatch> OrderMatch::fromWire(wire::Order::Reader o, std::string& why) {
  OrderMatch m;
  m.action = o.getAction() == wire::OrderAction::RATE_LIMIT ? Action::kRateLimit : Action::kDrop;
  // An empty address means "any".
  auto src = o.getSource().getAddress().size() == 0 ? Prefix() : readPrefix(o.getSource());
  auto dst =
      o.getDestination().getAddress().size() == 0 ? Prefix() : readPrefix(o.getDestination());
  if (!src || !dst) {
    why = "unreadable source or destination prefix";
    return std::nullopt;
  }
  m.source = *src;
  m.destination = *dst;
  m.protocol = o.getProtocol();
  m.sourcePort = o.getSourcePort();
  m.destinationPort = o.getDestinationPort();
  m.ratePps = o.getRatePps();
  return m;
}

}  // namespace garda::common
