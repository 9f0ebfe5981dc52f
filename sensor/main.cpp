// garda-sensor: captures packets on an OPD segment (or replays a capture),
// summarises them per window and streams the summaries to the aggregator.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <csignal>
#include <memory>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "sensor/capture/pcap_file_source.h"
#include "sensor/pipeline.h"
#include "sensor/uplink.h"

namespace {

std::atomic<garda::sensor::PacketSource*> gSource{nullptr};
std::atomic<bool> gStopping{false};

void onSignal(int) {
  gStopping.store(true);
  if (auto* s = gSource.load()) s->stop();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace garda;
  CLI::App app{"garda-sensor: DDoS sensor for one OPD segment"};
  std::string configPath;
  std::string pcapPath;
  std::string summariesOut;
  bool offline = false;
  app.add_option("--config", configPath, "sensor.toml")->required();
  app.add_option("--pcap", pcapPath, "replay this pcap/pcapng file instead of live capture");
  app.add_option("--summaries-out", summariesOut,
                 "also write each window as a JSON line to this file (- for stdout)");
  app.add_flag("--offline", offline,
               "no aggregator: replay and write --summaries-out only ([uplink] not needed)");
  app.set_version_flag("--version", GARDA_VERSION);
  CLI11_PARSE(app, argc, argv);

  common::SensorConfig config;
  try {
    config = common::loadSensorConfig(configPath, offline);
  } catch (const std::exception& e) {
    fmt::print(stderr, "garda-sensor: {}\n", e.what());
    return 2;
  }
  if (!pcapPath.empty()) {
    config.source = common::CaptureSource::kPcap;
    config.pcapFile = pcapPath;
  }
  common::setupLogging(config.logLevel);

  std::unique_ptr<sensor::PacketSource> source;
  try {
    if (config.source != common::CaptureSource::kPcap)
      throw std::runtime_error("capture.source = \"afpacket\" is not available in this build yet; "
                               "use source = \"pcap\" or --pcap FILE");
    if (config.pcapFile.empty())
      throw std::runtime_error(config.path + ": capture.pcap_file: missing (required with "
                               "source = \"pcap\", or give --pcap FILE)");
    source = std::make_unique<sensor::PcapFileSource>(
        config.pcapFile, config.replay == common::ReplaySpeed::kRealtime
                             ? sensor::PcapFileSource::Speed::kRealtime
                             : sensor::PcapFileSource::Speed::kFast);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 2;
  }

  std::FILE* jsonOut = nullptr;
  if (summariesOut == "-") {
    jsonOut = stdout;
  } else if (!summariesOut.empty()) {
    jsonOut = std::fopen(summariesOut.c_str(), "w");
    if (!jsonOut) {
      spdlog::error("--summaries-out {}: cannot write: {}", summariesOut, std::strerror(errno));
      return 2;
    }
  }

  zmq::context_t ctx(1);
  const bool replay = config.source == common::CaptureSource::kPcap;
  int rc = 0;
  {
    std::unique_ptr<sensor::Uplink> uplink;
    if (!offline)
      uplink = std::make_unique<sensor::Uplink>(
          ctx, config, sensor::Uplink::Identity{GARDA_VERSION, source->describe()}, replay);
    sensor::SensorPipeline pipeline(config, uplink.get(), jsonOut, source.get());

    gSource.store(source.get());
    std::signal(SIGTERM, onSignal);
    std::signal(SIGINT, onSignal);

    // Give the link a moment to come up so the first summaries go straight
    // out; they are kept and resent anyway if it does not.
    for (int i = 0; uplink && i < 20 && !uplink->connected(); ++i) uplink->poll(50);
    spdlog::info("sensor {}: capturing from {}", config.id, source->describe());
    source->run(pipeline);
    pipeline.flush();
    gSource.store(nullptr);
    if (jsonOut) std::fflush(jsonOut);
    if (jsonOut && jsonOut != stdout) std::fclose(jsonOut);

    if (auto* pcap = dynamic_cast<sensor::PcapFileSource*>(source.get());
        pcap && !pcap->readError().empty())
      spdlog::warn("{}: stopped early on a damaged record: {}", config.pcapFile,
                   pcap->readError());

    if (!uplink) {
      spdlog::info("sensor {}: {} packets in {} windows (offline)", config.id,
                   source->stats().packets, pipeline.windowsClosed());
      return 0;
    }
    // Drain: wait for the aggregator to ack every summary (SIGTERM cuts it short).
    const int64_t deadline = common::monoNowNs() + int64_t{config.drainTimeoutMs} * 1'000'000;
    while (uplink->backlog() > 0 && !gStopping.load() && common::monoNowNs() < deadline)
      uplink->poll(50);
    const auto& c = uplink->counters();
    spdlog::info("sensor {}: {} packets in {} windows; summaries acked {}, refused {}, unacked {}",
                 config.id, source->stats().packets, pipeline.windowsClosed(), c.summariesAcked,
                 c.summariesRefused, uplink->backlog());
    if (uplink->backlog() > 0 || c.summariesRefused > 0) {
      spdlog::error("sensor {}: {} summaries were not stored by the aggregator", config.id,
                    uplink->backlog() + c.summariesRefused);
      rc = 3;
    }
  }
  return rc;
}
