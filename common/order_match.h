#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/ip.h"
#include "schemas/garda.capnp.h"

namespace garda::common {

// What a block rule matches and does: the part of an `Order` that the
// aggregator plans and the sensor enforces. A prefix of length 0, protocol 0
// and port 0 each mean "any".
struct OrderMatch {
  enum class Action : uint8_t { kDrop, kRateLimit };

  Action action = Action::kDrop;
  Prefix source;
  Prefix destination;
  uint8_t protocol = 0;
  uint16_t sourcePort = 0;
  uint16_t destinationPort = 0;
  uint64_t ratePps = 0;  // with kRateLimit

  bool operator==(const OrderMatch&) const = default;
  // No source, destination, protocol or port: every packet.
  bool matchesEverything() const noexcept;
  // "drop udp any:53 -> 198.18.2.10/32:any"
  std::string describe() const;
  static const char* protocolName(uint8_t protocol);

  // Sets the order's action, prefixes ("any" travels as an empty address),
  // protocol, ports and rate.
  void toWire(wire::Order::Builder order) const;
  // nullopt (with `why`) when a prefix cannot be read.
  static std::optional<OrderMatch> fromWire(wire::Order::Reader order, std::string& why);
};

}  // namespace garda::common
