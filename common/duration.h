#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace garda::common {

// Parses "500ms", "30s", "10m", "1h", "7d" into nanoseconds; nullopt for
// anything else (no sign, no fractions, no bare numbers).
std::optional<int64_t> parseDurationNs(std::string_view text);

// "2026-11-24T17:35:02.250Z" (UTC, milliseconds) from Unix nanoseconds.
std::string formatTimeNs(int64_t ns);

// 16 lowercase hex digits: how boot ids are shown.
std::string formatHex64(uint64_t v);

}  // namespace garda::common
