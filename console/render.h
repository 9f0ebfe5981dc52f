#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace garda::console {

// Readable tables for a person at a terminal, from the same JSON that --json
// prints. Pure functions: tested without an aggregator.
std::string renderStatus(const nlohmann::json& status);
std::string renderHistory(const nlohmann::json& history);
// `block list`: one line per order and sensor.
std::string renderOrders(const nlohmann::json& orders);
// `block add`: the new order's id and what it does.
std::string renderOrderAdded(const nlohmann::json& order);

// "12.3k", "4.56M": short counts for narrow columns.
std::string humanCount(double v);

}  // namespace garda::console
