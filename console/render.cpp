#include "console/render.h"

#include <fmt/core.h>

#include <algorithm>
#include <vector>

#include "common/clock.h"
#include "common/duration.h"

namespace garda::console {
namespace {

// Left-aligned columns, each as wide as its widest cell.
std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i)
      line += (i + 1 < r.size()) ? fmt::format("{:<{}}  ", r[i], width[i]) : r[i];
    out += line + "\n";
  }
  if (!out.empty()) out.pop_back();
  return out;
}

std::string ago(int64_t ns) {
  if (ns <= 0) return "never";
  int64_t s = (common::wallNowNs() - ns) / 1'000'000'000;
  if (s < 0) s = 0;
  if (s < 120) return fmt::format("{}s ago", s);
  if (s < 7200) return fmt::format("{}m ago", s / 60);
  if (s < 172800) return fmt::format("{}h ago", s / 3600);
  return fmt::format("{}d ago", s / 86400);
}

}  // namespace

std::string humanCount(double v) {
  if (v < 1000) return fmt::format("{:.0f}", v);
  if (v < 1e6) return fmt::format("{:.1f}k", v / 1e3);
  if (v < 1e9) return fmt::format("{:.2f}M", v / 1e6);
  return fmt::format("{:.2f}G", v / 1e9);
}

std::string renderStatus(const nlohmann::json& status) {
  std::vector<std::vector<std::string>> rows = {
      {"SENSOR", "OPD", "STATE", "LAST SEEN", "PPS", "KERNEL DROPS", "WINDOWS", "BACKLOG"}};
  for (const auto& s : status.value("sensors", nlohmann::json::array()))
    rows.push_back({s.value("id", ""), s.value("opd", ""), s.value("state", ""),
                    ago(s.value("last_seen_ns", int64_t{0})), humanCount(s.value("pps", 0.0)),
                    std::to_string(s.value("kernel_drops", uint64_t{0})),
                    std::to_string(s.value("windows_stored", uint64_t{0})),
                    std::to_string(s.value("backlog", 0u))});
  if (rows.size() == 1) return "no sensors listed in aggregator.toml";
  return table(rows);
}

std::string renderHistory(const nlohmann::json& history) {
  std::vector<std::vector<std::string>> rows = {
      {"WINDOW START (UTC)", "MS", "PACKETS", "BYTES", "TCP", "UDP", "ICMP", "OTHER", "VICTIMS"}};
  for (const auto& w : history.value("windows", nlohmann::json::array()))
    rows.push_back({common::formatTimeNs(w.value("start_ns", int64_t{0})),
                    std::to_string(w.value("window_ms", 0u)),
                    std::to_string(w.value("packets", uint64_t{0})),
                    humanCount(w.value("bytes", 0.0)), std::to_string(w.value("tcp", uint64_t{0})),
                    std::to_string(w.value("udp", uint64_t{0})),
                    std::to_string(w.value("icmp", uint64_t{0})),
                    std::to_string(w.value("other", uint64_t{0})),
                    std::to_string(w.value("victims", 0u))});
  if (rows.size() == 1) return "no windows stored for " + history.value("sensor", std::string("?"));
  return fmt::format("sensor {}: {} windows\n{}", history.value("sensor", ""), rows.size() - 1,
                     table(rows));
}

namespace {

std::string orderMatch(const nlohmann::json& o) {
  auto port = [](unsigned p) { return p ? std::to_string(p) : std::string("any"); };
  std::string action = o.value("action", "") == "rate_limit"
                           ? fmt::format("rate-limit {}pps", o.value("rate_pps", uint64_t{0}))
                           : std::string("drop");
  unsigned proto = o.value("protocol", 0u);
  return fmt::format("{} {} {}:{} -> {}:{}", action, proto ? std::to_string(proto) : "any",
                     o.value("source", "any"), port(o.value("source_port", 0u)),
                     o.value("destination", "any"), port(o.value("destination_port", 0u)));
}

std::string until(int64_t ns) {
  int64_t s = (ns - common::wallNowNs()) / 1'000'000'000;
  if (s <= 0) return "expired";
  if (s < 120) return fmt::format("{}s", s);
  if (s < 7200) return fmt::format("{}m", s / 60);
  return fmt::format("{}h", s / 3600);
}

}  // namespace

std::string renderOrders(const nlohmann::json& orders) {
  std::vector<std::vector<std::string>> rows = {
      {"ORDER", "MATCH", "LEFT", "BY", "SENSOR", "STATE", "DROPPED", "REASON"}};
  for (const auto& o : orders.value("orders", nlohmann::json::array())) {
    std::string left = o.value("state", "") == "active"
                           ? until(o.value("expires_at_ns", int64_t{0}))
                           : o.value("state", "");
    std::vector<std::string> head = {o.value("id", ""), orderMatch(o), left,
                                     o.value("created_by", "")};
    auto deliveries = o.value("deliveries", nlohmann::json::object());
    if (deliveries.empty()) {
      head.insert(head.end(), {"-", "no sensor", "-", o.value("reason", "")});
      rows.push_back(head);
      continue;
    }
    bool first = true;
    for (const auto& [sensor, d] : deliveries.items()) {
      std::vector<std::string> row = first ? head : std::vector<std::string>(4, "");
      std::string state = d.value("state", "");
      if (!d.value("reason", "").empty()) state += " (" + d.value("reason", "") + ")";
      row.insert(row.end(), {sensor, state, std::to_string(d.value("packets_dropped", uint64_t{0})),
                             first ? o.value("reason", "") : ""});
      rows.push_back(row);
      first = false;
    }
  }
  if (rows.size() == 1) return "no orders active or ended in the last 10 minutes";
  return table(rows);
}

std::string renderOrderAdded(const nlohmann::json& o) {
  return fmt::format("{}: {} for {} at {} ({})", o.value("id", "?"), orderMatch(o),
                     until(o.value("expires_at_ns", int64_t{0})),
                     o.value("city_wide", false) ? "every sensor" : "the listed sensors",
                     o.value("reason", ""));
}

}  // namespace garda::console
