#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "aggregator/http_auth.h"
#include "aggregator/http_server.h"
#include "common/config.h"

namespace garda::aggregator {
namespace {

TEST(HttpAuth, Sha256HexMatchesTheStandardVector) {
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(HttpAuth, NewTokensAreLongRandomAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    auto t = newToken();
    EXPECT_TRUE(std::regex_match(t, std::regex("garda_[0-9a-f]{64}"))) << t;
    EXPECT_TRUE(seen.insert(t).second);
  }
}

TEST(HttpAuth, ChecksTokensByHashAndKeepsTheirRoles) {
  const std::string viewer = newToken(), op = newToken();
  std::string upperHash = sha256Hex(op);
  for (auto& c : upperHash) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  TokenAuth auth({{"wall", common::Role::kViewer, sha256Hex(viewer)},
                  {"duty", common::Role::kOperator, upperHash}});
  auto v = auth.check(viewer);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->name, "wall");
  EXPECT_EQ(v->role, common::Role::kViewer);
  auto o = auth.check(op);
  ASSERT_TRUE(o) << "hex case does not matter";
  EXPECT_EQ(o->role, common::Role::kOperator);
  EXPECT_FALSE(auth.check(""));
  EXPECT_FALSE(auth.check(viewer + "x"));
  EXPECT_FALSE(auth.check(sha256Hex(viewer))) << "the hash itself is not a token";
  EXPECT_FALSE(TokenAuth({}).check(viewer));
}

TEST(HttpAuth, ReadsOnlyBearerHeaders) {
  EXPECT_EQ(TokenAuth::bearer("Bearer abc"), "abc");
  EXPECT_EQ(TokenAuth::bearer("bearer  abc "), "abc");
  EXPECT_EQ(TokenAuth::bearer("Basic abc"), "");
  EXPECT_EQ(TokenAuth::bearer("Bearer"), "");
  EXPECT_EQ(TokenAuth::bearer(""), "");
}

TEST(HttpRoutes, TableIsUniqueAndEveryRouteIsInTheOpenApiDocument) {
  std::ifstream f(std::string(GARDA_SOURCE_DIR) + "/docs/openapi.json");
  ASSERT_TRUE(f) << "docs/openapi.json";
  auto doc = nlohmann::json::parse(f);
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& r : routeTable()) {
    EXPECT_TRUE(seen.insert({r.method, r.path}).second) << r.method << " " << r.path;
    std::string method = r.method;
    for (auto& c : method) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    ASSERT_TRUE(doc["paths"].contains(r.path)) << r.path;
    EXPECT_TRUE(doc["paths"][r.path].contains(method)) << r.method << " " << r.path;
  }
  // And nothing documented that the server lacks.
  size_t documented = 0;
  for (const auto& [path, ops] : doc["paths"].items()) documented += ops.size();
  EXPECT_EQ(documented, routeTable().size());
}

TEST(HttpRoutes, PathParametersMatchOneSegment) {
  std::regex re(routeRegex("/api/v1/incidents/{id}/pcap"));
  EXPECT_TRUE(std::regex_match("/api/v1/incidents/inc-20261124T230000Z-1/pcap", re));
  EXPECT_FALSE(std::regex_match("/api/v1/incidents/a/b/pcap", re));
  EXPECT_FALSE(std::regex_match("/api/v1/incidents//pcap", re));
}

TEST(LoopBridge, RefusesWhenFullAndRunsAtMostMaxPerTurn) {
  LoopBridge bridge(3);
  int ran = 0;
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(bridge.post([&] { ++ran; }));
  EXPECT_FALSE(bridge.post([&] { ++ran; }));
  EXPECT_EQ(bridge.depth(), 3u);
  EXPECT_EQ(bridge.runPending(2), 2u);
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(bridge.runPending(10), 1u);
  EXPECT_EQ(bridge.depth(), 0u);
}

TEST(EventHub, DropsASlowClientAndCapsStreams) {
  EventHub hub(2, 3);
  auto a = hub.subscribe(), b = hub.subscribe();
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(hub.subscribe()) << "two streams at most";
  for (int i = 0; i < 3; ++i) hub.publish("status", {{"i", i}});
  {
    std::lock_guard lk(a->mutex);
    a->queue.clear();  // a reads; b does not
  }
  hub.publish("status", {{"i", 3}});
  EXPECT_FALSE(a->dropped);
  EXPECT_TRUE(b->dropped);
  EXPECT_TRUE(b->queue.empty());
  EXPECT_EQ(hub.dropped(), 1u);
  EXPECT_EQ(a->queue.front(), "event: status\ndata: {\"i\":3}\n\n");
  hub.unsubscribe(b);
  EXPECT_TRUE(hub.subscribe());
}

TEST(OrderWatcher, ReportsNewAndChangedOrdersAfterTheFirstLook) {
  OrderWatcher w;
  std::vector<std::string> events;
  auto emit = [&](const std::string& name, const nlohmann::json& j) {
    events.push_back(name + ":" + j.value("id", "") + ":" + j.value("state", ""));
    EXPECT_FALSE(j.contains("history"));
  };
  auto order = [](const char* id, const char* state, const char* delivery) {
    return nlohmann::json{{"id", id}, {"state", state}, {"history", nlohmann::json::array()},
                          {"deliveries", {{"opd", {{"state", delivery}}}}}};
  };
  w.look(nlohmann::json::array({order("o1", "active", "sent")}), emit);
  EXPECT_TRUE(events.empty()) << "the first look only primes";
  w.look(nlohmann::json::array({order("o1", "active", "sent")}), emit);
  EXPECT_TRUE(events.empty());
  w.look(nlohmann::json::array({order("o1", "active", "applied"), order("o2", "proposed", "")}), emit);
  w.look(nlohmann::json::array({order("o1", "removed", "removed"), order("o2", "proposed", "")}), emit);
  EXPECT_EQ(events, (std::vector<std::string>{"order:o1:active", "order:o2:proposed",
                                              "order:o1:removed"}));
}

// [aggregator] http and its TLS rule.
common::AggregatorConfig parse(const std::string& extra) {
  return common::parseAggregatorConfig(
      "[aggregator]\nsecret_key = \"/etc/garda/aggregator.key\"\n" + extra, "/etc/garda/aggregator.toml",
      false);
}

TEST(HttpConfig, OffByDefaultLoopbackWithoutTlsAndIPv6) {
  EXPECT_TRUE(parse("").http.empty());
  auto c = parse("http = \"127.0.0.1:7480\"\n");
  EXPECT_EQ(c.httpHost, "127.0.0.1");
  EXPECT_EQ(c.httpPort, 7480);
  EXPECT_TRUE(c.httpLoopback);
  auto v6 = parse("http = \"[::1]:8080\"\n");
  EXPECT_EQ(v6.httpHost, "::1");
  EXPECT_TRUE(v6.httpLoopback);
}

TEST(HttpConfig, NonLoopbackNeedsTlsOrTheInsecureFlag) {
  try {
    parse("http = \"0.0.0.0:7480\"\n");
    FAIL() << "accepted";
  } catch (const common::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("aggregator.http = \"0.0.0.0:7480\""), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("http_insecure_plaintext"), std::string::npos);
  }
  auto c = parse("http = \"0.0.0.0:7480\"\nhttp_insecure_plaintext = true\n");
  EXPECT_FALSE(c.httpLoopback);
  EXPECT_THROW(parse("http = \"198.18.0.1:7480\"\nhttp_tls_cert = \"/nonexistent.pem\"\n"),
               common::ConfigError)
      << "a cert without its key";
  EXPECT_THROW(parse("http = \"127.0.0.1:7480\"\nhttp_tls_cert = \"/nonexistent/c.pem\"\n"
                     "http_tls_key = \"/nonexistent/k.pem\"\n"),
               common::ConfigError)
      << "unreadable files";
}

TEST(HttpConfig, RejectsMalformedAddressesAndLimits) {
  for (const char* bad : {"7480", "localhost", "127.0.0.1:0", "127.0.0.1:70000", "::1:80",
                          "[::1]80", "127.0.0.1:http"})
    EXPECT_THROW(parse(std::string("http = \"") + bad + "\"\n"), common::ConfigError) << bad;
  EXPECT_THROW(parse("http_threads = 1\n"), common::ConfigError);
  EXPECT_THROW(parse("http_threads = 4\nhttp_sse_clients = 4\n"), common::ConfigError);
  EXPECT_THROW(parse("http_max_body_bytes = 10\n"), common::ConfigError);
}

}  // namespace
}  // namespace garda::aggregator
