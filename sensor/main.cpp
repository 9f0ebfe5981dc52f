// garda-sensor: captures packets on an OPD segment (or replays a capture),
// summarises them per window and streams the summaries to the aggregator.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "common/service_notify.h"
#include "sensor/capture/pcap_file_source.h"
#include "sensor/enforce/enforcer.h"
#include "sensor/orders.h"
#include "sensor/pipeline.h"
#include "sensor/uplink.h"

namespace {

std::atomic<garda::sensor::PacketSource*> gSource{nullptr};
std::atomic<garda::sensor::Uplink*> gUplink{nullptr};
std::atomic<bool> gStopping{false};

void onSignal(int) {
  gStopping.store(true);
  if (auto* s = gSource.load()) s->stop();
  if (auto* u = gUplink.load()) u->interrupt();
}

using namespace garda;

constexpr int64_t kStatusEveryNs = 10'000'000'000;  // systemd STATUS= line

std::string linkStatus(const sensor::Uplink* uplink) {
  if (!uplink) return "offline";
  return fmt::format("aggregator link {}, {} summaries unacked",
                     uplink->connected() ? "up" : "down", uplink->backlog());
}

// The replay loop is the source's own: the pipeline's ticks (between packets
// and while a real-time replay waits) are where it proves it is alive.
class KeepAliveSink : public sensor::PacketSink {
 public:
  KeepAliveSink(sensor::PacketSink& inner, common::ServiceNotifier& notifier)
      : inner_(inner), notifier_(notifier) {}
  void onPacket(const sensor::CapturedPacket& packet) override { inner_.onPacket(packet); }
  void tick(int64_t nowNs) override {
    inner_.tick(nowNs);
    notifier_.keepAlive(common::monoNowNs());
  }

 private:
  sensor::PacketSink& inner_;
  common::ServiceNotifier& notifier_;
};

// Replays a capture file.
void runReplay(const common::SensorConfig& config, sensor::Uplink* uplink,
              sensor::WindowOutput& output, common::ServiceNotifier& notifier,
              sensor::EvidenceTap& tap) {
  sensor::PcapFileSource source(config.pcapFile, config.replay == common::ReplaySpeed::kRealtime
                                                     ? sensor::PcapFileSource::Speed::kRealtime
                                                     : sensor::PcapFileSource::Speed::kFast);
  sensor::SensorPipeline pipeline(config, output, uplink, &source);
  KeepAliveSink sink(pipeline, notifier);
  pipeline.setEvidenceTap(tap);
  gSource.store(&source);
  if (gStopping.load()) source.stop();
  spdlog::info("sensor {}: replaying {}", config.id, source.describe());
  notifier.ready("replaying " + source.describe() + "; " + linkStatus(uplink));
  source.run(sink);
  notifier.stopping();
  pipeline.flush();
  if (uplink) uplink->finishEvidence();
  gSource.store(nullptr);
  if (!source.readError().empty())
    spdlog::warn("{}: stopped early on a damaged record: {}", config.pcapFile, source.readError());
  spdlog::info("sensor {}: {} packets in {} windows", config.id, source.stats().packets,
               output.windows());
}

// Captures live until SIGTERM/SIGINT.
void runLive(const common::SensorConfig& config, sensor::Uplink* uplink,
             sensor::WindowOutput& output, common::ServiceNotifier& notifier,
             sensor::EvidenceTap& tap) {
  sensor::LiveCapture capture(config, output);
  capture.setEvidenceTap(tap);
  capture.start();
  spdlog::info("sensor {}: capturing on {}", config.id, capture.describe());
  notifier.ready("capturing on " + capture.describe() + "; " + linkStatus(uplink));
  int64_t nextStatus = common::monoNowNs() + kStatusEveryNs;
  while (!gStopping.load()) {
    if (uplink) uplink->poll(20);
    else ::usleep(20000);
    capture.deliverReady();
    const int64_t now = common::monoNowNs();
    notifier.keepAlive(now);
    if (now >= nextStatus) {
      notifier.status(fmt::format("capturing on {}: {} windows; {}", capture.describe(),
                                  output.windows(), linkStatus(uplink)));
      nextStatus = now + kStatusEveryNs;
    }
  }
  notifier.stopping();
  capture.stop();
  capture.deliverReady(/*all=*/true);
  if (uplink) uplink->finishEvidence();
  auto st = capture.stats();
  spdlog::info("sensor {}: {} packets captured, {} dropped by the kernel, {} windows", config.id,
               st.packets, st.kernelDrops, output.windows());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"garda-sensor: DDoS sensor for one OPD segment"};
  std::string configPath;
  std::string pcapPath;
  std::string summariesOut;
  bool offline = false;
  bool withdraw = false;
  app.add_option("--config", configPath, "sensor.toml")->required();
  app.add_option("--pcap", pcapPath, "replay this pcap/pcapng file instead of live capture");
  app.add_option("--summaries-out", summariesOut,
                 "also write each window as a JSON line to this file (- for stdout)");
  app.add_flag("--offline", offline,
               "no aggregator: write --summaries-out only ([uplink] not needed)");
  app.add_flag("--withdraw", withdraw,
               "take what [enforce] left in the kernel off for good (the nftables table, or "
               "Garda's XDP program) and exit; for package removal, with the daemon stopped")
      ->excludes("--pcap", "--summaries-out", "--offline");
  app.set_version_flag("--version", GARDA_VERSION);
  CLI11_PARSE(app, argc, argv);

  if (withdraw) {
    try {
      // [uplink] is not needed: its key files may be gone already.
      fmt::print("{}\n", sensor::withdrawEnforcement(common::loadSensorConfig(configPath, true)));
      return 0;
    } catch (const std::exception& e) {
      fmt::print(stderr, "garda-sensor: {}\n", e.what());
      return 2;
    }
  }

  common::SensorConfig config;
  std::unique_ptr<sensor::Enforcer> enforcer;
  try {
    config = common::loadSensorConfig(configPath, offline);
    enforcer = sensor::makeEnforcer(config);
    if (!pcapPath.empty()) {
      config.source = common::CaptureSource::kPcap;
      config.pcapFile = pcapPath;
    }
    if (config.source == common::CaptureSource::kPcap && config.pcapFile.empty())
      throw common::ConfigError(configPath + ": capture.pcap_file: missing (required with "
                                "source = \"pcap\", or give --pcap FILE)");
  } catch (const std::exception& e) {
    fmt::print(stderr, "garda-sensor: {}\n", e.what());
    return 2;
  }
  common::setupLogging(config.logLevel);
  std::signal(SIGTERM, onSignal);
  std::signal(SIGINT, onSignal);

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

  const bool replay = config.source == common::CaptureSource::kPcap;
  zmq::context_t ctx(1);
  common::ServiceNotifier notifier;
  int rc = 0;
  try {
    std::unique_ptr<sensor::Uplink> uplink;
    sensor::OrderManager orders(config, *enforcer);
    sensor::EvidenceTap evidenceTap;
    if (!offline) {
      std::string describe = replay ? "pcap:" + config.pcapFile : "afpacket:" + config.interface;
      uplink = std::make_unique<sensor::Uplink>(
          ctx, config, sensor::Uplink::Identity{GARDA_VERSION, describe}, replay);
      uplink->setOrderManager(&orders);
      uplink->setEvidenceTap(&evidenceTap);
      // Give the link a moment to come up so the first summaries go straight
      // out; they are kept and resent anyway if it does not.
      for (int i = 0; i < 20 && !uplink->connected(); ++i) uplink->poll(50);
      gUplink.store(uplink.get());
    }
    sensor::WindowOutput output(config.id, uplink.get(), jsonOut);
    if (replay) runReplay(config, uplink.get(), output, notifier, evidenceTap);
    else runLive(config, uplink.get(), output, notifier, evidenceTap);
    if (jsonOut) std::fflush(jsonOut);

    if (uplink) {
      // Drain: wait for the aggregator to ack every summary. After a stop
      // signal, at most kStopDrainMs (what is in flight on a working link
      // is acked by then); a second signal cuts it short.
      constexpr unsigned kStopDrainMs = 3000;
      const bool signalled = gStopping.exchange(false);
      const unsigned drainMs =
          signalled ? std::min(config.drainTimeoutMs, kStopDrainMs) : config.drainTimeoutMs;
      const int64_t deadline = common::monoNowNs() + int64_t{drainMs} * 1'000'000;
      while (uplink->backlog() > 0 && !gStopping.load() && common::monoNowNs() < deadline) {
        uplink->poll(50);
        notifier.keepAlive(common::monoNowNs());
      }
      const auto& c = uplink->counters();
      spdlog::info("sensor {}: summaries acked {}, refused {}, unacked {}, dropped {} "
                   "(summary batch messages {}, ack batch messages {})",
                   config.id, c.summariesAcked, c.summariesRefused, uplink->backlog(),
                   c.summariesDropped, c.summaryBatchesSent, c.ackBatches);
      if (uplink->backlog() > 0 || c.summariesRefused > 0) {
        spdlog::error("sensor {}: {} summaries were not stored by the aggregator", config.id,
                      uplink->backlog() + c.summariesRefused);
        rc = 3;
      }
      gUplink.store(nullptr);
    }
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    rc = 2;
  }
  if (jsonOut && jsonOut != stdout) std::fclose(jsonOut);
  return rc;
}
