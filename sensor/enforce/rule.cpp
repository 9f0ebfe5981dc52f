#include "sensor/enforce/rule.h"

#include "common/duration.h"

namespace garda::sensor {

namespace {

// "any" for a prefix of length 0, which a script should not have to decode.
std::string prefixText(const common::Prefix& p) {
  return p.length() == 0 ? "any" : p.toString();
}

}  // namespace

nlohmann::json Rule::toJson() const {
  return {{"id", id},
          {"incident_id", incidentId},
          {"action", match.action == common::OrderMatch::Action::kDrop ? "drop" : "rate_limit"},
          {"source", prefixText(match.source)},
          {"destination", prefixText(match.destination)},
          {"protocol", match.protocol},
          {"source_port", match.sourcePort},
          {"destination_port", match.destinationPort},
          {"rate_pps", match.ratePps},
          {"expires_at_ns", expiresAtNs},
          {"expires_at", common::formatTimeNs(expiresAtNs)},
          {"reason", reason},
          {"created_by", createdBy}};
}

std::optional<Rule> ruleFromWire(wire::Order::Reader o, std::string& why) {
  auto match = common::OrderMatch::fromWire(o, why);
  if (!match) return std::nullopt;
  Rule r;
  r.id = o.getOrderId();
  r.incidentId = o.getIncidentId();
  r.match = *match;
  r.expiresAtNs = o.getExpiresAtNs();
  r.reason = o.getReason();
  r.createdBy = o.getCreatedBy();
  return r;
}

}  // namespace garda::sensor
