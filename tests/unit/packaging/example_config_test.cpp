// The example configs the packages install as /etc/garda conffiles are valid
// (every key checked as at startup; key files are made by the operator, so
// they are not read here).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/config.h"

namespace garda::common {
namespace {

std::string packaged(const std::string& name) {
  std::ifstream in(std::string(GARDA_SOURCE_DIR) + "/packaging/" + name);
  EXPECT_TRUE(in.is_open()) << "packaging/" << name << " is missing";
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(PackagedConfig, SensorExampleIsValid) {
  auto c = parseSensorConfig(packaged("sensor.toml"), "sensor.toml", /*loadKeys=*/false);
  EXPECT_EQ(c.secretKeyFile, "/etc/garda/keys/sensor.key");
  EXPECT_EQ(c.aggregatorPublicKeyFile, "/etc/garda/keys/aggregator.pub");
  EXPECT_EQ(c.backend, EnforceBackend::kDryRun) << "a fresh install enforces nothing";
}

TEST(PackagedConfig, AggregatorExampleIsValid) {
  auto c = parseAggregatorConfig(packaged("aggregator.toml"), "aggregator.toml",
                                 /*loadKeys=*/false);
  EXPECT_EQ(c.dataDir, "/var/lib/garda") << "the unit's StateDirectory";
  EXPECT_EQ(c.secretKeyFile, "/etc/garda/keys/aggregator.key");
  EXPECT_EQ(c.listenConsole, "tcp://127.0.0.1:7451");
}

TEST(PackagedConfig, ConsoleExamplePointsAtTheLocalAggregator) {
  auto c = loadConsoleConfig(std::string(GARDA_SOURCE_DIR) + "/packaging/console.toml");
  EXPECT_EQ(c.connect, "tcp://127.0.0.1:7451");
  EXPECT_EQ(c.serverKeyFile, "/etc/garda/keys/aggregator.pub");
  EXPECT_EQ(c.keyFile, "/etc/garda/keys/local-operator.key");
}

}  // namespace
}  // namespace garda::common
