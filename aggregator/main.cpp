// garda-aggregator: the SOC's view of the whole city. Takes in the sensors'
// summaries, stores them, and answers the console.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <csignal>

#include "aggregator/server.h"
#include "common/config.h"
#include "common/log.h"

#ifdef GARDA_JEMALLOC
// jemalloc's settings, read at its first allocation (MALLOC_CONF in the
// environment still overrides them). Transparent huge pages for its extents
// and its metadata: RocksDB's memtables (64 MB each, a new one every ~0.7 s
// at 20,000 summaries/s) and ZeroMQ's frames were otherwise faulted in 4 KB
// at a time. docs/decisions.md, "The last step to 20,000/s at N=1000
// (session 10)".
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "thp:always,metadata_thp:always";
int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen);
}
#endif

namespace {
std::atomic<bool> gStop{false};
std::atomic<bool> gReload{false};
void onSignal(int) { gStop.store(true); }
void onHangup(int) { gReload.store(true); }
}  // namespace

int main(int argc, char** argv) {
  using namespace garda;
  CLI::App app{"garda-aggregator: correlates the city's sensors, keeps history, answers consoles"};
  std::string configPath;
  app.add_option("--config", configPath, "aggregator.toml")->required();
  app.set_version_flag("--version", GARDA_VERSION);
  CLI11_PARSE(app, argc, argv);

  common::AggregatorConfig config;
  try {
    config = common::loadAggregatorConfig(configPath);
  } catch (const std::exception& e) {
    fmt::print(stderr, "garda-aggregator: {}\n", e.what());
    return 2;
  }
  common::setupLogging(config.logLevel);
#ifdef GARDA_JEMALLOC
  const char* thp = "?";
  size_t len = sizeof thp;
  if (mallctl("opt.thp", &thp, &len, nullptr, 0) != 0) thp = "?";
  spdlog::info("aggregator: allocator jemalloc, transparent huge pages {}", thp);
#endif
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);
  // SIGHUP (systemctl reload): re-read the sensor and console lists.
  std::signal(SIGHUP, onHangup);
  try {
    aggregator::AggregatorServer server(config);
    server.run(gStop, &gReload);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
  return 0;
}
