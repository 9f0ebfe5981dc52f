#include "common/config.h"

#include <fmt/core.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <toml++/toml.h>

#include "common/duration.h"
#include "common/keys.h"

namespace garda::common {
namespace {

// A bound as a person writes it: 1000000000, not 1e+09.
std::string numberText(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    return std::to_string(static_cast<int64_t>(v));
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

// "90d", "36h", "90m", "500ms": the largest unit that divides it exactly.
std::string durationText(int64_t ms) {
  for (auto [unit, scale] :
       {std::pair{"d", int64_t{86'400'000}}, std::pair{"h", int64_t{3'600'000}},
        std::pair{"m", int64_t{60'000}}, std::pair{"s", int64_t{1000}}})
    if (ms != 0 && ms % scale == 0) return std::to_string(ms / scale) + unit;
  return std::to_string(ms) + "ms";
}

std::string fileName(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Reads one TOML table ("section") and remembers which keys were read, so
// that anything left over (a typo, a key from another file) is reported as
// unknown instead of silently ignored. Every error names file, key, reason.
class Section {
 public:
  Section(std::string file, std::string name, const toml::table* table)
      : file_(std::move(file)), name_(std::move(name)), table_(table) {}

  [[noreturn]] void fail(const std::string& key, const std::string& shown,
                         const std::string& why) const {
    std::string where = file_ + ": " + qualified(key);
    if (!shown.empty()) where += " = " + shown;
    throw ConfigError(where + ": " + why);
  }

  bool has(const std::string& key) const { return table_ && table_->contains(key); }

  std::string string(const std::string& key, const std::string& fallback, bool required = false) {
    const toml::node* n = node(key);
    if (!n) {
      if (required) fail(key, "", "missing (required)");
      return fallback;
    }
    auto v = n->value<std::string>();
    if (!n->is_string() || !v) fail(key, render(*n), "must be a string");
    return *v;
  }

  int64_t integer(const std::string& key, int64_t fallback, int64_t min, int64_t max) {
    const toml::node* n = node(key);
    if (!n) return fallback;
    if (!n->is_integer()) fail(key, render(*n), "must be an integer");
    int64_t v = *n->value<int64_t>();
    if (v < min || v > max)
      fail(key, std::to_string(v),
           "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return v;
  }

  // An integer or a floating-point number in [min, max].
  double number(const std::string& key, double fallback, double min, double max) {
    const toml::node* n = node(key);
    if (!n) return fallback;
    if (!n->is_integer() && !n->is_floating_point()) fail(key, render(*n), "must be a number");
    double v = *n->value<double>();
    if (!(v >= min && v <= max))
      fail(key, render(*n), "must be between " + numberText(min) + " and " + numberText(max));
    return v;
  }

  // A duration string ("90d", "12h", "30m") in [minMs, maxMs], in ms.
  int64_t durationMs(const std::string& key, int64_t fallback, int64_t minMs, int64_t maxMs) {
    const toml::node* n = node(key);
    if (!n) return fallback;
    auto text = n->value<std::string>();
    const bool isText = n->is_string() && text;
    const std::string shown = isText ? "\"" + *text + "\"" : render(*n);
    std::optional<int64_t> ns = isText ? parseDurationNs(*text) : std::nullopt;
    if (!ns) fail(key, shown, "must be a duration such as \"90d\", \"36h\" or \"30m\"");
    int64_t ms = *ns / 1'000'000;
    if (*ns % 1'000'000 != 0 || ms < minMs || ms > maxMs)
      fail(key, shown,
           "must be between " + durationText(minMs) + " and " + durationText(maxMs));
    return ms;
  }

  // An inline table ({ a = 1, b = 2 }) or a [section.key] table; nullptr
  // when absent.
  const toml::table* table(const std::string& key, const std::string& example) {
    const toml::node* n = node(key);
    if (!n) return nullptr;
    if (!n->is_table()) fail(key, render(*n), "must be a table such as " + example);
    return n->as_table();
  }

  bool boolean(const std::string& key, bool fallback) {
    const toml::node* n = node(key);
    if (!n) return fallback;
    if (!n->is_boolean()) fail(key, render(*n), "must be true or false");
    return *n->value<bool>();
  }

  std::vector<std::string> strings(const std::string& key, bool required) {
    const toml::node* n = node(key);
    std::vector<std::string> out;
    if (!n) {
      if (required) fail(key, "", "missing (required)");
      return out;
    }
    const toml::array* a = n->as_array();
    if (!a) fail(key, render(*n), "must be a list of strings");
    for (const auto& e : *a) {
      auto v = e.value<std::string>();
      if (!e.is_string() || !v) fail(key, render(*n), "must be a list of strings");
      out.push_back(*v);
    }
    return out;
  }

  std::vector<Prefix> prefixes(const std::string& key, bool required) {
    std::vector<Prefix> out;
    for (const auto& text : strings(key, required)) {
      auto p = Prefix::parse(text);
      if (!p)
        fail(key, "\"" + text + "\"",
             "not an address prefix (expected e.g. \"198.18.2.0/24\" or \"2001:db8::/48\", "
             "with no host bits set)");
      out.push_back(*p);
    }
    return out;
  }

  template <typename E>
  E choice(const std::string& key, E fallback,
           const std::vector<std::pair<std::string, E>>& options) {
    if (!has(key)) return fallback;
    std::string v = string(key, "");
    std::string allowed;
    for (const auto& [name, e] : options) {
      if (name == v) return e;
      allowed += (allowed.empty() ? "" : " | ") + name;
    }
    fail(key, "\"" + v + "\"", "must be one of " + allowed);
  }

  std::string keyFile(const std::string& key, bool isSecret, bool load, std::string& loaded) {
    std::string path = string(key, "", true);
    if (load) {
      try {
        loaded = readCurveKeyFile(path, isSecret);
      } catch (const std::exception& e) {
        fail(key, "\"" + path + "\"", e.what());
      }
    }
    return path;
  }

  // Reports the first key nobody asked for.
  void finish() const {
    if (!table_) return;
    for (auto&& [k, v] : *table_) {
      std::string key(k.str());
      if (!read_.count(key)) fail(key, "", "unknown key");
    }
  }

  std::string qualified(const std::string& key) const {
    return name_.empty() ? key : name_ + "." + key;
  }

 private:
  const toml::node* node(const std::string& key) {
    read_.insert(key);
    return table_ ? table_->get(key) : nullptr;
  }

  static std::string render(const toml::node& n) {
    std::ostringstream os;
    n.visit([&](auto&& v) { os << v; });
    return os.str();
  }

  std::string file_;
  std::string name_;
  const toml::table* table_;
  std::set<std::string> read_;
};

toml::table parseToml(const std::string& text, const std::string& path) {
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << fileName(path) << ": line " << e.source().begin.line << ", column "
       << e.source().begin.column << ": " << e.description();
    throw ConfigError(os.str());
  }
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read config file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const toml::table* subTable(const toml::table& root, const std::string& file,
                            const std::string& name) {
  const toml::node* n = root.get(name);
  if (!n) return nullptr;
  if (!n->is_table()) throw ConfigError(file + ": " + name + ": must be a table ([" + name + "])");
  return n->as_table();
}

void rejectUnknownTables(const toml::table& root, const std::string& file,
                         const std::set<std::string>& known) {
  for (auto&& [k, v] : root) {
    std::string key(k.str());
    if (!known.count(key)) throw ConfigError(file + ": " + key + ": unknown section or key");
  }
}

// Each [[name]] entry, as its own Section named "name[i]".
std::vector<Section> arrayOfTables(const toml::table& root, const std::string& file,
                                   const std::string& name) {
  std::vector<Section> out;
  const toml::node* n = root.get(name);
  if (!n) return out;
  const toml::array* a = n->as_array();
  if (!a || !a->is_array_of_tables())
    throw ConfigError(file + ": " + name + ": must be a list of tables ([[" + name + "]])");
  for (size_t i = 0; i < a->size(); ++i)
    out.emplace_back(file, name + "[" + std::to_string(i) + "]", (*a)[i].as_table());
  return out;
}

const std::vector<std::pair<std::string, MitigationMode>> kModes = {
    {"enforce", MitigationMode::kEnforce},
    {"confirm", MitigationMode::kConfirm},
    {"dry-run", MitigationMode::kDryRun}};

const std::vector<std::pair<std::string, Role>> kRoles = {{"viewer", Role::kViewer},
                                                          {"operator", Role::kOperator}};

// "udp://host:port" or "tcp://host:port" (IPv6 hosts in brackets).
bool parseSyslogAddress(const std::string& text, SyslogTarget& t) {
  std::string rest;
  if (text.rfind("udp://", 0) == 0) t.tcp = false;
  else if (text.rfind("tcp://", 0) == 0) t.tcp = true;
  else return false;
  rest = text.substr(6);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 3) return false;
    host = host.substr(1, host.size() - 2);
  }
  unsigned value = 0;
  auto r = std::from_chars(port.data(), port.data() + port.size(), value);
  if (r.ec != std::errc() || r.ptr != port.data() + port.size() || value == 0 || value > 65535)
    return false;
  t.host = host;
  t.port = static_cast<uint16_t>(value);
  return true;
}

const std::vector<std::pair<std::string, unsigned>> kFacilities = {
    {"kern", 0},    {"user", 1},    {"daemon", 3},  {"auth", 4},    {"local0", 16},
    {"local1", 17}, {"local2", 18}, {"local3", 19}, {"local4", 20}, {"local5", 21},
    {"local6", 22}, {"local7", 23}};

NotifySettings parseNotify(const toml::table& root, const std::string& file, bool loadKeys) {
  NotifySettings n;
  const toml::table* notify = subTable(root, file, "notify");
  if (!notify) return n;
  for (auto&& [k, v] : *notify)
    if (k.str() != "webhook" && k.str() != "syslog")
      throw ConfigError(file + ": notify." + std::string(k.str()) +
                        ": unknown key (expected [[notify.webhook]] or [notify.syslog])");
  if (const toml::node* hooks = notify->get("webhook")) {
    const toml::array* a = hooks->as_array();
    if (!a || !a->is_array_of_tables())
      throw ConfigError(file + ": notify.webhook: must be a list of tables ([[notify.webhook]])");
    for (size_t i = 0; i < a->size(); ++i) {
      Section s(file, "notify.webhook[" + std::to_string(i) + "]", (*a)[i].as_table());
      WebhookTarget w;
      w.url = s.string("url", "", true);
      if (w.url.rfind("http://", 0) != 0 && w.url.rfind("https://", 0) != 0)
        s.fail("url", "\"" + w.url + "\"", "must start with http:// or https://");
      if (w.url.find_first_of(" \t\r\n") != std::string::npos)
        s.fail("url", "\"" + w.url + "\"", "must not contain spaces or line breaks");
      w.secretFile = s.string("secret_file", "");
      if (!w.secretFile.empty() && loadKeys) {
        std::ifstream in(w.secretFile);
        if (!in) s.fail("secret_file", "\"" + w.secretFile + "\"", "cannot be read");
        std::getline(in, w.secret);
        while (!w.secret.empty() && (w.secret.back() == '\r' || w.secret.back() == ' '))
          w.secret.pop_back();
        if (w.secret.size() < 16)
          s.fail("secret_file", "\"" + w.secretFile + "\"",
                 "must hold a secret of at least 16 characters on its first line");
      }
      w.timeoutMs = static_cast<unsigned>(s.integer("timeout_ms", w.timeoutMs, 100, 120'000));
      w.retries = static_cast<unsigned>(s.integer("retries", w.retries, 0, 20));
      w.queue = static_cast<unsigned>(s.integer("queue", w.queue, 1, 1'000'000));
      s.finish();
      n.webhooks.push_back(std::move(w));
    }
  }
  if (const toml::node* sys = notify->get("syslog")) {
    if (!sys->is_table())
      throw ConfigError(file + ": notify.syslog: must be a table ([notify.syslog])");
    Section s(file, "notify.syslog", sys->as_table());
    SyslogTarget t;
    t.address = s.string("address", "", true);
    if (!parseSyslogAddress(t.address, t))
      s.fail("address", "\"" + t.address + "\"",
             "must be udp://HOST:PORT or tcp://HOST:PORT (IPv6 in brackets)");
    t.facility = s.choice<unsigned>("facility", t.facility, kFacilities);
    t.queue = static_cast<unsigned>(s.integer("queue", t.queue, 1, 1'000'000));
    s.finish();
    n.syslog = std::move(t);
  }
  return n;
}

}  // namespace

const char* roleName(Role r) noexcept { return r == Role::kOperator ? "operator" : "viewer"; }

bool isValidSensorId(const std::string& id) {
  if (id.empty() || id.size() > 32) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

SensorConfig parseSensorConfig(const std::string& text, const std::string& path, bool loadKeys,
                               bool requireUplink) {
  const std::string file = fileName(path);
  toml::table root = parseToml(text, path);
  rejectUnknownTables(root, file, {"sensor", "capture", "window", "uplink", "enforce"});
  SensorConfig c;
  c.path = path;

  Section sensor(file, "sensor", subTable(root, file, "sensor"));
  c.id = sensor.string("id", "", true);
  if (!isValidSensorId(c.id))
    sensor.fail("id", "\"" + c.id + "\"", "must match [a-z0-9-]{1,32}");
  c.opd = sensor.string("opd", c.id);
  c.protectedPrefixes = sensor.prefixes("protected", true);
  if (c.protectedPrefixes.empty())
    sensor.fail("protected", "[]", "must name at least one prefix (the OPD's own addresses)");
  c.neverBlock = sensor.prefixes("never_block", false);
  c.logLevel = sensor.choice<std::string>(
      "log_level", c.logLevel,
      {{"trace", "trace"}, {"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}});
  sensor.finish();

  Section capture(file, "capture", subTable(root, file, "capture"));
  c.source = capture.choice<CaptureSource>(
      "source", c.source, {{"afpacket", CaptureSource::kAfPacket}, {"pcap", CaptureSource::kPcap}});
  c.interface = capture.string("interface", c.interface);
  c.workers = static_cast<unsigned>(capture.integer("workers", c.workers, 1, 64));
  c.pcapFile = capture.string("pcap_file", c.pcapFile);
  c.replay = capture.choice<ReplaySpeed>(
      "replay", c.replay, {{"fast", ReplaySpeed::kFast}, {"realtime", ReplaySpeed::kRealtime}});
  c.windowMs = static_cast<unsigned>(capture.integer("window_ms", c.windowMs, 100, 60000));
  c.ringMb = static_cast<unsigned>(capture.integer("ring_mb", c.ringMb, 4, 1024));
  c.bpfFilter = capture.string("bpf_filter", c.bpfFilter);
  capture.finish();

  Section window(file, "window", subTable(root, file, "window"));
  c.maxVictims = static_cast<unsigned>(window.integer("max_victims", c.maxVictims, 1, 1 << 20));
  c.topSources = static_cast<unsigned>(window.integer("top_k", c.topSources, 1, 1000));
  c.topPorts = static_cast<unsigned>(window.integer("top_ports", c.topPorts, 1, 100));
  c.hllPrecision = static_cast<unsigned>(window.integer("hll_precision", c.hllPrecision, 4, 16));
  c.alertPps = static_cast<uint64_t>(window.integer("alert_pps", static_cast<int64_t>(c.alertPps),
                                                    0, 1'000'000'000));
  window.finish();

  Section uplink(file, "uplink", subTable(root, file, "uplink"));
  c.aggregator = uplink.string("aggregator", "", requireUplink);
  if (requireUplink && c.aggregator.rfind("tcp://", 0) != 0 && c.aggregator.rfind("ipc://", 0) != 0)
    uplink.fail("aggregator", "\"" + c.aggregator + "\"",
                "must be a ZeroMQ endpoint such as \"tcp://198.18.100.1:7450\"");
  c.insecurePlaintext = uplink.boolean("insecure_plaintext", false);
  if (requireUplink && !c.insecurePlaintext) {
    c.aggregatorPublicKeyFile =
        uplink.keyFile("aggregator_public_key", false, loadKeys, c.aggregatorPublicKey);
    c.secretKeyFile = uplink.keyFile("secret_key", true, loadKeys, c.secretKey);
  } else {
    c.aggregatorPublicKeyFile = uplink.string("aggregator_public_key", "");
    c.secretKeyFile = uplink.string("secret_key", "");
  }
  c.drainTimeoutMs =
      static_cast<unsigned>(uplink.integer("drain_timeout_ms", c.drainTimeoutMs, 0, 3600000));
  c.replayBuffer =
      static_cast<unsigned>(uplink.integer("replay_buffer", c.replayBuffer, 1, 10000000));
  c.heartbeatMs = static_cast<unsigned>(uplink.integer("heartbeat_ms", c.heartbeatMs, 100, 60000));
  uplink.finish();

  Section enforce(file, "enforce", subTable(root, file, "enforce"));
  c.backend = enforce.choice<EnforceBackend>("backend", c.backend,
                                             {{"nftables", EnforceBackend::kNftables},
                                              {"xdp", EnforceBackend::kXdp},
                                              {"exec", EnforceBackend::kExec},
                                              {"dry-run", EnforceBackend::kDryRun}});
  c.maxRules = static_cast<unsigned>(enforce.integer("max_rules", c.maxRules, 1, 1000000));
  c.nftTable = enforce.string("nft_table", c.nftTable);
  if (c.nftTable.empty() || c.nftTable.size() > 32 ||
      !std::all_of(c.nftTable.begin(), c.nftTable.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
      }) ||
      !std::isalpha(static_cast<unsigned char>(c.nftTable[0])))
    enforce.fail("nft_table", "\"" + c.nftTable + "\"",
                 "must be 1 to 32 letters, digits or '_', starting with a letter");
  c.xdpMode = enforce.choice<XdpMode>(
      "xdp_mode", c.xdpMode,
      {{"auto", XdpMode::kAuto}, {"native", XdpMode::kNative}, {"generic", XdpMode::kGeneric}});
  c.execCommand = enforce.string("exec_command", c.execCommand,
                                 c.backend == EnforceBackend::kExec);
  if (!c.execCommand.empty()) {
    if (c.execCommand[0] != '/')
      enforce.fail("exec_command", "\"" + c.execCommand + "\"",
                   "must be an absolute path (it is run without a shell, with no PATH lookup)");
    if (c.backend == EnforceBackend::kExec && ::access(c.execCommand.c_str(), X_OK) != 0)
      enforce.fail("exec_command", "\"" + c.execCommand + "\"",
                   std::string("cannot be executed: ") + std::strerror(errno));
  }
  c.execTimeoutMs =
      static_cast<unsigned>(enforce.integer("exec_timeout_ms", c.execTimeoutMs, 100, 600000));
  c.stateDir = enforce.string("state_dir", c.stateDir);
  if (!c.stateDir.empty()) {
    if (c.stateDir[0] != '/')
      enforce.fail("state_dir", "\"" + c.stateDir + "\"", "must be an absolute path");
    struct stat st {};
    if (c.backend == EnforceBackend::kXdp &&
        (::stat(c.stateDir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) ||
         ::access(c.stateDir.c_str(), W_OK | X_OK) != 0))
      enforce.fail("state_dir", "\"" + c.stateDir + "\"",
                   "must be a folder this user can write (the xdp backend records its "
                   "program's id there)");
  }
  enforce.finish();

  return c;
}

namespace {

// [aggregator] http and its companions.
void parseHttp(Section& agg, AggregatorConfig& c) {
  if (!c.http.empty()) {
    if (!splitHostPort(c.http, c.httpHost, c.httpPort))
      agg.fail("http", "\"" + c.http + "\"",
               "must be HOST:PORT such as \"127.0.0.1:7480\" (\"[::1]:7480\" for IPv6), or "
               "\"\" for off");
    c.httpLoopback = isLoopbackHost(c.httpHost);
  }
  c.httpTlsCert = agg.string("http_tls_cert", "");
  c.httpTlsKey = agg.string("http_tls_key", "");
  if (c.httpTlsCert.empty() != c.httpTlsKey.empty())
    agg.fail(c.httpTlsCert.empty() ? "http_tls_cert" : "http_tls_key", "",
             "missing: give both http_tls_cert and http_tls_key, or neither");
  for (const auto& [key, file] : {std::pair{"http_tls_cert", c.httpTlsCert},
                                  std::pair{"http_tls_key", c.httpTlsKey}})
    if (!file.empty() && ::access(file.c_str(), R_OK) != 0)
      agg.fail(key, "\"" + file + "\"", std::string("cannot be read: ") + std::strerror(errno));
  c.httpInsecurePlaintext = agg.boolean("http_insecure_plaintext", false);
  if (!c.http.empty() && !c.httpLoopback && c.httpTlsCert.empty() && !c.httpInsecurePlaintext)
    agg.fail("http", "\"" + c.http + "\"",
             "a non-loopback address needs TLS (http_tls_cert and http_tls_key) or "
             "http_insecure_plaintext = true: bearer tokens would cross the network in clear");
  c.httpThreads = static_cast<unsigned>(agg.integer("http_threads", c.httpThreads, 2, 256));
  c.httpQueue = static_cast<unsigned>(agg.integer("http_queue", c.httpQueue, 1, 100000));
  c.httpMaxBodyBytes = static_cast<unsigned>(
      agg.integer("http_max_body_bytes", c.httpMaxBodyBytes, 1024, 16 << 20));
  c.httpTimeoutMs =
      static_cast<unsigned>(agg.integer("http_timeout_ms", c.httpTimeoutMs, 100, 600000));
  c.httpSseClients = static_cast<unsigned>(agg.integer("http_sse_clients", c.httpSseClients, 0, 255));
  if (c.httpSseClients >= c.httpThreads)
    agg.fail("http_sse_clients", std::to_string(c.httpSseClients),
             "must be below http_threads (" + std::to_string(c.httpThreads) +
                 "): each stream holds a worker thread");
  c.metricsOpen = agg.boolean("metrics_open", false);
  c.webRoot = agg.string("web_root", AggregatorConfig::kDefaultWebRoot);
  if (!c.webRoot.empty() && c.webRoot != AggregatorConfig::kDefaultWebRoot &&
      !std::filesystem::is_directory(c.webRoot))
    agg.fail("web_root", "\"" + c.webRoot + "\"",
             "is not a folder: it should hold the built web console (index.html), or \"\" for none");
}

}  // namespace

bool splitHostPort(const std::string& text, std::string& host, uint16_t& port) {
  std::string portText;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return false;
    host = text.substr(1, close - 1);
    portText = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) return false;
    host = text.substr(0, colon);
    portText = text.substr(colon + 1);
  }
  if (host.empty() || portText.empty() || portText.size() > 5 ||
      !std::all_of(portText.begin(), portText.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return false;
  const unsigned long p = std::stoul(portText);
  if (p == 0 || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return true;
}

bool isLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  auto a = IpAddress::parse(host);
  return a && a->isV4() && host.rfind("127.", 0) == 0;
}

AggregatorConfig parseAggregatorConfig(const std::string& text, const std::string& path,
                                       bool loadKeys) {
  const std::string file = fileName(path);
  toml::table root = parseToml(text, path);
  rejectUnknownTables(root, file, {"aggregator", "detect", "correlate", "mitigate", "sensor",
                                   "console", "token", "notify"});
  AggregatorConfig c;
  c.path = path;

  Section agg(file, "aggregator", subTable(root, file, "aggregator"));
  c.listenSensors = agg.string("listen_sensors", c.listenSensors);
  c.listenConsole = agg.string("listen_console", c.listenConsole);
  c.http = agg.string("http", c.http);
  c.secretKeyFile = agg.keyFile("secret_key", true, loadKeys, c.secretKey);
  c.dataDir = agg.string("data_dir", c.dataDir);
  if (c.dataDir.empty()) agg.fail("data_dir", "\"\"", "must name a directory");
  // `retention` takes any duration (tests and small sites use hours);
  // `retention_days` is the older spelling. The floor of one hour keeps a
  // slip such as "90s" for "90d" from emptying the history.
  if (agg.has("retention") && agg.has("retention_days"))
    agg.fail("retention_days", "", "give either retention or retention_days, not both");
  c.retentionMs = agg.integer("retention_days", c.retentionMs / 86'400'000, 1, 3650) * 86'400'000;
  c.retentionMs = agg.durationMs("retention", c.retentionMs, 3'600'000, int64_t{3650} * 86'400'000);
  c.mode = agg.choice<MitigationMode>("mode", c.mode, kModes);
  c.sensorDownAfterMs = static_cast<unsigned>(
      agg.integer("sensor_down_after_ms", c.sensorDownAfterMs, 500, 3600000));
  // At least 2 MiB: a sensor's summary batch (up to 512 KiB) and evidence
  // part (1 MiB) must fit, or ZeroMQ drops the sensor's connection for them.
  c.maxMessageBytes = static_cast<size_t>(
      agg.integer("max_message_bytes", static_cast<int64_t>(c.maxMessageBytes), 2 << 20, 64 << 20));
  c.logLevel = agg.choice<std::string>(
      "log_level", c.logLevel,
      {{"trace", "trace"}, {"debug", "debug"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}});
  c.heartbeatMs = static_cast<unsigned>(agg.integer("heartbeat_ms", c.heartbeatMs, 100, 60000));
  c.sensorRateLimit = static_cast<unsigned>(
      agg.integer("sensor_rate_limit", c.sensorRateLimit, 10, 10'000'000));
  c.orderRetryMs =
      static_cast<unsigned>(agg.integer("order_retry_ms", c.orderRetryMs, 100, 3'600'000));
  c.insecurePlaintext = agg.boolean("insecure_plaintext", false);
  c.neverBlock = agg.prefixes("never_block", false);
  c.csirtName = agg.string("csirt_name", c.csirtName);
  if (c.csirtName.empty() || c.csirtName.size() > 200)
    agg.fail("csirt_name", "\"" + c.csirtName + "\"", "must be 1 to 200 characters");
  c.exportTlp = agg.choice<std::string>(
      "export_tlp", c.exportTlp,
      {{"clear", "clear"}, {"green", "green"}, {"amber", "amber"}, {"red", "red"}});
  for (const auto& [key, endpoint] :
       {std::pair{"listen_sensors", c.listenSensors}, std::pair{"listen_console", c.listenConsole}})
    if (endpoint.rfind("tcp://", 0) != 0 && endpoint.rfind("ipc://", 0) != 0)
      agg.fail(key, "\"" + endpoint + "\"", "must be a ZeroMQ endpoint such as \"tcp://0.0.0.0:7450\"");
  parseHttp(agg, c);
  agg.finish();

  Section mit(file, "mitigate", subTable(root, file, "mitigate"));
  c.orderTtlS = static_cast<unsigned>(mit.integer("order_ttl_s", c.orderTtlS, 10, 30 * 86400));
  c.proposalTtlS =
      static_cast<unsigned>(mit.integer("proposal_ttl_s", c.proposalTtlS, 10, 86400));
  c.maxOrdersPerSensor = static_cast<unsigned>(
      mit.integer("max_orders_per_sensor", c.maxOrdersPerSensor, 1, 1'000'000));
  c.maxSourceBlocks =
      static_cast<unsigned>(mit.integer("max_source_blocks", c.maxSourceBlocks, 0, 10'000));
  c.maxLegitShare = mit.number("max_legit_share", c.maxLegitShare, 0.0, 1.0);
  mit.finish();

  Section detect(file, "detect", subTable(root, file, "detect"));
  auto& d = c.detect;
  d.k = detect.number("k", d.k, 0.5, 100);
  d.sustainMs = static_cast<unsigned>(detect.integer("sustain_ms", d.sustainMs, 0, 600'000));
  d.clearMs = static_cast<unsigned>(detect.integer("clear_ms", d.clearMs, 0, 3'600'000));
  d.warmupMs = static_cast<unsigned>(detect.integer("warmup_ms", d.warmupMs, 0, 86'400'000));
  d.baselineHalfLifeMs = static_cast<unsigned>(
      detect.integer("baseline_half_life_ms", d.baselineHalfLifeMs, 1000, 604'800'000));
  constexpr double kMaxPps = 1e10;
  if (const toml::table* floors = detect.table("floor_pps", "{ tcp_syn = 2000, udp = 5000 }")) {
    Section f(file, "detect.floor_pps", floors);
    for (size_t i = 0; i < kDetectVectorNames.size(); ++i)
      d.floorPps[i] = f.number(std::string(kDetectVectorNames[i]), d.floorPps[i], 1, kMaxPps);
    std::string known;
    for (auto name : kDetectVectorNames) known += (known.empty() ? "" : " | ") + std::string(name);
    for (auto&& [k, v] : *floors)
      if (std::find(kDetectVectorNames.begin(), kDetectVectorNames.end(), k.str()) ==
          kDetectVectorNames.end())
        f.fail(std::string(k.str()), "", "unknown vector (expected one of " + known + ")");
  }
  d.reflectionTotalFloorPps =
      detect.number("reflection_total_floor_pps", d.reflectionTotalFloorPps, 1, kMaxPps);
  d.reflectionFloorBps =
      detect.number("reflection_floor_bps", d.reflectionFloorBps, 1000, kMaxPps * 12000);
  d.reflectionMinAvgBytes =
      detect.number("reflection_min_avg_bytes", d.reflectionMinAvgBytes, 0, 65535);
  detect.finish();

  Section correlate(file, "correlate", subTable(root, file, "correlate"));
  auto& r = c.correlate;
  r.resolveAfterMs = static_cast<unsigned>(
      correlate.integer("resolve_after_ms", r.resolveAfterMs, 1000, 3'600'000));
  r.idleResolveMs = static_cast<unsigned>(
      correlate.integer("idle_resolve_ms", r.idleResolveMs, 1000, 86'400'000));
  // Idle resolution is for sensors gone silent; it must not beat the
  // data-time rule while they still report.
  if (r.idleResolveMs < r.resolveAfterMs)
    correlate.fail("idle_resolve_ms", std::to_string(r.idleResolveMs),
                   "must be at least resolve_after_ms (" + std::to_string(r.resolveAfterMs) + ")");
  r.joinWindowMs =
      static_cast<unsigned>(correlate.integer("join_window_ms", r.joinWindowMs, 0, 3'600'000));
  correlate.finish();

  std::set<std::string> ids, keys, names;
  for (auto& s : arrayOfTables(root, file, "sensor")) {
    SensorEntry e;
    e.id = s.string("id", "", true);
    if (!isValidSensorId(e.id)) s.fail("id", "\"" + e.id + "\"", "must match [a-z0-9-]{1,32}");
    if (!ids.insert(e.id).second) s.fail("id", "\"" + e.id + "\"", "listed twice");
    // With a plaintext sensor link a sensor's key is not used (and may be absent).
    if (c.insecurePlaintext) e.publicKeyFile = s.string("public_key", "");
    else e.publicKeyFile = s.keyFile("public_key", false, loadKeys, e.publicKey);
    if (loadKeys && !c.insecurePlaintext && !keys.insert(e.publicKey).second)
      s.fail("public_key", "\"" + e.publicKeyFile + "\"",
             "this key is already bound to another sensor or console: one key, one identity");
    if (s.has("mode")) e.mode = s.choice<MitigationMode>("mode", c.mode, kModes);
    s.finish();
    c.sensors.push_back(std::move(e));
  }
  for (auto& s : arrayOfTables(root, file, "console")) {
    ConsoleEntry e;
    e.name = s.string("name", "", true);
    if (e.name.empty() || e.name.size() > 64) s.fail("name", "\"" + e.name + "\"", "must be 1 to 64 characters");
    if (!names.insert(e.name).second) s.fail("name", "\"" + e.name + "\"", "listed twice");
    e.publicKeyFile = s.keyFile("public_key", false, loadKeys, e.publicKey);
    if (loadKeys && !keys.insert(e.publicKey).second)
      s.fail("public_key", "\"" + e.publicKeyFile + "\"",
             "this key is already bound to another sensor or console: one key, one identity");
    e.role = s.choice<Role>("role", Role::kViewer, kRoles);
    s.finish();
    c.consoles.push_back(std::move(e));
  }
  for (auto& s : arrayOfTables(root, file, "token")) {
    TokenEntry e;
    e.name = s.string("name", "", true);
    e.role = s.choice<Role>("role", Role::kViewer, kRoles);
    e.sha256 = s.string("sha256", "", true);
    if (e.sha256.size() != 64 ||
        !std::all_of(e.sha256.begin(), e.sha256.end(),
                     [](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)); }))
      s.fail("sha256", "\"" + e.sha256 + "\"", "must be 64 hex digits (sha256 of the token)");
    s.finish();
    c.tokens.push_back(std::move(e));
  }
  c.notify = parseNotify(root, file, loadKeys);
  return c;
}

SensorConfig loadSensorConfig(const std::string& path, bool offline) {
  return parseSensorConfig(readFile(path), path, !offline, !offline);
}

AggregatorConfig loadAggregatorConfig(const std::string& path) {
  return parseAggregatorConfig(readFile(path), path);
}

ConsoleConfig loadConsoleConfig(const std::string& path) {
  const std::string file = fileName(path);
  toml::table root = parseToml(readFile(path), path);
  rejectUnknownTables(root, file, {"console"});
  Section s(file, "console", subTable(root, file, "console"));
  ConsoleConfig c;
  c.connect = s.string("connect", "", true);
  c.serverKeyFile = s.string("server_key", "", true);
  c.keyFile = s.string("key", "", true);
  s.finish();
  return c;
}

}  // namespace garda::common
