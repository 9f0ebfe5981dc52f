// garda: the CSIRT console. Queries the aggregator and acts on it; also makes
// CURVE key pairs for every part of Garda.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "common/clock.h"
#include "common/config.h"
#include "common/duration.h"
#include "common/envelope.h"
#include "common/ip.h"
#include "common/keys.h"
#include "aggregator/http_auth.h"
#include "console/console_client.h"
#include "console/render.h"

namespace {

constexpr const char* kDefaultConsoleConfig = "/etc/garda/console.toml";

std::string envOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace garda;
  CLI::App app{"garda: the city CSIRT's console for Garda"};
  app.require_subcommand(1);
  app.fallthrough();
  console::ConnectionSettings conn;
  std::string consoleConfig = envOr("GARDA_CONSOLE_CONFIG", kDefaultConsoleConfig);
  bool json = false;
  app.add_option("--connect", conn.endpoint, "aggregator console endpoint (env GARDA_CONNECT)");
  app.add_option("--server-key", conn.serverKeyFile,
                 "aggregator public key file (env GARDA_SERVER_KEY)");
  app.add_option("--key", conn.keyFile, "this console's secret key file (env GARDA_KEY)");
  app.add_option("--timeout-ms", conn.timeoutMs, "how long to wait for an answer")
      ->check(CLI::Range(100, 600000));
  app.add_option("--console-config", consoleConfig,
                 "defaults for the three above (env GARDA_CONSOLE_CONFIG)");
  app.add_flag("--json", json, "print JSON (stable shape) instead of tables");
  app.set_version_flag("--version", GARDA_VERSION);

  auto* keygen = app.add_subcommand("keygen", "make a CURVE key pair: DIR/NAME.key and DIR/NAME.pub");
  std::string keyDir, keyName;
  keygen->add_option("--out", keyDir, "directory")->required();
  keygen->add_option("--name", keyName, "key name, e.g. the sensor id")->required();

  auto* status = app.add_subcommand("status", "the city's sensors: up or down, rates, drops");

  auto* history = app.add_subcommand(
      "history", "per-window totals of one sensor, or per second of the city, from the store");
  std::string historySensor, historySince;
  uint32_t historyLimit = 0;
  history->add_option("--sensor", historySensor,
                      "sensor id (default: the whole city, summed per second)");
  history->add_option("--since", historySince, "e.g. 10m, 1h, 7d (default: the newest windows)");
  history->add_option("--limit", historyLimit, "at most this many windows (default 1000)");

  auto* incidents = app.add_subcommand("incidents", "incidents, newest first (open ones on top)");
  bool openOnly = false;
  incidents->add_flag("--open", openOnly, "only incidents still open or mitigating");
  auto* incident = app.add_subcommand("incident", "one incident");
  incident->require_subcommand(1);
  auto* incidentShow = incident->add_subcommand("show", "what, where, from where, and its timeline");
  std::string incidentId;
  incidentShow->add_option("ID", incidentId, "as shown by incidents")->required();

  auto* top = app.add_subcommand("top", "top victims or sources over the stored windows");
  std::string topKind, topSince, topSensor;
  uint32_t topLimit = 20;
  top->add_option("KIND", topKind, "victims | sources")
      ->required()
      ->check(CLI::IsMember({"victims", "sources"}));
  top->add_option("--since", topSince, "e.g. 10m, 1h (default: each sensor's newest windows)");
  top->add_option("--sensor", topSensor, "one sensor (default: the whole city)");
  top->add_option("--limit", topLimit, "rows (default 20)");

  auto* block = app.add_subcommand("block", "block rules (orders) pushed to the sensors");
  block->require_subcommand(1);
  auto* blockAdd = block->add_subcommand("add", "block a source prefix at every sensor (operator)");
  std::string blockPrefix, blockTtl = "1h", blockReason;
  blockAdd->add_option("PREFIX", blockPrefix, "source address or prefix, e.g. 203.0.113.0/24")
      ->required();
  blockAdd->add_option("--ttl", blockTtl, "how long the block lasts, e.g. 10m, 1h (default 1h)");
  blockAdd->add_option("--reason", blockReason, "why: kept in the audit log")->required();
  auto* blockList = block->add_subcommand("list", "active orders and where each is applied");
  auto* blockRm = block->add_subcommand("rm", "withdraw an order everywhere (operator)");
  std::string blockId;
  blockRm->add_option("ORDER_ID", blockId, "as shown by block list")->required();

  auto* orderCmd = app.add_subcommand("order", "the planner's proposals (confirm mode)");
  orderCmd->require_subcommand(1);
  std::string decideId;
  auto* orderApprove = orderCmd->add_subcommand("approve", "send a proposed order (operator)");
  orderApprove->add_option("ORDER_ID", decideId, "as shown by block list")->required();
  auto* orderReject = orderCmd->add_subcommand("reject", "decline a proposed order (operator)");
  orderReject->add_option("ORDER_ID", decideId, "as shown by block list")->required();

  auto* tokenCmd = app.add_subcommand("token", "HTTP API bearer tokens");
  tokenCmd->require_subcommand(1);
  auto* tokenNew = tokenCmd->add_subcommand(
      "new", "make a token: prints it once and the [[token]] entry for aggregator.toml");
  std::string tokenName, tokenRole;
  tokenNew->add_option("--name", tokenName, "who holds it (audited as token:NAME)")->required();
  tokenNew->add_option("--role", tokenRole, "viewer | operator")
      ->required()
      ->check(CLI::IsMember({"viewer", "operator"}));

  CLI11_PARSE(app, argc, argv);

  if (tokenNew->parsed()) {
    if (tokenName.empty() || tokenName.size() > 64 || tokenName.find('"') != std::string::npos ||
        tokenName.find('\\') != std::string::npos) {
      fmt::print(stderr, "garda token new: --name must be 1 to 64 characters without quotes\n");
      return 2;
    }
    try {
      const std::string token = aggregator::newToken();
      const std::string hash = aggregator::sha256Hex(token);
      const std::string entry = fmt::format(
          "[[token]]\nname = \"{}\"\nrole = \"{}\"\nsha256 = \"{}\"\n", tokenName, tokenRole, hash);
      if (json)
        fmt::print("{}\n", nlohmann::json{{"name", tokenName}, {"role", tokenRole}, {"token", token},
                                          {"sha256", hash}, {"config", entry}}
                               .dump());
      else
        fmt::print("token (shown once, keep it secret; the aggregator stores only its hash):\n  {}\n\n"
                   "add to aggregator.toml and restart the aggregator:\n\n{}",
                   token, entry);
      return 0;
    } catch (const std::exception& e) {
      fmt::print(stderr, "garda token new: {}\n", e.what());
      return 1;
    }
  }

  if (keygen->parsed()) {
    try {
      if (!common::isValidSensorId(keyName) && keyName.find('/') != std::string::npos)
        throw std::runtime_error("--name must not contain '/'");
      std::filesystem::create_directories(keyDir);
      common::writeCurveKeyFiles(keyDir, keyName, common::generateCurveKeyPair());
      if (!json) fmt::print("wrote {0}/{1}.key (secret, mode 0600) and {0}/{1}.pub\n", keyDir, keyName);
      return 0;
    } catch (const std::exception& e) {
      fmt::print(stderr, "garda keygen: {}\n", e.what());
      return 1;
    }
  }

  // Connection settings: flags, then environment, then the console config.
  conn.endpoint = conn.endpoint.empty() ? envOr("GARDA_CONNECT", "") : conn.endpoint;
  conn.serverKeyFile = conn.serverKeyFile.empty() ? envOr("GARDA_SERVER_KEY", "") : conn.serverKeyFile;
  conn.keyFile = conn.keyFile.empty() ? envOr("GARDA_KEY", "") : conn.keyFile;
  if ((conn.endpoint.empty() || conn.serverKeyFile.empty() || conn.keyFile.empty()) &&
      std::filesystem::exists(consoleConfig)) {
    try {
      auto c = common::loadConsoleConfig(consoleConfig);
      if (conn.endpoint.empty()) conn.endpoint = c.connect;
      if (conn.serverKeyFile.empty()) conn.serverKeyFile = c.serverKeyFile;
      if (conn.keyFile.empty()) conn.keyFile = c.keyFile;
    } catch (const std::exception& e) {
      fmt::print(stderr, "garda: {}\n", e.what());
      return 2;
    }
  }
  if (conn.endpoint.empty() || conn.serverKeyFile.empty() || conn.keyFile.empty()) {
    fmt::print(stderr,
               "garda: no aggregator to talk to: give --connect, --server-key and --key (or "
               "GARDA_CONNECT, GARDA_SERVER_KEY, GARDA_KEY, or {})\n",
               consoleConfig);
    return 2;
  }

  try {
    console::ConsoleClient client(conn);
    if (status->parsed()) {
      auto reply = client.call([](wire::Query::Builder q) { q.getCommand().setStatus(); });
      fmt::print("{}\n", json ? reply.dump(2) : console::renderStatus(reply));
    } else if (history->parsed()) {
      int64_t sinceNs = 0;
      if (!historySince.empty()) {
        auto d = common::parseDurationNs(historySince);
        if (!d) {
          fmt::print(stderr, "garda history: --since {}: expected a duration such as 10m, 1h, 7d\n",
                     historySince);
          return 2;
        }
        sinceNs = common::wallNowNs() - *d;
      }
      auto reply = client.call([&](wire::Query::Builder q) {
        auto h = q.getCommand().initHistory();
        h.setSensorId(historySensor);
        h.setSinceNs(sinceNs);
        h.setLimit(historyLimit);
      });
      if (json) {
        fmt::print("{}\n", reply.dump(2));
      } else {
        if (reply.value("windows", nlohmann::json::array()).size() >= 2)
          fmt::print("{}\n\n", console::renderHistoryChart(reply));
        fmt::print("{}\n", console::renderHistory(reply));
      }
    } else if (incidents->parsed()) {
      auto reply = client.call([&](wire::Query::Builder q) {
        q.getCommand().initIncidents().setOpenOnly(openOnly);
      });
      fmt::print("{}\n", json ? reply.dump(2) : console::renderIncidents(reply));
    } else if (incidentShow->parsed()) {
      auto reply = client.call([&](wire::Query::Builder q) {
        q.getCommand().setIncidentShow(incidentId);
      });
      fmt::print("{}\n", json ? reply.dump(2) : console::renderIncident(reply));
    } else if (top->parsed()) {
      int64_t sinceNs = 0;
      if (!topSince.empty()) {
        auto d = common::parseDurationNs(topSince);
        if (!d) {
          fmt::print(stderr, "garda top: --since {}: expected a duration such as 10m, 1h, 7d\n",
                     topSince);
          return 2;
        }
        sinceNs = common::wallNowNs() - *d;
      }
      auto reply = client.call([&](wire::Query::Builder q) {
        auto t = q.getCommand().initTop();
        t.setSources(topKind == "sources");
        t.setSinceNs(sinceNs);
        t.setSensorId(topSensor);
        t.setLimit(topLimit);
      });
      fmt::print("{}\n", json ? reply.dump(2) : console::renderTop(reply));
    } else if (blockAdd->parsed()) {
      auto ttl = common::parseDurationNs(blockTtl);
      if (!ttl || *ttl <= 0) {
        fmt::print(stderr, "garda block add: --ttl {}: expected a duration such as 10m, 1h\n",
                   blockTtl);
        return 2;
      }
      // A bare address is a /32 (or /128).
      auto prefix = common::Prefix::parse(blockPrefix, false);
      if (!prefix && blockPrefix.find('/') == std::string::npos) {
        if (auto a = common::IpAddress::parse(blockPrefix))
          prefix = common::Prefix::make(*a, a->isV4() ? 32 : 128);
      }
      if (!prefix) {
        fmt::print(stderr, "garda block add: {}: expected an address or prefix such as "
                           "203.0.113.0/24\n", blockPrefix);
        return 2;
      }
      auto reply = client.call([&](wire::Query::Builder q) {
        auto b = q.getCommand().initBlockAdd();
        common::writePrefix(b.initPrefix(), *prefix);
        b.setTtlMs(static_cast<uint64_t>(*ttl / 1'000'000));
        b.setReason(blockReason);
      });
      fmt::print("{}\n", json ? reply.dump(2) : console::renderOrderAdded(reply));
    } else if (orderApprove->parsed() || orderReject->parsed()) {
      const bool approve = orderApprove->parsed();
      auto reply = client.call([&](wire::Query::Builder q) {
        if (approve) q.getCommand().setOrderApprove(decideId);
        else q.getCommand().setOrderReject(decideId);
      });
      fmt::print("{}\n", json ? reply.dump(2)
                              : (approve ? "approved " : "declined ") + reply.value("id", decideId));
    } else if (blockList->parsed()) {
      auto reply = client.call([](wire::Query::Builder q) { q.getCommand().setBlockList(); });
      fmt::print("{}\n", json ? reply.dump(2) : console::renderOrders(reply));
    } else if (blockRm->parsed()) {
      auto reply = client.call([&](wire::Query::Builder q) {
        q.getCommand().setBlockRemove(blockId);
      });
      fmt::print("{}\n", json ? reply.dump(2) : "removed " + reply.value("id", blockId));
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "garda: {}\n", e.what());
    return 1;
  }
  return 0;
}
