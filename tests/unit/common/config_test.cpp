#include "common/config.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <gtest/gtest.h>

#include "common/keys.h"

namespace garda::common {
namespace {

// The smallest sensor.toml that loads: every required key and nothing else.
constexpr const char* kMinimalSensor = R"([sensor]
id = "kominfo-jkt-1"
protected = ["198.18.2.0/24", "2001:db8:1::/48"]

[uplink]
aggregator = "tcp://198.18.100.1:7450"
aggregator_public_key = "/etc/garda/aggregator.pub"
secret_key = "/etc/garda/sensor.key"
)";

constexpr const char* kMinimalAggregator = R"([aggregator]
secret_key = "/etc/garda/aggregator.key"
)";

// Replaces the one occurrence of `from` (which must be there) with `to`.
std::string edit(std::string text, const std::string& from, const std::string& to) {
  auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// The ConfigError message for a sensor.toml, or "(accepted)".
std::string sensorError(const std::string& toml) {
  try {
    parseSensorConfig(toml, "/etc/garda/sensor.toml", false);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

std::string aggregatorError(const std::string& toml) {
  try {
    parseAggregatorConfig(toml, "/etc/garda/aggregator.toml", false);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

const std::string kPrefixHelp =
    "not an address prefix (expected e.g. \"198.18.2.0/24\" or \"2001:db8::/48\", with no host "
    "bits set)";

// ---- sensor.toml -----------------------------------------------------------

TEST(SensorConfig, MinimalConfigLoadsWithDefaults) {
  SensorConfig c = parseSensorConfig(kMinimalSensor, "/etc/garda/sensor.toml", false);
  EXPECT_EQ(c.path, "/etc/garda/sensor.toml");
  EXPECT_EQ(c.id, "kominfo-jkt-1");
  EXPECT_EQ(c.opd, "kominfo-jkt-1");  // defaults to the id
  ASSERT_EQ(c.protectedPrefixes.size(), 2u);
  EXPECT_EQ(c.protectedPrefixes[0].toString(), "198.18.2.0/24");
  EXPECT_EQ(c.protectedPrefixes[1].toString(), "2001:db8:1::/48");
  EXPECT_TRUE(c.neverBlock.empty());
  EXPECT_EQ(c.logLevel, "info");
  EXPECT_EQ(c.source, CaptureSource::kAfPacket);
  EXPECT_EQ(c.interface, "eth0");
  EXPECT_EQ(c.workers, 1u);
  EXPECT_EQ(c.pcapFile, "");
  EXPECT_EQ(c.replay, ReplaySpeed::kFast);
  EXPECT_EQ(c.windowMs, 1000u);
  EXPECT_EQ(c.ringMb, 16u);
  EXPECT_EQ(c.bpfFilter, "");
  EXPECT_EQ(c.maxVictims, 2048u);
  EXPECT_EQ(c.topSources, 20u);
  EXPECT_EQ(c.topPorts, 10u);
  EXPECT_EQ(c.hllPrecision, 12u);
  EXPECT_EQ(c.alertPps, 100000u);
  EXPECT_EQ(c.aggregator, "tcp://198.18.100.1:7450");
  EXPECT_EQ(c.aggregatorPublicKeyFile, "/etc/garda/aggregator.pub");
  EXPECT_EQ(c.secretKeyFile, "/etc/garda/sensor.key");
  EXPECT_EQ(c.aggregatorPublicKey, "");  // loadKeys = false
  EXPECT_EQ(c.secretKey, "");
  EXPECT_EQ(c.drainTimeoutMs, 30000u);
  EXPECT_EQ(c.replayBuffer, 100000u);
  EXPECT_EQ(c.heartbeatMs, 1000u);
  EXPECT_EQ(c.backend, EnforceBackend::kDryRun);
  EXPECT_EQ(c.maxRules, 10000u);
  EXPECT_EQ(c.nftTable, "garda");
  EXPECT_EQ(c.xdpMode, XdpMode::kAuto);
  EXPECT_EQ(c.execCommand, "");
  EXPECT_EQ(c.execTimeoutMs, 5000u);
}

TEST(SensorConfig, EnforceBackendKeysAreRead) {
  auto c = parseSensorConfig(std::string(kMinimalSensor) +
                                 "[enforce]\nbackend = \"exec\"\nnft_table = \"garda_2\"\n"
                                 "xdp_mode = \"generic\"\nexec_command = \"/bin/true\"\n"
                                 "exec_timeout_ms = 250\nstate_dir = \"/var/lib/garda-sensor\"\n",
                             "/etc/garda/sensor.toml", false);
  EXPECT_EQ(c.backend, EnforceBackend::kExec);
  EXPECT_EQ(c.nftTable, "garda_2");
  EXPECT_EQ(c.xdpMode, XdpMode::kGeneric);
  EXPECT_EQ(c.execCommand, "/bin/true");
  EXPECT_EQ(c.execTimeoutMs, 250u);
  EXPECT_EQ(c.stateDir, "/var/lib/garda-sensor");  // checked only with the xdp backend
}

TEST(SensorConfig, BadEnforceKeysAreRefusedWithTheReason) {
  const std::string base = std::string(kMinimalSensor) + "[enforce]\n";
  EXPECT_EQ(sensorError(base + "backend = \"exec\"\n"),
            "sensor.toml: enforce.exec_command: missing (required)");
  EXPECT_EQ(sensorError(base + "backend = \"exec\"\nexec_command = \"enforce.sh\"\n"),
            "sensor.toml: enforce.exec_command = \"enforce.sh\": must be an absolute path (it is "
            "run without a shell, with no PATH lookup)");
  EXPECT_EQ(sensorError(base + "backend = \"exec\"\nexec_command = \"/nonexistent/garda.sh\"\n"),
            "sensor.toml: enforce.exec_command = \"/nonexistent/garda.sh\": cannot be executed: "
            "No such file or directory");
  EXPECT_EQ(sensorError(base + "exec_timeout_ms = 10\n"),
            "sensor.toml: enforce.exec_timeout_ms = 10: must be between 100 and 600000");
  EXPECT_EQ(sensorError(base + "state_dir = \"var/lib/garda-sensor\"\n"),
            "sensor.toml: enforce.state_dir = \"var/lib/garda-sensor\": must be an absolute path");
  EXPECT_EQ(sensorError(base + "backend = \"xdp\"\nstate_dir = \"/nonexistent/garda\"\n"),
            "sensor.toml: enforce.state_dir = \"/nonexistent/garda\": must be a folder this user "
            "can write (the xdp backend records its program's id there)");
  EXPECT_EQ(sensorError(base + "backend = \"xdp\"\nstate_dir = \"/etc/hostname\"\n"),
            "sensor.toml: enforce.state_dir = \"/etc/hostname\": must be a folder this user "
            "can write (the xdp backend records its program's id there)");
  EXPECT_EQ(sensorError(base + "xdp_mode = \"offload\"\n"),
            "sensor.toml: enforce.xdp_mode = \"offload\": must be one of auto | native | generic");
  for (const char* table : {"", "1garda", "garda-x", "a234567890123456789012345678901234"})
    EXPECT_EQ(sensorError(base + "nft_table = \"" + table + "\"\n"),
              std::string("sensor.toml: enforce.nft_table = \"") + table +
                  "\": must be 1 to 32 letters, digits or '_', starting with a letter");
  EXPECT_EQ(sensorError(base + "exec_comand = \"/bin/true\"\n"),
            "sensor.toml: enforce.exec_comand: unknown key");
}

TEST(SensorConfig, FullConfigReadsEveryKey) {
  SensorConfig c = parseSensorConfig(R"([sensor]
id = "dukcapil-1"
opd = "Dukcapil"
protected = ["198.18.2.0/24"]
never_block = ["198.18.2.53/32", "2001:db8:ffff::/64"]
log_level = "debug"

[capture]
source = "pcap"
interface = "ens3"
workers = 4
pcap_file = "/var/tmp/attack.pcap"
replay = "realtime"
window_ms = 250
ring_mb = 64
bpf_filter = "not port 22"

[window]
max_victims = 64
alert_pps = 0

[uplink]
aggregator = "ipc:///run/garda/agg"
aggregator_public_key = "a.pub"
secret_key = "s.key"
drain_timeout_ms = 0
replay_buffer = 5
heartbeat_ms = 200

[enforce]
backend = "nftables"
max_rules = 77
)",
                                     "sensor.toml", false);
  EXPECT_EQ(c.id, "dukcapil-1");
  EXPECT_EQ(c.opd, "Dukcapil");
  ASSERT_EQ(c.neverBlock.size(), 2u);
  EXPECT_EQ(c.neverBlock[0].toString(), "198.18.2.53/32");
  EXPECT_EQ(c.neverBlock[1].toString(), "2001:db8:ffff::/64");
  EXPECT_EQ(c.logLevel, "debug");
  EXPECT_EQ(c.source, CaptureSource::kPcap);
  EXPECT_EQ(c.interface, "ens3");
  EXPECT_EQ(c.workers, 4u);
  EXPECT_EQ(c.pcapFile, "/var/tmp/attack.pcap");
  EXPECT_EQ(c.replay, ReplaySpeed::kRealtime);
  EXPECT_EQ(c.windowMs, 250u);
  EXPECT_EQ(c.ringMb, 64u);
  EXPECT_EQ(c.bpfFilter, "not port 22");
  EXPECT_EQ(c.maxVictims, 64u);
  EXPECT_EQ(c.alertPps, 0u);
  EXPECT_EQ(c.aggregator, "ipc:///run/garda/agg");
  EXPECT_EQ(c.drainTimeoutMs, 0u);
  EXPECT_EQ(c.replayBuffer, 5u);
  EXPECT_EQ(c.heartbeatMs, 200u);
  EXPECT_EQ(c.backend, EnforceBackend::kNftables);
  EXPECT_EQ(c.maxRules, 77u);
}

TEST(SensorConfig, MissingIdNamesTheKey) {
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "id = \"kominfo-jkt-1\"\n", "")),
            "sensor.toml: sensor.id: missing (required)");
}

TEST(SensorConfig, MissingSensorSectionNamesTheFirstRequiredKey) {
  EXPECT_EQ(sensorError(R"([uplink]
aggregator = "tcp://198.18.100.1:7450"
aggregator_public_key = "a.pub"
secret_key = "s.key"
)"),
            "sensor.toml: sensor.id: missing (required)");
}

TEST(SensorConfig, MissingProtectedNamesTheKey) {
  EXPECT_EQ(sensorError(
                edit(kMinimalSensor, "protected = [\"198.18.2.0/24\", \"2001:db8:1::/48\"]\n", "")),
            "sensor.toml: sensor.protected: missing (required)");
}

TEST(SensorConfig, EmptyProtectedListIsRefused) {
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "[\"198.18.2.0/24\", \"2001:db8:1::/48\"]", "[]")),
            "sensor.toml: sensor.protected = []: must name at least one prefix (the OPD's own "
            "addresses)");
}

TEST(SensorConfig, MissingAggregatorNamesTheKey) {
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "aggregator = \"tcp://198.18.100.1:7450\"\n", "")),
            "sensor.toml: uplink.aggregator: missing (required)");
}

TEST(SensorConfig, MissingKeyFilesNameTheKey) {
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "secret_key = \"/etc/garda/sensor.key\"\n", "")),
            "sensor.toml: uplink.secret_key: missing (required)");
  EXPECT_EQ(sensorError(edit(kMinimalSensor,
                             "aggregator_public_key = \"/etc/garda/aggregator.pub\"\n", "")),
            "sensor.toml: uplink.aggregator_public_key: missing (required)");
}

TEST(SensorConfig, AggregatorMustBeAZeroMqEndpoint) {
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "tcp://198.18.100.1:7450", "198.18.100.1:7450")),
            "sensor.toml: uplink.aggregator = \"198.18.100.1:7450\": must be a ZeroMQ endpoint "
            "such as \"tcp://198.18.100.1:7450\"");
}

TEST(SensorConfig, BadProtectedPrefixNamesTheKeyAndValue) {
  for (const char* bad :
       {"10.0.0.1/33", "not-an-ip", "198.18.2.1/24", "2001:db8::/129", "198.18.2.0/"}) {
    EXPECT_EQ(
        sensorError(edit(kMinimalSensor, "\"198.18.2.0/24\"", std::string("\"") + bad + "\"")),
        std::string("sensor.toml: sensor.protected = \"") + bad + "\": " + kPrefixHelp);
  }
}

TEST(SensorConfig, BadNeverBlockPrefixNamesTheKey) {
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "[uplink]",
                             "never_block = [\"198.18.2.53/32\", \"198.18.2.1/24\"]\n[uplink]")),
            "sensor.toml: sensor.never_block = \"198.18.2.1/24\": " + kPrefixHelp);
}

TEST(SensorConfig, ProtectedMustBeAListOfStrings) {
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "[\"198.18.2.0/24\", \"2001:db8:1::/48\"]",
                             "\"198.18.2.0/24\"")),
            "sensor.toml: sensor.protected = '198.18.2.0/24': must be a list of strings");
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "[\"198.18.2.0/24\", \"2001:db8:1::/48\"]",
                             "[\"198.18.2.0/24\", 24]")),
            "sensor.toml: sensor.protected = [ '198.18.2.0/24', 24 ]: must be a list of strings");
}

TEST(SensorConfig, WindowMsOutOfRangeNamesTheKey) {
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nwindow_ms = 5\n"),
            "sensor.toml: capture.window_ms = 5: must be between 100 and 60000");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nwindow_ms = 60001\n"),
            "sensor.toml: capture.window_ms = 60001: must be between 100 and 60000");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nwindow_ms = -1000\n"),
            "sensor.toml: capture.window_ms = -1000: must be between 100 and 60000");
  EXPECT_EQ(parseSensorConfig(std::string(kMinimalSensor) + "[capture]\nwindow_ms = 100\n",
                              "sensor.toml", false)
                .windowMs,
            100u);
  EXPECT_EQ(parseSensorConfig(std::string(kMinimalSensor) + "[capture]\nwindow_ms = 60000\n",
                              "sensor.toml", false)
                .windowMs,
            60000u);
}

TEST(SensorConfig, OtherIntegersAreRangeChecked) {
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nworkers = 0\n"),
            "sensor.toml: capture.workers = 0: must be between 1 and 64");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[window]\nmax_victims = 0\n"),
            "sensor.toml: window.max_victims = 0: must be between 1 and 1048576");
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "[uplink]\n", "[uplink]\nheartbeat_ms = 99\n")),
            "sensor.toml: uplink.heartbeat_ms = 99: must be between 100 and 60000");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nring_mb = 2\n"),
            "sensor.toml: capture.ring_mb = 2: must be between 4 and 1024");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[window]\nalert_pps = -1\n"),
            "sensor.toml: window.alert_pps = -1: must be between 0 and 1000000000");
}

TEST(SensorConfig, OfflineParseNeedsNoUplink) {
  const std::string noUplink = "[sensor]\nid = \"edge-1\"\nprotected = [\"198.18.2.0/24\"]\n";
  SensorConfig c = parseSensorConfig(noUplink, "sensor.toml", false, /*requireUplink=*/false);
  EXPECT_EQ(c.id, "edge-1");
  EXPECT_EQ(c.aggregator, "");
  EXPECT_EQ(c.secretKeyFile, "");
  // Online, the same file is missing its uplink.
  EXPECT_EQ(sensorError(noUplink), "sensor.toml: uplink.aggregator: missing (required)");
  // Offline still checks everything else.
  try {
    parseSensorConfig(noUplink + "[capture]\nwindow_ms = 5\n", "sensor.toml", false, false);
    ADD_FAILURE() << "accepted window_ms = 5";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "sensor.toml: capture.window_ms = 5: must be between 100 and 60000");
  }
}

// A value of the wrong type is shown as TOML prints it (strings in single quotes).
TEST(SensorConfig, WrongTypeNamesTheKeyAndValue) {
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nwindow_ms = \"1000\"\n"),
            "sensor.toml: capture.window_ms = '1000': must be an integer");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nwindow_ms = 1000.0\n"),
            "sensor.toml: capture.window_ms = 1000.0: must be an integer");
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "id = \"kominfo-jkt-1\"", "id = 7")),
            "sensor.toml: sensor.id = 7: must be a string");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\ninterface = true\n"),
            "sensor.toml: capture.interface = true: must be a string");
}

TEST(SensorConfig, UnknownKeyIsReported) {
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nwindw_ms = 1000\n"),
            "sensor.toml: capture.windw_ms: unknown key");
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "[uplink]\n", "[uplink]\nsecret_keys = \"x\"\n")),
            "sensor.toml: uplink.secret_keys: unknown key");
}

TEST(SensorConfig, UnknownSectionIsReported) {
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[captur]\nwindow_ms = 1000\n"),
            "sensor.toml: captur: unknown section or key");
  // A key outside any section is reported the same way.
  EXPECT_EQ(sensorError(std::string("window_ms = 1000\n") + kMinimalSensor),
            "sensor.toml: window_ms: unknown section or key");
}

TEST(SensorConfig, SectionMustBeATable) {
  EXPECT_EQ(sensorError(std::string("capture = 5\n") + kMinimalSensor),
            "sensor.toml: capture: must be a table ([capture])");
}

TEST(SensorConfig, BadEnumValueListsTheChoices) {
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nsource = \"dpdk\"\n"),
            "sensor.toml: capture.source = \"dpdk\": must be one of afpacket | pcap");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[enforce]\nbackend = \"iptables\"\n"),
            "sensor.toml: enforce.backend = \"iptables\": must be one of nftables | xdp | exec | "
            "dry-run");
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "[uplink]\n", "log_level = \"verbose\"\n[uplink]\n")),
            "sensor.toml: sensor.log_level = \"verbose\": must be one of trace | debug | info | "
            "warn | error");
  EXPECT_EQ(sensorError(std::string(kMinimalSensor) + "[capture]\nreplay = 2\n"),
            "sensor.toml: capture.replay = 2: must be a string");
}

TEST(SensorConfig, BadSensorIdIsRefused) {
  for (const char* id : {"Dukcapil!", "", "UPPER", "with space", "under_score",
                         "abcdefghijklmnopqrstuvwxyz0123456"}) {
    EXPECT_EQ(sensorError(edit(kMinimalSensor, "\"kominfo-jkt-1\"", std::string("\"") + id + "\"")),
              std::string("sensor.toml: sensor.id = \"") + id + "\": must match [a-z0-9-]{1,32}");
  }
  // 32 characters is the longest allowed.
  EXPECT_EQ(sensorError(
                edit(kMinimalSensor, "\"kominfo-jkt-1\"", "\"abcdefghijklmnopqrstuvwxyz012345\"")),
            "(accepted)");
}

TEST(SensorConfig, TomlSyntaxErrorReportsTheLine) {
  const std::string broken = "[sensor]\nid = \"kominfo-jkt-1\"\nprotected = [\"198.18.2.0/24\"\n";
  const std::string e = sensorError(broken);
  EXPECT_EQ(e.rfind("sensor.toml: line 3", 0), 0u) << e;
  const std::string e2 = sensorError("[sensor]\n\n\nid = kominfo\n");
  EXPECT_EQ(e2.rfind("sensor.toml: line 4, column ", 0), 0u) << e2;
  const std::string e3 = sensorError("[sensor]\nid = \"a\"\nid = \"b\"\n");
  EXPECT_EQ(e3.rfind("sensor.toml: line 3, column ", 0), 0u) << e3;
}

TEST(IsValidSensorId, AcceptsLowercaseDigitsAndHyphensUpTo32) {
  EXPECT_TRUE(isValidSensorId("a"));
  EXPECT_TRUE(isValidSensorId("kominfo-jkt-1"));
  EXPECT_TRUE(isValidSensorId("-"));
  EXPECT_TRUE(isValidSensorId(std::string(32, 'z')));
  EXPECT_FALSE(isValidSensorId(std::string(33, 'z')));
  EXPECT_FALSE(isValidSensorId(""));
  EXPECT_FALSE(isValidSensorId("Dukcapil!"));
  EXPECT_FALSE(isValidSensorId("a.b"));
  EXPECT_FALSE(isValidSensorId(std::string("a\0b", 3)));
}

// ---- aggregator.toml -------------------------------------------------------

TEST(AggregatorConfig, MinimalConfigLoadsWithDefaults) {
  AggregatorConfig c =
      parseAggregatorConfig(kMinimalAggregator, "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(c.path, "/etc/garda/aggregator.toml");
  EXPECT_EQ(c.listenSensors, "tcp://0.0.0.0:7450");
  EXPECT_EQ(c.listenConsole, "tcp://127.0.0.1:7451");
  EXPECT_EQ(c.http, "") << "HTTP is off unless configured";
  EXPECT_EQ(c.secretKeyFile, "/etc/garda/aggregator.key");
  EXPECT_EQ(c.secretKey, "");
  EXPECT_EQ(c.dataDir, "/var/lib/garda");
  EXPECT_EQ(c.retentionMs, int64_t{90} * 86'400'000);
  EXPECT_EQ(c.mode, MitigationMode::kEnforce);
  EXPECT_EQ(c.sensorDownAfterMs, 5000u);
  EXPECT_EQ(c.maxMessageBytes, size_t{4} << 20);
  EXPECT_EQ(c.logLevel, "info");
  EXPECT_TRUE(c.sensors.empty());
  EXPECT_TRUE(c.consoles.empty());
  EXPECT_TRUE(c.tokens.empty());
}

TEST(AggregatorConfig, MissingSecretKeyNamesTheKey) {
  EXPECT_EQ(aggregatorError("[aggregator]\nretention_days = 30\n"),
            "aggregator.toml: aggregator.secret_key: missing (required)");
  EXPECT_EQ(aggregatorError(""), "aggregator.toml: aggregator.secret_key: missing (required)");
}

TEST(AggregatorConfig, MaxMessageBytesLeavesRoomForASummaryBatch) {
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "max_message_bytes = 1048576\n"),
            "aggregator.toml: aggregator.max_message_bytes = 1048576: must be between 2097152 and "
            "67108864");
}

TEST(AggregatorConfig, DuplicateSensorIdIsRefused) {
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + R"(
[[sensor]]
id = "edge-1"
public_key = "a.pub"

[[sensor]]
id = "edge-2"
public_key = "b.pub"

[[sensor]]
id = "edge-1"
public_key = "c.pub"
)"),
            "aggregator.toml: sensor[2].id = \"edge-1\": listed twice");
}

TEST(AggregatorConfig, DuplicateConsoleNameIsRefused) {
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + R"(
[[console]]
name = "soc"
public_key = "a.pub"

[[console]]
name = "soc"
public_key = "b.pub"
)"),
            "aggregator.toml: console[1].name = \"soc\": listed twice");
}

TEST(AggregatorConfig, BadSensorIdIsRefused) {
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) +
                            "[[sensor]]\nid = \"Dukcapil!\"\npublic_key = \"a.pub\"\n"),
            "aggregator.toml: sensor[0].id = \"Dukcapil!\": must match [a-z0-9-]{1,32}");
}

TEST(AggregatorConfig, RoleMustBeViewerOrOperator) {
  EXPECT_EQ(
      aggregatorError(std::string(kMinimalAggregator) +
                      "[[console]]\nname = \"soc\"\npublic_key = \"a.pub\"\nrole = \"admin\"\n"),
      "aggregator.toml: console[0].role = \"admin\": must be one of viewer | operator");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) +
                            "[[token]]\nname = \"grafana\"\nrole = "
                            "\"Operator\"\nsha256 = \"" +
                            std::string(64, 'a') + "\"\n"),
            "aggregator.toml: token[0].role = \"Operator\": must be one of viewer | operator");
}

TEST(AggregatorConfig, TokenSha256MustBe64HexDigits) {
  for (const std::string& bad :
       {std::string(63, 'a'), std::string(65, 'a'), std::string(63, 'a') + "g", std::string("")}) {
    EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) +
                              "[[token]]\nname = \"grafana\"\nsha256 = \"" + bad + "\"\n"),
              "aggregator.toml: token[0].sha256 = \"" + bad +
                  "\": must be 64 hex digits (sha256 of the token)");
  }
  AggregatorConfig c =
      parseAggregatorConfig(std::string(kMinimalAggregator) +
                                "[[token]]\nname = \"grafana\"\nrole = \"operator\"\n"
                                "sha256 = \"" +
                                std::string(32, 'f') + std::string(32, '0') + "\"\n",
                            "aggregator.toml", false);
  ASSERT_EQ(c.tokens.size(), 1u);
  EXPECT_EQ(c.tokens[0].name, "grafana");
  EXPECT_EQ(c.tokens[0].role, Role::kOperator);
  EXPECT_EQ(c.tokens[0].sha256, std::string(32, 'f') + std::string(32, '0'));
}

TEST(AggregatorConfig, UnknownKeysAndSectionsAreReported) {
  EXPECT_EQ(
      aggregatorError(std::string(kMinimalAggregator) +
                      "[[sensor]]\nid = \"edge-1\"\npubkey = \"a.pub\"\npublic_key = \"a.pub\"\n"),
      "aggregator.toml: sensor[0].pubkey: unknown key");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "retension_days = 30\n"),
            "aggregator.toml: aggregator.retension_days: unknown key");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "[[sensors]]\nid = \"edge-1\"\n"),
            "aggregator.toml: sensors: unknown section or key");
}

TEST(AggregatorConfig, SensorEntriesMustBeAListOfTables) {
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) +
                            "[sensor]\nid = \"edge-1\"\npublic_key = \"a.pub\"\n"),
            "aggregator.toml: sensor: must be a list of tables ([[sensor]])");
}

TEST(AggregatorConfig, ListenAddressesMustBeZeroMqEndpoints) {
  EXPECT_EQ(
      aggregatorError(std::string(kMinimalAggregator) + "listen_sensors = \"0.0.0.0:7450\"\n"),
      "aggregator.toml: aggregator.listen_sensors = \"0.0.0.0:7450\": must be a ZeroMQ "
      "endpoint such as \"tcp://0.0.0.0:7450\"");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "listen_console = \"\"\n"),
            "aggregator.toml: aggregator.listen_console = \"\": must be a ZeroMQ endpoint such as "
            "\"tcp://0.0.0.0:7450\"");
}

TEST(AggregatorConfig, BadModeAndRangesNameTheKey) {
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "mode = \"block\"\n"),
            "aggregator.toml: aggregator.mode = \"block\": must be one of enforce | confirm | "
            "dry-run");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "retention_days = 0\n"),
            "aggregator.toml: aggregator.retention_days = 0: must be between 1 and 3650");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "data_dir = \"\"\n"),
            "aggregator.toml: aggregator.data_dir = \"\": must name a directory");
}

TEST(AggregatorConfig, RetentionTakesADurationOrWholeDays) {
  auto parse = [](const std::string& extra) {
    return parseAggregatorConfig(std::string(kMinimalAggregator) + extra,
                                 "/etc/garda/aggregator.toml", false);
  };
  EXPECT_EQ(parse("retention_days = 30\n").retentionMs, int64_t{30} * 86'400'000);
  EXPECT_EQ(parse("retention = \"7d\"\n").retentionMs, int64_t{7} * 86'400'000);
  EXPECT_EQ(parse("retention = \"36h\"\n").retentionMs, int64_t{36} * 3'600'000);
  EXPECT_EQ(parse("retention = \"60m\"\n").retentionMs, 3'600'000);
  EXPECT_EQ(parse("retention = \"3650d\"\n").retentionMs, int64_t{3650} * 86'400'000);
}

TEST(AggregatorConfig, BadRetentionNamesTheKeyAndTheLimits) {
  // Under an hour is refused: "90s" written for "90d" would empty the history.
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "retention = \"90s\"\n"),
            "aggregator.toml: aggregator.retention = \"90s\": must be between 1h and 3650d");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "retention = \"3651d\"\n"),
            "aggregator.toml: aggregator.retention = \"3651d\": must be between 1h and 3650d");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "retention = \"90 days\"\n"),
            "aggregator.toml: aggregator.retention = \"90 days\": must be a duration such as "
            "\"90d\", \"36h\" or \"30m\"");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "retention = 90\n"),
            "aggregator.toml: aggregator.retention = 90: must be a duration such as \"90d\", "
            "\"36h\" or \"30m\"");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) +
                            "retention = \"90d\"\nretention_days = 90\n"),
            "aggregator.toml: aggregator.retention_days: give either retention or "
            "retention_days, not both");
}

TEST(AggregatorConfig, DetectAndCorrelateDefaultsWithoutTheirSections) {
  AggregatorConfig c =
      parseAggregatorConfig(kMinimalAggregator, "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(c.detect.k, 4.0);
  EXPECT_EQ(c.detect.sustainMs, 2000u);
  EXPECT_EQ(c.detect.clearMs, 3000u);
  EXPECT_EQ(c.detect.warmupMs, 60000u);
  EXPECT_EQ(c.detect.baselineHalfLifeMs, 300000u);
  EXPECT_EQ(c.detect.floorPps[0], 2000);  // tcp_syn
  EXPECT_EQ(c.detect.floorPps[3], 5000);  // udp
  EXPECT_EQ(c.detect.reflectionTotalFloorPps, 5000);
  EXPECT_EQ(c.correlate.resolveAfterMs, 10000u);
  EXPECT_EQ(c.correlate.idleResolveMs, 60000u);
  EXPECT_EQ(c.correlate.joinWindowMs, 60000u);
}

TEST(AggregatorConfig, DetectAndCorrelateSectionsAreRead) {
  AggregatorConfig c = parseAggregatorConfig(std::string(kMinimalAggregator) + R"(
[detect]
k = 3.5
sustain_ms = 1000
clear_ms = 5000
warmup_ms = 0
baseline_half_life_ms = 600000
floor_pps = { tcp_syn = 500, udp_reflection = 250.5, fragment = 10 }
reflection_total_floor_pps = 1200
reflection_floor_bps = 2e6
reflection_min_avg_bytes = 700

[correlate]
resolve_after_ms = 20000
idle_resolve_ms = 120000
join_window_ms = 0
)",
                                             "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(c.detect.k, 3.5);
  EXPECT_EQ(c.detect.sustainMs, 1000u);
  EXPECT_EQ(c.detect.clearMs, 5000u);
  EXPECT_EQ(c.detect.warmupMs, 0u);
  EXPECT_EQ(c.detect.baselineHalfLifeMs, 600000u);
  EXPECT_EQ(c.detect.floorPps[0], 500);    // tcp_syn
  EXPECT_EQ(c.detect.floorPps[1], 2000);   // tcp_syn_ack: default kept
  EXPECT_EQ(c.detect.floorPps[4], 250.5);  // udp_reflection
  EXPECT_EQ(c.detect.floorPps[6], 10);     // fragment
  EXPECT_EQ(c.detect.reflectionTotalFloorPps, 1200);
  EXPECT_EQ(c.detect.reflectionFloorBps, 2e6);
  EXPECT_EQ(c.detect.reflectionMinAvgBytes, 700);
  EXPECT_EQ(c.correlate.resolveAfterMs, 20000u);
  EXPECT_EQ(c.correlate.idleResolveMs, 120000u);
  EXPECT_EQ(c.correlate.joinWindowMs, 0u);

  // The floors may also be their own table.
  AggregatorConfig t = parseAggregatorConfig(
      std::string(kMinimalAggregator) + "[detect.floor_pps]\nicmp = 300\n",
      "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(t.detect.floorPps[5], 300);
}

TEST(AggregatorConfig, BadDetectValuesNameTheKeyAndTheReason) {
  const std::string base = std::string(kMinimalAggregator) + "[detect]\n";
  EXPECT_EQ(aggregatorError(base + "k = 0\n"),
            "aggregator.toml: detect.k = 0: must be between 0.5 and 100");
  EXPECT_EQ(aggregatorError(base + "k = nan\n"),
            "aggregator.toml: detect.k = nan: must be between 0.5 and 100");
  EXPECT_EQ(aggregatorError(base + "k = \"4\"\n"),
            "aggregator.toml: detect.k = '4': must be a number");
  EXPECT_EQ(aggregatorError(base + "sustain_ms = 600001\n"),
            "aggregator.toml: detect.sustain_ms = 600001: must be between 0 and 600000");
  EXPECT_EQ(aggregatorError(base + "clear_ms = -1\n"),
            "aggregator.toml: detect.clear_ms = -1: must be between 0 and 3600000");
  EXPECT_EQ(aggregatorError(base + "warmup_ms = 1.5\n"),
            "aggregator.toml: detect.warmup_ms = 1.5: must be an integer");
  EXPECT_EQ(aggregatorError(base + "baseline_half_life_ms = 0\n"),
            "aggregator.toml: detect.baseline_half_life_ms = 0: must be between 1000 and "
            "604800000");
  EXPECT_EQ(aggregatorError(base + "floor_pps = { syn = 2000 }\n"),
            "aggregator.toml: detect.floor_pps.syn: unknown vector (expected one of tcp_syn | "
            "tcp_syn_ack | tcp_other | udp | udp_reflection | icmp | fragment | other)");
  EXPECT_EQ(aggregatorError(base + "floor_pps = { udp = 0 }\n"),
            "aggregator.toml: detect.floor_pps.udp = 0: must be between 1 and 10000000000");
  EXPECT_EQ(aggregatorError(base + "floor_pps = 2000\n"),
            "aggregator.toml: detect.floor_pps = 2000: must be a table such as { tcp_syn = "
            "2000, udp = 5000 }");
  EXPECT_EQ(aggregatorError(base + "reflection_total_floor_pps = -5\n"),
            "aggregator.toml: detect.reflection_total_floor_pps = -5: must be between 1 and "
            "10000000000");
  EXPECT_EQ(aggregatorError(base + "max_keys = 10\n"),
            "aggregator.toml: detect.max_keys: unknown key");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "detect = 1\n"),
            "aggregator.toml: aggregator.detect: unknown key");
}

TEST(AggregatorConfig, BadCorrelateValuesNameTheKeyAndTheReason) {
  const std::string base = std::string(kMinimalAggregator) + "[correlate]\n";
  EXPECT_EQ(aggregatorError(base + "resolve_after_ms = 999\n"),
            "aggregator.toml: correlate.resolve_after_ms = 999: must be between 1000 and "
            "3600000");
  EXPECT_EQ(aggregatorError(base + "idle_resolve_ms = 5000\n"),
            "aggregator.toml: correlate.idle_resolve_ms = 5000: must be at least "
            "resolve_after_ms (10000)");
  EXPECT_EQ(aggregatorError(base + "join_window_ms = 3600001\n"),
            "aggregator.toml: correlate.join_window_ms = 3600001: must be between 0 and 3600000");
  EXPECT_EQ(aggregatorError(base + "resolve = 1\n"),
            "aggregator.toml: correlate.resolve: unknown key");
}

// ---- Loading from files, with real CURVE keys -------------------------------

// A fresh directory under the test temp dir, removed with everything in it.
class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "garda-config-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Writes NAME.key (0600) and NAME.pub (0644); returns the pair.
  CurveKeyPair keys(const std::string& name) {
    CurveKeyPair k = generateCurveKeyPair();
    writeCurveKeyFiles(dir_, name, k);
    return k;
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(path(name)) << text;
    return path(name);
  }
  static std::string loadError(const std::function<void()>& load) {
    try {
      load();
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(accepted)";
  }

  std::string sensorToml() const {
    return "[sensor]\nid = \"kominfo-jkt-1\"\nprotected = [\"198.18.2.0/24\"]\n\n[uplink]\n"
           "aggregator = \"tcp://127.0.0.1:7450\"\naggregator_public_key = \"" +
           path("aggregator.pub") + "\"\nsecret_key = \"" + path("sensor.key") + "\"\n";
  }

  std::string dir_;
};

TEST_F(ConfigFiles, SensorConfigLoadsItsKeys) {
  CurveKeyPair agg = keys("aggregator");
  CurveKeyPair sensor = keys("sensor");
  SensorConfig c = loadSensorConfig(write("sensor.toml", sensorToml()));
  EXPECT_EQ(c.path, path("sensor.toml"));
  EXPECT_EQ(c.aggregatorPublicKey, agg.publicKey);
  EXPECT_EQ(c.secretKey, sensor.secretKey);
  EXPECT_EQ(curvePublicFromSecret(c.secretKey), sensor.publicKey);
  EXPECT_EQ(c.aggregatorPublicKeyFile, path("aggregator.pub"));
  EXPECT_EQ(c.secretKeyFile, path("sensor.key"));
}

TEST_F(ConfigFiles, OfflineSensorConfigReadsNoKeyFiles) {
  // Key files named but absent: fine offline, an error online.
  const std::string toml = write("sensor.toml", sensorToml());
  SensorConfig c = loadSensorConfig(toml, /*offline=*/true);
  EXPECT_EQ(c.secretKeyFile, path("sensor.key"));
  EXPECT_EQ(c.secretKey, "");
  EXPECT_EQ(c.aggregatorPublicKey, "");
  EXPECT_NE(loadError([&] { loadSensorConfig(toml); }), "(accepted)");
}

TEST_F(ConfigFiles, MissingConfigFileIsReported) {
  EXPECT_EQ(loadError([&] { loadSensorConfig(path("nope.toml")); }),
            path("nope.toml") + ": cannot read config file");
  EXPECT_EQ(loadError([&] { loadAggregatorConfig(path("nope.toml")); }),
            path("nope.toml") + ": cannot read config file");
}

TEST_F(ConfigFiles, SensorSecretKeyReadableByOthersIsRefused) {
  keys("aggregator");
  keys("sensor");
  const std::string toml = write("sensor.toml", sensorToml());
  ASSERT_EQ(::chmod(path("sensor.key").c_str(), 0644), 0);
  EXPECT_EQ(loadError([&] { loadSensorConfig(toml); }),
            "sensor.toml: uplink.secret_key = \"" + path("sensor.key") +
                "\": " + path("sensor.key") +
                ": secret key file is readable by others (mode 644); chmod 600 or 640 it");
  // Group-readable is allowed (a garda group may share it).
  ASSERT_EQ(::chmod(path("sensor.key").c_str(), 0640), 0);
  EXPECT_EQ(loadError([&] { loadSensorConfig(toml); }), "(accepted)");
}

TEST_F(ConfigFiles, MissingOrBadKeyFileNamesTheKeyAndTheFile) {
  keys("sensor");
  const std::string toml = write("sensor.toml", sensorToml());
  const std::string e = loadError([&] { loadSensorConfig(toml); });
  EXPECT_EQ(e.rfind("sensor.toml: uplink.aggregator_public_key = \"" + path("aggregator.pub") +
                        "\": " + path("aggregator.pub") + ": cannot read key file: ",
                    0),
            0u)
      << e;

  write("aggregator.pub", "# the aggregator's key\n\nnot-a-key\n");
  EXPECT_EQ(loadError([&] { loadSensorConfig(toml); }),
            "sensor.toml: uplink.aggregator_public_key = \"" + path("aggregator.pub") +
                "\": " + path("aggregator.pub") +
                ": not a CURVE key (expected 40 Z85 characters, found 9 characters)");
}

TEST_F(ConfigFiles, AggregatorFullConfigLoadsKeysAndAppliesDefaults) {
  CurveKeyPair agg = keys("aggregator");
  CurveKeyPair edge1 = keys("edge-1");
  CurveKeyPair edge2 = keys("edge-2");
  CurveKeyPair soc = keys("soc");
  const std::string toml = write("aggregator.toml", "[aggregator]\nsecret_key = \"" +
                                                        path("aggregator.key") + R"("
data_dir = "/srv/garda"
mode = "confirm"

[[sensor]]
id = "edge-1"
public_key = ")" + path("edge-1.pub") + R"("

[[sensor]]
id = "edge-2"
public_key = ")" + path("edge-2.pub") + R"("

[[console]]
name = "soc"
public_key = ")" + path("soc.pub") + R"("
role = "operator"

[[token]]
name = "grafana"
sha256 = ")" + std::string(64, 'b') + "\"\n");

  AggregatorConfig c = loadAggregatorConfig(toml);
  EXPECT_EQ(c.secretKey, agg.secretKey);
  EXPECT_EQ(c.dataDir, "/srv/garda");
  EXPECT_EQ(c.mode, MitigationMode::kConfirm);
  EXPECT_EQ(c.listenSensors, "tcp://0.0.0.0:7450");
  EXPECT_EQ(c.retentionMs, int64_t{90} * 86'400'000);
  EXPECT_EQ(c.maxMessageBytes, size_t{4} << 20);
  ASSERT_EQ(c.sensors.size(), 2u);
  EXPECT_EQ(c.sensors[0].id, "edge-1");
  EXPECT_EQ(c.sensors[0].publicKey, edge1.publicKey);
  EXPECT_EQ(c.sensors[1].id, "edge-2");
  EXPECT_EQ(c.sensors[1].publicKey, edge2.publicKey);
  ASSERT_EQ(c.consoles.size(), 1u);
  EXPECT_EQ(c.consoles[0].name, "soc");
  EXPECT_EQ(c.consoles[0].publicKey, soc.publicKey);
  EXPECT_EQ(c.consoles[0].role, Role::kOperator);
  ASSERT_EQ(c.tokens.size(), 1u);
  EXPECT_EQ(c.tokens[0].role, Role::kViewer);  // the default role
}

TEST_F(ConfigFiles, SamePublicKeyForTwoIdentitiesIsRefused) {
  keys("aggregator");
  keys("edge-1");
  const std::string head = "[aggregator]\nsecret_key = \"" + path("aggregator.key") + "\"\n";
  auto sensor = [&](const std::string& id, const std::string& keyFile) {
    return "[[sensor]]\nid = \"" + id + "\"\npublic_key = \"" + path(keyFile) + "\"\n";
  };
  const std::string bound =
      "\": this key is already bound to another sensor or console: one key, one identity";

  // The sensor's key listed again for a console.
  const std::string a = write("a.toml", head + sensor("edge-1", "edge-1.pub") +
                                            "[[console]]\nname = \"soc\"\npublic_key = \"" +
                                            path("edge-1.pub") + "\"\n");
  EXPECT_EQ(loadError([&] { loadAggregatorConfig(a); }),
            "a.toml: console[0].public_key = \"" + path("edge-1.pub") + bound);

  // The same key in two files, for two sensors: the key, not the file name, is what counts.
  std::filesystem::copy_file(path("edge-1.pub"), path("copy.pub"));
  const std::string b =
      write("b.toml", head + sensor("edge-1", "edge-1.pub") + sensor("edge-2", "copy.pub"));
  EXPECT_EQ(loadError([&] { loadAggregatorConfig(b); }),
            "b.toml: sensor[1].public_key = \"" + path("copy.pub") + bound);
}

TEST_F(ConfigFiles, AggregatorSecretKeyReadableByOthersIsRefused) {
  keys("aggregator");
  const std::string toml =
      write("aggregator.toml", "[aggregator]\nsecret_key = \"" + path("aggregator.key") + "\"\n");
  EXPECT_EQ(loadError([&] { loadAggregatorConfig(toml); }), "(accepted)");
  ASSERT_EQ(::chmod(path("aggregator.key").c_str(), 0644), 0);
  EXPECT_EQ(loadError([&] { loadAggregatorConfig(toml); }),
            "aggregator.toml: aggregator.secret_key = \"" + path("aggregator.key") +
                "\": " + path("aggregator.key") +
                ": secret key file is readable by others (mode 644); chmod 600 or 640 it");
}

TEST_F(ConfigFiles, TomlSyntaxErrorInAFileReportsTheLine) {
  const std::string toml = write("sensor.toml", "[sensor]\nid = \"x\"\n\nprotected = [\n");
  const std::string e = loadError([&] { loadSensorConfig(toml); });
  EXPECT_EQ(e.rfind("sensor.toml: line ", 0), 0u) << e;
}

}  // namespace
}  // namespace garda::common

namespace garda::common {
namespace {

TEST(SensorConfig, InsecurePlaintextNeedsNoKeyFiles) {
  auto text = edit(edit(kMinimalSensor, "aggregator_public_key = \"/etc/garda/aggregator.pub\"\n", ""),
                   "secret_key = \"/etc/garda/sensor.key\"\n", "insecure_plaintext = true\n");
  // loadKeys = true: with the flag nothing is read from disk.
  SensorConfig c = parseSensorConfig(text, "/etc/garda/sensor.toml", true);
  EXPECT_TRUE(c.insecurePlaintext);
  EXPECT_EQ(sensorError(edit(kMinimalSensor, "secret_key", "insecure_plaintext = 1\nsecret_key")),
            "sensor.toml: uplink.insecure_plaintext = 1: must be true or false");
}

TEST(AggregatorConfig, LinkKeysAreValidatedWithTheirRanges) {
  AggregatorConfig c = parseAggregatorConfig(std::string(kMinimalAggregator) +
                                                 "heartbeat_ms = 500\nsensor_rate_limit = 200\n"
                                                 "order_retry_ms = 1000\n"
                                                 "never_block = [\"198.18.100.0/24\"]\n",
                                             "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(c.heartbeatMs, 500u);
  EXPECT_EQ(c.sensorRateLimit, 200u);
  EXPECT_EQ(c.orderRetryMs, 1000u);
  ASSERT_EQ(c.neverBlock.size(), 1u);
  EXPECT_EQ(c.neverBlock[0].toString(), "198.18.100.0/24");
  EXPECT_FALSE(c.insecurePlaintext);
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "sensor_rate_limit = 0\n"),
            "aggregator.toml: aggregator.sensor_rate_limit = 0: must be between 10 and 10000000");
}

TEST(AggregatorConfig, InsecurePlaintextMakesSensorKeysOptional) {
  const std::string sensor = "\n[[sensor]]\nid = \"dukcapil\"\n";
  AggregatorConfig c = parseAggregatorConfig(
      std::string(kMinimalAggregator) + "insecure_plaintext = true\n" + sensor,
      "/etc/garda/aggregator.toml", false);
  EXPECT_TRUE(c.insecurePlaintext);
  ASSERT_EQ(c.sensors.size(), 1u);
  EXPECT_TRUE(c.sensors[0].publicKeyFile.empty());
  // Without the flag a sensor's key is required.
  EXPECT_NE(aggregatorError(std::string(kMinimalAggregator) + sensor).find("sensor[0].public_key"),
            std::string::npos)
      << aggregatorError(std::string(kMinimalAggregator) + sensor);
}

TEST(AggregatorConfig, WebRootMustBeAFolderWhenSet) {
  AggregatorConfig c = parseAggregatorConfig(kMinimalAggregator, "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(c.webRoot, "/usr/share/garda/web");  // the default may be absent: no page then
  c = parseAggregatorConfig(std::string(kMinimalAggregator) + "web_root = \"" GARDA_SOURCE_DIR "\"\n",
                            "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(c.webRoot, GARDA_SOURCE_DIR);
  c = parseAggregatorConfig(std::string(kMinimalAggregator) + "web_root = \"\"\n",
                            "/etc/garda/aggregator.toml", false);
  EXPECT_EQ(c.webRoot, "");
  EXPECT_EQ(aggregatorError(std::string(kMinimalAggregator) + "web_root = \"/nonexistent/web\"\n"),
            "aggregator.toml: aggregator.web_root = \"/nonexistent/web\": is not a folder: it should "
            "hold the built web console (index.html), or \"\" for none");
}

}  // namespace
}  // namespace garda::common

namespace garda::common {
namespace {

TEST_F(ConfigFiles, WebhookSecretIsReadFromItsFileOrTheKeyIsNamed) {
  keys("aggregator");
  const std::string base = "[aggregator]\nsecret_key = \"" + path("aggregator.key") +
                           "\"\n[[notify.webhook]]\nurl = \"https://soc.example/h\"\n";
  auto load = [&](const std::string& secretFile) {
    return parseAggregatorConfig(base + "secret_file = \"" + secretFile + "\"\n",
                                 path("aggregator.toml"));
  };
  write("hook.secret", "0123456789abcdef-secret\n");
  EXPECT_EQ(load(path("hook.secret")).notify.webhooks[0].secret, "0123456789abcdef-secret");
  EXPECT_EQ(loadError([&] { load(path("missing.secret")); }),
            "aggregator.toml: notify.webhook[0].secret_file = \"" + path("missing.secret") +
                "\": cannot be read");
  write("short.secret", "short\n");
  EXPECT_EQ(loadError([&] { load(path("short.secret")); }),
            "aggregator.toml: notify.webhook[0].secret_file = \"" + path("short.secret") +
                "\": must hold a secret of at least 16 characters on its first line");
}

AggregatorConfig parseAggregator(const std::string& extra, bool loadKeys = false) {
  return parseAggregatorConfig(std::string(kMinimalAggregator) + extra,
                               "/etc/garda/aggregator.toml", loadKeys);
}

std::string notifyError(const std::string& extra) {
  try {
    parseAggregator(extra);
    return "(accepted)";
  } catch (const ConfigError& e) {
    return e.what();
  }
}

TEST(AggregatorConfig, NotifyWebhooksAndSyslogAndExportSettings) {
  AggregatorConfig c = parseAggregator(
      "csirt_name = \"CSIRT Kota\"\nexport_tlp = \"green\"\n"
      "[[notify.webhook]]\nurl = \"https://soc.example/hook\"\ntimeout_ms = 2000\n"
      "[[notify.webhook]]\nurl = \"http://127.0.0.1:9/x\"\nretries = 0\n"
      "[notify.syslog]\naddress = \"tcp://[2001:db8::1]:6514\"\nfacility = \"daemon\"\n");
  EXPECT_EQ(c.csirtName, "CSIRT Kota");
  EXPECT_EQ(c.exportTlp, "green");
  ASSERT_EQ(c.notify.webhooks.size(), 2u);
  EXPECT_EQ(c.notify.webhooks[0].timeoutMs, 2000u);
  EXPECT_EQ(c.notify.webhooks[0].retries, 5u);
  EXPECT_EQ(c.notify.webhooks[1].retries, 0u);
  ASSERT_TRUE(c.notify.syslog);
  EXPECT_TRUE(c.notify.syslog->tcp);
  EXPECT_EQ(c.notify.syslog->host, "2001:db8::1");
  EXPECT_EQ(c.notify.syslog->port, 6514);
  EXPECT_EQ(c.notify.syslog->facility, 3u);
  AggregatorConfig d = parseAggregator("");
  EXPECT_EQ(d.csirtName, "City CSIRT");
  EXPECT_EQ(d.exportTlp, "amber");
  EXPECT_TRUE(d.notify.webhooks.empty());
  EXPECT_FALSE(d.notify.syslog);
}

TEST(AggregatorConfig, BadNotifyConfigNamesTheKey) {
  EXPECT_EQ(notifyError("[[notify.webhook]]\nurl = \"ftp://x\"\n"),
            "aggregator.toml: notify.webhook[0].url = \"ftp://x\": must start with http:// or "
            "https://");
  EXPECT_EQ(notifyError("[[notify.webhook]]\ntimeout_ms = 100\n"),
            "aggregator.toml: notify.webhook[0].url: missing (required)");
  EXPECT_EQ(notifyError("[[notify.webhook]]\nurl = \"http://a\"\nretry = 3\n"),
            "aggregator.toml: notify.webhook[0].retry: unknown key");
  EXPECT_EQ(notifyError("[notify.syslog]\naddress = \"10.0.0.1:514\"\n"),
            "aggregator.toml: notify.syslog.address = \"10.0.0.1:514\": must be udp://HOST:PORT "
            "or tcp://HOST:PORT (IPv6 in brackets)");
  EXPECT_EQ(notifyError("[notify.syslog]\naddress = \"udp://h:0\"\n"),
            "aggregator.toml: notify.syslog.address = \"udp://h:0\": must be udp://HOST:PORT "
            "or tcp://HOST:PORT (IPv6 in brackets)");
  EXPECT_EQ(notifyError("[notify.email]\nto = \"x\"\n"),
            "aggregator.toml: notify.email: unknown key (expected [[notify.webhook]] or "
            "[notify.syslog])");
  EXPECT_EQ(notifyError("export_tlp = \"purple\"\n"),
            "aggregator.toml: aggregator.export_tlp = \"purple\": must be one of clear | green | "
            "amber | red");
}

}  // namespace
}  // namespace garda::common
