#include "common/duration.h"

#include <charconv>
#include <cstdio>
#include <ctime>

namespace garda::common {

std::optional<int64_t> parseDurationNs(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 12) return std::nullopt;
  int64_t n = 0;
  std::from_chars(text.data(), text.data() + digits, n);
  std::string_view unit = text.substr(digits);
  int64_t scale;
  if (unit == "ms") scale = 1'000'000;
  else if (unit == "s") scale = 1'000'000'000;
  else if (unit == "m") scale = 60'000'000'000;
  else if (unit == "h") scale = 3'600'000'000'000;
  else if (unit == "d") scale = 86'400'000'000'000;
  else return std::nullopt;
  if (n > INT64_MAX / scale) return std::nullopt;
  return n * scale;
}

std::string formatTimeNs(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1'000'000'000);
  int ms = static_cast<int>((ns % 1'000'000'000) / 1'000'000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::string formatHex64(uint64_t v) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace garda::common
