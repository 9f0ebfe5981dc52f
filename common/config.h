#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <string>
#include <vector>

#include "common/ip.h"

namespace garda::common {

// Thrown for any bad configuration. The message names the file, the key and
// the reason, e.g. "sensor.toml: capture.window_ms = 5: must be between 100
// and 60000". main() prints it and exits non-zero.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class CaptureSource { kAfPacket, kPcap };
enum class ReplaySpeed { kFast, kRealtime };
enum class EnforceBackend { kNftables, kXdp, kExec, kDryRun };
enum class XdpMode { kAuto, kNative, kGeneric };
enum class MitigationMode { kEnforce, kConfirm, kDryRun };
enum class Role { kViewer, kOperator };

const char* roleName(Role r) noexcept;

// sensor.toml, loaded and validated once at startup. Defaults live here.
struct SensorConfig {
  std::string path;

  // [sensor]
  std::string id;
  std::string opd;
  std::vector<Prefix> protectedPrefixes;
  std::vector<Prefix> neverBlock;
  std::string logLevel = "info";

  // [capture]
  CaptureSource source = CaptureSource::kAfPacket;
  std::string interface = "eth0";
  unsigned workers = 1;
  std::string pcapFile;
  ReplaySpeed replay = ReplaySpeed::kFast;
  unsigned windowMs = 1000;
  unsigned ringMb = 16;             // AF_PACKET ring per worker
  std::string bpfFilter;            // tcpdump syntax, optional

  // [window]: caps that keep one summary bounded.
  unsigned maxVictims = 2048;
  uint64_t alertPps = 100000;       // early alert per victim; 0 = off
  unsigned topSources = 20;         // top sources reported per victim (and outbound)
  unsigned topPorts = 10;           // top source / destination ports per victim
  unsigned hllPrecision = 12;       // distinct-source sketch: 2^p bytes per victim

  // [uplink]
  std::string aggregator;
  std::string aggregatorPublicKeyFile;
  std::string secretKeyFile;
  std::string aggregatorPublicKey;  // loaded from the file above
  std::string secretKey;            // loaded from the file above
  unsigned drainTimeoutMs = 30000;
  unsigned replayBuffer = 100000;   // summaries kept until acked
  unsigned heartbeatMs = 1000;
  bool insecurePlaintext = false;   // no CURVE: development only, warned every minute

  // [enforce]
  EnforceBackend backend = EnforceBackend::kDryRun;
  unsigned maxRules = 10000;
  std::string nftTable = "garda";   // the `inet` table the nftables backend owns
  XdpMode xdpMode = XdpMode::kAuto; // auto: native, else generic (skb) mode
  std::string execCommand;          // exec backend: absolute path, run without a shell
  unsigned execTimeoutMs = 5000;    // exec backend: the script is killed after this
  std::string stateDir;             // what outlives a restart (the XDP program's id); "" = none
};

struct SensorEntry {
  std::string id;
  std::string publicKeyFile;
  std::string publicKey;
  std::optional<MitigationMode> mode;  // overrides [aggregator] mode for this sensor
};

struct ConsoleEntry {
  std::string name;
  std::string publicKeyFile;
  std::string publicKey;
  Role role = Role::kViewer;
};

// [[notify.webhook]]: a JSON POST per incident event.
struct WebhookTarget {
  std::string url;          // http:// or https:// (https checked against the system CA store)
  std::string secretFile;   // optional: HMAC-SHA256 key for X-Garda-Signature
  std::string secret;       // loaded from the file above
  unsigned timeoutMs = 5000;
  unsigned retries = 5;     // after the first try, with exponential backoff
  unsigned queue = 1000;    // events waiting; more are dropped (and counted)
};

// [notify.syslog]: RFC 5424 messages over UDP, or TCP with octet counting
// (RFC 6587).
struct SyslogTarget {
  bool tcp = false;
  std::string host;
  uint16_t port = 514;
  std::string address;      // as written: "udp://host:port"
  unsigned facility = 16;   // local0
  unsigned queue = 1000;
};

// [notify]: where incident open / escalate / resolve events go.
struct NotifySettings {
  std::vector<WebhookTarget> webhooks;
  std::optional<SyslogTarget> syslog;
};

struct TokenEntry {
  std::string name;
  Role role = Role::kViewer;
  std::string sha256;
};

// The detection vectors in wire order (wire::Vector tcpSyn .. other), named as
// aggregator/detect.h's vectorName() names them: the keys of
// [detect] floor_pps. (common/ does not depend on aggregator/; a unit test
// keeps the two lists equal.)
inline constexpr std::array<std::string_view, 8> kDetectVectorNames = {
    "tcp_syn", "tcp_syn_ack", "tcp_other", "udp", "udp_reflection", "icmp", "fragment", "other"};

// [detect]: the detector's settings (aggregator/detect.h DetectConfig explains
// each; the aggregator converts these into it, and a unit test keeps the
// defaults equal).
struct DetectSettings {
  double k = 4.0;
  unsigned sustainMs = 2000;
  unsigned clearMs = 3000;
  unsigned warmupMs = 60000;
  unsigned baselineHalfLifeMs = 300000;
  // Indexed as kDetectVectorNames.
  std::array<double, 8> floorPps = {2000, 2000, 5000, 5000, 1000, 1000, 1000, 5000};
  double reflectionTotalFloorPps = 5000;
  double reflectionFloorBps = 1'000'000;
  double reflectionMinAvgBytes = 512;
};

// [correlate]: the correlator's timing (aggregator/correlate.h
// CorrelateConfig).
struct CorrelateSettings {
  unsigned resolveAfterMs = 10000;
  unsigned idleResolveMs = 60000;
  unsigned joinWindowMs = 60000;
};

// aggregator.toml, loaded and validated once at startup (and on reload).
struct AggregatorConfig {
  std::string path;

  // [aggregator]
  std::string listenSensors = "tcp://0.0.0.0:7450";
  std::string listenConsole = "tcp://127.0.0.1:7451";
  // HTTP API, SSE, /metrics and the web page: "HOST:PORT" ("[::1]:7480" for
  // IPv6); empty = off. A non-loopback host needs TLS or httpInsecurePlaintext.
  std::string http;
  std::string httpHost;              // parsed from `http`
  uint16_t httpPort = 0;
  bool httpLoopback = true;
  std::string httpTlsCert;           // PEM files; both or neither
  std::string httpTlsKey;
  bool httpInsecurePlaintext = false;  // non-loopback without TLS: warned every minute
  unsigned httpThreads = 8;          // worker threads (SSE clients hold one each)
  unsigned httpQueue = 64;           // accepted connections waiting for a worker
  unsigned httpMaxBodyBytes = 65536; // larger bodies get 413
  unsigned httpTimeoutMs = 10000;    // socket read/write timeout (slow clients)
  unsigned httpSseClients = 4;       // concurrent /api/v1/events streams (< httpThreads)
  bool metricsOpen = false;          // /metrics without a token
  // The web console's built files, served at /; "" = no page. The default
  // may be absent (no page served); a folder set here must exist.
  static constexpr const char* kDefaultWebRoot = "/usr/share/garda/web";
  std::string webRoot = kDefaultWebRoot;
  std::string secretKeyFile;
  std::string secretKey;  // loaded
  std::string dataDir = "/var/lib/garda";
  // Records older than this (by data time) are deleted: `retention = "90d"`
  // (any duration, 1h .. 3650d) or the older `retention_days = 90`.
  int64_t retentionMs = int64_t{90} * 86'400'000;
  MitigationMode mode = MitigationMode::kEnforce;
  unsigned sensorDownAfterMs = 5000;
  size_t maxMessageBytes = 4 << 20;
  std::string logLevel = "info";
  unsigned heartbeatMs = 1000;       // the aggregator's heartbeat to each sensor
  unsigned sensorRateLimit = 5000;   // messages per second per sensor (burst: 2 s worth)
  unsigned orderRetryMs = 5000;      // resend an order not reported on within this
  bool insecurePlaintext = false;    // sensor link without CURVE: development only
  std::vector<Prefix> neverBlock;    // city-wide: no order may touch these
  std::string csirtName = "City CSIRT";  // names the CSIRT in STIX / MISP exports
  std::string exportTlp = "amber";       // TLP of exports: clear | green | amber | red

  // [mitigate]: the planner.
  unsigned orderTtlS = 600;          // planner orders last this long, renewed while the attack lasts
  unsigned proposalTtlS = 300;       // confirm mode: an unapproved proposal lapses after this
  unsigned maxOrdersPerSensor = 1000;  // planner orders active at one sensor
  unsigned maxSourceBlocks = 32;     // source /32 and /24 blocks per incident
  double maxLegitShare = 0.10;       // of a victim's recent legitimate sources an order may block

  DetectSettings detect;        // [detect]
  CorrelateSettings correlate;  // [correlate]
  NotifySettings notify;        // [notify]

  std::vector<SensorEntry> sensors;
  std::vector<ConsoleEntry> consoles;
  std::vector<TokenEntry> tokens;
};

// console.toml (default /etc/garda/console.toml): where the CLI connects.
struct ConsoleConfig {
  std::string connect;
  std::string serverKeyFile;
  std::string keyFile;
};

// `offline`: for replay without an aggregator (forensics, tests): the
// [uplink] section may be absent and no key files are read.
SensorConfig loadSensorConfig(const std::string& path, bool offline = false);
AggregatorConfig loadAggregatorConfig(const std::string& path);
ConsoleConfig loadConsoleConfig(const std::string& path);

// The same, from TOML text (tests; `path` only names the source in errors).
SensorConfig parseSensorConfig(const std::string& text, const std::string& path,
                               bool loadKeys = true, bool requireUplink = true);
AggregatorConfig parseAggregatorConfig(const std::string& text, const std::string& path,
                                       bool loadKeys = true);

// "HOST:PORT" or "[V6]:PORT" split; false if it is not of that form.
bool splitHostPort(const std::string& text, std::string& host, uint16_t& port);
// True for 127.0.0.0/8, ::1 and "localhost".
bool isLoopbackHost(const std::string& host);

// True for ids of the form [a-z0-9-]{1,32}.
bool isValidSensorId(const std::string& id);

}  // namespace garda::common
