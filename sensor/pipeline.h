#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/config.h"
#include "common/ip.h"
#include "sensor/capture/source.h"
#include "sensor/uplink.h"
#include "sensor/window.h"

namespace garda::sensor {

// Everything after capture, the same for live capture and replay: frames go
// into the windower; each closed window goes to the uplink as a summary
// and/or, as a JSON line, to `jsonOut`; the uplink is polled between packets
// so acks and link events are handled while capture runs. Either sink may be
// null. Single-threaded: lives on the capture thread.
class SensorPipeline : public PacketSink {
 public:
  SensorPipeline(const common::SensorConfig& config, Uplink* uplink, std::FILE* jsonOut,
                 const PacketSource* source);

  void onPacket(const CapturedPacket& packet) override { windower_.onPacket(packet); }
  void tick(int64_t nowNs) override;
  // End of capture: closes the last window.
  void flush() { windower_.flush(); }
  uint64_t windowsClosed() const noexcept { return windowsClosed_; }

 private:
  common::PrefixSet protected_;
  std::string sensorId_;
  Uplink* uplink_;
  std::FILE* jsonOut_;
  const PacketSource* source_;
  Windower windower_;
  uint64_t windowsClosed_ = 0;
  uint64_t lastKernelDrops_ = 0;
};

}  // namespace garda::sensor
