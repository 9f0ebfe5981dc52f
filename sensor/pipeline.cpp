#include "sensor/pipeline.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/clock.h"
#include "sensor/capture/afpacket_source.h"
#include "sensor/summary_json.h"

namespace garda::sensor {

SketchLimits sketchLimits(const common::SensorConfig& c) {
  return {c.topSources, c.topPorts, c.hllPrecision};
}

namespace {

// A victim's alert threshold in packets per window for one of `workers`
// capture threads. Fanout spreads a victim's flows over the workers, so
// each checks its share and the first to cross it raises the alert.
uint64_t alertPacketsPerWorker(const common::SensorConfig& c, unsigned workers) {
  const uint64_t perWindow = c.alertPps * c.windowMs / 1000;
  return std::max<uint64_t>(1, (perWindow + workers - 1) / workers);
}

}  // namespace

void WindowOutput::emit(const WindowStats& w, uint64_t kernelDropsTotal) {
  uint64_t drops = kernelDropsTotal >= lastKernelDrops_ ? kernelDropsTotal - lastKernelDrops_ : 0;
  lastKernelDrops_ = kernelDropsTotal;
  if (uplink_) uplink_->sendSummary(w, drops);
  if (jsonOut_) {
    std::string line = windowToJson(w, sensorId_).dump() + "\n";
    std::fwrite(line.data(), 1, line.size(), jsonOut_);
    std::fflush(jsonOut_);  // readers (tests, tail -f) see each window as it closes
  }
  windows_++;
}

void WindowOutput::alert(const Windower::Alert& a, uint64_t thresholdPps) {
  spdlog::warn("sensor {}: ALERT victim {} reached {} packets ({}) in the window starting {} "
               "(threshold {} pps)",
               sensorId_, a.victim.toString(), a.packets, vectorName(a.vector), a.windowStartNs,
               thresholdPps);
  if (uplink_) uplink_->sendAlert(a, thresholdPps);
}

SensorPipeline::SensorPipeline(const common::SensorConfig& config, WindowOutput& output,
                               Uplink* uplink, const PacketSource* source)
    : protected_(config.protectedPrefixes),
      output_(output),
      uplink_(uplink),
      source_(source),
      windower_(
          protected_, config.windowMs, config.maxVictims,
          [this](WindowStats& w) { output_.emit(w, source_ ? source_->stats().kernelDrops : 0); },
          /*emitEmpty=*/false, /*closeGraceNs=*/0, sketchLimits(config)) {
  if (config.alertPps > 0)
    windower_.setAlert(alertPacketsPerWorker(config, 1),
                       [this, pps = config.alertPps](const Windower::Alert& a) {
                         output_.alert(a, pps);
                       });
}

void SensorPipeline::tick(int64_t nowNs) {
  windower_.tick(nowNs);
  if (uplink_) uplink_->poll(0);
}

struct LiveCapture::Worker : PacketSink {
  Worker(LiveCapture& owner, AfPacketSource::Options options)
      : source(std::move(options)),
        windower(
            owner.protected_, owner.config_.windowMs, owner.config_.maxVictims,
            [&owner](WindowStats& w) { owner.submit(w); }, /*emitEmpty=*/true,
            AfPacketSource::kCloseGraceNs, sketchLimits(owner.config_)) {}
  void onPacket(const CapturedPacket& p) override {
    tap->offer(p);
    windower.onPacket(p);
  }
  void tick(int64_t nowNs) override { windower.tick(nowNs); }

  EvidenceTap* tap = nullptr;  // set by start()
  AfPacketSource source;
  Windower windower;
  std::thread thread;
};

LiveCapture::LiveCapture(const common::SensorConfig& config, WindowOutput& output)
    : config_(config), output_(output), protected_(config.protectedPrefixes) {
  // One fanout group per process and interface.
  const auto group = static_cast<uint16_t>((getpid() & 0x7fff) | 1);
  for (unsigned i = 0; i < config_.workers; ++i) {
    AfPacketSource::Options o;
    o.interface = config_.interface;
    o.fanoutGroup = config_.workers > 1 ? group : 0;
    o.ringBytes = size_t{config_.ringMb} << 20;
    o.bpfFilter = config_.bpfFilter;
    workers_.push_back(std::make_unique<Worker>(*this, std::move(o)));
    if (config_.alertPps > 0) {
      workers_.back()->windower.setAlert(
          alertPacketsPerWorker(config_, config_.workers), [this](const Windower::Alert& a) {
            std::lock_guard lock(mutex_);
            if (alerts_.size() < kMaxQueuedAlerts) alerts_.push_back(a);
          });
    }
  }
}

LiveCapture::~LiveCapture() { stop(); }

void LiveCapture::start() {
  for (auto& w : workers_) {
    w->tap = tap_;
    w->thread = std::thread([&w] { w->source.run(*w); });
  }
}

void LiveCapture::stop() {
  for (auto& w : workers_) w->source.stop();
  for (auto& w : workers_)
    if (w->thread.joinable()) {
      w->thread.join();
      w->windower.flush();
    }
}

void LiveCapture::submit(WindowStats& window) {
  std::lock_guard lock(mutex_);
  auto it = std::find_if(pending_.begin(), pending_.end(),
                         [&](const auto& p) { return p.first == window.startNs; });
  if (it == pending_.end()) {
    Pending p;
    p.merged = window;
    p.reports = 1;
    p.firstMonoNs = common::monoNowNs();
    pending_.emplace_back(window.startNs, std::move(p));
    return;
  }
  mergeWindow(it->second.merged, window, config_.maxVictims);
  it->second.reports++;
}

void LiveCapture::deliverReady(bool all) {
  std::vector<WindowStats> ready;
  std::vector<Windower::Alert> alerts;
  {
    std::lock_guard lock(mutex_);
    alerts.swap(alerts_);
    const int64_t now = common::monoNowNs();
    const int64_t grace = int64_t{config_.windowMs} * 1'000'000;
    std::sort(pending_.begin(), pending_.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
    while (!pending_.empty()) {
      auto& [start, p] = pending_.front();
      if (!all && p.reports < workers_.size() && now - p.firstMonoNs < grace) break;
      ready.push_back(std::move(p.merged));
      pending_.erase(pending_.begin());
    }
  }
  for (const auto& a : alerts) output_.alert(a, config_.alertPps);
  const uint64_t drops = stats().kernelDrops;
  for (auto& w : ready) output_.emit(w, drops);
}

CaptureStats LiveCapture::stats() const {
  CaptureStats total;
  for (const auto& w : workers_) {
    auto s = w->source.stats();
    total.packets += s.packets;
    total.kernelDrops += s.kernelDrops;
  }
  return total;
}

std::string LiveCapture::describe() const {
  return "afpacket:" + config_.interface + " x" + std::to_string(config_.workers);
}

}  // namespace garda::sensor
