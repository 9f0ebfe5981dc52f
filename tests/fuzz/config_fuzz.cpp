// libFuzzer target: sensor.toml and aggregator.toml parsing on arbitrary text.
//
// Contract checked (common/config.h): a bad file is reported by throwing
// common::ConfigError, naming the file, the key and the reason; nothing else
// may escape (not toml::parse_error, std::out_of_range, std::bad_optional_access,
// ...) and nothing may crash. loadKeys is false, so no key file is opened.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "common/config.h"

namespace garda::common {
namespace {

volatile size_t gSink = 0;

template <typename Parse>
void expectOnlyConfigError(const char* what, Parse parse) {
  try {
    parse();
  } catch (const ConfigError& e) {
    // The message is what an operator sees: it must name the file.
    if (std::string(e.what()).find(".toml") == std::string::npos) {
      std::fprintf(stderr, "config_fuzz: %s: ConfigError without the file name: %s\n", what,
                   e.what());
      abort();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "config_fuzz: %s threw something other than ConfigError: %s\n", what,
                 e.what());
    abort();
  } catch (...) {
    std::fprintf(stderr, "config_fuzz: %s threw a non-std exception\n", what);
    abort();
  }
}

}  // namespace
}  // namespace garda::common

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace garda::common;
  const std::string text(reinterpret_cast<const char*>(data), size);

  expectOnlyConfigError("parseSensorConfig", [&] {
    SensorConfig c = parseSensorConfig(text, "/etc/garda/sensor.toml", /*loadKeys=*/false);
    gSink = gSink + c.protectedPrefixes.size() + c.id.size();
  });
  // Offline replay: the [uplink] section is optional.
  expectOnlyConfigError("parseSensorConfig (offline)", [&] {
    SensorConfig c = parseSensorConfig(text, "/etc/garda/sensor.toml", /*loadKeys=*/false,
                                       /*requireUplink=*/false);
    gSink = gSink + c.neverBlock.size();
  });
  expectOnlyConfigError("parseAggregatorConfig", [&] {
    AggregatorConfig c = parseAggregatorConfig(text, "/etc/garda/aggregator.toml",
                                               /*loadKeys=*/false);
    gSink = gSink + c.sensors.size() + c.consoles.size() + c.tokens.size();
  });
  return 0;
}
