#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace garda::aggregator {

// What an export says about who shares it and how far it may go.
struct ExportSettings {
  std::string csirtName = "City CSIRT";
  std::string tlp = "amber";  // clear | green | amber | red (TLP 1.0 names as STIX 2.1 defines)
  size_t maxSources = 20;     // top sources exported as indicators / ip-src
};

// Exports of one incident for sharing with the national CSIRT and peers.
// Pure functions of the stored incident JSON (incidentToJson's shape) and the
// settings: the same incident always gives the same document (ids are
// UUIDv5 of the incident id and the object, times come from the incident),
// so a re-export replaces, not duplicates, what the receiver imported.
//
// STIX 2.1: a bundle with the CSIRT's identity, the TLP marking-definition,
// one attack-pattern per ATT&CK sub-technique that fits (T1498.001 direct
// network flood, T1498.002 reflection amplification), an ipv4-addr/ipv6-addr
// SCO per victim and top source, an indicator, observed-data and sighting
// per top source, observed-data for the victims, relationships (indicator
// indicates attack-pattern, attack-pattern targets victim) and a report
// tying them together. Throws std::invalid_argument when the JSON is not an
// incident.
nlohmann::json stixBundle(const nlohmann::json& incident, const ExportSettings& settings);

// MISP: {"Event": {...}} with tags (tlp, the mitre-attack-pattern galaxy
// cluster), one `ddos` object (template v6) per victim and the top sources
// as ip-src attributes. Throws std::invalid_argument as above.
nlohmann::json mispEvent(const nlohmann::json& incident, const ExportSettings& settings);

// RFC 4122 name-based UUID (version 5, SHA-1) of `name` in `namespaceUuid`
// ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"). Throws std::invalid_argument on a
// malformed namespace.
std::string uuidV5(std::string_view namespaceUuid, std::string_view name);

// "stix" or "misp" -> the document; nullopt for another format name.
std::optional<nlohmann::json> exportIncident(const nlohmann::json& incident,
                                             std::string_view format,
                                             const ExportSettings& settings);

// The TLP names accepted in settings.tlp.
bool isExportTlp(std::string_view tlp) noexcept;

}  // namespace garda::aggregator
