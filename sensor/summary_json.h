#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "sensor/window.h"

namespace garda::sensor {

// Stable names of the vectors ("tcp_syn", "udp_reflection", ...).
const char* vectorName(Vector v) noexcept;

// One closed window as JSON: what `garda-sensor --summaries-out` writes, one
// object per line (forensics on a capture without an aggregator, and the
// tests that compare the sensor with tshark). Shape:
// {"sensor", "window_start_ns", "window_ms", "late_packets", "victims_cut",
//  "totals": {"packets","bytes","tcp","udp","icmp","other"},
//  "decode": {"<status>": n, ...},            (every non-zero DecodeStatus)
//  "victims": [{"address","packets","bytes",
//               "vectors": {"<vector>": {"packets","bytes"}, ...}}]}
nlohmann::json windowToJson(const WindowStats& window, const std::string& sensorId);

}  // namespace garda::sensor
