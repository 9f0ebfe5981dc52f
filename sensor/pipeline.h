#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/config.h"
#include "common/ip.h"
#include "sensor/capture/source.h"
#include "sensor/evidence.h"
#include "sensor/uplink.h"
#include "sensor/window.h"

namespace garda::sensor {

SketchLimits sketchLimits(const common::SensorConfig& config);

// Where closed windows go: to the uplink as summaries and/or, as JSON lines,
// to `jsonOut`. Either may be null. Called on one thread only.
class WindowOutput {
 public:
  WindowOutput(std::string sensorId, Uplink* uplink, std::FILE* jsonOut)
      : sensorId_(std::move(sensorId)), uplink_(uplink), jsonOut_(jsonOut) {}
  // `kernelDropsTotal` is the capture's cumulative kernel drop count; the
  // summary carries the increase since the previous window.
  void emit(const WindowStats& window, uint64_t kernelDropsTotal);
  void alert(const Windower::Alert& alert, uint64_t thresholdPps);
  uint64_t windows() const noexcept { return windows_; }

 private:
  std::string sensorId_;
  Uplink* uplink_;
  std::FILE* jsonOut_;
  uint64_t lastKernelDrops_ = 0;
  uint64_t windows_ = 0;
};

// Replay: everything after capture on the capture thread. Frames go into
// the windower, closed windows to the output, and the uplink is polled
// between packets so acks and link events are handled while replay runs.
class SensorPipeline : public PacketSink {
 public:
  SensorPipeline(const common::SensorConfig& config, WindowOutput& output, Uplink* uplink,
                 const PacketSource* source);

  void onPacket(const CapturedPacket& packet) override {
    tap_->offer(packet);
    windower_.onPacket(packet);
  }
  void tick(int64_t nowNs) override;
  // End of capture: closes the last window.
  void flush() { windower_.flush(); }
  // Frames also go to `tap` (evidence requests); it must outlive this.
  void setEvidenceTap(EvidenceTap& tap) noexcept { tap_ = &tap; }

 private:
  EvidenceTap idleTap_;  // never armed: the tap until setEvidenceTap()
  EvidenceTap* tap_ = &idleTap_;
  common::PrefixSet protected_;
  WindowOutput& output_;
  Uplink* uplink_;
  const PacketSource* source_;
  Windower windower_;
};

// Live capture: one AF_PACKET source, windower and thread per worker (the
// kernel's fanout spreads flows across them), and a merger that joins the
// workers' windows with the same start into one summary. Workers never
// share state on the packet path; at window close each hands its window to
// the merger under a mutex (once per window per worker). deliverReady() runs
// on the main thread and emits every window all workers have reported, or
// that one worker is late with by more than a window.
class LiveCapture {
 public:
  LiveCapture(const common::SensorConfig& config, WindowOutput& output);
  ~LiveCapture();

  void start();
  void stop();
  void deliverReady(bool all = false);
  CaptureStats stats() const;
  std::string describe() const;
  // Every worker's frames also go to `tap`; call before start().
  void setEvidenceTap(EvidenceTap& tap) noexcept { tap_ = &tap; }

 private:
  struct Worker;
  struct Pending {
    WindowStats merged;
    size_t reports = 0;
    int64_t firstMonoNs = 0;
  };
  void submit(WindowStats& window);

  const common::SensorConfig& config_;
  WindowOutput& output_;
  common::PrefixSet protected_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::mutex mutex_;
  std::vector<std::pair<int64_t, Pending>> pending_;  // by window start, few entries
  static constexpr size_t kMaxQueuedAlerts = 1024;
  std::vector<Windower::Alert> alerts_;
  EvidenceTap idleTap_;
  EvidenceTap* tap_ = &idleTap_;
};

}  // namespace garda::sensor
