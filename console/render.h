#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace garda::console {

// Readable tables for a person at a terminal, from the same JSON that --json
// prints. Pure functions: tested without an aggregator.
std::string renderStatus(const nlohmann::json& status);
std::string renderHistory(const nlohmann::json& history);
// `incidents`: one line per incident.
std::string renderIncidents(const nlohmann::json& incidents);
// `incident show ID`: what, where, from where, how hard, and the timeline.
std::string renderIncident(const nlohmann::json& incident);
// `top victims|sources`.
std::string renderTop(const nlohmann::json& top);
// A terminal chart of packets per second over the windows of `history`,
// `width` columns wide (each column the mean of its windows), `height` rows.
std::string renderHistoryChart(const nlohmann::json& history, size_t width = 72,
                               size_t height = 8);
// `block list`: one line per order and sensor.
std::string renderOrders(const nlohmann::json& orders);
// `block add`: the new order's id and what it does.
std::string renderOrderAdded(const nlohmann::json& order);

// "12.3k", "4.56M": short counts for narrow columns.
std::string humanCount(double v);

}  // namespace garda::console
