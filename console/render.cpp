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
  const bool city = history.value("city", false);
  const std::string who =
      city ? std::string("the city") : "sensor " + history.value("sensor", std::string("?"));
  if (rows.size() == 1) return "no windows stored for " + who;
  return fmt::format("{}: {} {}\n{}", who, rows.size() - 1,
                     city ? "seconds (all sensors)" : "windows", table(rows));
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
      {"ORDER", "MATCH", "LEFT", "BY", "SENSOR", "STATE", "DROPPED", "DROP/S", "REASON"}};
  for (const auto& o : orders.value("orders", nlohmann::json::array())) {
    std::string left = o.value("state", "") == "active"
                           ? until(o.value("expires_at_ns", int64_t{0}))
                           : o.value("state", "");
    std::vector<std::string> head = {o.value("id", ""), orderMatch(o), left,
                                     o.value("created_by", "")};
    auto deliveries = o.value("deliveries", nlohmann::json::object());
    if (deliveries.empty()) {
      head.insert(head.end(), {"-", "no sensor", "-", "-", o.value("reason", "")});
      rows.push_back(head);
      continue;
    }
    bool first = true;
    for (const auto& [sensor, d] : deliveries.items()) {
      std::vector<std::string> row = first ? head : std::vector<std::string>(4, "");
      std::string state = d.value("state", "");
      if (!d.value("reason", "").empty()) state += " (" + d.value("reason", "") + ")";
      row.insert(row.end(),
                 {sensor, state, std::to_string(d.value("packets_dropped", uint64_t{0})),
                  humanCount(d.value("drop_pps", 0.0)), first ? o.value("reason", "") : ""});
      rows.push_back(row);
      first = false;
    }
  }
  if (rows.size() == 1) return "no orders active or ended in the last 10 minutes";
  return table(rows);
}

namespace {

std::string joined(const nlohmann::json& list, size_t max = 4) {
  std::string out;
  size_t n = 0;
  for (const auto& x : list) {
    if (n == max) return out + fmt::format(" +{}", list.size() - max);
    out += (n++ ? ", " : "") + (x.is_string() ? x.get<std::string>() : x.dump());
  }
  return out.empty() ? "-" : out;
}

}  // namespace

std::string renderIncidents(const nlohmann::json& incidents) {
  std::vector<std::vector<std::string>> rows = {
      {"INCIDENT", "STATE", "SEVERITY", "ATTACK", "VICTIMS", "SENSORS", "PEAK PPS", "OPENED (UTC)"}};
  for (const auto& i : incidents.value("incidents", nlohmann::json::array()))
    rows.push_back({i.value("id", ""), i.value("state", ""), i.value("severity", ""),
                    i.value("classification", ""),
                    joined(i.value("victims", nlohmann::json::array()), 3),
                    joined(i.value("sensors", nlohmann::json::array()), 3) +
                        (i.value("city_wide", false) ? " (city-wide)" : ""),
                    humanCount(i.value("peak_pps", 0.0)),
                    common::formatTimeNs(i.value("opened_at_ns", int64_t{0}))});
  if (rows.size() == 1) return "no incidents";
  return table(rows);
}

std::string renderIncident(const nlohmann::json& i) {
  std::string out = fmt::format(
      "{}  {}  severity {}{}\n  attack:    {}\n  victims:   {}\n  sensors:   {}\n"
      "  peak:      {} pps, {}bps\n  sources:   ~{} distinct{}\n  opened:    {}\n",
      i.value("id", "?"), i.value("state", "?"), i.value("severity", "?"),
      i.value("city_wide", false) ? "  CITY-WIDE" : "", i.value("classification", "?"),
      joined(i.value("victims", nlohmann::json::array()), 20),
      joined(i.value("sensors", nlohmann::json::array()), 20), humanCount(i.value("peak_pps", 0.0)),
      humanCount(i.value("peak_bps", 0.0)), humanCount(i.value("distinct_sources", 0.0)),
      i.value("spoofed_sources", false) ? " (spoofed)" : "",
      common::formatTimeNs(i.value("opened_at_ns", int64_t{0})));
  if (i.value("resolved_at_ns", int64_t{0}) > 0)
    out += fmt::format("  resolved:  {}\n", common::formatTimeNs(i.value("resolved_at_ns", int64_t{0})));
  // Bigger than it can list: say so, or the agent believes the lists whole.
  if (const auto past = i.value("anomalies_past_member_cap", uint64_t{0}); past > 0)
    out += fmt::format(
        "  note:      larger than listed: {} anomalies at (sensor, victim) pairs past its member "
        "cap\n",
        past);
  if (const auto dropped = i.value("timeline_dropped", uint64_t{0}); dropped > 0)
    out += fmt::format("  note:      {} timeline events not kept (timeline full)\n", dropped);
  auto sources = i.value("top_sources", nlohmann::json::array());
  if (!sources.empty()) {
    out += "  top sources:\n";
    size_t n = 0;
    for (const auto& src : sources) {
      if (n++ == 10) break;
      out += fmt::format("    {:<40} {:>10} pkts  {:>5.1f}%\n", src.value("address", ""),
                         src.value("packets", uint64_t{0}), 100 * src.value("share", 0.0));
    }
  }
  auto prefixes = i.value("source_prefixes", nlohmann::json::array());
  if (!prefixes.empty()) {
    out += "  source prefixes:";
    for (const auto& p : prefixes)
      out += fmt::format(" {} ({} sources)", p.value("prefix", ""), p.value("sources", 0u));
    out += "\n";
  }
  auto orders = i.value("orders", nlohmann::json::array());
  if (!orders.empty()) {
    out += "  orders:\n";
    for (const auto& o : orders) {
      const auto at = o.value("sensors", nlohmann::json::object());
      for (const auto& [sensor, d] : at.items())
        out += fmt::format("    {:<28} {:<8} {:<16} {:<10} {:>12} pkts  {:>8} pps  {}\n",
                           o.value("id", ""), o.value("state", ""), sensor, d.value("state", ""),
                           d.value("packets_dropped", uint64_t{0}),
                           humanCount(d.value("drop_pps", 0.0)), o.value("what", ""));
    }
  }
  out += "  timeline:\n";
  for (const auto& e : i.value("timeline", nlohmann::json::array()))
    out += fmt::format("    {}  {:<14} {}\n", common::formatTimeNs(e.value("at_ns", int64_t{0})),
                       e.value("kind", ""), e.value("text", ""));
  out.pop_back();
  return out;
}

std::string renderTop(const nlohmann::json& top) {
  bool sources = top.value("kind", "") == "sources";
  std::vector<std::vector<std::string>> rows = {
      {sources ? "SOURCE" : "VICTIM", "PACKETS", "WINDOWS", "SENSORS", sources ? "VICTIMS" : "BYTES"}};
  for (const auto& r : top.value(sources ? "sources" : "victims", nlohmann::json::array()))
    rows.push_back({r.value("address", ""), humanCount(r.value("packets", 0.0)),
                    std::to_string(r.value("windows", uint64_t{0})),
                    joined(r.value("sensors", nlohmann::json::array()), 3),
                    sources ? joined(r.value("victims", nlohmann::json::array()), 3)
                            : humanCount(r.value("bytes", 0.0))});
  if (rows.size() == 1) return fmt::format("no {} in the stored windows", sources ? "sources" : "victims");
  return table(rows);
}

std::string renderHistoryChart(const nlohmann::json& history, size_t width, size_t height) {
  std::vector<double> pps;
  for (const auto& w : history.value("windows", nlohmann::json::array())) {
    double ms = std::max(1u, w.value("window_ms", 1000u));
    pps.push_back(w.value("packets", 0.0) * 1000.0 / ms);
  }
  if (pps.empty() || width == 0 || height == 0) return "";
  // Each column is the mean of its share of the windows.
  size_t cols = std::min(width, pps.size());
  std::vector<double> col(cols, 0.0);
  for (size_t c = 0; c < cols; ++c) {
    size_t from = c * pps.size() / cols, to = (c + 1) * pps.size() / cols;
    for (size_t k = from; k < to; ++k) col[c] += pps[k];
    col[c] /= static_cast<double>(to - from);
  }
  double peak = *std::max_element(col.begin(), col.end());
  if (peak <= 0) peak = 1;
  static const char* kEighths[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  std::string out;
  for (size_t row = height; row-- > 0;) {
    out += fmt::format("{:>8} |", row + 1 == height ? humanCount(peak) : row == 0 ? "0" : "");
    for (double v : col) {
      double level = v / peak * static_cast<double>(height) - static_cast<double>(row);
      int eighths = level >= 1 ? 8 : level <= 0 ? 0 : static_cast<int>(level * 8 + 0.5);
      out += kEighths[eighths];
    }
    out += "\n";
  }
  auto windows = history.value("windows", nlohmann::json::array());
  out += fmt::format("{:>8} +{}\n{:>10}{} .. {} (pps, {} windows)", "", std::string(cols, '-'), "",
                     common::formatTimeNs(windows.front().value("start_ns", int64_t{0})),
                     common::formatTimeNs(windows.back().value("start_ns", int64_t{0})),
                     pps.size());
  return out;
}

std::string renderOrderAdded(const nlohmann::json& o) {
  return fmt::format("{}: {} for {} at {} ({})", o.value("id", "?"), orderMatch(o),
                     until(o.value("expires_at_ns", int64_t{0})),
                     o.value("city_wide", false) ? "every sensor" : "the listed sensors",
                     o.value("reason", ""));
}

}  // namespace garda::console
