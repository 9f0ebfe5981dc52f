#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/order_match.h"
#include "schemas/garda.capnp.h"

namespace garda::sensor {

// One block rule as the sensor enforces it: an aggregator `Order` read off
// the wire, with its id and absolute expiry.
struct Rule {
  std::string id;
  std::string incidentId;
  common::OrderMatch match;
  int64_t expiresAtNs = 0;
  std::string reason;
  std::string createdBy;

  std::string describe() const { return match.describe(); }
  // The rule as JSON: what the exec backend hands to the operator's script.
  nlohmann::json toJson() const;
};

// Reads an order; nullopt (with `why`) when its prefixes cannot be read.
std::optional<Rule> ruleFromWire(wire::Order::Reader order, std::string& why);

}  // namespace garda::sensor
